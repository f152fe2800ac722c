package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// SoakFlags are the flags a soak ran with, as summary.json records them.
type SoakFlags struct {
	Duration string `json:"duration,omitempty"`
	Seeds    int    `json:"seeds,omitempty"`
	Parallel int    `json:"parallel"`
	Scenario string `json:"scenario"`
	BaseSeed uint64 `json:"base_seed"`
	Shard    string `json:"shard"`
	Out      string `json:"out"`
	// Swarm says each run enabled a random subset of its scenario's fault kinds.
	Swarm bool `json:"swarm"`
	// Liveness is the share of runs in liveness mode.
	Liveness float64 `json:"liveness"`
	// ShrinkBudget is the most runs spent shrinking each failure; 0: failures not shrunk.
	ShrinkBudget int `json:"shrink_budget"`
	// Canary is the canary report included (rbee-sim canary's canary.json), if any.
	Canary string `json:"canary,omitempty"`
	// Plants are the planted bugs switched on in every run (a soak that must fail).
	Plants []string `json:"plants,omitempty"`
	// Command is the command line, as given.
	Command []string `json:"command,omitempty"`
}

// SoakTotals count every run of a soak. Failed and Invalid are disjoint: a run is invalid when
// its first failing checker is an assumption (it proved nothing), failed otherwise.
type SoakTotals struct {
	Runs       int     `json:"runs"`
	Passed     int     `json:"passed"`
	Failed     int     `json:"failed"`
	Invalid    int     `json:"invalid"`
	Events     uint64  `json:"events"`
	SimSeconds float64 `json:"sim_seconds"`
	// RunWallSeconds is the wall time of the runs added up (more than the soak's wall time
	// when runs were parallel).
	RunWallSeconds float64 `json:"run_wall_seconds"`
	// SwarmRuns ran a swarm of their scenario's fault kinds; LivenessRuns were in liveness
	// mode (the faults stopped at a random point).
	SwarmRuns    int `json:"swarm_runs"`
	LivenessRuns int `json:"liveness_runs"`
}

// SoakScenario is one scenario's share of a soak.
type SoakScenario struct {
	ID           string  `json:"id"`
	Runs         int     `json:"runs"`
	Passed       int     `json:"passed"`
	Failed       int     `json:"failed"`
	Invalid      int     `json:"invalid"`
	Events       uint64  `json:"events"`
	SimSeconds   float64 `json:"sim_seconds"`
	WallSeconds  float64 `json:"wall_seconds"`
	LivenessRuns int     `json:"liveness_runs"`
}

// SoakFault is how often one fault kind fired.
type SoakFault struct {
	Kind        string `json:"kind"`
	Activations int    `json:"activations"`
	Runs        int    `json:"runs"`
	// AvailableRuns counts the runs whose scenario could draw this kind.
	AvailableRuns int `json:"available_runs"`
	// SwarmRuns counts the runs whose swarm enabled this kind.
	SwarmRuns int `json:"swarm_runs"`
}

// SoakMark is how often one coverage mark was reached.
type SoakMark struct {
	Mark string `json:"mark"`
	Runs int    `json:"runs"`
	Hits int    `json:"hits"`
	// Declared says the mark is one of scenario.DeclaredMarks: a rare path the soak must
	// reach; a declared mark with no hit is listed with zeros.
	Declared bool `json:"declared,omitempty"`
}

