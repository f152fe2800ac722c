package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// ReadSoak reads a soak folder's summary.json.
func ReadSoak(dir string) (*SoakSummary, error) {
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		return nil, fmt.Errorf("%s is not a soak folder (no readable summary.json): %w", dir, err)
	}
	var s SoakSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s/summary.json is not a soak summary: %w", dir, err)
	}
	return &s, nil
}

// MergeSoak merges the summaries of the shards of one soak (rbee-sim soak --shard i/n): counts
// and histograms add up, the wall time runs from the first shard's start to the last one's end
// (shards run at once), the throughput series are laid over that time, and each failure's
// folders are made relative to out, where the merged report goes. A shard's canary report is
// kept unless the merge brings its own (SoakSummary.Canary set afterwards).
func MergeSoak(out string, dirs []string, parts []*SoakSummary) *SoakSummary {
	m := &SoakSummary{Scenarios: []SoakScenario{}, Faults: []SoakFault{}, Marks: []SoakMark{}, Failures: []SoakFailure{}, RunSeconds: newRunBins()}
	scen, faults, marks := map[string]*SoakScenario{}, map[string]*SoakFault{}, map[string]*SoakMark{}
	for i, p := range parts {
		if i == 0 || p.Started.Before(m.Started) {
			m.Started = p.Started
		}
		if p.Finished.After(m.Finished) {
			m.Finished = p.Finished
		}
		if i == 0 {
			m.GoVersion, m.GOOS, m.GOARCH, m.Revision, m.Flags = p.GoVersion, p.GOOS, p.GOARCH, p.Revision, p.Flags
			m.Flags.Shard, m.Flags.Out = fmt.Sprintf("merged from %d shards", len(parts)), out
		}
		t := &m.Totals
		t.Runs, t.Passed, t.Failed, t.Invalid = t.Runs+p.Totals.Runs, t.Passed+p.Totals.Passed, t.Failed+p.Totals.Failed, t.Invalid+p.Totals.Invalid
		t.Events, t.SimSeconds, t.RunWallSeconds = t.Events+p.Totals.Events, t.SimSeconds+p.Totals.SimSeconds, t.RunWallSeconds+p.Totals.RunWallSeconds
		t.SwarmRuns, t.LivenessRuns = t.SwarmRuns+p.Totals.SwarmRuns, t.LivenessRuns+p.Totals.LivenessRuns
		for _, b := range p.RunSeconds {
			m.RunSeconds[runBin(b.FromSeconds)].Runs += b.Runs
		}
		if p.Canary != nil && m.Canary == nil {
			m.Canary = p.Canary
			for j, pl := range m.Canary.Plants {
				if pl.Folder != "" {
					m.Canary.Plants[j].Folder = relativeTo(out, filepath.Join(dirs[i], pl.Folder))
				}
			}
		}
		for _, s := range p.Scenarios {
			a := scen[s.ID]
			if a == nil {
				a = &SoakScenario{ID: s.ID}
				scen[s.ID] = a
			}
			a.Runs, a.Passed, a.Failed, a.Invalid = a.Runs+s.Runs, a.Passed+s.Passed, a.Failed+s.Failed, a.Invalid+s.Invalid
			a.Events, a.SimSeconds, a.WallSeconds = a.Events+s.Events, a.SimSeconds+s.SimSeconds, a.WallSeconds+s.WallSeconds
			a.LivenessRuns += s.LivenessRuns
		}
		for _, f := range p.Faults {
			a := faults[f.Kind]
			if a == nil {
				a = &SoakFault{Kind: f.Kind}
				faults[f.Kind] = a
			}
			a.Activations, a.Runs, a.AvailableRuns, a.SwarmRuns = a.Activations+f.Activations, a.Runs+f.Runs, a.AvailableRuns+f.AvailableRuns, a.SwarmRuns+f.SwarmRuns
		}
		for _, k := range p.Marks {
			a := marks[k.Mark]
			if a == nil {
				a = &SoakMark{Mark: k.Mark, Declared: k.Declared}
				marks[k.Mark] = a
			}
			a.Runs, a.Hits = a.Runs+k.Runs, a.Hits+k.Hits
		}
		for _, f := range p.Failures {
			if f.Folder != "" {
				f.Folder = relativeTo(out, filepath.Join(dirs[i], f.Folder))
			}
			if f.MinimalFolder != "" {
				f.MinimalFolder = relativeTo(out, filepath.Join(dirs[i], f.MinimalFolder))
			}
			m.Failures = append(m.Failures, f)
		}
	}
	m.WallSeconds = m.Finished.Sub(m.Started).Seconds()
	m.rates()
	m.Throughput = newSeries(m.WallSeconds)
	for _, p := range parts {
		off := p.Started.Sub(m.Started).Seconds()
		for _, b := range p.Throughput {
			spread(m.Throughput, off+b.StartSeconds, off+b.StartSeconds+b.Seconds, float64(b.Events), b.SimSeconds, b.Runs)
		}
	}
	for _, s := range scen { //det:sorted (sorted next)
		m.Scenarios = append(m.Scenarios, *s)
	}
	sort.Slice(m.Scenarios, func(i, j int) bool { return m.Scenarios[i].ID < m.Scenarios[j].ID })
	for _, f := range faults { //det:sorted (sorted next)
		m.Faults = append(m.Faults, *f)
	}
	sort.Slice(m.Faults, func(i, j int) bool { return m.Faults[i].Kind < m.Faults[j].Kind })
	for _, k := range marks { //det:sorted (sorted next)
		m.Marks = append(m.Marks, *k)
	}
	sort.Slice(m.Marks, func(i, j int) bool { return m.Marks[i].Mark < m.Marks[j].Mark })
	sortFailures(m.Failures)
	return m
}
