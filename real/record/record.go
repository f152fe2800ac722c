// Package record writes and reads the history of a real-mode run: every message each process
// sent and received and every observation, one JSON line per event, with wall-clock times.
//
// Each OS process of a run appends to its own file (rbee binaries take --record FILE); a
// line is written with one write call as the event happens, so a process killed with SIGKILL
// loses nothing it recorded before. The harness reads every file of the run, merges the
// events by time and judges them with the simulator's checkers. All processes of a run are on
// one machine, so their wall clocks agree.
package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// Line is one event as written: At is Unix nanoseconds; Msg and Body as in a wire.Envelope;
// for an observation, Obs names it and Body holds it.
type Line struct {
	At   int64           `json:"at"`
	Kind string          `json:"kind"`
	From node.Addr       `json:"from"`
	To   node.Addr       `json:"to,omitempty"`
	Msg  string          `json:"msg,omitempty"`
	Obs  string          `json:"obs,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
	PID  int             `json:"pid"`
}

// Writer appends events to a file. Safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	f   *os.File
	pid int
	err error
}

// Create opens (appending) the record file at path. A restarted process appends to the
// file of the one before it; if that one was killed in the middle of a line, the torn line
// is ended first, so that the new process's first event is not glued to it (ReadFiles skips
// the torn line).
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("record: cannot open %s for the run's history: %w", path, err)
	}
	w := &Writer{f: f, pid: os.Getpid()}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("record: cannot end the torn last line of %s: %w", path, err)
			}
		}
	}
	return w, nil
}

// Trace is a real.Config.Trace that writes each event. Messages without a wire form (none of
// the core's) are written with their name and no body.
func (w *Writer) Trace(e real.TraceEvent) {
	l := Line{At: e.At.UnixNano(), Kind: e.Kind, From: e.From, To: e.To, PID: w.pid}
	switch {
	case e.Msg != nil:
		l.Msg = e.Msg.MsgName()
		if env, err := wire.Default.Encode(e.From, e.To, e.Msg); err == nil {
			l.Body = env.Body
		}
	case e.Obs != nil:
		l.Obs = e.Obs.ObservationName()
		if b, err := json.Marshal(e.Obs); err == nil {
			l.Body = b
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(b); err != nil && w.err == nil {
		w.err = err
	}
}

// Close closes the file and reports the first write error, if any.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.err, w.f.Close())
}

// Event is one decoded event.
type Event struct {
	At   time.Time
	Kind string
	From node.Addr
	To   node.Addr
	Msg  node.Msg         // for send and deliver; nil when its name is unknown here
	Obs  node.Observation // for observe: node.Mark or one of the api observations
	PID  int
}

// ReadFiles reads and merges record files, sorted by time (stable: a file's own order is kept
// for equal times). A torn line (a process killed mid-write) is skipped: the file's last
// line, or a line followed by the events of another process (the restart that appended after
// it). Any other bad line is an error naming the file and line.
func ReadFiles(paths ...string) ([]Event, error) {
	var all []Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		evs, err := read(f, p)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	return all, nil
}

func read(r io.Reader, name string) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []Event
	n := 0
	var pendingErr error // a bad line: torn only if the file ends or another process follows
	lastPID := -1        // the PID of the last good line
	for sc.Scan() {
		n++
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			if pendingErr != nil {
				return nil, pendingErr // two bad lines in a row: not a torn write
			}
			pendingErr = fmt.Errorf("record: %s line %d is not an event: %v", name, n, err)
			continue
		}
		if pendingErr != nil && (l.PID == lastPID || lastPID < 0) {
			return nil, pendingErr // the same process wrote on after it, or nothing came before: not a torn write
		}
		pendingErr, lastPID = nil, l.PID
		e := Event{At: time.Unix(0, l.At), Kind: l.Kind, From: l.From, To: l.To, PID: l.PID}
		switch {
		case l.Msg != "":
			m, err := wire.Default.Decode(wire.Envelope{From: l.From, To: l.To, Msg: l.Msg, Body: l.Body})
			if err == nil {
				e.Msg = m
			}
		case l.Obs != "":
			e.Obs = decodeObs(l.Obs, l.Body)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// decodeObs turns an observation back into its type; unknown ones become nil.
func decodeObs(name string, body []byte) node.Observation {
	var o node.Observation
	switch name {
	case node.Mark("").ObservationName():
		var m node.Mark
		if json.Unmarshal(body, &m) == nil {
			return m
		}
		return nil
	case api.CatalogRebuilt{}.ObservationName():
		var v api.CatalogRebuilt
		if json.Unmarshal(body, &v) == nil {
			o = v
		}
	case api.WorkerHealthChanged{}.ObservationName():
		var v api.WorkerHealthChanged
		if json.Unmarshal(body, &v) == nil {
			o = v
		}
	case api.WorkerExpired{}.ObservationName():
		var v api.WorkerExpired
		if json.Unmarshal(body, &v) == nil {
			o = v
		}
	case api.QueenStarted{}.ObservationName():
		var v api.QueenStarted
		if json.Unmarshal(body, &v) == nil {
			o = v
		}
	}
	return o
}