// SoakFailure is one failed or invalid run.
type SoakFailure struct {
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	Invalid  bool   `json:"invalid"`
	Stage    string `json:"stage"`
	Checker  string `json:"checker"`
	Detail   string `json:"detail"`
	// Variant is how the soak varied the scenario (swarm, liveness stop); nil when it did not.
	Variant *scenario.Variant `json:"variant,omitempty"`
	// Folder is the failure folder, relative to the soak's folder ("" if it could not be
	// written); Files are the files in it (scenario.json, README.txt, timeline.html,
	// history.html, trace.jsonl, result.json).
	Folder  string   `json:"folder"`
	Files   []string `json:"files,omitempty"`
	History bool     `json:"history_html"`
	Replay  string   `json:"replay"`
	// TraceHash lets a replay be checked against the run.
	TraceHash string `json:"trace_hash"`
	// Shrunk gives the original and minimal sizes when the soak shrank the failure;
	// MinimalFolder (relative to the soak's folder), MinimalFiles and MinimalReplay are the
	// minimal scenario's folder, its files and its replay command. ShrinkProblem says why a
	// failure was not shrunk.
	Shrunk        *scenario.ShrinkStats `json:"shrunk,omitempty"`
	MinimalFolder string                `json:"minimal_folder,omitempty"`
	MinimalFiles  []string              `json:"minimal_files,omitempty"`
	MinimalReplay string                `json:"minimal_replay,omitempty"`
	ShrinkProblem string                `json:"shrink_problem,omitempty"`
}

// SoakBin is one bin of the histogram of run durations: the runs whose simulation took from
// FromSeconds up to ToSeconds of wall time (the last bin has no ToSeconds).
type SoakBin struct {
	FromSeconds float64 `json:"from_seconds"`
	ToSeconds   float64 `json:"to_seconds,omitempty"`
	Runs        int     `json:"runs"`
}

// runBinEdges are the bins' lower edges, in seconds.
var runBinEdges = []float64{0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500}

func newRunBins() []SoakBin {
	bins := make([]SoakBin, len(runBinEdges))
	for i, e := range runBinEdges {
		bins[i].FromSeconds = e
		if i+1 < len(runBinEdges) {
			bins[i].ToSeconds = runBinEdges[i+1]
		}
	}
	return bins
}

func runBin(seconds float64) int {
	i := sort.SearchFloat64s(runBinEdges, seconds)
	if i < len(runBinEdges) && runBinEdges[i] == seconds {
		return i
	}
	return max(i-1, 0)
}

// SoakSample is one bucket of the soak's wall time: the work done in it.
type SoakSample struct {
	// StartSeconds is the bucket's start after the soak's; Seconds its length (the last
	// bucket may be shorter).
	StartSeconds float64 `json:"start_seconds"`
	Seconds      float64 `json:"seconds"`
	// Runs finished in the bucket; Events and SimSeconds are the runs' events and simulated
	// seconds, each run's spread evenly over its wall time.
	Runs       int     `json:"runs"`
	Events     uint64  `json:"events"`
	SimSeconds float64 `json:"sim_seconds"`
}

// EventsPerSecond is the bucket's rate.
func (s SoakSample) EventsPerSecond() float64 {
	if s.Seconds <= 0 {
		return 0
	}
	return float64(s.Events) / s.Seconds
}

// SoakSummary is summary.json.
type SoakSummary struct {
	Started             time.Time      `json:"started"`
	Finished            time.Time      `json:"finished"`
	WallSeconds         float64        `json:"wall_seconds"`
	GoVersion           string         `json:"go_version"`
	GOOS                string         `json:"goos"`
	GOARCH              string         `json:"goarch"`
	Revision            string         `json:"vcs_revision"`
	Flags               SoakFlags      `json:"flags"`
	Totals              SoakTotals     `json:"totals"`
	SeedsPerMinute      float64        `json:"seeds_per_minute"`
	EventsPerWallSecond float64        `json:"events_per_wall_second"`
	Compression         float64        `json:"time_compression"`
	Scenarios           []SoakScenario `json:"scenarios"`
	Faults              []SoakFault    `json:"fault_kinds"`
	Marks               []SoakMark     `json:"coverage_marks"`
	Failures            []SoakFailure  `json:"failures"`
	// RunSeconds is the histogram of the runs' wall times.
	RunSeconds []SoakBin `json:"run_seconds_histogram"`
	// Throughput is the work done over the soak's wall time, in buckets.
	Throughput []SoakSample `json:"throughput"`
	// Canary is the canary's report, when the soak or the merge included one.
	Canary *CanaryReport `json:"canary,omitempty"`
}

