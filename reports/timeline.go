package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// The timeline's geometry: a label column, then the plot.
const (
	tlLabelW = 250.0
	tlPlotW  = 720.0
	tlRowH   = 16
	tlBins   = 240
)

// tlRow is one lane of the timeline: a fault, a node, or the run's actions.
type tlRow struct {
	Label string
	Title string
	Y     int
	Spans []tlSpan
	Ticks []tlSpan
}

type tlSpan struct {
	X, W  float64
	Color string
	Title string
}

type tlTick struct {
	X     float64
	Label string
}

type tlBar struct {
	X, W, H, Y float64
	Title      string
}

// timelineView is what timeline.html shows.
type timelineView struct {
	Sc        scenario.Scenario
	Res       *scenario.Result
	Verdict   string
	OK        bool
	Variant   string
	Width     float64
	PlotX     float64
	PlotW     float64
	ChaosX    float64
	End       string
	Chaos     string
	Ticks     []tlTick
	RateBars  []tlBar
	DropBars  []tlBar
	RateH     int
	MaxRate   string
	FaultRows []tlRow
	NodeRows  []tlRow
	Actions   tlRow
	FaultsY   int
	NodesY    int
	ActionsY  int
	Height    int
	Events    uint64
	Drops     int
	Crashes   int
}

// traceEvent is what the timeline needs of a trace line.
type traceEvent struct {
	T    int64  `json:"t"`
	Kind string `json:"kind"`
	From string `json:"from"`
	To   string `json:"to"`
	Msg  string `json:"msg"`
}

