package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Canonical is an optional fast path for messages on hot paths: a message that implements it
// appends its own canonical text form instead of being printed with fmt's %+v.
type Canonical interface {
	AppendCanonical(b []byte) []byte
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Trace folds every event, in a canonical text form, into a running 64-bit FNV-1a hash. It can
// also write the events as JSON lines and keep their text for finding where two runs diverge.
type Trace struct {
	hash  uint64
	n     uint64
	buf   []byte
	out   *bufio.Writer
	lines []string // kept only when keepLines is set
	keep  bool
}

// TraceEntry is one event of a trace as written to a JSON-lines file.
type TraceEntry struct {
	// I is the event's index in the run, from 0.
	I uint64 `json:"i"`
	// T is the simulated time in nanoseconds since the start of the run.
	T int64 `json:"t"`
	// Kind: deliver, timer, start, crash, restart, pause, resume, drop, dup, action, observe.
	Kind string `json:"kind"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Msg is the message type's wire name, or the action's name.
	Msg string `json:"msg,omitempty"`
	// Body is the message in canonical form.
	Body string `json:"body,omitempty"`
	// Hash is the running trace hash after this event, in hex.
	Hash string `json:"hash"`
}

func newTrace() *Trace { return &Trace{hash: fnvOffset64} }

// Hash is the running hash of every event so far.
func (t *Trace) Hash() uint64 { return t.hash }

// Events is the number of events folded into the hash.
func (t *Trace) Events() uint64 { return t.n }

// Lines returns the canonical text of every event, when the trace was told to keep them.
func (t *Trace) Lines() []string { return t.lines }

// record folds one event into the hash.
func (t *Trace) record(at time.Duration, kind string, from, to node.Addr, name string, msg any) {
	b := t.buf[:0]
	b = strconv.AppendInt(b, int64(at), 10)
	b = append(b, ' ')
	b = append(b, kind...)
	b = append(b, ' ')
	b = append(b, from...)
	b = append(b, '>')
	b = append(b, to...)
	b = append(b, ' ')
	b = append(b, name...)
	bodyStart := len(b)
	if msg != nil {
		b = append(b, ' ')
		bodyStart++
		if c, ok := msg.(Canonical); ok {
			b = c.AppendCanonical(b)
		} else {
			b = fmt.Appendf(b, "%+v", msg)
		}
	}
	h := t.hash
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	h ^= '\n'
	h *= fnvPrime64
	t.hash = h
	t.buf = b
	if t.keep {
		t.lines = append(t.lines, string(b))
	}
	if t.out != nil {
		t.writeJSON(at, kind, from, to, name, string(b[bodyStart:]))
	}
	t.n++
}

func (t *Trace) writeJSON(at time.Duration, kind string, from, to node.Addr, name, body string) {
	e := TraceEntry{I: t.n, T: int64(at), Kind: kind, From: string(from), To: string(to), Msg: name,
		Body: body, Hash: fmt.Sprintf("%016x", t.hash)}
	line, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("sim: trace entry does not encode: %v", err))
	}
	t.out.Write(line)
	t.out.WriteByte('\n')
}

// WriteJSON starts writing every later event as a JSON line to w. Call Flush at the end.
func (t *Trace) WriteJSON(w io.Writer) { t.out = bufio.NewWriterSize(w, 1<<16) }

// Flush writes out buffered JSON lines.
func (t *Trace) Flush() error {
	if t.out == nil {
		return nil
	}
	return t.out.Flush()
}

// FirstDivergence compares the kept lines of two traces of the same scenario and returns the
// index of the first event where they differ and both lines ("" past a trace's end), or -1 when
// they are the same.
func FirstDivergence(a, b []string) (int, string, string) {
	n := max(len(a), len(b))
	for i := 0; i < n; i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb {
			return i, la, lb
		}
	}
	return -1, "", ""
}