// RunsPassed says every run of the soak passed.
func (s *SoakSummary) RunsPassed() bool { return s.Totals.Failed == 0 && s.Totals.Invalid == 0 }

// Passed says every run of the soak passed and the canary, if included, caught every plant.
func (s *SoakSummary) Passed() bool { return s.RunsPassed() && (s.Canary == nil || s.Canary.CaughtAll) }

// SoakRun is one run of a soak, as the collector counts it.
type SoakRun struct {
	Scenario scenario.Scenario
	Result   *scenario.Result
	// Available are the fault kinds its scenario could draw (Entry.AvailableKinds).
	Available []string
	Variant   scenario.Variant
	// Started and Finished are the wall times of the run's simulation; zero leaves the run
	// out of the throughput series.
	Started, Finished time.Time
	// Shrunk, MinimalFile (the minimal scenario's scenario.json) and ShrinkProblem describe
	// the soak's shrink of a failing run.
	Shrunk        *scenario.ShrinkStats
	MinimalFile   string
	ShrinkProblem string
}

// span is a run's wall time and work, for the throughput series.
type span struct {
	start, end time.Time
	events     uint64
	sim        float64
}

// SoakCollector adds runs up into a SoakSummary. It is not safe for concurrent use.
type SoakCollector struct {
	root      string
	scenarios map[string]*SoakScenario
	order     []string
	faults    map[string]*SoakFault
	marks     map[string]*SoakMark
	totals    SoakTotals
	failures  []SoakFailure
	bins      []SoakBin
	spans     []span
}

// NewSoakCollector collects runs of the scenarios ids (listed even if they never run); root is
// the soak's folder, which failure folders are named relative to.
func NewSoakCollector(root string, ids []string) *SoakCollector {
	c := &SoakCollector{root: root, scenarios: map[string]*SoakScenario{}, faults: map[string]*SoakFault{}, marks: map[string]*SoakMark{},
		bins: newRunBins()}
	for _, id := range ids {
		c.scenario(id)
	}
	return c
}

func (c *SoakCollector) scenario(id string) *SoakScenario {
	s, ok := c.scenarios[id]
	if !ok {
		s = &SoakScenario{ID: id}
		c.scenarios[id] = s
		c.order = append(c.order, id)
	}
	return s
}

func (c *SoakCollector) fault(kind string) *SoakFault {
	f, ok := c.faults[kind]
	if !ok {
		f = &SoakFault{Kind: kind}
		c.faults[kind] = f
	}
	return f
}

// Add counts one run of an unvaried scenario. available are the fault kinds its scenario
// could draw (Entry.AvailableKinds). A failing run's res.FailureFile names its failure
// folder's scenario.json (reports.WriteFolder sets it).
func (c *SoakCollector) Add(sc scenario.Scenario, res *scenario.Result, available []string) {
	c.AddRun(SoakRun{Scenario: sc, Result: res, Available: available})
}

