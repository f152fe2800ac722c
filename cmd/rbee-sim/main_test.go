package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// capture runs the command with args and returns its exit status, stdout and stderr.
func capture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	oldOut, oldErr := os.Stdout, os.Stderr
	rOut, wOut, _ := os.Pipe()
	rErr, wErr, _ := os.Pipe()
	os.Stdout, os.Stderr = wOut, wErr
	outC, errC := make(chan string), make(chan string)
	go func() { b, _ := io.ReadAll(rOut); outC <- string(b) }()
	go func() { b, _ := io.ReadAll(rErr); errC <- string(b) }()
	code := realMain(args)
	wOut.Close()
	wErr.Close()
	os.Stdout, os.Stderr = oldOut, oldErr
	return code, <-outC, <-errC
}

func TestListPrintsEveryScenarioID(t *testing.T) {
	code, out, _ := capture(t, "list")
	var want []string
	for _, e := range scenario.Catalogue() {
		want = append(want, e.ID)
	}
	if code != 0 || strings.TrimSpace(out) != strings.Join(want, "\n") {
		t.Fatalf("list: code %d, output %q", code, out)
	}
}

func TestRunJSONHasTheDocumentedFields(t *testing.T) {
	code, out, errOut := capture(t, "run", "--scenario", "registry/overflow", "--seed", "2", "--json", "--out", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &obj); err != nil {
		t.Fatalf("not one JSON object per line: %v\n%s", err, out)
	}
	for _, k := range []string{"scenario", "seed", "passed", "checkers", "events", "sim_seconds", "wall_seconds", "trace_hash"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if obj["passed"] != true || obj["scenario"] != "registry/overflow" {
		t.Fatalf("unexpected result %s", out)
	}
}

func TestBadInputIsAUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--seeds", "5-1"},
		{"run", "--scenario", "registry/nope"},
		{"run", "--seed", "1", "--seeds", "1-2"},
		{"bogus"},
		{"replay"},
	} {
		code, _, errOut := capture(t, args...)
		if code != 2 || !strings.Contains(errOut, "rbee-sim:") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}

func TestDeterminismCheckAndTraceFile(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace.jsonl")
	code, out, _ := capture(t, "run", "--scenario", "registry/persistence", "--seed", "4", "--check-determinism", "--trace", trace)
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("exit %d: %s", code, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil || bytes.Count(b, []byte("\n")) < 1000 {
		t.Fatalf("trace file has %d lines (%v)", bytes.Count(b, []byte("\n")), err)
	}
}

func TestReplayGivesTheSameHashAndWritesAReport(t *testing.T) {
	e, _ := scenario.Lookup("registry/capability-change")
	sc := e.Generate(6, scenario.Knobs{})
	file := filepath.Join(t.TempDir(), "scenario.json")
	if err := sc.Save(file); err != nil {
		t.Fatal(err)
	}
	want := scenario.Run(sc, scenario.Options{})
	dir := filepath.Join(t.TempDir(), "report")
	code, out, errOut := capture(t, "replay", "--json", "--out", dir, file)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var got scenario.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil {
		t.Fatal(err)
	}
	if got.TraceHash != want.TraceHash || got.Passed != want.Passed {
		t.Fatalf("replay gave %s/%v, the run %s/%v", got.TraceHash, got.Passed, want.TraceHash, want.Passed)
	}
	for _, f := range []string{"scenario.json", "result.json", "trace.jsonl", "README.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report lacks %s: %v", f, err)
		}
	}
}
