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
