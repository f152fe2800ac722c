//go:build plant

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// TestCanaryCatchesEveryPlant: the canary runs every known plant, catches each, and writes a
// report naming the seed, the checker and the replay command.
func TestCanaryCatchesEveryPlant(t *testing.T) {
	out := t.TempDir()
	if err := cmdCanary([]string{"--out", out}); err != nil {
		t.Fatalf("canary: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "canary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Plants    []canaryResult `json:"plants"`
		CaughtAll bool           `json:"caught_all"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.CaughtAll || len(rep.Plants) != len(plant.Known) {
		t.Fatalf("canary report: caught_all %v, %d plants (want %d)", rep.CaughtAll, len(rep.Plants), len(plant.Known))
	}
	for _, p := range rep.Plants {
		if !p.Caught || p.Seed == 0 || p.Checker == "" || p.Replay == "" || p.Stage == "assumptions" {
			t.Errorf("plant %s: %+v", p.Plant, p)
		}
	}
}
