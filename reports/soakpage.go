package reports

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// soakView is what index.html shows, with the charts laid out.
type soakView struct {
	S          *SoakSummary
	Verdict    string
	OK         bool
	Command    string
	Failures   []failureView
	Bars       []soakBar
	ChartH     int
	Hist       histChart
	Rate       rateChart
	Fired      int
	NotReached int
}

type soakBar struct {
	Label string
	Value string
	Y     int
	W     float64
	Bad   bool
}

type link struct{ Href, Name string }

// failureView is a failure with its links and its variant in words.
type failureView struct {
	SoakFailure
	Links        []link
	MinimalLinks []link
	VariantText  string
	Sizes        []sizeRow
}

type sizeRow struct{ What, From, To string }

// histChart is the histogram of run durations.
type histChart struct {
	W, H, PlotH, Base int
	Bars              []histBar
	Max               int
}

type histBar struct {
	X, Y, W, H, Mid float64
	Label           string
	Runs            int
}

// rateChart is events per wall second over the soak.
type rateChart struct {
	W, H, Left, Top, PlotW, PlotH float64
	Area, Line                    string
	AvgY                          float64
	AvgLabel, MaxLabel            string
	XTicks                        []axisTick
	YTicks                        []axisTick
	Points                        []ratePoint
}

type axisTick struct {
	Pos   float64
	Label string
}

type ratePoint struct {
	X, Y  float64
	Title string
}

const chartWidth = 460.0

func newSoakView(s *SoakSummary) soakView {
	v := soakView{S: s, OK: s.Passed(), Command: strings.Join(s.Flags.Command, " ")}
	t := s.Totals
	canary := ""
	if c := s.Canary; c != nil {
		canary = fmt.Sprintf("; the canary caught %d of %d planted bugs", c.Caught(), len(c.Plants))
	}
	switch {
	case t.Runs == 0:
		v.Verdict, v.OK = "NOTHING RAN: no run finished", false
	case !s.RunsPassed():
		v.Verdict = fmt.Sprintf("FAILED: %d of %d runs failed and %d were invalid%s", t.Failed, t.Runs, t.Invalid, canary)
	case !v.OK:
		v.Verdict = fmt.Sprintf("FAILED: all %d runs passed, but the canary missed %d of %d planted bugs", t.Runs, len(s.Canary.Plants)-s.Canary.Caught(), len(s.Canary.Plants))
	default:
		v.Verdict = fmt.Sprintf("PASSED: all %d runs passed%s", t.Runs, canary)
	}
	for _, f := range s.Faults {
		if f.Activations > 0 {
			v.Fired++
		}
	}
	for _, m := range s.Marks {
		if m.Declared && m.Hits == 0 {
			v.NotReached++
		}
	}
	for _, f := range s.Failures {
		v.Failures = append(v.Failures, newFailureView(f))
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
	v.Hist = newHistChart(s.RunSeconds)
	v.Rate = newRateChart(s)
	return v
}

func newFailureView(f SoakFailure) failureView {
	fv := failureView{SoakFailure: f}
	for _, name := range f.Files {
		fv.Links = append(fv.Links, link{f.Folder + "/" + name, fileLabel(name)})
	}
	for _, name := range f.MinimalFiles {
		fv.MinimalLinks = append(fv.MinimalLinks, link{f.MinimalFolder + "/" + name, fileLabel(name)})
	}
	if v := f.Variant; v != nil {
		var parts []string
		if len(v.Swarm) > 0 {
			var ks []string
			for _, k := range v.Swarm {
				ks = append(ks, fmt.Sprintf("%s ×%d (intensity %d)", k.Kind, k.Faults, k.Intensity))
			}
			parts = append(parts, "swarm: "+strings.Join(ks, ", "))
		}
		if v.Liveness() {
			parts = append(parts, fmt.Sprintf("liveness mode: faults stopped at %v, convergence bound %v", v.LivenessStop, v.Settle))
		}
		fv.VariantText = strings.Join(parts, "; ")
	}
	if st := f.Shrunk; st != nil {
		fv.Sizes = shrinkRows(st)
	}
	return fv
}

func shrinkRows(st *scenario.ShrinkStats) []sizeRow {
	d := func(a, b int) sizeRow { return sizeRow{From: fmt.Sprint(a), To: fmt.Sprint(b)} }
	rows := []sizeRow{
		{What: "events", From: fmt.Sprint(st.FromEvents), To: fmt.Sprintf("%d (%.1fx fewer)", st.ToEvents, st.Factor())},
	}
	for _, r := range []struct {
		what     string
		from, to int
	}{{"faults", st.FromFaults, st.ToFaults}, {"nodes", st.FromNodes, st.ToNodes}, {"workers", st.FromWorkers, st.ToWorkers},
		{"clients", st.FromClients, st.ToClients}, {"requests", st.FromRequests, st.ToRequests}} {
		if r.from == 0 && r.to == 0 {
			continue
		}
		row := d(r.from, r.to)
		row.What = r.what
		rows = append(rows, row)
	}
	rows = append(rows, sizeRow{What: "simulated time", From: fmtSim(time.Duration(st.FromSimSeconds * float64(time.Second))),
		To: fmtSim(time.Duration(st.ToSimSeconds * float64(time.Second)))})
	return rows
}

// fileLabel names a failure folder's file by what it shows.
func fileLabel(name string) string {
	switch name {
	case "timeline.html":
		return "timeline"
	case "history.html":
		return "porcupine history"
	case "README.txt":
		return "README"
	}
	return name
}

func newHistChart(bins []SoakBin) histChart {
	h := histChart{W: 560, H: 210, PlotH: 150, Base: 170}
	lo, hi := -1, -1
	for i, b := range bins {
		if b.Runs > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
			h.Max = max(h.Max, b.Runs)
		}
	}
	if lo < 0 {
		return h
	}
	n := hi - lo + 1
	bw := min((float64(h.W)-60)/float64(n), 70)
	for i := lo; i <= hi; i++ {
		b := bins[i]
		bh := float64(b.Runs) / float64(h.Max) * float64(h.PlotH)
		label := "≥ " + secs(b.FromSeconds)
		if b.ToSeconds > 0 {
			label = "< " + secs(b.ToSeconds)
		}
		h.Bars = append(h.Bars, histBar{X: 40 + float64(i-lo)*bw, W: bw - 4, H: bh, Y: float64(h.Base) - bh, Label: label, Runs: b.Runs})
		h.Bars[len(h.Bars)-1].Mid = h.Bars[len(h.Bars)-1].X + (bw-4)/2
	}
	return h
}