// WriteTimeline writes timeline.html for a run: its scenario's faults as bars over simulated
// time, the nodes that were down (crash to start) or paused, the harness's actions, the event
// rate and dropped messages (from the trace file at tracePath, as WriteFolder writes it), and
// the checkers' verdicts. The page is self-contained: inline SVG, no script, no network.
func WriteTimeline(path string, sc scenario.Scenario, res *scenario.Result, tracePath string) error {
	v, err := newTimelineView(sc, res, tracePath)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := timelinePage.Execute(f, v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newTimelineView(sc scenario.Scenario, res *scenario.Result, tracePath string) (timelineView, error) {
	v := timelineView{Sc: sc, Res: res, OK: res.Passed, PlotX: tlLabelW, PlotW: tlPlotW, Width: tlLabelW + tlPlotW + 20, Events: res.Events}
	v.Verdict = "PASSED"
	if c := res.FirstFailure(); c != nil {
		v.Verdict = fmt.Sprintf("FAILED: [%s] %s", c.Stage, c.Name)
	}
	end := sc.Chaos + sc.Settle
	f, err := os.Open(tracePath)
	if err != nil {
		return v, fmt.Errorf("cannot read the trace: %w", err)
	}
	defer f.Close()
	var evs []traceEvent
	counts, drops := make([]int, tlBins), make([]int, tlBins)
	var times []int64
	rd := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			t, kind := quickField(line)
			times = append(times, t)
			switch kind {
			case "deliver", "timer", "dup":
			case "drop":
				evs = append(evs, traceEvent{T: t, Kind: "drop"})
			default:
				var e traceEvent
				if json.Unmarshal(line, &e) == nil {
					evs = append(evs, e)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return v, fmt.Errorf("cannot read the trace: %w", err)
		}
	}
	if n := len(times); n > 0 && time.Duration(times[n-1]) > end {
		end = time.Duration(times[n-1])
	}
	if end <= 0 {
		end = time.Second
	}
	x := func(t time.Duration) float64 { return tlLabelW + float64(t)/float64(end)*tlPlotW }
	w := func(a, b time.Duration) float64 { return max(float64(b-a)/float64(end)*tlPlotW, 1.5) }
	bin := func(t int64) int { return min(int(float64(t)/float64(end)*tlBins), tlBins-1) }
	for _, t := range times {
		counts[bin(t)]++
	}
	v.ChaosX, v.End, v.Chaos = x(sc.Chaos), fmtSim(end), fmtSim(sc.Chaos)
	for _, t := range niceTicks(end) {
		v.Ticks = append(v.Ticks, tlTick{X: x(t), Label: fmtSim(t)})
	}

	// Node lanes and actions from the trace.
	type lane struct {
		spans        []tlSpan
		ticks        []tlSpan
		down, paused time.Duration
		isDown, isP  bool
	}
	lanes := map[string]*lane{}
	get := func(a string) *lane {
		l, ok := lanes[a]
		if !ok {
			l = &lane{}
			lanes[a] = l
		}
		return l
	}
	v.Actions = tlRow{Label: "harness actions"}
	for _, e := range evs {
		t := time.Duration(e.T)
		switch e.Kind {
		case "drop":
			drops[bin(e.T)]++
			v.Drops++
		case "crash":
			l := get(e.To)
			if !l.isDown {
				l.isDown, l.down = true, t
			}
			v.Crashes++
		case "start":
			if l, ok := lanes[e.To]; ok && l.isDown {
				l.spans = append(l.spans, tlSpan{X: x(l.down), W: w(l.down, t), Color: "#d33", Title: fmt.Sprintf("%s down %s to %s", e.To, fmtSim(l.down), fmtSim(t))})
				l.isDown = false
			}
		case "pause":
			l := get(e.To)
			if !l.isP {
				l.isP, l.paused = true, t
			}
		case "resume":
			if l, ok := lanes[e.To]; ok && l.isP {
				l.spans = append(l.spans, tlSpan{X: x(l.paused), W: w(l.paused, t), Color: "#e90", Title: fmt.Sprintf("%s paused %s to %s", e.To, fmtSim(l.paused), fmtSim(t))})
				l.isP = false
			}
		case "powerfail":
			get(e.To).ticks = append(get(e.To).ticks, tlSpan{X: x(t), Color: "#000", Title: fmt.Sprintf("%s lost power at %s", e.To, fmtSim(t))})
		case "action":
			if !strings.HasPrefix(e.Msg, "fault ") {
				v.Actions.Ticks = append(v.Actions.Ticks, tlSpan{X: x(t), Color: "#36c", Title: fmt.Sprintf("%s: %s", fmtSim(t), e.Msg)})
			}
		}
	}
	addrs := make([]string, 0, len(lanes))
	for a := range lanes { //det:sorted (sorted next)
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		l := lanes[a]
		if l.isDown {
			l.spans = append(l.spans, tlSpan{X: x(l.down), W: w(l.down, end), Color: "#d33", Title: fmt.Sprintf("%s down from %s to the end", a, fmtSim(l.down))})
		}
		if l.isP {
			l.spans = append(l.spans, tlSpan{X: x(l.paused), W: w(l.paused, end), Color: "#e90", Title: fmt.Sprintf("%s paused from %s to the end", a, fmtSim(l.paused))})
		}
		v.NodeRows = append(v.NodeRows, tlRow{Label: a, Title: a, Spans: l.spans, Ticks: l.ticks})
	}

	// Fault lanes from the schedule: a fault lasts until its For ends or the faults stop.
	for _, fl := range sc.Faults {
		row := tlRow{Label: faultLabel(fl), Title: faultTitle(fl)}
		stop := min(fl.At+fl.For, sc.Chaos)
		if fl.For == 0 || stop <= fl.At {
			row.Ticks = []tlSpan{{X: x(fl.At), Color: faultColor(fl.Kind), Title: row.Title}}
		} else {
			row.Spans = []tlSpan{{X: x(fl.At), W: w(fl.At, stop), Color: faultColor(fl.Kind), Title: row.Title}}
		}
		v.FaultRows = append(v.FaultRows, row)
	}

	// The event rate: events per simulated second in each bin, and drops on top.
	binDur := float64(end) / tlBins / float64(time.Second)
	most := 0
	for _, c := range counts {
		most = max(most, c)
	}
	v.RateH = 60
	bw := tlPlotW / tlBins
	for i, c := range counts {
		if most == 0 || c == 0 {
			continue
		}
		h := float64(c) / float64(most) * float64(v.RateH)
		v.RateBars = append(v.RateBars, tlBar{X: tlLabelW + float64(i)*bw, W: bw, H: h, Y: float64(v.RateH) - h,
			Title: fmt.Sprintf("%s: %d events (%.0f/s)", fmtSim(time.Duration(float64(i)*binDur*float64(time.Second))), c, float64(c)/binDur)})
		if d := drops[i]; d > 0 {
			dh := max(float64(d)/float64(most)*float64(v.RateH), 1)
			v.DropBars = append(v.DropBars, tlBar{X: tlLabelW + float64(i)*bw, W: bw, H: dh, Y: float64(v.RateH) - dh, Title: fmt.Sprintf("%d messages dropped", d)})
		}
	}
	if binDur > 0 {
		v.MaxRate = fmt.Sprintf("%.0f events/s", float64(most)/binDur)
	}

	y := v.RateH + 40
	v.FaultsY = y
	for i := range v.FaultRows {
		v.FaultRows[i].Y = y + 18 + i*tlRowH
	}
	y += 18 + len(v.FaultRows)*tlRowH + 14
	v.NodesY = y
	for i := range v.NodeRows {
		v.NodeRows[i].Y = y + 18 + i*tlRowH
	}
	y += 18 + len(v.NodeRows)*tlRowH + 14
	v.ActionsY = y
	v.Actions.Y = y + 18
	v.Height = y + 18 + tlRowH + 10
	return v, nil
}

// quickField reads a trace line's "t" and "kind" without decoding its body.
func quickField(line []byte) (int64, string) {
	var t int64
	if i := bytes.Index(line, []byte(`"t":`)); i >= 0 {
		rest := line[i+4:]
		j := bytes.IndexAny(rest, ",}")
		if j > 0 {
			t, _ = strconv.ParseInt(string(rest[:j]), 10, 64)
		}
	}
	kind := ""
	if i := bytes.Index(line, []byte(`"kind":"`)); i >= 0 {
		rest := line[i+8:]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			kind = string(rest[:j])
		}
	}
	return t, kind
}

func faultLabel(f faults.Fault) string {
	var who []string
	for _, t := range f.Targets {
		who = append(who, string(t))
	}
	for _, g := range f.Groups {
		var side []string
		for _, a := range g {
			side = append(side, string(a))
		}
		who = append(who, "["+strings.Join(side, " ")+"]")
	}
	if f.Worker != "" {
		who = append(who, f.Worker)
	}
	s := f.Kind
	if len(who) > 0 {
		s += " " + strings.Join(who, " ")
	}
	if len(s) > 38 {
		s = s[:37] + "…"
	}
	return s
}

func faultTitle(f faults.Fault) string {
	b, _ := json.Marshal(f)
	return fmt.Sprintf("%s at %s for %s: %s", f.Kind, fmtSim(f.At), f.For, b)
}

// faultColor groups the fault kinds by what they hit.
func faultColor(kind string) string {
	switch {
	case strings.HasPrefix(kind, "net-"):
		return "#48c"
	case strings.HasPrefix(kind, "partition-"):
		return "#84c"
	case strings.HasPrefix(kind, "clock-"):
		return "#c80"
	case strings.HasPrefix(kind, "disk-"), strings.HasPrefix(kind, "power-"):
		return "#a52"
	case strings.HasPrefix(kind, "hub-"), strings.HasPrefix(kind, "engine-"):
		return "#2a8"
	default:
		return "#c33"
	}
}

// fmtSim prints a simulated time as 1m30s, 4.25s or 250ms.
func fmtSim(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

// niceTicks are round times from zero to end, at most about a dozen.
func niceTicks(end time.Duration) []time.Duration {
	steps := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if end/s <= 12 {
			step = s
			break
		}
	}
	var out []time.Duration
	for t := time.Duration(0); t <= end; t += step {
		out = append(out, t)
	}
	return out
}

var timelinePage = template.Must(template.New("timeline").Funcs(template.FuncMap{
	"f1":  func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"dur": fmtSim,
	"add": func(a, b int) int { return a + b },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Sc.ID}} seed {{.Sc.Seed}}: timeline</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1040px}
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}
.verdict{font-weight:bold;padding:.4em .7em;border-radius:4px;display:inline-block}
.ok{background:#e3f6e3;color:#135d13}.bad{background:#fde2e2;color:#8a1010}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.bad td{background:#fdecec}.meta{color:#666}
svg text{font-family:system-ui,sans-serif}
</style></head><body>
<h1>{{.Sc.ID}} seed {{.Sc.Seed}}</h1>
<p class="verdict {{if .OK}}ok{{else}}bad{{end}}">{{.Verdict}}</p>
<p class="meta">{{.Events}} events over {{.End}} simulated; faults may happen until {{.Chaos}}, then every fault is healed and the cluster settles;
{{.Crashes}} crashes, {{.Drops}} messages dropped; trace hash {{.Res.TraceHash}}. Hover over a bar for its details.</p>
<svg width="{{f1 .Width}}" height="{{.Height}}" role="img" aria-label="timeline of the run">
<text x="{{f1 .PlotX}}" y="12" font-size="12" fill="#444">events per simulated second (peak {{.MaxRate}}; red: dropped messages)</text>
<g transform="translate(0,18)">
{{range .RateBars}}<rect x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}" fill="#9bc"><title>{{.Title}}</title></rect>{{end}}
{{range .DropBars}}<rect x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}" fill="#d33"><title>{{.Title}}</title></rect>{{end}}
</g>
{{range .Ticks}}<line x1="{{f1 .X}}" x2="{{f1 .X}}" y1="18" y2="{{$.Height}}" stroke="#eee"></line><text x="{{f1 .X}}" y="{{add $.RateH 32}}" font-size="10" fill="#777" text-anchor="middle">{{.Label}}</text>{{end}}
<line x1="{{f1 .ChaosX}}" x2="{{f1 .ChaosX}}" y1="14" y2="{{.Height}}" stroke="#333" stroke-dasharray="4 3"></line>
<text x="{{f1 .ChaosX}}" dx="4" y="{{add .FaultsY 12}}" font-size="11" fill="#333">faults stop ({{.Chaos}})</text>
<text x="4" y="{{add .FaultsY 12}}" font-size="12" font-weight="bold">faults ({{len .FaultRows}})</text>
{{range .FaultRows}}<text x="{{f1 $.PlotX}}" dx="-6" y="{{add .Y 12}}" font-size="11" text-anchor="end"><title>{{.Title}}</title>{{.Label}}</text>
{{end}}{{range $r := .FaultRows}}{{range .Spans}}<rect x="{{f1 .X}}" y="{{add $r.Y 3}}" width="{{f1 .W}}" height="11" fill="{{.Color}}" rx="2"><title>{{.Title}}</title></rect>{{end}}{{range .Ticks}}<rect x="{{f1 .X}}" y="{{add $r.Y 1}}" width="3" height="15" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}{{end}}
<text x="4" y="{{add .NodesY 12}}" font-size="12" font-weight="bold">nodes down (red), paused (orange), power lost (black)</text>
{{range $r := .NodeRows}}<text x="{{f1 $.PlotX}}" dx="-6" y="{{add .Y 12}}" font-size="11" text-anchor="end">{{.Label}}</text>
{{range .Spans}}<rect x="{{f1 .X}}" y="{{add $r.Y 3}}" width="{{f1 .W}}" height="11" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}{{range .Ticks}}<rect x="{{f1 .X}}" y="{{add $r.Y 1}}" width="2" height="15" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}{{end}}
{{if not .NodeRows}}<text x="{{f1 .PlotX}}" y="{{add .NodesY 30}}" font-size="11" fill="#777">no node crashed or paused</text>{{end}}
<text x="4" y="{{add .ActionsY 12}}" font-size="12" font-weight="bold">harness actions</text>
{{range .Actions.Ticks}}<rect x="{{f1 .X}}" y="{{add $.Actions.Y 1}}" width="2" height="15" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}
{{if not .Actions.Ticks}}<text x="{{f1 .PlotX}}" y="{{add .Actions.Y 12}}" font-size="11" fill="#777">none</text>{{end}}
</svg>
<h2>Checkers</h2>
<table><tr><th>verdict</th><th>stage</th><th>checker</th><th>detail</th></tr>
{{range .Res.Checkers}}<tr{{if not .OK}} class="bad"{{end}}><td>{{if .OK}}ok{{else}}FAIL{{end}}</td><td>{{.Stage}}</td><td>{{.Name}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
<h2>Fault schedule</h2>
{{if .Sc.Faults}}<table><tr><th>at</th><th>for</th><th>kind</th><th>targets, value</th></tr>
{{range .Sc.Faults}}<tr><td>{{dur .At}}</td><td>{{if .For}}{{dur .For}}{{end}}</td><td>{{.Kind}}</td><td>{{range .Targets}}{{.}} {{end}}{{range .Groups}}[{{range .}}{{.}} {{end}}] {{end}}{{if .Worker}}worker {{.Worker}} {{end}}{{if .Device}}device {{.Device}} {{end}}{{if .File}}file {{.File}} {{end}}{{if .Value}}value {{.Value}}{{end}}</td></tr>
{{end}}</table>{{else}}<p>No fault.</p>{{end}}
</body></html>
`))
