package scenario

import (
	"strings"
	"testing"
)

// TestInferencePinnedSeeds replays seeds that once found bugs.
func TestInferencePinnedSeeds(t *testing.T) {
	for _, c := range []struct {
		id   string
		seed uint64
		why  string
	}{
		{"e2e/deadlines", 81, "a worker paused past a request's deadline sent the tokens it got on resuming before its deadline timer fired"},
	} {
		e, err := Lookup(c.id)
		if err != nil {
			t.Fatal(err)
		}
		if res := Run(e.Generate(c.seed, Knobs{}), Options{}); !res.Passed {
			t.Errorf("%s seed %d (%s) fails again: %+v", c.id, c.seed, c.why, res.FirstFailure())
		}
	}
}

// TestShrinkLeavesAPassingScenarioAlone: nothing to minimise in a run that passes.
func TestShrinkLeavesAPassingScenarioAlone(t *testing.T) {
	e, err := Lookup("validation/max-tokens")
	if err != nil {
		t.Fatal(err)
	}
	sc := e.Generate(1, Knobs{})
	small, st := Shrink(sc, 10)
	if st.Checker != "" || st.Runs != 1 || len(small.InferClients) != len(sc.InferClients) || st.ToEvents != st.FromEvents {
		t.Fatalf("a passing scenario was shrunk: %+v", st)
	}
}

// e2e/failover, soak seed 118 with swarm (shrunk to 2 faults, 2 workers, 2 clients): engine
// crashes fail a request over before its first token, the other worker is full, and the
// client's busy retries end "busy" with advice and no token. That is the truth, not a broken
// stream; the failover checker used to count any request routed to two workers as failed
// over mid-stream.
func TestFailoverBusyBeforeFirstTokenIsNotABrokenStream(t *testing.T) {
	sc, err := Load("testdata/failover-busy-after-failover.json")
	if err != nil {
		t.Fatal(err)
	}
	res := Run(sc, Options{})
	if !res.Passed {
		t.Fatalf("failed: %+v", res.FirstFailure())
	}
	busy := false
	for _, c := range res.Checkers {
		if strings.HasPrefix(c.Name, "a request that failed over") && c.OK {
			busy = true
		}
	}
	if !busy {
		t.Fatal("the failover checker did not run")
	}
}
