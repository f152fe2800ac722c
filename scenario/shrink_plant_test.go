//go:build plant

package scenario

import "testing"

// TestShrinkPlantedFailures: a planted bug's failure shrinks to a scenario that fails with the
// same checker, no bigger; a large one (registry-lost-update) at least 5 times smaller in events.
func TestShrinkPlantedFailures(t *testing.T) {
	for _, pc := range []struct {
		PlantCase
		factor float64
	}{
		{PlantCase{Plant: "registry-lost-update", Scenario: "registry/concurrent-state-update", Seeds: 10}, 5},
		{PlantCase{Plant: "keeper-no-backoff", Scenario: "inference/worker-busy-retry", Seeds: 5}, 1},
	} {
		e, err := Lookup(pc.Scenario)
		if err != nil {
			t.Fatal(err)
		}
		for seed := uint64(1); seed <= pc.Seeds; seed++ {
			sc := e.Generate(seed, Knobs{})
			sc.Plants = []string{pc.Plant}
			res := Run(sc, Options{})
			c := res.FirstFailure()
			if c == nil || c.Stage == "assumptions" {
				continue
			}
			small, st := Shrink(sc, 150)
			again := Run(small, Options{})
			if f := again.FirstFailure(); f == nil || f.Name != c.Name {
				t.Fatalf("%s: the shrunk scenario does not fail with %q: %+v", pc.Plant, c.Name, f)
			}
			t.Logf("%s: %d -> %d events (%.1fx), faults %d -> %d, clients %d -> %d, requests %d -> %d, %d runs",
				pc.Plant, st.FromEvents, st.ToEvents, st.Factor(), st.FromFaults, st.ToFaults, st.FromClients, st.ToClients, st.FromRequests, st.ToRequests, st.Runs)
			if st.Factor() < pc.factor || st.ToFaults > st.FromFaults || st.ToRequests > st.FromRequests {
				t.Errorf("%s: shrunk %.1fx (%d -> %d events), want at least %.0fx and nothing bigger", pc.Plant, st.Factor(), st.FromEvents, st.ToEvents, pc.factor)
			}
			break
		}
	}
}
