package engine

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

const (
	workerAddr node.Addr = "worker-1"
	otherAddr  node.Addr = "worker-2"
)

// waitLimit bounds every wait of these tests: a guard against a hang, not a timing assertion.
const waitLimit = 30 * time.Second

// sent is one message a port sent, with when (time.Now: fake inside a synctest bubble).
type sent struct {
	to  node.Addr
	msg node.Msg
	at  time.Time
}

// recorder is a real.Send that keeps what the port sent.
type recorder struct {
	mu     sync.Mutex
	msgs   []sent
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) send(to node.Addr, m node.Msg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, sent{to: to, msg: m, at: time.Now()})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// waitFor waits until cond holds for what was sent, and returns it.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]sent) bool) []sent {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		if got := r.all(); cond(got) {
			return got
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; sent: %s", waitLimit, what, dump(r.all()))
		}
	}
}

// waitDone waits for the EngineDone of reqID.
func (r *recorder) waitDone(t *testing.T, reqID uint64) []sent {
	t.Helper()
	return r.waitFor(t, fmt.Sprintf("the end of request %d", reqID), func(s []sent) bool {
		_, done := completion(s, reqID)
		return done != nil
	})
}

// waitTokens waits until reqID has n tokens.
func (r *recorder) waitTokens(t *testing.T, reqID uint64, n int) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%d tokens of request %d", n, reqID), func(s []sent) bool {
		toks, _ := completion(s, reqID)
		return len(toks) >= n
	})
}

// waitLoaded waits for EngineLoaded and returns it with the progress sent before it.
func (r *recorder) waitLoaded(t *testing.T) (api.EngineLoaded, []float64) {
	t.Helper()
	got := r.waitFor(t, "EngineLoaded", func(s []sent) bool { return len(loads(s)) > 0 })
	var pct []float64
	for _, s := range got {
		switch m := s.msg.(type) {
		case api.EngineLoadProgress:
			pct = append(pct, m.Percent)
		case api.EngineLoaded:
			return m, pct
		}
	}
	panic("unreachable")
}

func loads(s []sent) []api.EngineLoaded {
	var l []api.EngineLoaded
	for _, x := range s {
		if m, ok := x.msg.(api.EngineLoaded); ok {
			l = append(l, m)
		}
	}
	return l
}

// completion returns the token texts and the EngineDone (nil if none yet) of reqID.
func completion(s []sent, reqID uint64) ([]string, *api.EngineDone) {
	var toks []string
	var done *api.EngineDone
	for _, x := range s {
		switch m := x.msg.(type) {
		case api.EngineToken:
			if m.ReqID == reqID {
				toks = append(toks, m.Text)
			}
		case api.EngineDone:
			if m.ReqID == reqID && done == nil {
				done = &m
			}
		}
	}
	return toks, done
}

// checkProtocol fails unless, for every ReqID, the tokens have Index 0, 1, 2, ..., at most
// one EngineDone was sent and nothing followed it, and every message went to want.
func checkProtocol(t *testing.T, s []sent, want node.Addr) {
	t.Helper()
	next := map[uint64]int{}
	ended := map[uint64]bool{}
	for _, x := range s {
		if x.to != want {
			t.Errorf("%s sent to %s, want %s", x.msg.MsgName(), x.to, want)
		}
		switch m := x.msg.(type) {
		case api.EngineToken:
			if ended[m.ReqID] {
				t.Errorf("request %d: token %d after its EngineDone", m.ReqID, m.Index)
			}
			if m.Index != next[m.ReqID] {
				t.Errorf("request %d: token index %d, want %d", m.ReqID, m.Index, next[m.ReqID])
			}
			next[m.ReqID] = m.Index + 1
		case api.EngineDone:
			if ended[m.ReqID] {
				t.Errorf("request %d: a second EngineDone %+v", m.ReqID, m)
			}
			ended[m.ReqID] = true
		}
	}
}

// wantError fails unless done is an error with code whose message has every part and which
// says what to do.
func wantError(t *testing.T, done *api.EngineDone, code api.Code, parts ...string) {
	t.Helper()
	if done == nil {
		t.Fatalf("no EngineDone, want an error %s", code)
	}
	if done.Reason != api.FinishError || done.Err.Code != code {
		t.Fatalf("EngineDone %+v, want reason error with code %s", *done, code)
	}
	checkMessage(t, done.Err, parts...)
}

// checkMessage fails unless err's message has every part and err has a suggestion.
func checkMessage(t *testing.T, err api.Error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Message, p) {
			t.Errorf("error message %q does not mention %q", err.Message, p)
		}
	}
	if err.Suggestion == "" {
		t.Errorf("error %+v says nothing about what to do", err)
	}
}

func dump(s []sent) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "\n  -> %s %s %+v", x.to, x.msg.MsgName(), x.msg)
	}
	return b.String()
}

// mkPort builds a port with a recorder, closed at the end of the test:
// mkPort(t)(NewCPU(cfg)).
func mkPort(t *testing.T) func(mk func(real.Send) real.Port, err error) (real.Port, *recorder) {
	return func(mk func(real.Send) real.Port, err error) (real.Port, *recorder) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		p := mk(rec.send)
		t.Cleanup(func() { p.Close() })
		return p, rec
	}
}

// load loads a model into p and fails unless it loaded.
func load(t *testing.T, p real.Port, rec *recorder, size int64) []float64 {
	t.Helper()
	p.Deliver(workerAddr, api.EngineLoad{Model: "hf:org/tiny-GGUF/tiny.gguf", SizeBytes: size})
	l, pct := rec.waitLoaded(t)
	if !l.Err.OK() {
		t.Fatalf("load failed: %v", l.Err)
	}
	return pct
}

// logBuffer is a slog destination safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// prompts are the prompts the tests draw completions for.
var prompts = []string{"", "tell me a story", "the bee", "a", "once upon a time in a hive far away",
	"ünïcödé prompt ✓", "what is the capital of France?"}
