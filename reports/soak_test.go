package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// A failing run, built by hand, appears in the summary's failures with its folder and replay
// command, counts as failed (an assumption failure as invalid), and the page links its files.
func TestSoakSummaryCountsFailuresAndLinksThem(t *testing.T) {
	root := t.TempDir()
	ids := []string{"registry/overflow", "registry/persistence", "registry/never-ran"}
	c := NewSoakCollector(root, ids)

	ok := scenario.Result{Scenario: "registry/overflow", Seed: 1, Passed: true, Events: 100, SimSeconds: 840, WallSeconds: 0.5,
		Marks: map[string]int{"registry-full": 3}, Faults: map[string]int{"net-duplicate": 2}}
	c.Add(scenario.Scenario{ID: "registry/overflow", Seed: 1}, &ok, []string{"net-duplicate", "crash-restart"})

	failSc := scenario.Scenario{ID: "registry/persistence", Seed: 7}
	failDir := FailureDir(filepath.Join(root, "failures"), failSc)
	if err := os.MkdirAll(failDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(failDir, "history.html"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := scenario.Result{Scenario: failSc.ID, Seed: 7, Events: 50, SimSeconds: 100, WallSeconds: 0.25, TraceHash: "abc",
		Marks: map[string]int{"registry-full": 1}, Faults: map[string]int{"crash-restart": 1, "power-fail": 0},
		FailureFile: filepath.Join(failDir, "scenario.json"),
		Checkers: []scenario.CheckerResult{{Name: "workload ran", Stage: "assumptions", OK: true},
			{Name: "registry linearizable", Stage: "linearizability", Detail: "NOT linearizable <script>"}}}
	c.Add(failSc, &bad, []string{"crash-restart", "power-fail"})

	inv := scenario.Result{Scenario: failSc.ID, Seed: 8, Checkers: []scenario.CheckerResult{{Name: "workload ran", Stage: "assumptions"}}}
	c.Add(scenario.Scenario{ID: failSc.ID, Seed: 8}, &inv, nil)

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := c.Summary(SoakFlags{Seeds: 1, Parallel: 1, Scenario: "registry/*", BaseSeed: 1, Shard: "0/1", Out: root}, start, start.Add(30*time.Second))
	if s.Passed() || s.Totals != (SoakTotals{Runs: 3, Passed: 1, Failed: 1, Invalid: 1, Events: 150, SimSeconds: 940, RunWallSeconds: 0.75}) {
		t.Fatalf("totals %+v", s.Totals)
	}
	if s.SeedsPerMinute != 6 || s.EventsPerWallSecond != 5 || s.Compression != 940.0/30 {
		t.Errorf("rates %v %v %v", s.SeedsPerMinute, s.EventsPerWallSecond, s.Compression)
	}
	if len(s.Scenarios) != 3 || s.Scenarios[0].ID != "registry/never-ran" || s.Scenarios[0].Runs != 0 || s.Scenarios[1].Passed != 1 || s.Scenarios[2].Invalid != 1 {
		t.Errorf("scenarios %+v", s.Scenarios)
	}
	wantFaults := []SoakFault{{"crash-restart", 1, 1, 2}, {"net-duplicate", 2, 1, 1}, {"power-fail", 0, 0, 1}}
	if len(s.Faults) != 3 || s.Faults[0] != wantFaults[0] || s.Faults[1] != wantFaults[1] || s.Faults[2] != wantFaults[2] {
		t.Errorf("faults %+v", s.Faults)
	}
	// The mark reached, and every declared mark (none reached here) with zeros, sorted.
	if len(s.Marks) != 1+len(scenario.DeclaredMarks) {
		t.Errorf("marks %+v", s.Marks)
	}
	for _, m := range s.Marks {
		switch {
		case m.Mark == "registry-full":
			if m != (SoakMark{Mark: "registry-full", Runs: 2, Hits: 4}) {
				t.Errorf("reached mark listed as %+v", m)
			}
		case !m.Declared || m.Hits != 0:
			t.Errorf("declared mark listed as %+v, want declared with no hit", m)
		}
	}
	if len(s.Failures) != 2 {
		t.Fatalf("failures %+v", s.Failures)
	}
	f := s.Failures[0]
	if f.Seed != 7 || f.Invalid || f.Stage != "linearizability" || f.Checker != "registry linearizable" ||
		f.Folder != "failures/registry-persistence-seed-7" || !f.History ||
		f.Replay != "go run ./cmd/rbee-sim replay "+filepath.Join(failDir, "scenario.json") {
		t.Errorf("failure %+v", f)
	}
	if g := s.Failures[1]; !g.Invalid || g.Stage != "assumptions" || g.Folder != "" || g.Replay != "" {
		t.Errorf("invalid run %+v", g)
	}

	if err := WriteSoak(root, s); err != nil {
		t.Fatal(err)
	}
	var back SoakSummary
	b, err := os.ReadFile(filepath.Join(root, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Totals != s.Totals || len(back.Failures) != 2 {
		t.Fatalf("summary.json does not read back: %v\n%s", err, b)
	}
	page, err := os.ReadFile(filepath.Join(root, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, want := range []string{"FAILED: 1 of 3 runs failed and 1 were invalid", "registry/persistence", "registry/never-ran",
		`href="failures/registry-persistence-seed-7/README.txt"`, `href="failures/registry-persistence-seed-7/trace.jsonl"`,
		`href="failures/registry-persistence-seed-7/history.html"`, "<svg", "power-fail", "registry-full",
		"NOT linearizable &lt;script&gt;", f.Replay} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	checkSelfContained(t, html)
}

func TestSoakPageSaysPassedInGreen(t *testing.T) {
	root := t.TempDir()
	c := NewSoakCollector(root, []string{"registry/overflow"})
	c.Add(scenario.Scenario{ID: "registry/overflow", Seed: 1}, &scenario.Result{Passed: true, Events: 10, SimSeconds: 1, WallSeconds: 0.1}, nil)
	now := time.Now()
	s := c.Summary(SoakFlags{Duration: "1s", Parallel: 1, Scenario: "*", BaseSeed: 1, Shard: "0/1", Out: root}, now, now.Add(time.Second))
	if !s.Passed() {
		t.Fatal("a soak of one passing run did not pass")
	}
	if err := WriteSoak(root, s); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(root, "index.html"))
	if !strings.Contains(string(page), `class="verdict ok">PASSED: all 1 runs passed`) {
		t.Errorf("no green PASSED verdict:\n%s", page)
	}
	checkSelfContained(t, string(page))
}

// checkSelfContained: index.html loads nothing from elsewhere.
func checkSelfContained(t *testing.T, html string) {
	t.Helper()
	for _, bad := range []string{"http://", "https://", "<script", "<link", "@import", "src="} {
		if strings.Contains(html, bad) {
			t.Errorf("index.html contains %q: it must be self-contained", bad)
		}
	}
}
