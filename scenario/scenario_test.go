package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rbee-sim/rbee-sim/orch/plant"
)

func TestCatalogueIDsAreScenarioIDs(t *testing.T) {
	want := []string{"catalog/backup-restore", "catalog/concurrent-registration", "catalog/corruption-recovery", "catalog/disk-faults",
		"catalog/large-query", "catalog/orphan-cleanup", "catalog/schema-migration",
		"e2e/cold-start", "e2e/deadlines", "e2e/failover", "e2e/graceful-shutdown", "e2e/load-balancing", "e2e/rolling-update",
		"inference/cancel", "inference/client-disconnect", "inference/concurrent-slots", "inference/eos", "inference/stall", "inference/timeout", "inference/worker-busy-retry",
		"lifecycle/crash-detection", "lifecycle/idle-timeout", "lifecycle/shutdown", "lifecycle/start-failures", "lifecycle/worker-start",
		"provisioner/bandwidth-limit", "provisioner/gguf-validation", "provisioner/hub-errors", "provisioner/progress", "provisioner/rate-limit-429", "provisioner/resume", "provisioner/single-flight",
		"registry/capability-change", "registry/concurrent-state-update", "registry/heartbeat-timeout-busy",
		"registry/linearizable", "registry/overflow", "registry/persistence",
		"validation/batch-size", "validation/max-tokens", "validation/prompt-injection"}
	var got []string
	for _, e := range Catalogue() {
		got = append(got, e.ID)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("catalogue IDs (-want +got):\n%s", d)
	}
}

func TestLookupUnknownNamesTheScenarios(t *testing.T) {
	_, err := Lookup("registry/nope")
	if err == nil || !strings.Contains(err.Error(), "registry/overflow") {
		t.Fatalf("error %v should list the scenarios", err)
	}
}

func TestGeneratedScenariosAreValidAndDeterministic(t *testing.T) {
	for _, e := range Catalogue() {
		for seed := uint64(1); seed <= 20; seed++ {
			a := e.Generate(seed, Knobs{})
			if err := a.Validate(); err != nil {
				t.Fatalf("%s seed %d: %v", e.ID, seed, err)
			}
			if d := cmp.Diff(a, e.Generate(seed, Knobs{}), cmpopts.IgnoreUnexported(plant.Set{})); d != "" {
				t.Fatalf("%s seed %d generated twice differs:\n%s", e.ID, seed, d)
			}
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	e, _ := Lookup("registry/persistence")
	sc := e.Generate(5, Knobs{})
	path := filepath.Join(t.TempDir(), "s.json")
	if err := sc.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sc, got); d != "" {
		t.Fatalf("round trip (-saved +loaded):\n%s", d)
	}
}

func TestLoadRefusesBadFilesClearly(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"id": "x", "chaos": -1}`), 0o644)
	_, err := Load(bad)
	if err == nil || !strings.Contains(err.Error(), "chaos must be positive") || !strings.Contains(err.Error(), "queen needs an address") {
		t.Fatalf("want every problem named, got %v", err)
	}
	os.WriteFile(bad, []byte(`{not json`), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "not valid scenario JSON") {
		t.Fatalf("got %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestPlantsNeedThePlantBuild(t *testing.T) {
	e, _ := Lookup("registry/overflow")
	sc := e.Generate(1, Knobs{})
	sc.Plants = []string{"registry-lost-update"}
	err := sc.Validate()
	if plantCompiled() {
		if err != nil {
			t.Fatalf("plant build refused a known plant: %v", err)
		}
		sc.Plants = []string{"no-such-plant"}
		if sc.Validate() == nil {
			t.Fatal("unknown plant accepted")
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "-tags plant") {
		t.Fatalf("a normal build must refuse plants and say how to get them, got %v", err)
	}
}

// TestRunJudgesAndMissingPathIsInvalid: a run passes its checkers, and a run that requires a
// path it never reaches is invalid, never a pass.
func TestRunJudgesAndMissingPathIsInvalid(t *testing.T) {
	e, _ := Lookup("registry/overflow")
	sc := e.Generate(3, Knobs{})
	res := Run(sc, Options{})
	if !res.Passed {
		t.Fatalf("overflow seed 3 failed: %+v", res.FirstFailure())
	}
	stages := map[string]bool{}
	for _, c := range res.Checkers {
		stages[c.Stage] = true
	}
	for _, s := range []string{"assumptions", "linearizability", "monitors", "liveness"} {
		if !stages[s] {
			t.Fatalf("stage %s did not run: %+v", s, res.Checkers)
		}
	}
	if res.Marks["registry full"] == 0 || res.Operations == 0 {
		t.Fatalf("overflow never filled the registry or recorded nothing: marks %v ops %d", res.Marks, res.Operations)
	}
	sc.Require = []string{"a path no code reaches"}
	res = Run(sc, Options{})
	if res.Passed || res.FirstFailure().Stage != "assumptions" {
		t.Fatalf("a run missing a required path passed or failed elsewhere: %+v", res.FirstFailure())
	}
}
