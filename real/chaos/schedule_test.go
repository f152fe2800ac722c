package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

// recorder logs the calls of steps with the mock time of each.
type recorder struct {
	mu    sync.Mutex
	clk   clock.Clock
	calls []string
	at    []time.Time
}

func (r *recorder) fn(what string, err error) func() error {
	return func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls = append(r.calls, what)
		r.at = append(r.at, r.clk.Now())
		return err
	}
}

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// runMock runs steps on a mock clock, moving it forward in small steps until Run returns.
func runMock(t *testing.T, ctx context.Context, mock *clock.Mock, steps []Step) ([]Event, error) {
	t.Helper()
	type result struct {
		events []Event
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ev, err := Run(ctx, steps, mock)
		done <- result{ev, err}
	}()
	end := time.Now().Add(deadline)
	for {
		select {
		case r := <-done:
			return r.events, r.err
		default:
		}
		if time.Now().After(end) {
			t.Fatal("Run did not finish")
		}
		mock.Add(100 * time.Millisecond)
	}
}

func TestRunOrdersAndUndoes(t *testing.T) {
	mock := clock.NewMock()
	r := &recorder{clk: mock}
	base := mock.Now()
	steps := []Step{
		{Name: "kill", At: 5 * time.Second, Do: r.fn("kill", nil)},
		{Name: "partition", At: time.Second, For: 3 * time.Second, Do: r.fn("partition", nil), Undo: r.fn("heal", nil)},
		{Name: "delay", At: 2 * time.Second, Do: r.fn("delay", nil), Undo: r.fn("undelay", nil)}, // to the end
		{Name: "pause", At: 4 * time.Second, For: 2 * time.Second, Do: r.fn("pause", nil), Undo: r.fn("resume", nil)},
	}
	events, err := runMock(t, context.Background(), mock, steps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"partition", "delay", "heal", "pause", "kill", "resume", "undelay"}
	if got := r.log(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %v, want %v", got, want)
	}
	// Each call happened no earlier than scheduled (the mock only moves forward).
	wantAt := map[string]time.Duration{"partition": 1, "delay": 2, "heal": 4, "pause": 4, "kill": 5, "resume": 6, "undelay": 6}
	for i, c := range r.log() {
		if min := base.Add(wantAt[c] * time.Second); r.at[i].Before(min) {
			t.Errorf("%s at %v, before %v", c, r.at[i].Sub(base), min.Sub(base))
		}
	}
	if len(events) != 4 {
		t.Fatalf("%d events, want 4: %+v", len(events), events)
	}
	for i, name := range []string{"partition", "delay", "pause", "kill"} {
		e := events[i]
		if e.Name != name || steps[e.Step].Name != name || e.Err != nil || e.End.IsZero() || e.End.Before(e.Start) {
			t.Errorf("event %d: %+v, want a finished %s", i, e, name)
		}
		if i > 0 && e.Start.Before(events[i-1].Start) {
			t.Errorf("events out of start order: %+v", events)
		}
		if d := steps[e.Step].For; e.End.Sub(e.Start) < d {
			t.Errorf("%s lasted %v, want at least %v", name, e.End.Sub(e.Start), d)
		}
	}
}

func TestRunRecordsErrors(t *testing.T) {
	mock := clock.NewMock()
	r := &recorder{clk: mock}
	steps := []Step{
		{Name: "bad-do", At: time.Second, For: time.Second, Do: r.fn("bad-do", errors.New("no such process")), Undo: r.fn("never", nil)},
		{Name: "bad-undo", At: 2 * time.Second, For: time.Second, Do: r.fn("ok-do", nil), Undo: r.fn("bad-undo", fmt.Errorf("heal failed"))},
	}
	events, err := runMock(t, context.Background(), mock, steps)
	if err == nil || !strings.Contains(err.Error(), "no such process") || !strings.Contains(err.Error(), "heal failed") {
		t.Fatalf("error %v, want both step errors", err)
	}
	if got := strings.Join(r.log(), ","); got != "bad-do,ok-do,bad-undo" {
		t.Fatalf("calls %s: a failed Do must not be undone", got)
	}
	if events[0].Err == nil || events[1].Err == nil || events[0].End.IsZero() || events[1].End.IsZero() {
		t.Fatalf("events %+v, want both errors recorded and both ended", events)
	}
}

func TestRunCancelUndoesEverything(t *testing.T) {
	mock := clock.NewMock()
	r := &recorder{clk: mock}
	ctx, cancel := context.WithCancel(context.Background())
	steps := []Step{
		{Name: "a", At: time.Second, For: time.Hour, Do: r.fn("a", nil), Undo: r.fn("undo-a", nil)},
		{Name: "b", At: 2 * time.Second, Do: func() error { cancel(); return r.fn("b", nil)() }, Undo: r.fn("undo-b", nil)},
		{Name: "c", At: 3 * time.Second, Do: r.fn("c", nil)},
	}
	events, err := runMock(t, ctx, mock, steps)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if got := strings.Join(r.log(), ","); got != "a,b,undo-b,undo-a" {
		t.Fatalf("calls %s, want the two active faults undone newest first and c never started", got)
	}
	if len(events) != 2 || events[0].End.IsZero() || events[1].End.IsZero() {
		t.Fatalf("events %+v", events)
	}
}

func TestRunRefusesBadSteps(t *testing.T) {
	nop := func() error { return nil }
	for name, s := range map[string]Step{
		"no do":        {Name: "x"},
		"negative at":  {Do: nop, At: -time.Second},
		"for, no undo": {Do: nop, For: time.Second},
		"negative for": {Do: nop, Undo: nop, For: -time.Second},
	} {
		called := false
		s := s
		if s.Do != nil {
			s.Do = func() error { called = true; return nil }
		}
		good := Step{Do: func() error { called = true; return nil }}
		if _, err := Run(context.Background(), []Step{good, s}, clock.NewMock()); err == nil || called {
			t.Errorf("%s: err %v, called %v; want a refusal before anything runs", name, err, called)
		}
	}
}

func TestRunWallClock(t *testing.T) {
	var calls []string
	steps := []Step{{Name: "blip", At: 10 * time.Millisecond, For: 20 * time.Millisecond,
		Do:   func() error { calls = append(calls, "do"); return nil },
		Undo: func() error { calls = append(calls, "undo"); return nil }}}
	start := time.Now()
	events, err := Run(context.Background(), steps, clock.New())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(calls, ",") != "do,undo" || len(events) != 1 {
		t.Fatalf("calls %v, events %+v", calls, events)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("ran in %v, want at least 30ms", took)
	}
	if d := events[0].End.Sub(events[0].Start); d < 20*time.Millisecond {
		t.Fatalf("fault lasted %v, want at least 20ms", d)
	}
}
