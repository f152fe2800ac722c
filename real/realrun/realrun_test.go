package realrun

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// A short real-mode registry run: the queen and three hives are real processes, four
// registry clients work through them while the scenario's faults (compressed into the real
// chaos phase) hit them, and porcupine accepts the wall-clock history. Then one answer in the
// recorded history is changed into a lost update, and the same judge must fail the run: the
// checker bites on real histories too.
func TestRealRegistryRunIsLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs real processes for about 20 s")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH: cannot build the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bins := buildBins(t)
	e, err := scenario.Lookup("registry/persistence")
	if err != nil {
		t.Fatal(err)
	}
	sc := e.Generate(2, scenario.Knobs{})
	dir := t.TempDir()
	res, err := Run(ctx, sc, Options{Bins: bins, Dir: dir, Chaos: 8 * time.Second, Settle: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed {
		t.Fatalf("the real run failed: %+v (logs in %s)", res.Checkers, dir)
	}
	lin := checker(t, res, "registry linearizable")
	if !lin.OK || res.Operations == 0 {
		t.Fatalf("linearizability: %+v with %d operations", lin, res.Operations)
	}
	again, err := JudgeDir(dir)
	if err != nil || !again.Passed {
		t.Fatalf("judging the folder again: %v %+v", err, again.Checkers)
	}

	// Plant a bug in the history: a successful claim answers with the worker still idle, as
	// a queen that lost the claim's write would.
	if !tamper(t, filepath.Join(dir, "records")) {
		t.Fatal("no registry answer to tamper with in the history")
	}
	bad, err := JudgeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if bad.Passed || checker(t, bad, "registry linearizable").OK {
		t.Fatalf("a tampered history passed: %+v", bad.Checkers)
	}
}

var (
	binsOnce sync.Once
	bins     cluster.Bins
	binsDir  string
	binsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

// buildBins builds the binaries once for the tests of the package.
func buildBins(t *testing.T) cluster.Bins {
	t.Helper()
	binsOnce.Do(func() {
		root, err := cluster.ModuleRoot(".")
		if err != nil {
			binsErr = err
			return
		}
		if binsDir, binsErr = os.MkdirTemp("", "realrun-bins-"); binsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		bins, binsErr = cluster.Build(ctx, root, binsDir)
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

// A short real-mode download run: two hives download from the fake hub through their proxies
// while it answers 429 with Retry-After (the scenario's hub-rate-limit, compressed); the hives
// wait it out, every download registered has the hub's sha256, and the run passes. Then a
// request in the hub's log is moved into a Retry-After, and the same judge must fail the run.
func TestRealRateLimitRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs real processes for about 15 s")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH: cannot build the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := scenario.Lookup("provisioner/rate-limit-429")
	if err != nil {
		t.Fatal(err)
	}
	sc := e.Generate(1, scenario.Knobs{})
	dir := t.TempDir()
	res, err := Run(ctx, sc, Options{Bins: buildBins(t), Dir: dir, Chaos: 6 * time.Second, Settle: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed {
		t.Fatalf("the real run failed: %+v (logs in %s)", res.Checkers, dir)
	}
	if c := checker(t, res, "no request to the hub before its Retry-After (real run: seen at the hub)"); !strings.Contains(c.Detail, "answers with 429") || strings.HasPrefix(c.Detail, "0 ") {
		t.Fatalf("no 429 was answered: %+v", c)
	}
	if c := checker(t, res, "every downloaded model has the hub's sha256"); strings.HasPrefix(c.Detail, "0 ") {
		t.Fatalf("nothing was downloaded: %+v", c)
	}
	// An early request: the first request after a 429 moved to just after it.
	b, err := os.ReadFile(filepath.Join(dir, "hub.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hl hubLog
	if err := json.Unmarshal(b, &hl); err != nil {
		t.Fatal(err)
	}
	moved := false
	for i, q := range hl.Requests {
		if q.Status != 429 || q.RetryAfter == 0 {
			continue
		}
		for j := i + 1; j < len(hl.Requests); j++ {
			if r := &hl.Requests[j]; r.Host == q.Host && strings.Contains(r.Path, "/resolve/") {
				r.At = q.At.Add(q.RetryAfter / 2)
				moved = true
				break
			}
		}
		break
	}
	if !moved {
		t.Fatal("no request after a 429 to move")
	}
	if b, err = json.Marshal(hl); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hub.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	bad, err := JudgeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if bad.Passed || checker(t, bad, "no request to the hub before its Retry-After (real run: seen at the hub)").OK {
		t.Fatalf("a request inside a Retry-After passed: %+v", bad.Checkers)
	}
}

func checker(t *testing.T, res scenario.Result, name string) scenario.CheckerResult {
	t.Helper()
	for _, c := range res.Checkers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no checker %q in %+v", name, res.Checkers)
	return scenario.CheckerResult{}
}

// tamper changes the last successful claim answer delivered to a client so that the claimed
// worker is still idle.
func tamper(t *testing.T, dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "keeper-*.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			var l map[string]any
			dec := json.NewDecoder(strings.NewReader(lines[i]))
			dec.UseNumber() // request IDs are 64-bit: keep them exact
			if dec.Decode(&l) != nil || l["kind"] != "deliver" || l["msg"] != "registry.resp" {
				continue
			}
			body := l["body"].(map[string]any)
			rec, _ := body["record"].(map[string]any)
			if body["op"] != "registry.claim" || rec == nil || rec["state"] != "busy" {
				continue
			}
			if e, _ := body["error"].(map[string]any); len(e) > 0 {
				continue
			}
			rec["state"] = "idle"
			delete(rec, "claim_id")
			nb, _ := json.Marshal(l)
			lines[i] = string(nb)
			var w strings.Builder
			for _, x := range lines {
				w.WriteString(x + "\n")
			}
			if err := os.WriteFile(f, []byte(w.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			return true
		}
	}
	return false
}
