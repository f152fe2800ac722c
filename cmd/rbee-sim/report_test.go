package main

import (
	"path/filepath"
	"testing"

	"github.com/rbee-sim/rbee-sim/reports"
)

// TestReportMergeAddsUpShards: two shards of a soak merged give the totals of the same soak
// run whole, and one report page.
func TestReportMergeAddsUpShards(t *testing.T) {
	dir := t.TempDir()
	common := []string{"--seeds", "4", "--scenario", "registry/overflow", "--parallel", "2"}
	whole, a, b, merged := filepath.Join(dir, "whole"), filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "merged")
	for _, run := range [][]string{
		append([]string{"--out", whole}, common...),
		append([]string{"--out", a, "--shard", "0/2"}, common...),
		append([]string{"--out", b, "--shard", "1/2"}, common...),
	} {
		if err := cmdSoak(run); err != nil {
			t.Fatalf("soak %v: %v", run, err)
		}
	}
	if err := cmdReport([]string{"merge", "--out", merged, a, b}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	w, m := readSummary(t, whole), readSummary(t, merged)
	if m.Totals.Runs != w.Totals.Runs || m.Totals.Passed != w.Totals.Passed || m.Totals.Events != w.Totals.Events ||
		len(m.Scenarios) != 1 || m.Scenarios[0].Runs != w.Scenarios[0].Runs {
		t.Fatalf("merged totals %+v (scenarios %+v), want the whole soak's %+v", m.Totals, m.Scenarios, w.Totals)
	}
	if err := cmdReport([]string{"merge", "--out", merged}); err == nil {
		t.Fatal("merge without shards was accepted")
	}

	// With the canary's report: a missed plant fails the merged report.
	rep := &reports.CanaryReport{Plants: []reports.CanaryPlant{{Plant: "keeper-no-backoff", Problem: "not caught"}}}
	path, err := reports.WriteCanary(filepath.Join(dir, "canary"), rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmdReport([]string{"merge", "--out", merged, "--canary", path, a, b}); err == nil {
		t.Fatal("a merge whose canary missed a plant passed")
	}
	if m := readSummary(t, merged); m.Canary == nil || m.Flags.Canary != path || m.Passed() {
		t.Errorf("merged canary %+v, flags %+v", m.Canary, m.Flags)
	}
}