// AddRun counts one run.
func (c *SoakCollector) AddRun(r SoakRun) {
	sc, res := r.Scenario, r.Result
	s := c.scenario(sc.ID)
	s.Runs++
	s.Events += res.Events
	s.SimSeconds += res.SimSeconds
	s.WallSeconds += res.WallSeconds
	c.totals.Runs++
	c.totals.Events += res.Events
	c.totals.SimSeconds += res.SimSeconds
	c.totals.RunWallSeconds += res.WallSeconds
	c.bins[runBin(res.WallSeconds)].Runs++
	if !r.Started.IsZero() && !r.Finished.IsZero() {
		c.spans = append(c.spans, span{r.Started, r.Finished, res.Events, res.SimSeconds})
	}
	if len(r.Variant.Swarm) > 0 {
		c.totals.SwarmRuns++
	}
	if r.Variant.Liveness() {
		c.totals.LivenessRuns++
		s.LivenessRuns++
	}
	for _, k := range r.Available {
		c.fault(k).AvailableRuns++
	}
	for _, k := range r.Variant.Swarm {
		c.fault(k.Kind).SwarmRuns++
	}
	for _, k := range sortedKeys(res.Faults) {
		if n := res.Faults[k]; n > 0 {
			f := c.fault(k)
			f.Activations += n
			f.Runs++
		}
	}
	for _, m := range sortedKeys(res.Marks) {
		if n := res.Marks[m]; n > 0 {
			mk, ok := c.marks[m]
			if !ok {
				mk = &SoakMark{Mark: m}
				c.marks[m] = mk
			}
			mk.Runs++
			mk.Hits += n
		}
	}
	if res.Passed {
		s.Passed++
		c.totals.Passed++
		return
	}
	f := SoakFailure{Scenario: sc.ID, Seed: sc.Seed, TraceHash: res.TraceHash, ShrinkProblem: r.ShrinkProblem}
	if len(r.Variant.Swarm) > 0 || r.Variant.Liveness() {
		v := r.Variant
		f.Variant = &v
	}
	if first := res.FirstFailure(); first != nil {
		f.Stage, f.Checker, f.Detail = first.Stage, first.Name, first.Detail
	}
	f.Invalid = f.Stage == "assumptions"
	if f.Invalid {
		s.Invalid++
		c.totals.Invalid++
	} else {
		s.Failed++
		c.totals.Failed++
	}
	if res.FailureFile != "" {
		dir := filepath.Dir(res.FailureFile)
		f.Folder, f.Files = relativeTo(c.root, dir), folderFiles(dir)
		f.History = slices.Contains(f.Files, "history.html")
		f.Replay = ReplayCommand(sc, res.FailureFile)
	}
	if r.Shrunk != nil && r.MinimalFile != "" {
		st := *r.Shrunk
		dir := filepath.Dir(r.MinimalFile)
		f.Shrunk, f.MinimalFolder, f.MinimalFiles = &st, relativeTo(c.root, dir), folderFiles(dir)
		f.MinimalReplay = ReplayCommand(sc, r.MinimalFile)
	}
	c.failures = append(c.failures, f)
}

// reportFiles are the files of a failure folder that the report links, in this order.
var reportFiles = []string{"README.txt", "scenario.json", "timeline.html", "history.html", "trace.jsonl", "result.json"}

