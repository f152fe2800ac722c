package reports

import (
	"encoding/json"
	"fmt"
	"html/template"
	"os"
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
}

// SoakScenario is one scenario's share of a soak.
type SoakScenario struct {
	ID          string  `json:"id"`
	Runs        int     `json:"runs"`
	Passed      int     `json:"passed"`
	Failed      int     `json:"failed"`
	Invalid     int     `json:"invalid"`
	Events      uint64  `json:"events"`
	SimSeconds  float64 `json:"sim_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
}

// SoakFault is how often one fault kind fired.
type SoakFault struct {
	Kind        string `json:"kind"`
	Activations int    `json:"activations"`
	Runs        int    `json:"runs"`
	// AvailableRuns counts the runs whose scenario could draw this kind.
	AvailableRuns int `json:"available_runs"`
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
	// Folder is the failure folder, relative to the soak's folder ("" if it could not be written).
	Folder  string `json:"folder"`
	History bool   `json:"history_html"`
	Replay  string `json:"replay"`
	// TraceHash lets a replay be checked against the run.
	TraceHash string `json:"trace_hash"`
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
}

// Passed says every run of the soak passed.
func (s *SoakSummary) Passed() bool { return s.Totals.Failed == 0 && s.Totals.Invalid == 0 }

// SoakCollector adds runs up into a SoakSummary. It is not safe for concurrent use.
type SoakCollector struct {
	root      string
	scenarios map[string]*SoakScenario
	order     []string
	faults    map[string]*SoakFault
	marks     map[string]*SoakMark
	totals    SoakTotals
	failures  []SoakFailure
}

// NewSoakCollector collects runs of the scenarios ids (listed even if they never run); root is
// the soak's folder, which failure folders are named relative to.
func NewSoakCollector(root string, ids []string) *SoakCollector {
	c := &SoakCollector{root: root, scenarios: map[string]*SoakScenario{}, faults: map[string]*SoakFault{}, marks: map[string]*SoakMark{}}
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

// Add counts one run. available are the fault kinds its scenario could draw
// (Entry.AvailableKinds). A failing run's res.FailureFile names its failure folder's
// scenario.json (reports.WriteFolder sets it).
func (c *SoakCollector) Add(sc scenario.Scenario, res *scenario.Result, available []string) {
	s := c.scenario(sc.ID)
	s.Runs++
	s.Events += res.Events
	s.SimSeconds += res.SimSeconds
	s.WallSeconds += res.WallSeconds
	c.totals.Runs++
	c.totals.Events += res.Events
	c.totals.SimSeconds += res.SimSeconds
	c.totals.RunWallSeconds += res.WallSeconds
	for _, k := range available {
		c.fault(k).AvailableRuns++
	}
	for k, n := range res.Faults {
		if n > 0 {
			f := c.fault(k)
			f.Activations += n
			f.Runs++
		}
	}
	for m, n := range res.Marks {
		if n > 0 {
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
	f := SoakFailure{Scenario: sc.ID, Seed: sc.Seed, TraceHash: res.TraceHash}
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
		if rel, err := filepath.Rel(c.root, dir); err == nil {
			f.Folder = filepath.ToSlash(rel)
		} else {
			f.Folder = filepath.ToSlash(dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "history.html")); err == nil {
			f.History = true
		}
		f.Replay = ReplayCommand(sc, res.FailureFile)
	}
	c.failures = append(c.failures, f)
}

// Summary is what was collected, for a soak that ran from started to finished. Its lists are
// sorted, so the same runs give the same summary whatever order they finished in.
func (c *SoakCollector) Summary(flags SoakFlags, started, finished time.Time) *SoakSummary {
	s := &SoakSummary{Started: started.UTC(), Finished: finished.UTC(), WallSeconds: finished.Sub(started).Seconds(),
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Revision: vcsRevision(),
		Flags: flags, Totals: c.totals, Scenarios: []SoakScenario{}, Faults: []SoakFault{}, Marks: []SoakMark{},
		Failures: append([]SoakFailure{}, c.failures...)}
	if wall := s.WallSeconds; wall > 0 {
		s.SeedsPerMinute = float64(s.Totals.Runs) / wall * 60
		s.EventsPerWallSecond = float64(s.Totals.Events) / wall
		s.Compression = s.Totals.SimSeconds / wall
	}
	ids := append([]string{}, c.order...)
	sort.Strings(ids)
	for _, id := range ids {
		s.Scenarios = append(s.Scenarios, *c.scenarios[id])
	}
	for _, f := range c.faults {
		s.Faults = append(s.Faults, *f)
	}
	sort.Slice(s.Faults, func(i, j int) bool { return s.Faults[i].Kind < s.Faults[j].Kind })
	for _, m := range c.marks {
		s.Marks = append(s.Marks, *m)
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
	return s
}

// vcsRevision is the commit the binary was built from, or "unknown" (go run and go test do not
// always record it).
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
	return "unknown"
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

// soakView is what index.html shows, with the chart laid out.
type soakView struct {
	S       *SoakSummary
	Verdict string
	OK      bool
	Bars    []soakBar
	ChartH  int
}

type soakBar struct {
	Label string
	Value string
	Y     int
	W     float64
	Bad   bool
}

const chartWidth = 460.0

func newSoakView(s *SoakSummary) soakView {
	v := soakView{S: s, OK: s.Passed()}
	t := s.Totals
	switch {
	case t.Runs == 0:
		v.Verdict, v.OK = "NOTHING RAN: no run finished", false
	case v.OK:
		v.Verdict = fmt.Sprintf("PASSED: all %d runs passed", t.Runs)
	default:
		v.Verdict = fmt.Sprintf("FAILED: %d of %d runs failed and %d were invalid", t.Failed, t.Runs, t.Invalid)
	}
	most := 0.0
	for _, sc := range s.Scenarios {
		most = max(most, sc.WallSeconds)
	}
	for i, sc := range s.Scenarios {
		b := soakBar{Label: sc.ID, Value: fmt.Sprintf("%.1fs, %d runs", sc.WallSeconds, sc.Runs), Y: i * 18, Bad: sc.Failed+sc.Invalid > 0}
		if most > 0 {
			b.W = sc.WallSeconds / most * chartWidth
		}
		v.Bars = append(v.Bars, b)
	}
	v.ChartH = len(v.Bars)*18 + 4
	return v
}

var soakPage = template.Must(template.New("soak").Funcs(template.FuncMap{
	"f0":   func(x float64) string { return fmt.Sprintf("%.0f", x) },
	"f1":   func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"f2":   func(x float64) string { return fmt.Sprintf("%.2f", x) },
	"add":  func(a, b int) int { return a + b },
	"time": func(t time.Time) string { return t.Format(time.RFC3339) },
	"short": func(s string) string {
		if len(s) > 300 {
			return s[:300] + "…"
		}
		return s
	},
	"join": strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>rbee-sim soak: {{.Verdict}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
.verdict{font-size:1.3em;font-weight:bold;padding:.5em .8em;border-radius:4px}
.ok{background:#e3f6e3;color:#135d13}.bad{background:#fde2e2;color:#8a1010}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}tr.bad td{background:#fdecec}td.zero{color:#b00}
code{font-size:12px;background:#f6f6f6;padding:1px 3px}.meta{color:#666}
</style></head><body>
<h1>rbee-sim soak</h1>
<p class="verdict {{if .OK}}ok{{else}}bad{{end}}">{{.Verdict}}</p>
<table>
<tr><th class="l">runs</th><td>{{.S.Totals.Runs}}</td><th class="l">passed</th><td>{{.S.Totals.Passed}}</td><th class="l">failed</th><td>{{.S.Totals.Failed}}</td><th class="l">invalid</th><td>{{.S.Totals.Invalid}}</td></tr>
<tr><th class="l">events</th><td>{{.S.Totals.Events}}</td><th class="l">simulated seconds</th><td>{{f0 .S.Totals.SimSeconds}}</td><th class="l">wall seconds</th><td>{{f1 .S.WallSeconds}}</td><th class="l">seeds/minute</th><td>{{f0 .S.SeedsPerMinute}}</td></tr>
<tr><th class="l">events/s</th><td>{{f0 .S.EventsPerWallSecond}}</td><th class="l">time compression</th><td>{{f0 .S.Compression}}x</td><th class="l">scenarios</th><td>{{len .S.Scenarios}}</td><th class="l">failure folders</th><td>{{len .S.Failures}}</td></tr>
</table>
<p class="meta">{{time .S.Started}} to {{time .S.Finished}} · {{.S.GoVersion}} {{.S.GOOS}}/{{.S.GOARCH}} · revision {{.S.Revision}} ·
flags: scenario <code>{{.S.Flags.Scenario}}</code>{{if .S.Flags.Duration}} duration {{.S.Flags.Duration}}{{else}} seeds {{.S.Flags.Seeds}}{{end}} base seed {{.S.Flags.BaseSeed}} shard {{.S.Flags.Shard}} parallel {{.S.Flags.Parallel}}</p>

<h2>Failures</h2>
{{if .S.Failures}}<table>
<tr><th class="l">scenario</th><th>seed</th><th class="l">verdict</th><th class="l">first failing checker</th><th class="l">files</th></tr>
{{range .S.Failures}}<tr class="bad"><td class="l">{{.Scenario}}</td><td>{{.Seed}}</td><td class="l">{{if .Invalid}}invalid{{else}}FAILED{{end}}</td>
<td class="l">[{{.Stage}}] {{.Checker}}: {{short .Detail}}{{if .Replay}}<br><code>{{.Replay}}</code>{{end}}</td>
<td class="l">{{if .Folder}}<a href="{{.Folder}}/README.txt">README.txt</a> <a href="{{.Folder}}/trace.jsonl">trace.jsonl</a>{{if .History}} <a href="{{.Folder}}/history.html">history.html</a>{{end}}{{else}}not written{{end}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}

<h2>Scenarios</h2>
<table>
<tr><th class="l">scenario</th><th>runs</th><th>passed</th><th>failed</th><th>invalid</th><th>events</th><th>simulated s</th><th>wall s</th></tr>
{{range .S.Scenarios}}<tr{{if or .Failed .Invalid}} class="bad"{{end}}><td class="l">{{.ID}}</td><td{{if not .Runs}} class="zero"{{end}}>{{.Runs}}</td><td>{{.Passed}}</td><td>{{.Failed}}</td><td>{{.Invalid}}</td><td>{{.Events}}</td><td>{{f0 .SimSeconds}}</td><td>{{f2 .WallSeconds}}</td></tr>
{{end}}</table>

<h2>Wall seconds per scenario</h2>
<svg width="980" height="{{.ChartH}}" role="img" aria-label="wall seconds per scenario">
{{range .Bars}}<text x="250" y="{{add .Y 13}}" font-size="12" text-anchor="end">{{.Label}}</text>
<rect x="256" y="{{add .Y 2}}" width="{{f1 .W}}" height="14" fill="{{if .Bad}}#d33{{else}}#4a8{{end}}"></rect>
<text x="{{f0 .W}}" dx="262" y="{{add .Y 13}}" font-size="11" fill="#555">{{.Value}}</text>
{{end}}</svg>

<h2>Fault kinds</h2>
<table>
<tr><th class="l">kind</th><th>activations</th><th>runs it fired in</th><th>runs that could draw it</th></tr>
{{range .S.Faults}}<tr><td class="l">{{.Kind}}</td><td{{if not .Activations}} class="zero"{{end}}>{{.Activations}}</td><td>{{.Runs}}</td><td>{{.AvailableRuns}}</td></tr>
{{end}}</table>

<h2>Coverage marks</h2>
{{if .S.Marks}}<table>
<tr><th class="l">mark</th><th>declared</th><th>runs</th><th>hits</th></tr>
{{range .S.Marks}}<tr><td class="l">{{.Mark}}</td><td>{{if .Declared}}{{if .Hits}}yes{{else}}<b>NOT REACHED</b>{{end}}{{end}}</td><td>{{.Runs}}</td><td>{{.Hits}}</td></tr>
{{end}}</table>{{else}}<p>No coverage mark was reached.</p>{{end}}
</body></html>
`))

// sortFailures orders failures by scenario, then seed.
func sortFailures(fs []SoakFailure) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].Scenario != fs[j].Scenario {
			return fs[i].Scenario < fs[j].Scenario
		}
		return fs[i].Seed < fs[j].Seed
	})
}
