//go:build plant

package properties

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// plantCases pairs each planted bug with the scenario that must catch it within a budget of
// seeds (scenario.PlantCases, shared with the canary); the stage that catches it is never
// "assumptions": an invalid run catches nothing.
var plantCases = scenario.PlantCases()

// TestPlantedBugsAreCaughtAndReplay proves the checkers bite: with each plant switched on, some
// seed within the budget fails at the linearizability or monitor stage, and replaying the saved
// failure file reproduces the same trace hash and the same failing checker.
func TestPlantedBugsAreCaughtAndReplay(t *testing.T) {
	covered := map[string]bool{}
	for _, pc := range plantCases {
		covered[pc.Plant] = true
	}
	for _, name := range plant.Names() {
		if !covered[name] {
			t.Errorf("planted bug %q has no test proving a checker catches it", name)
		}
	}
	for _, pc := range plantCases {
		t.Run(pc.Plant, func(t *testing.T) {
			e, err := scenario.Lookup(pc.Scenario)
			if err != nil {
				t.Fatal(err)
			}
			for seed := uint64(1); seed <= pc.Seeds; seed++ {
				sc := e.Generate(seed, scenario.Knobs{})
				sc.Plants = []string{pc.Plant}
				res := scenario.Run(sc, scenario.Options{})
				c := res.FirstFailure()
				if c == nil {
					continue
				}
				if c.Stage == "assumptions" {
					t.Fatalf("seed %d: the plant made the run invalid instead of being caught: %s", seed, c.Detail)
				}
				t.Logf("%s caught by %s seed %d at stage %s: %s: %s", pc.Plant, pc.Scenario, seed, c.Stage, c.Name, c.Detail)
				checkReplay(t, sc, res, *c)
				return
			}
			t.Fatalf("%s was not caught by %s within %d seeds", pc.Plant, pc.Scenario, pc.Seeds)
		})
	}
}

func checkReplay(t *testing.T, sc scenario.Scenario, res scenario.Result, first scenario.CheckerResult) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "failure")
	file, err := reports.WriteFolder(dir, sc, &res)
	if err != nil {
		t.Fatalf("cannot write the failure folder: %v", err)
	}
	loaded, err := scenario.Load(file)
	if err != nil {
		t.Fatalf("the saved failure does not load: %v", err)
	}
	again := scenario.Run(loaded, scenario.Options{})
	if again.TraceHash != res.TraceHash {
		t.Fatalf("replay of %s gave trace hash %s, the failing run %s", file, again.TraceHash, res.TraceHash)
	}
	c := again.FirstFailure()
	if c == nil || c.Name != first.Name {
		t.Fatalf("replay of %s did not reproduce the failure %q: got %+v", file, first.Name, c)
	}
	if first.Stage == "linearizability" {
		if _, err := os.Stat(filepath.Join(dir, "history.html")); err != nil {
			t.Fatalf("a linearizability failure must come with porcupine's history.html: %v", err)
		}
	}
}