// secs prints a bin edge: 20ms, 0.5s, 2s.
func secs(x float64) string {
	if x < 1 {
		return fmt.Sprintf("%gms", x*1000)
	}
	return fmt.Sprintf("%gs", x)
}

func newRateChart(s *SoakSummary) rateChart {
	r := rateChart{W: 1000, H: 250, Left: 80, Top: 28, PlotW: 880, PlotH: 170}
	if len(s.Throughput) == 0 || s.WallSeconds <= 0 {
		return r
	}
	most := 0.0
	for _, p := range s.Throughput {
		most = max(most, p.EventsPerSecond())
	}
	if most <= 0 {
		return r
	}
	top := niceCeil(most)
	x := func(sec float64) float64 { return r.Left + sec/s.WallSeconds*r.PlotW }
	y := func(rate float64) float64 { return r.Top + r.PlotH - rate/top*r.PlotH }
	var line []string
	for _, p := range s.Throughput {
		mid := p.StartSeconds + p.Seconds/2
		px, py := x(mid), y(p.EventsPerSecond())
		line = append(line, fmt.Sprintf("%.1f,%.1f", px, py))
		r.Points = append(r.Points, ratePoint{X: px, Y: py, Title: fmt.Sprintf("%s to %s: %.0f events/s, %d runs finished, %.0fx real time",
			clock(p.StartSeconds), clock(p.StartSeconds+p.Seconds), p.EventsPerSecond(), p.Runs, p.SimSeconds/max(p.Seconds, 1e-9))})
	}
	r.Line = strings.Join(line, " ")
	first, last := s.Throughput[0], s.Throughput[len(s.Throughput)-1]
	r.Area = fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", x(first.StartSeconds+first.Seconds/2), r.Top+r.PlotH, r.Line,
		x(last.StartSeconds+last.Seconds/2), r.Top+r.PlotH)
	r.AvgY = y(s.EventsPerWallSecond)
	r.AvgLabel = fmt.Sprintf("average %.0f events/s", s.EventsPerWallSecond)
	r.MaxLabel = fmt.Sprintf("%.0f", top)
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		r.YTicks = append(r.YTicks, axisTick{Pos: y(top * f), Label: compact(top * f)})
	}
	for _, t := range niceTicks(time.Duration(s.WallSeconds * float64(time.Second))) {
		r.XTicks = append(r.XTicks, axisTick{Pos: x(t.Seconds()), Label: clock(t.Seconds())})
	}
	return r
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	p := 1.0
	for p*10 <= x {
		p *= 10
	}
	for p > x && p > 1e-9 {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// compact prints a rate: 950, 12k, 1.5M.
func compact(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%gM", roundTo(x/1e6))
	case x >= 1e3:
		return fmt.Sprintf("%gk", roundTo(x/1e3))
	}
	return fmt.Sprintf("%g", roundTo(x))
}

