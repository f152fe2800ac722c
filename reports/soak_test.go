package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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
	for _, name := range []string{"history.html", "timeline.html", "scenario.json"} {
		if err := os.WriteFile(filepath.Join(failDir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
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
	wantFaults := []SoakFault{{"crash-restart", 1, 1, 2, 0}, {"net-duplicate", 2, 1, 1, 0}, {"power-fail", 0, 0, 1, 0}}
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
		f.Folder != "failures/registry-persistence-seed-7" || !f.History || !slices.Equal(f.Files, []string{"scenario.json", "timeline.html", "history.html"}) ||
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
		`href="failures/registry-persistence-seed-7/scenario.json"`, `href="failures/registry-persistence-seed-7/timeline.html"`,
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
	if !strings.Contains(string(page), `class="verdict ok" id="verdict">PASSED: all 1 runs passed`) {
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

// soakFixture collects a small soak by hand: a swarm run, a liveness-mode run, and a failure
// that the soak shrank, with the files its folders would hold. It returns the summary.
func soakFixture(t *testing.T, root string) *SoakSummary {
	t.Helper()
	c := NewSoakCollector(root, []string{"registry/overflow", "registry/persistence"})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }

	swarm := scenario.Variant{Swarm: []scenario.SwarmKind{{Kind: "net-duplicate", Intensity: 4, Faults: 3}}}
	c.AddRun(SoakRun{Scenario: scenario.Scenario{ID: "registry/overflow", Seed: 1},
		Result:    &scenario.Result{Passed: true, Events: 1000, SimSeconds: 840, WallSeconds: 0.03, Faults: map[string]int{"net-duplicate": 3}},
		Available: []string{"net-duplicate", "crash-restart"}, Variant: swarm, Started: at(0), Finished: at(2)})
	live := scenario.Variant{LivenessStop: 3 * time.Minute, Settle: 4 * time.Minute}
	c.AddRun(SoakRun{Scenario: scenario.Scenario{ID: "registry/overflow", Seed: 2},
		Result:    &scenario.Result{Passed: true, Events: 3000, SimSeconds: 420, WallSeconds: 0.3},
		Available: []string{"net-duplicate", "crash-restart"}, Variant: live, Started: at(1), Finished: at(4)})

	sc := scenario.Scenario{ID: "registry/persistence", Seed: 9}
	dir := FailureDir(filepath.Join(root, "failures"), sc)
	minimal := filepath.Join(dir, "minimal")
	for _, d := range []string{dir, minimal} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"README.txt", "scenario.json", "timeline.html", "history.html", "trace.jsonl", "result.json"} {
			if err := os.WriteFile(filepath.Join(d, name), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := scenario.ShrinkStats{Checker: "registry converges after faults stop", Runs: 40, FromEvents: 80000, ToEvents: 2000,
		FromFaults: 9, ToFaults: 1, FromNodes: 8, ToNodes: 3, FromWorkers: 6, ToWorkers: 1, FromClients: 4, ToClients: 1,
		FromSimSeconds: 840, ToSimSeconds: 390}
	bad := scenario.Result{Events: 80000, SimSeconds: 840, WallSeconds: 1.5, TraceHash: "feed", FailureFile: filepath.Join(dir, "scenario.json"),
		Checkers: []scenario.CheckerResult{{Name: "registry converges after faults stop", Stage: "liveness", Detail: "worker w-1 is stale"}}}
	c.AddRun(SoakRun{Scenario: sc, Result: &bad, Available: []string{"crash-restart"}, Variant: scenario.Variant{
		Swarm:        []scenario.SwarmKind{{Kind: "crash-restart", Intensity: 2, Faults: 9}},
		LivenessStop: 2 * time.Minute, Settle: 4 * time.Minute}, Started: at(3), Finished: at(4.5),
		Shrunk: &st, MinimalFile: filepath.Join(minimal, "scenario.json")})
	flags := SoakFlags{Duration: "5s", Parallel: 2, Scenario: "registry/*", BaseSeed: 1, Shard: "0/1", Out: root,
		Swarm: true, Liveness: 0.25, ShrinkBudget: 100, Command: []string{"rbee-sim", "soak", "--duration", "5s"}}
	return c.Summary(flags, start, at(5))
}

// Swarm and liveness runs are counted, a shrunk failure links its minimal scenario with both
// sizes, and the charts' data (run durations, events over the soak) add up to the totals.
func TestSoakReportsSwarmShrinkAndCharts(t *testing.T) {
	root := t.TempDir()
	s := soakFixture(t, root)
	if s.Totals.Runs != 3 || s.Totals.SwarmRuns != 2 || s.Totals.LivenessRuns != 2 || s.Totals.Failed != 1 {
		t.Fatalf("totals %+v", s.Totals)
	}
	if s.Scenarios[0].LivenessRuns != 1 || s.Scenarios[1].LivenessRuns != 1 {
		t.Errorf("liveness runs per scenario %+v", s.Scenarios)
	}
	for _, f := range s.Faults {
		if want := map[string]int{"net-duplicate": 1, "crash-restart": 1}[f.Kind]; f.SwarmRuns != want {
			t.Errorf("fault %s enabled by %d swarms, want %d", f.Kind, f.SwarmRuns, want)
		}
	}
	runs := 0
	for _, b := range s.RunSeconds {
		runs += b.Runs
		switch {
		case b.FromSeconds == 0.02 && b.Runs != 1, b.FromSeconds == 0.2 && b.Runs != 1, b.FromSeconds == 1 && b.Runs != 1:
			t.Errorf("bin %+v", b)
		}
	}
	if runs != 3 || s.RunSeconds[len(s.RunSeconds)-1].ToSeconds != 0 {
		t.Errorf("histogram %+v", s.RunSeconds)
	}
	var events uint64
	finished := 0
	for _, p := range s.Throughput {
		events += p.Events
		finished += p.Runs
		if p.Seconds != 1 {
			t.Errorf("bucket %+v, want 1s buckets over a 5s soak", p)
		}
	}
	if len(s.Throughput) != 5 || finished != 3 || events < 83990 || events > 84010 {
		t.Errorf("throughput %+v: %d events, %d runs", s.Throughput, events, finished)
	}
	// The second run (3000 events over seconds 1 to 4) puts 1000 in each of buckets 1-3, the
	// failure (80000 over 3 to 4.5) two thirds in bucket 3 and a third in bucket 4.
	if s.Throughput[0].Events != 500 || s.Throughput[3].Events != 1000+53333 || s.Throughput[4].Events != 26667 {
		t.Errorf("events spread over the runs' wall time wrongly: %+v", s.Throughput)
	}
	f := s.Failures[0]
	dir := "failures/registry-persistence-seed-9"
	if f.Shrunk == nil || f.Shrunk.ToEvents != 2000 || f.MinimalFolder != dir+"/minimal" || len(f.MinimalFiles) != 6 ||
		f.MinimalReplay != "go run ./cmd/rbee-sim replay "+filepath.Join(root, dir, "minimal", "scenario.json") ||
		f.Variant == nil || !f.Variant.Liveness() || len(f.Files) != 6 {
		t.Fatalf("shrunk failure %+v", f)
	}
	if err := WriteSoak(root, s); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(root, "index.html"))
	html := string(page)
	for _, want := range []string{`href="` + dir + `/timeline.html">timeline`, `href="` + dir + `/history.html">porcupine history`,
		`href="` + dir + `/minimal/scenario.json"`, `href="` + dir + `/minimal/timeline.html"`, "Minimal scenario", "80000", "2000 (40.0x fewer)",
		"14m0s", "6m30s", f.MinimalReplay, "liveness mode: faults stopped at 2m0s, convergence bound 4m0s", "crash-restart ×9 (intensity 2)",
		`id="chart-durations"`, `id="chart-rate"`, `id="chart-scenarios"`, "average 16800 events/s", "rbee-sim soak --duration 5s",
		"swarm on, liveness mode in 25% of runs, shrink budget 100 runs"} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	checkSelfContained(t, html)
}

// A canary report read into a soak's report keeps its plants' folders reachable from the
// soak's folder, and a plant it missed fails the report.
func TestSoakIncludesTheCanary(t *testing.T) {
	dir := t.TempDir()
	canaryDir, out := filepath.Join(dir, "canary"), filepath.Join(dir, "soak")
	rep := &CanaryReport{CaughtAll: false, Plants: []CanaryPlant{
		{Plant: "registry-lost-update", Scenario: "registry/concurrent-state-update", Budget: 10, Caught: true, Seed: 2, Seeds: 2, Seconds: 1.5,
			Stage: "linearizability", Checker: "registry linearizable", Folder: "registry-concurrent-state-update-plant-registry-lost-update-seed-2",
			Shrunk: &scenario.ShrinkStats{FromEvents: 100000, ToEvents: 5000}, Replay: "go run -tags plant ./cmd/rbee-sim replay x"},
		{Plant: "keeper-no-backoff", Scenario: "inference/worker-busy-retry", Budget: 5, Seeds: 5, Seconds: 2, Problem: "not caught by inference/worker-busy-retry within 5 seeds"},
	}}
	path, err := WriteCanary(canaryDir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCanary(filepath.Join(dir, "nothing"), out); err == nil {
		t.Error("a missing canary report was read")
	}
	for _, p := range []string{path, canaryDir} {
		c, err := ReadCanary(p, out)
		if err != nil {
			t.Fatal(err)
		}
		if c.Caught() != 1 || c.Plants[0].Folder != "../canary/registry-concurrent-state-update-plant-registry-lost-update-seed-2" {
			t.Fatalf("read from %s: %+v", p, c)
		}
	}
	s := soakFixture(t, out)
	s.Totals.Failed, s.Failures = 0, nil
	if !s.Passed() {
		t.Fatal("the fixture without its failure does not pass")
	}
	s.Canary, _ = ReadCanary(path, out)
	if s.Passed() {
		t.Error("a soak whose canary missed a plant passed")
	}
	if err := WriteSoak(out, s); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(out, "index.html"))
	for _, want := range []string{"FAILED: all 3 runs passed, but the canary missed 1 of 2 planted bugs", "Canary: 1 of 2 planted bugs caught",
		`href="../canary/registry-concurrent-state-update-plant-registry-lost-update-seed-2/README.txt"`, "100000 → 5000 events",
		"not caught by inference/worker-busy-retry within 5 seeds"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
}

// Merging shards adds their histograms, lays their throughput over the merged wall time, and
// keeps every folder (minimal ones and the canary's included) reachable from the merged report.
func TestMergeSoakKeepsChartsAndFolders(t *testing.T) {
	dir := t.TempDir()
	a, b, out := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "merged")
	sa, sb := soakFixture(t, a), soakFixture(t, b)
	sb.Started, sb.Finished = sb.Started.Add(5*time.Second), sb.Finished.Add(5*time.Second)
	sa.Canary = &CanaryReport{CaughtAll: true, Plants: []CanaryPlant{{Plant: "p", Caught: true, Folder: "canary/p-seed-1"}}}
	m := MergeSoak(out, []string{a, b}, []*SoakSummary{sa, sb})
	if m.Totals.Runs != 6 || m.Totals.SwarmRuns != 4 || m.Totals.LivenessRuns != 4 || m.WallSeconds != 10 {
		t.Fatalf("merged totals %+v over %vs", m.Totals, m.WallSeconds)
	}
	runs, finished := 0, 0
	var events uint64
	for _, bin := range m.RunSeconds {
		runs += bin.Runs
	}
	for _, p := range m.Throughput {
		finished += p.Runs
		events += p.Events
	}
	if runs != 6 || finished != 6 || len(m.Throughput) != 10 || events < 2*83990 || events > 2*84010 {
		t.Errorf("merged charts: %d runs in the histogram, %d finished, %d events in %d buckets", runs, finished, events, len(m.Throughput))
	}
	if m.Throughput[5].Events != sb.Throughput[0].Events {
		t.Errorf("shard b's first bucket is not at 5s: %+v", m.Throughput)
	}
	if f := m.Failures[0]; f.Folder != "../a/failures/registry-persistence-seed-9" || f.MinimalFolder != "../a/failures/registry-persistence-seed-9/minimal" {
		t.Errorf("merged failure folders %q, %q", f.Folder, f.MinimalFolder)
	}
	if m.Canary == nil || m.Canary.Plants[0].Folder != "../a/canary/p-seed-1" {
		t.Errorf("merged canary %+v", m.Canary)
	}
}

// A failure folder holds a timeline of the run and porcupine's view of the history it checked,
// whatever checker failed; both pages are self-contained.
func TestWriteFolderWritesTimelineAndHistory(t *testing.T) {
	e, err := scenario.Lookup("registry/persistence")
	if err != nil {
		t.Fatal(err)
	}
	sc := e.Generate(3, scenario.Knobs{})
	res := scenario.Run(sc, scenario.Options{})
	dir := t.TempDir()
	if _, err := WriteFolder(dir, sc, &res); err != nil {
		t.Fatal(err)
	}
	if got := folderFiles(dir); !slices.Equal(got, reportFiles) {
		t.Fatalf("folder holds %v, want %v", got, reportFiles)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "timeline.html"))
	html := string(page)
	for _, want := range []string{"registry/persistence seed 3", "<svg", "faults stop (10m0s)", "queen-1", "Fault schedule", "registry converges after faults stop"} {
		if !strings.Contains(html, want) {
			t.Errorf("timeline.html lacks %q", want)
		}
	}
	for _, f := range sc.Faults {
		if !strings.Contains(html, f.Kind) {
			t.Errorf("timeline.html does not show fault %s", f.Kind)
		}
	}
	checkSelfContained(t, html)
	readme, _ := os.ReadFile(filepath.Join(dir, "README.txt"))
	if !strings.Contains(string(readme), "timeline.html") {
		t.Error("README.txt does not explain timeline.html")
	}
}
