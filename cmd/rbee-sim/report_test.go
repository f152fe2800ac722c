package main

import (
	"path/filepath"
	"testing"
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
}