func roundTo(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// clock prints wall seconds as 1m30s.
func clock(sec float64) string { return (time.Duration(sec) * time.Second).String() }

var soakPage = template.Must(template.New("soak").Funcs(template.FuncMap{
	"f0":   func(x float64) string { return fmt.Sprintf("%.0f", x) },
	"f1":   func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"f2":   func(x float64) string { return fmt.Sprintf("%.2f", x) },
	"pct":  func(x float64) string { return fmt.Sprintf("%.0f%%", x*100) },
	"add":  func(a, b int) int { return a + b },
	"addf": func(a float64, b float64) string { return fmt.Sprintf("%.1f", a+b) },
	"time": func(t time.Time) string { return t.Format(time.RFC3339) },
	"sim":  func(sec float64) string { return fmtSim(time.Duration(sec * float64(time.Second))) },
	"wall": func(sec float64) string { return fmtSim(time.Duration(sec * float64(time.Second))) },
	"short": func(s string) string {
		if len(s) > 400 {
			return s[:400] + "…"
		}
		return s
	},
	"join": strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rbee-sim soak: {{.Verdict}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;padding:0 1.5em;color:#222;max-width:1100px}
h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1em;margin:.2em 0}
.verdict{font-size:1.25em;font-weight:bold;padding:.5em .8em;border-radius:4px;margin:.5em 0}
.ok{background:#e3f6e3;color:#135d13}.bad{background:#fde2e2;color:#8a1010}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin:1em 0}
.tile{border:1px solid #ddd;border-radius:4px;padding:.4em .7em}.tile b{display:block;font-size:1.35em}
.tile span{color:#666;font-size:12px}.tile.badtile{border-color:#d33;background:#fdecec}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}tr.bad td{background:#fdecec}td.zero{color:#b00;font-weight:bold}
code{font-size:12px;background:#f3f3f3;padding:1px 4px;border-radius:3px;word-break:break-all}
.meta{color:#555;margin:.2em 0}.meta dt{float:left;clear:left;width:9em;color:#777}.meta dd{margin:0 0 0 9.5em}
.failure{border:1px solid #e4b4b4;border-left:5px solid #c33;border-radius:4px;padding:.6em .9em;margin:.8em 0;background:#fffafa}
.failure.invalid{border-left-color:#e90}
.failure .detail{white-space:pre-wrap;font-size:13px;margin:.3em 0}
.links a{margin-right:.9em}.small{font-size:12px;color:#666}
.minimal{margin-top:.6em;padding-top:.5em;border-top:1px dashed #ddd}
table.canary{font-size:13px}td.nw{white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
svg text{font-family:system-ui,sans-serif}
</style></head><body>
<h1>rbee-sim soak</h1>
<p class="verdict {{if .OK}}ok{{else}}bad{{end}}" id="verdict">{{.Verdict}}</p>
<div class="tiles" id="totals">
<div class="tile"><b id="total-runs">{{.S.Totals.Runs}}</b><span>runs</span></div>
<div class="tile"><b id="total-passed">{{.S.Totals.Passed}}</b><span>passed</span></div>
<div class="tile{{if .S.Totals.Failed}} badtile{{end}}"><b id="total-failed">{{.S.Totals.Failed}}</b><span>failed</span></div>
<div class="tile{{if .S.Totals.Invalid}} badtile{{end}}"><b id="total-invalid">{{.S.Totals.Invalid}}</b><span>invalid</span></div>
<div class="tile"><b>{{f0 .S.SeedsPerMinute}}</b><span>seeds per minute</span></div>
<div class="tile"><b>{{f0 .S.EventsPerWallSecond}}</b><span>events per second</span></div>
<div class="tile" title="simulated seconds per wall second, all runs together"><b>{{f0 .S.Compression}}×</b><span>time compression</span></div>
<div class="tile"><b>{{wall .S.WallSeconds}}</b><span>wall time</span></div>
<div class="tile"><b>{{sim .S.Totals.SimSeconds}}</b><span>simulated time</span></div>
<div class="tile"><b>{{.S.Totals.Events}}</b><span>events</span></div>
<div class="tile"><b>{{.S.Totals.SwarmRuns}}</b><span>swarm runs</span></div>
<div class="tile"><b>{{.S.Totals.LivenessRuns}}</b><span>liveness-mode runs</span></div>
</div>
<dl class="meta">
<dt>ran</dt><dd>{{time .S.Started}} to {{time .S.Finished}}</dd>
<dt>built with</dt><dd>{{.S.GoVersion}} on {{.S.GOOS}}/{{.S.GOARCH}}, revision <code>{{.S.Revision}}</code></dd>
{{if .Command}}<dt>command</dt><dd><code>{{.Command}}</code></dd>{{end}}
<dt>flags</dt><dd>scenario <code>{{.S.Flags.Scenario}}</code>, {{if .S.Flags.Duration}}duration {{.S.Flags.Duration}}{{else}}{{.S.Flags.Seeds}} seeds per scenario{{end}} from seed {{.S.Flags.BaseSeed}}, shard {{.S.Flags.Shard}}, parallel {{.S.Flags.Parallel}},
swarm {{if .S.Flags.Swarm}}on{{else}}off{{end}}, liveness mode in {{pct .S.Flags.Liveness}} of runs, shrink budget {{.S.Flags.ShrinkBudget}} runs{{if .S.Flags.Canary}}, canary <code>{{.S.Flags.Canary}}</code>{{end}}{{if .S.Flags.Plants}}, <b>planted bugs {{join .S.Flags.Plants ", "}}</b>{{end}}</dd>
</dl>

{{with .S.Canary}}<h2 id="canary">Canary: {{.Caught}} of {{len .Plants}} planted bugs caught</h2>
<table class="canary">
<tr><th class="l">plant, and the scenario that must catch it</th><th class="l">caught</th><th>at seed (seeds run / budget)</th><th>seconds</th><th class="l">by checker</th><th class="l">shrunk</th><th class="l">files</th></tr>
{{range .Plants}}<tr{{if not .OK}} class="bad"{{end}}><td class="l nw" title="{{.Breaks}}"><b>{{.Plant}}</b><br>{{.Scenario}}</td><td class="l">{{if .OK}}yes{{else}}<b>NO</b>{{end}}</td><td>{{if .Seed}}{{.Seed}}{{else}}–{{end}} ({{.Seeds}} / {{.Budget}})</td><td>{{f2 .Seconds}}</td>
<td class="l">{{if .Checker}}[{{.Stage}}] {{.Checker}}{{end}}{{if .Problem}} <b>{{.Problem}}</b>{{end}}</td>
<td class="l nw">{{with .Shrunk}}{{.FromEvents}} → {{.ToEvents}} events<br>{{.FromFaults}} → {{.ToFaults}} faults{{end}}</td>
<td class="l nw">{{if .Folder}}<a href="{{.Folder}}/README.txt">README</a><br><a href="{{.Folder}}/timeline.html">timeline</a>{{end}}</td></tr>
{{end}}</table>{{end}}

<h2 id="failures">Failures ({{len .Failures}})</h2>
{{range .Failures}}<div class="failure{{if .Invalid}} invalid{{end}}">
<h3>{{if .Invalid}}INVALID{{else}}FAILED{{end}} {{.Scenario}} seed {{.Seed}}: [{{.Stage}}] {{.Checker}}</h3>
<div class="detail">{{short .Detail}}</div>
{{if .VariantText}}<div class="small">{{.VariantText}}</div>{{end}}
{{if .Links}}<div class="links">{{range .Links}}<a href="{{.Href}}">{{.Name}}</a>{{end}}</div>
<div>replay: <code>{{.Replay}}</code></div>{{else}}<div class="small">the failure folder could not be written</div>{{end}}
{{if .Shrunk}}<div class="minimal"><b>Minimal scenario</b> (shrunk in {{.Shrunk.Runs}} runs, still failing “{{.Shrunk.Checker}}”):
<table><tr><th class="l"></th><th>original</th><th>minimal</th></tr>
{{range .Sizes}}<tr><td class="l">{{.What}}</td><td>{{.From}}</td><td>{{.To}}</td></tr>{{end}}</table>
<div class="links">{{range .MinimalLinks}}<a href="{{.Href}}">{{.Name}}</a>{{end}}</div>
<div>replay: <code>{{.MinimalReplay}}</code></div></div>{{else if .ShrinkProblem}}<div class="small">not shrunk: {{.ShrinkProblem}}</div>{{end}}
</div>
{{else}}<p>None.</p>{{end}}

<h2 id="charts">Charts</h2>
<div class="charts">
<figure style="margin:0">
<figcaption><b>Seed durations</b>: runs by the wall time of their simulation</figcaption>
<svg id="chart-durations" width="{{.Hist.W}}" height="{{.Hist.H}}" role="img" aria-label="histogram of seed durations">
<line x1="40" x2="{{add .Hist.W -20}}" y1="{{.Hist.Base}}" y2="{{.Hist.Base}}" stroke="#999"></line>
{{range .Hist.Bars}}<rect x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}" fill="#4a8"><title>{{.Runs}} runs {{.Label}}</title></rect>
<text x="{{f1 .Mid}}" y="{{f1 .Y}}" dy="-3" font-size="11" text-anchor="middle">{{.Runs}}</text>
<text x="{{f1 .Mid}}" y="{{add $.Hist.Base 16}}" font-size="11" text-anchor="middle" fill="#555">{{.Label}}</text>{{end}}
{{if not .Hist.Bars}}<text x="60" y="80" font-size="12" fill="#777">no run</text>{{end}}
<text x="10" y="{{add .Hist.Base 34}}" font-size="11" fill="#777">runs per bin; bins by wall time per run</text>
</svg>
</figure>
<figure style="margin:0">
<figcaption><b>Events per second over the run</b> (all parallel runs together, each run's events spread over its wall time; time spent writing failure folders and shrinking runs no counted events, so it shows as a dip)</figcaption>
<svg id="chart-rate" width="{{f0 .Rate.W}}" height="{{f0 .Rate.H}}" role="img" aria-label="events per second over the run">
{{range .Rate.YTicks}}<line x1="{{f0 $.Rate.Left}}" x2="{{addf $.Rate.Left $.Rate.PlotW}}" y1="{{f1 .Pos}}" y2="{{f1 .Pos}}" stroke="#eee"></line><text x="{{f0 $.Rate.Left}}" dx="-6" y="{{f1 .Pos}}" dy="4" font-size="11" text-anchor="end" fill="#555">{{.Label}}</text>{{end}}
{{range .Rate.XTicks}}<text x="{{f1 .Pos}}" y="{{addf $.Rate.Top $.Rate.PlotH}}" dy="16" font-size="11" text-anchor="middle" fill="#555">{{.Label}}</text>{{end}}
{{if .Rate.Line}}<polygon points="{{.Rate.Area}}" fill="#cfe3f3"></polygon>
<polyline points="{{.Rate.Line}}" fill="none" stroke="#2a6fb0" stroke-width="2"></polyline>
{{range .Rate.Points}}<circle cx="{{f1 .X}}" cy="{{f1 .Y}}" r="2.5" fill="#2a6fb0"><title>{{.Title}}</title></circle>{{end}}
<line x1="{{f0 .Rate.Left}}" x2="{{addf .Rate.Left .Rate.PlotW}}" y1="{{f1 .Rate.AvgY}}" y2="{{f1 .Rate.AvgY}}" stroke="#c60" stroke-dasharray="5 4"></line>
<text x="{{addf .Rate.Left .Rate.PlotW}}" y="{{f1 .Rate.AvgY}}" dy="-5" font-size="11" text-anchor="end" fill="#c60">{{.Rate.AvgLabel}}</text>
{{else}}<text x="100" y="80" font-size="12" fill="#777">no run finished</text>{{end}}
<line x1="{{f0 .Rate.Left}}" x2="{{addf .Rate.Left .Rate.PlotW}}" y1="{{addf .Rate.Top .Rate.PlotH}}" y2="{{addf .Rate.Top .Rate.PlotH}}" stroke="#999"></line>
<text x="{{f0 .Rate.Left}}" dx="6" y="{{f0 .Rate.Top}}" dy="-8" font-size="11" fill="#555">events/s (peak scale {{.Rate.MaxLabel}})</text>
<text x="{{addf .Rate.Left .Rate.PlotW}}" y="{{addf .Rate.Top .Rate.PlotH}}" dy="32" font-size="11" text-anchor="end" fill="#555">wall time since the soak began</text>
</svg>
</figure>
<figure style="margin:0">
<figcaption><b>Wall seconds per scenario</b> (all its runs; red: a run failed)</figcaption>
<svg id="chart-scenarios" width="980" height="{{.ChartH}}" role="img" aria-label="wall seconds per scenario">
{{range .Bars}}<text x="250" y="{{add .Y 13}}" font-size="12" text-anchor="end">{{.Label}}</text>
<rect x="256" y="{{add .Y 2}}" width="{{f1 .W}}" height="14" fill="{{if .Bad}}#d33{{else}}#4a8{{end}}"></rect>
<text x="{{f0 .W}}" dx="262" y="{{add .Y 13}}" font-size="11" fill="#555">{{.Value}}</text>
{{end}}</svg>
</figure>
</div>

<h2 id="scenarios">Scenarios ({{len .S.Scenarios}})</h2>
<table id="scenario-table">
<tr><th class="l">scenario</th><th>runs</th><th>passed</th><th>failed</th><th>invalid</th><th>liveness runs</th><th>events</th><th>simulated</th><th>wall s</th></tr>
{{range .S.Scenarios}}<tr class="scenario{{if or .Failed .Invalid}} bad{{end}}"><td class="l">{{.ID}}</td><td{{if not .Runs}} class="zero"{{end}}>{{.Runs}}</td><td>{{.Passed}}</td><td>{{.Failed}}</td><td>{{.Invalid}}</td><td>{{.LivenessRuns}}</td><td>{{.Events}}</td><td>{{sim .SimSeconds}}</td><td>{{f2 .WallSeconds}}</td></tr>
{{end}}</table>

<h2 id="faults">Fault kinds ({{.Fired}} of {{len .S.Faults}} fired)</h2>
<table>
<tr><th class="l">kind</th><th>activations</th><th>runs it fired in</th><th>runs whose swarm enabled it</th><th>runs that could draw it</th></tr>
{{range .S.Faults}}<tr><td class="l">{{.Kind}}</td><td{{if not .Activations}} class="zero"{{end}}>{{.Activations}}</td><td>{{.Runs}}</td><td>{{.SwarmRuns}}</td><td>{{.AvailableRuns}}</td></tr>
{{end}}</table>

<h2 id="marks">Coverage marks ({{len .S.Marks}}{{if .NotReached}}; {{.NotReached}} declared marks NOT REACHED{{end}})</h2>
{{if .S.Marks}}<table>
<tr><th class="l">mark</th><th class="l">declared</th><th>runs</th><th>hits</th></tr>
{{range .S.Marks}}<tr{{if and .Declared (not .Hits)}} class="bad"{{end}}><td class="l">{{.Mark}}</td><td class="l">{{if .Declared}}{{if .Hits}}yes{{else}}<b>NOT REACHED</b>{{end}}{{end}}</td><td>{{.Runs}}</td><td>{{.Hits}}</td></tr>
{{end}}</table>{{else}}<p>No coverage mark was reached.</p>{{end}}
<p class="small">summary.json holds everything on this page; the README's “Soak reports” section documents it.</p>
</body></html>
`))