// folderFiles are the report files present in dir.
func folderFiles(dir string) []string {
	var out []string
	for _, name := range reportFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m { //det:sorted (sorted next)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Summary is what was collected, for a soak that ran from started to finished. Its lists are
// sorted, so the same runs give the same summary whatever order they finished in.
func (c *SoakCollector) Summary(flags SoakFlags, started, finished time.Time) *SoakSummary {
	s := &SoakSummary{Started: started.UTC(), Finished: finished.UTC(), WallSeconds: finished.Sub(started).Seconds(),
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Revision: vcsRevision(),
		Flags: flags, Totals: c.totals, Scenarios: []SoakScenario{}, Faults: []SoakFault{}, Marks: []SoakMark{},
		Failures: append([]SoakFailure{}, c.failures...), RunSeconds: slices.Clone(c.bins)}
	s.rates()
	ids := append([]string{}, c.order...)
	sort.Strings(ids)
	for _, id := range ids {
		s.Scenarios = append(s.Scenarios, *c.scenarios[id])
	}
	for _, k := range sortedKeys(c.faults) {
		s.Faults = append(s.Faults, *c.faults[k])
	}
	for _, m := range sortedKeys(c.marks) {
		s.Marks = append(s.Marks, *c.marks[m])
	}
	for _, d := range scenario.DeclaredMarks {
		if _, hit := c.marks[d]; !hit {
			s.Marks = append(s.Marks, SoakMark{Mark: d})
		}
	}
	for i := range s.Marks {
		s.Marks[i].Declared = slices.Contains(scenario.DeclaredMarks, s.Marks[i].Mark)
	}
	sort.Slice(s.Marks, func(i, j int) bool { return s.Marks[i].Mark < s.Marks[j].Mark })
	sortFailures(s.Failures)
	s.Throughput = newSeries(s.WallSeconds)
	for _, sp := range c.spans {
		spread(s.Throughput, sp.start.Sub(started).Seconds(), sp.end.Sub(started).Seconds(), float64(sp.events), sp.sim, 1)
	}
	return s
}

// rates sets the per-wall-time rates from the totals.
func (s *SoakSummary) rates() {
	s.SeedsPerMinute, s.EventsPerWallSecond, s.Compression = 0, 0, 0
	if wall := s.WallSeconds; wall > 0 {
		s.SeedsPerMinute = float64(s.Totals.Runs) / wall * 60
		s.EventsPerWallSecond = float64(s.Totals.Events) / wall
		s.Compression = s.Totals.SimSeconds / wall
	}
}

// seriesWidths are the bucket widths of the throughput series, in seconds: the first that
// gives at most seriesBuckets buckets.
var seriesWidths = []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400}

const seriesBuckets = 120

// newSeries lays out empty buckets over wall seconds.
func newSeries(wall float64) []SoakSample {
	if wall <= 0 {
		return []SoakSample{}
	}
	w := seriesWidths[len(seriesWidths)-1]
	for _, c := range seriesWidths {
		if wall/c <= seriesBuckets {
			w = c
			break
		}
	}
	n := int(math.Ceil(wall / w))
	out := make([]SoakSample, n)
	for i := range out {
		out[i].StartSeconds = float64(i) * w
		out[i].Seconds = min(w, wall-out[i].StartSeconds)
	}
	return out
}

// spread adds work done from a to b (seconds after the series' start) to the buckets it
// overlaps, in proportion, and runs to the bucket where it ended.
func spread(series []SoakSample, a, b, events, sim float64, runs int) {
	n := len(series)
	if n == 0 {
		return
	}
	end := series[n-1].StartSeconds + series[n-1].Seconds
	a, b = min(max(a, 0), end), min(max(b, a, 0), end)
	bucket := func(t float64) int {
		for i, bk := range series {
			if t < bk.StartSeconds+bk.Seconds {
				return i
			}
		}
		return n - 1
	}
	series[bucket(b)].Runs += runs
	if b <= a {
		k := bucket(a)
		series[k].Events += uint64(math.Round(events))
		series[k].SimSeconds += sim
		return
	}
	for i := range series {
		bk := &series[i]
		if lo, hi := max(a, bk.StartSeconds), min(b, bk.StartSeconds+bk.Seconds); hi > lo {
			share := (hi - lo) / (b - a)
			bk.Events += uint64(math.Round(events * share))
			bk.SimSeconds += sim * share
		}
	}
}

// vcsRevision is the commit the binary was built from, else the commit of the git checkout
// it runs in (go run and builds with -buildvcs=false record none), else "unknown"; "+modified"
// marks a tree with uncommitted changes.
func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, modified := "", false
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				modified = kv.Value == "true"
			}
		}
		if rev != "" {
			if modified {
				rev += "+modified"
			}
			return rev
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	rev := strings.TrimSpace(string(out))
	if err != nil || rev == "" {
		return "unknown"
	}
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+modified"
	}
	return rev + " (from the checkout)"
}

// WriteSoak writes summary.json and index.html into dir.
func WriteSoak(dir string, s *SoakSummary) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create the soak folder: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "index.html"))
	if err != nil {
		return err
	}
	if err := soakPage.Execute(f, newSoakView(s)); err != nil {
		f.Close()
		return fmt.Errorf("cannot write index.html: %w", err)
	}
	return f.Close()
}

// sortFailures orders failures by scenario, then seed.
func sortFailures(fs []SoakFailure) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].Scenario != fs[j].Scenario {
			return fs[i].Scenario < fs[j].Scenario
		}
		return fs[i].Seed < fs[j].Seed
	})
}
