package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

func readSummary(t *testing.T, dir string) reports.SoakSummary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s reports.SoakSummary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json does not parse: %v\n%s", err, b)
	}
	return s
}

func TestSoakWritesSummaryAndPage(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := capture(t, "soak", "--seeds", "2", "--scenario", "registry/overflow", "--parallel", "2", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	s := readSummary(t, out)
	if s.Totals.Runs != 2 || s.Totals.Passed != 2 || s.Totals.Failed != 0 || s.Totals.Invalid != 0 || s.Totals.Events == 0 || s.Totals.SimSeconds == 0 {
		t.Errorf("totals %+v", s.Totals)
	}
	if len(s.Scenarios) != 1 || s.Scenarios[0].ID != "registry/overflow" || s.Scenarios[0].Runs != 2 {
		t.Errorf("scenarios %+v", s.Scenarios)
	}
	if s.Flags.Seeds != 2 || s.Flags.Parallel != 2 || s.Flags.BaseSeed != 1 || s.Flags.Shard != "0/1" || s.GoVersion == "" || s.Revision == "" {
		t.Errorf("run facts %+v", s)
	}
	if s.SeedsPerMinute <= 0 || s.EventsPerWallSecond <= 0 || s.Compression <= 0 || len(s.Faults) == 0 || len(s.Failures) != 0 {
		t.Errorf("rates, faults or failures wrong: %+v", s)
	}
	// Swarm testing and liveness mode are on by default, failures would be shrunk, and the
	// command line is recorded.
	if !s.Flags.Swarm || s.Flags.Liveness != 0.25 || s.Flags.ShrinkBudget != 100 || s.GOOS == "" || s.GOARCH == "" ||
		strings.Join(s.Flags.Command, " ") != "rbee-sim soak --seeds 2 --scenario registry/overflow --parallel 2 --out "+out {
		t.Errorf("flags %+v", s.Flags)
	}
	if s.Totals.SwarmRuns != 2 {
		t.Errorf("%d swarm runs of 2", s.Totals.SwarmRuns)
	}
	binned, finished := 0, 0
	for _, b := range s.RunSeconds {
		binned += b.Runs
	}
	for _, p := range s.Throughput {
		finished += p.Runs
	}
	if binned != 2 || finished != 2 || len(s.Throughput) == 0 {
		t.Errorf("charts: %d runs in the histogram, %d in the throughput series %+v", binned, finished, s.Throughput)
	}
	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "registry/overflow") || !strings.Contains(string(page), "PASSED") {
		t.Errorf("index.html lacks the scenario or the verdict")
	}
	for _, ext := range []string{"http://", "https://"} {
		if strings.Contains(string(page), ext) {
			t.Errorf("index.html refers to %q: it must be self-contained", ext)
		}
	}
	if !strings.Contains(stdout, "soak PASSED: 2 runs") || !strings.Contains(stdout, "seeds/minute") {
		t.Errorf("text summary:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "failures")); !os.IsNotExist(err) {
		t.Errorf("a passing soak made a failures folder (%v)", err)
	}
}

func sortedRecords(rs []soakRecord) []soakRecord {
	slices.SortFunc(rs, func(a, b soakRecord) int {
		if c := strings.Compare(a.scenario, b.scenario); c != 0 {
			return c
		}
		return int(a.seed) - int(b.seed)
	})
	return rs
}

// The verdicts and trace hashes depend on the seeds only, not on how many run at once.
func TestSoakIsDeterministicWhateverParallel(t *testing.T) {
	entries, err := selectEntries("registry/overflow")
	if err != nil {
		t.Fatal(err)
	}
	f := soakFlags{seeds: 3, baseSeed: 5, shardN: 1, scenario: "registry/overflow", swarm: true, liveness: 0.5}
	f.parallel, f.out = 1, t.TempDir()
	_, one := soak(f, entries, io.Discard)
	f.parallel, f.out = 3, t.TempDir()
	_, three := soak(f, entries, io.Discard)
	one, three = sortedRecords(one), sortedRecords(three)
	if len(one) != 3 || !slices.Equal(one, three) {
		t.Fatalf("--parallel 1 gave %v, --parallel 3 gave %v", one, three)
	}
	for i, r := range one {
		if r.seed != 5+uint64(i) || !r.passed || r.traceHash == "" {
			t.Errorf("run %d: %+v", i, r)
		}
	}
}

type jobKey struct {
	id   string
	seed uint64
}

func allJobs(entries []scenario.Entry, f soakFlags) []jobKey {
	var out []jobKey
	next := soakJobs(entries, f)
	for {
		j, ok := next()
		if !ok {
			return out
		}
		out = append(out, jobKey{j.entry.ID, j.seed})
	}
}

func TestSoakShardsSplitTheJobs(t *testing.T) {
	entries := scenario.Catalogue()[:5]
	f := soakFlags{seeds: 7, baseSeed: 10, shardN: 1}
	all := allJobs(entries, f)
	if len(all) != 35 {
		t.Fatalf("%d jobs, want 35", len(all))
	}
	// Round-robin: the first len(entries) jobs are every scenario at the base seed.
	for i, e := range entries {
		if all[i] != (jobKey{e.ID, 10}) {
			t.Errorf("job %d is %v", i, all[i])
		}
	}
	f.shardN = 2
	f.shardI = 0
	a := allJobs(entries, f)
	f.shardI = 1
	b := allJobs(entries, f)
	if len(a)+len(b) != len(all) {
		t.Fatalf("shards have %d + %d jobs, want %d", len(a), len(b), len(all))
	}
	seen := map[jobKey]int{}
	for _, j := range append(a, b...) {
		seen[j]++
	}
	for _, j := range all {
		if seen[j] != 1 {
			t.Errorf("job %v is in %d shards", j, seen[j])
		}
	}
	for _, j := range b {
		if (j.seed-10)%2 != 1 {
			t.Errorf("shard 1/2 took seed %d", j.seed)
		}
	}
	// A duration-bounded soak's generator does not end.
	f = soakFlags{duration: 1, baseSeed: 1, shardN: 3, shardI: 2}
	next := soakJobs(entries, f)
	for i := range 1000 {
		j, ok := next()
		if !ok || (j.seed-1)%3 != 2 {
			t.Fatalf("job %d: %v %v", i, j.seed, ok)
		}
	}
}

func TestSoakBadFlagsExit2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "1m", "--seeds", "3"}, "not both"},
		{[]string{"--seeds", "0"}, "--seeds 0 must be at least 1"},
		{[]string{"--duration", "-5s"}, "must be positive"},
		{[]string{"--parallel", "0"}, "--parallel must be at least 1"},
		{[]string{"--shard", "2/2"}, `--shard "2/2" is not i/n`},
		{[]string{"--shard", "x"}, `--shard "x" is not i/n`},
		{[]string{"--scenario", "no/such"}, `no scenario "no/such"`},
		{[]string{"--scenario", "[", "--seeds", "1"}, "not a valid pattern"},
		{[]string{"--duration", "soon"}, "invalid value"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--liveness", "1.5"}, "--liveness 1.5 must be a share from 0 to 1"},
		{[]string{"--liveness", "-0.1"}, "must be a share from 0 to 1"},
		{[]string{"--shrink", "-1"}, "--shrink -1 must not be negative"},
	}
	for _, c := range cases {
		args := append([]string{"soak", "--out", t.TempDir()}, c.args...)
		code, _, stderr := capture(t, args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// A soak with swarm testing off and no liveness mode runs the catalogue's scenarios as they
// are: the same trace hashes as rbee-sim run.
func TestSoakWithoutVariationRunsTheCatalogueScenarios(t *testing.T) {
	entries, err := selectEntries("registry/overflow")
	if err != nil {
		t.Fatal(err)
	}
	f := soakFlags{seeds: 2, baseSeed: 1, shardN: 1, parallel: 2, out: t.TempDir()}
	sum, recs := soak(f, entries, io.Discard)
	if sum.Totals.SwarmRuns != 0 || sum.Totals.LivenessRuns != 0 {
		t.Errorf("totals %+v", sum.Totals)
	}
	for _, r := range recs {
		res := scenario.Run(entries[0].Generate(r.seed, scenario.Knobs{}), scenario.Options{})
		if res.TraceHash != r.traceHash {
			t.Errorf("seed %d: soak hash %s, run hash %s", r.seed, r.traceHash, res.TraceHash)
		}
	}
}

// Liveness mode at a share of 1 puts every run in it; the runs pass (the faults stop early and
// the cluster converges within the settle phase).
func TestSoakLivenessModeRuns(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := capture(t, "soak", "--seeds", "3", "--scenario", "registry/persistence", "--liveness", "1", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	s := readSummary(t, out)
	if s.Totals.LivenessRuns != 3 || s.Scenarios[0].LivenessRuns != 3 || !strings.Contains(stdout, "3 in liveness mode") {
		t.Errorf("totals %+v\n%s", s.Totals, stdout)
	}
}

// A soak includes a canary report (rbee-sim canary's canary.json): its verdict joins the
// soak's, a missed plant fails it, and a path that is not a canary report fails at once.
func TestSoakIncludesTheCanaryReport(t *testing.T) {
	dir := t.TempDir()
	rep := &reports.CanaryReport{CaughtAll: false, Plants: []reports.CanaryPlant{{Plant: "registry-lost-update", Caught: true, Seed: 1, Seeds: 1},
		{Plant: "keeper-no-backoff", Seeds: 5, Problem: "not caught by inference/worker-busy-retry within 5 seeds"}}}
	path, err := reports.WriteCanary(filepath.Join(dir, "canary"), rep)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "soak")
	code, stdout, _ := capture(t, "soak", "--seeds", "1", "--scenario", "registry/overflow", "--canary", path, "--out", out)
	if code != 1 || !strings.Contains(stdout, "canary: 1 of 2 planted bugs caught") || !strings.Contains(stdout, "MISSED keeper-no-backoff") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	s := readSummary(t, out)
	if s.Canary == nil || s.Canary.Caught() != 1 || s.Flags.Canary != path || s.Totals.Failed != 0 {
		t.Errorf("summary canary %+v, flags %+v", s.Canary, s.Flags)
	}
	code, _, stderr := capture(t, "soak", "--seeds", "1", "--scenario", "registry/overflow", "--canary", filepath.Join(dir, "none.json"), "--out", out)
	if code != 1 || !strings.Contains(stderr, "cannot read the canary report") {
		t.Errorf("a missing canary report: exit %d, %s", code, stderr)
	}
}
