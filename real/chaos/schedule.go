package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/benbjohnson/clock"
)

// Step is one fault of a schedule: Do injects it At after the schedule starts, and Undo (if
// any) ends it For after Do was called. A step with Undo and no For lasts until the end of the
// schedule (the last Do or timed Undo). Do and Undo run one at a time on Run's goroutine, so
// a slow one delays the steps after it: they should be quick (send a signal, flip a proxy
// switch), not wait for the system's reaction.
type Step struct {
	At   time.Duration
	Do   func() error
	Undo func() error
	For  time.Duration
	Name string
}

// Event is what happened to one step, for the report's fault timeline.
type Event struct {
	Name string
	// Step is the step's index in the slice given to Run.
	Step int
	// Start is when Do was called.
	Start time.Time
	// End is when Undo returned; when Do failed or the step has no Undo, when Do returned.
	// It is zero if the fault is still on: only when an Undo was never reached, which Run
	// avoids even when cancelled.
	End time.Time
	// Err is Do's or Undo's error, if any. A step whose Do failed is not undone.
	Err error
}

// Run plays steps on clk (clock.New() for wall-clock time, a clock.Mock in tests) from now
// on and returns the timeline: one Event per step that was started, in the order they
// started. Steps are started in order of At (ties in slice order); at one instant, due undos
// run before due dos. When every step is done, the steps that last to the end are undone in
// the reverse order of their start. If ctx ends first, no more steps start, every fault still
// on is undone at once (newest first), and the error includes ctx.Err(). The error also joins
// every step's error; the timeline is returned either way. A step with no Do, a negative At
// or For, or a For without Undo is refused before anything runs.
func Run(ctx context.Context, steps []Step, clk clock.Clock) ([]Event, error) {
	for i, s := range steps {
		if err := checkStep(s); err != nil {
			return nil, fmt.Errorf("chaos: schedule step %d (%q): %w", i, s.Name, err)
		}
	}
	order := make([]int, len(steps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(steps[a].At, steps[b].At) })

	type active struct {
		event  int       // index in events
		undoAt time.Time // zero: at the end of the schedule
	}
	var (
		events []Event
		on     []active // in start order
		errs   []error
	)
	start := clk.Now()
	undo := func(a active) {
		ev := &events[a.event]
		if err := steps[ev.Step].Undo(); err != nil {
			ev.Err = fmt.Errorf("undo: %w", err)
			errs = append(errs, fmt.Errorf("chaos: schedule step %q: %w", ev.Name, ev.Err))
		}
		ev.End = clk.Now()
	}
	undoAll := func() {
		for i := len(on) - 1; i >= 0; i-- {
			undo(on[i])
		}
		on = nil
	}

	next := 0 // in order
	for {
		// The earliest due action: a timed undo (earliest first, then oldest) or the next do.
		u := -1
		for i, a := range on {
			if !a.undoAt.IsZero() && (u < 0 || a.undoAt.Before(on[u].undoAt)) {
				u = i
			}
		}
		var due time.Time
		switch {
		case u >= 0 && (next == len(order) || !start.Add(steps[order[next]].At).Before(on[u].undoAt)):
			due = on[u].undoAt
		case next < len(order):
			u = -1
			due = start.Add(steps[order[next]].At)
		default:
			undoAll()
			return events, errors.Join(errs...)
		}
		if err := sleepUntil(ctx, clk, due); err != nil {
			undoAll()
			return events, errors.Join(append(errs, fmt.Errorf("chaos: schedule stopped after %d of %d steps: %w", next, len(steps), err))...)
		}
		if u >= 0 {
			undo(on[u])
			on = slices.Delete(on, u, u+1)
			continue
		}
		i := order[next]
		next++
		s := steps[i]
		events = append(events, Event{Name: s.Name, Step: i, Start: clk.Now()})
		ev := &events[len(events)-1]
		if err := s.Do(); err != nil {
			ev.Err = fmt.Errorf("do: %w", err)
			ev.End = clk.Now()
			errs = append(errs, fmt.Errorf("chaos: schedule step %q: %w", s.Name, ev.Err))
			continue
		}
		if s.Undo == nil {
			ev.End = clk.Now()
			continue
		}
		a := active{event: len(events) - 1}
		if s.For > 0 {
			a.undoAt = ev.Start.Add(s.For)
		}
		on = append(on, a)
	}
}

func checkStep(s Step) error {
	switch {
	case s.Do == nil:
		return errors.New("no Do function")
	case s.At < 0 || s.For < 0:
		return fmt.Errorf("negative At (%v) or For (%v)", s.At, s.For)
	case s.For > 0 && s.Undo == nil:
		return fmt.Errorf("For is %v but there is no Undo to end the fault", s.For)
	}
	return nil
}

// sleepUntil waits on clk until t, or until ctx ends (its error is then returned).
func sleepUntil(ctx context.Context, clk clock.Clock, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := t.Sub(clk.Now())
	if d <= 0 {
		return nil
	}
	timer := clk.Timer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
