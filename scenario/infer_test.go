package scenario

import "testing"

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
