package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// FailureDir is the folder a failing run's files go to, under root.
func FailureDir(root string, sc scenario.Scenario) string {
	slug := strings.NewReplacer("/", "-", " ", "-").Replace(sc.ID)
	if len(sc.Plants) > 0 {
		slug += "-plant-" + strings.Join(sc.Plants, "+")
	}
	return filepath.Join(root, fmt.Sprintf("%s-seed-%d", slug, sc.Seed))
}

// ReplayCommand is the one command that replays a saved scenario file.
func ReplayCommand(sc scenario.Scenario, scenarioFile string) string {
	tags := ""
	if len(sc.Plants) > 0 {
		tags = "-tags plant "
	}
	return fmt.Sprintf("go run %s./cmd/rbee-sim replay %s", tags, scenarioFile)
}

// WriteFolder writes a run's report folder: scenario.json, result.json, trace.jsonl (from a
// replay of the scenario, whose trace hash must match the run's), timeline.html (the faults,
// nodes down and event rate over simulated time), history.html (porcupine's view of the
// registry or catalog history, the one that was not linearizable if one was) when the run
// checked one, and README.txt saying what failed and how to replay it. It returns the
// scenario file's path. Files already written stay if a later one fails.
func WriteFolder(dir string, sc scenario.Scenario, res *scenario.Result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot create the report folder: %w", err)
	}
	scFile := filepath.Join(dir, "scenario.json")
	if err := sc.Save(scFile); err != nil {
		return "", fmt.Errorf("cannot save the scenario: %w", err)
	}
	res.FailureFile = scFile
	replayed, err := writeTrace(filepath.Join(dir, "trace.jsonl"), sc)
	if err != nil {
		return scFile, err
	}
	if res.HasHistory() {
		if err := res.WriteAnyHistoryHTML(filepath.Join(dir, "history.html")); err != nil {
			return scFile, fmt.Errorf("cannot write history.html: %w", err)
		}
	}
	if err := WriteTimeline(filepath.Join(dir, "timeline.html"), sc, res, filepath.Join(dir, "trace.jsonl")); err != nil {
		return scFile, fmt.Errorf("cannot write timeline.html: %w", err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return scFile, err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return scFile, err
	}
	return scFile, os.WriteFile(filepath.Join(dir, "README.txt"), []byte(readme(sc, res, replayed, scFile)), 0o644)
}

// writeTrace replays the scenario with its trace going to path and returns the replay's result.
func writeTrace(path string, sc scenario.Scenario) (scenario.Result, error) {
	f, err := os.Create(path)
	if err != nil {
		return scenario.Result{}, fmt.Errorf("cannot create the trace file: %w", err)
	}
	defer f.Close()
	res := scenario.Run(sc, scenario.Options{Trace: f})
	return res, nil
}

func readme(sc scenario.Scenario, res *scenario.Result, replayed scenario.Result, scFile string) string {
	var b strings.Builder
	verdict := "PASSED"
	if !res.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "%s seed %d %s\n\n", sc.ID, sc.Seed, verdict)
	if len(sc.Plants) > 0 {
		fmt.Fprintf(&b, "Planted bugs switched on: %s\n\n", strings.Join(sc.Plants, ", "))
	}
	for _, c := range res.Checkers {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s [%s] %s: %s\n", mark, c.Stage, c.Name, c.Detail)
	}
	fmt.Fprintf(&b, "\n%d events, %.0f simulated seconds, trace hash %s\n", res.Events, res.SimSeconds, res.TraceHash)
	if replayed.TraceHash != res.TraceHash {
		fmt.Fprintf(&b, "WARNING: the replay that wrote trace.jsonl gave trace hash %s: the run is not deterministic\n", replayed.TraceHash)
	}
	fmt.Fprintf(&b, "\nReplay it (same trace hash, same verdict):\n  %s\n", ReplayCommand(sc, scFile))
	b.WriteString(`
Files:
  scenario.json  the scenario: topology, workload, fault schedule, seed (edit and replay it)
  result.json    the verdict of every checker, counts, coverage marks, faults activated
  trace.jsonl    every event, one JSON object a line:
                   i     event index        t     simulated nanoseconds since start
                   kind  deliver, timer, start, crash, pause, resume, drop, dup, powerfail, action
                   from, to  addresses     msg   message type or action name
                   body  the message       hash  running trace hash after this event
  timeline.html  the run over simulated time: every fault, the nodes that were down or
                 paused, the event rate and dropped messages; no network needed
  history.html   (runs that checked a registry or catalog history) porcupine's view of the
                 history the clients saw, with the faults marked; for a linearizability
                 failure, the history that was not linearizable; no network needed
  minimal/       (soak failures) the same failure shrunk: a smaller scenario that fails the
                 same checker, with its own files and replay command
`)
	return b.String()
}
