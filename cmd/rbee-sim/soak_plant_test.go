//go:build plant

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// TestSoakShrinksItsFailures: a soak with a planted bug fails, and each failure in its report
// has a folder with the timeline and porcupine's history, the original and minimal sizes, and
// a minimal scenario file that replays to the same checker.
func TestSoakShrinksItsFailures(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := capture(t, "soak", "--seeds", "1", "--scenario", "registry/concurrent-state-update",
		"--plant", "registry-lost-update", "--shrink", "25", "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	s := readSummary(t, out)
	if len(s.Failures) != 1 || !slices.Equal(s.Flags.Plants, []string{"registry-lost-update"}) {
		t.Fatalf("failures %+v, flags %+v", s.Failures, s.Flags)
	}
	f := s.Failures[0]
	if f.Invalid || f.Shrunk == nil || f.MinimalFolder != f.Folder+"/minimal" || !strings.Contains(f.MinimalReplay, "-tags plant") {
		t.Fatalf("failure %+v", f)
	}
	for _, want := range []string{"scenario.json", "timeline.html", "history.html", "trace.jsonl"} {
		if !slices.Contains(f.Files, want) || !slices.Contains(f.MinimalFiles, want) {
			t.Errorf("failure folders hold %v and %v; want %s in both", f.Files, f.MinimalFiles, want)
		}
	}
	st := f.Shrunk
	if st.Checker != f.Checker || st.ToEvents >= st.FromEvents || st.ToNodes > st.FromNodes || st.ToFaults > st.FromFaults ||
		st.ToSimSeconds > st.FromSimSeconds || st.FromNodes == 0 {
		t.Errorf("shrink %+v", st)
	}
	if !strings.Contains(stdout, "minimal: ") {
		t.Errorf("the text summary does not give the minimal scenario:\n%s", stdout)
	}
	// The minimal scenario file replays to the same checker.
	minimal := filepath.Join(out, f.MinimalFolder, "scenario.json")
	sc, err := scenario.Load(minimal)
	if err != nil {
		t.Fatal(err)
	}
	code, replayed, _ := capture(t, "replay", "--json", "--out", t.TempDir(), minimal)
	var res scenario.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(replayed)), &res); err != nil || code != 1 {
		t.Fatalf("replay of %s: exit %d, %v\n%s", minimal, code, err, replayed)
	}
	if c := res.FirstFailure(); c == nil || c.Name != f.Checker || res.Events != st.ToEvents || len(sc.Faults) != st.ToFaults {
		t.Errorf("the minimal scenario replays to %+v in %d events; want %q in %d", c, res.Events, f.Checker, st.ToEvents)
	}
	page, _ := os.ReadFile(filepath.Join(out, "index.html"))
	for _, want := range []string{f.MinimalFolder + "/timeline.html", f.Folder + "/history.html", "Minimal scenario", f.MinimalReplay} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
}
