package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/real/gateway"
)

// The binaries every end-to-end test runs, built once per run of the test binary, by the first
// test that needs them (so that a run of none of them, such as -run XXX -bench ., builds
// nothing), into a folder TestMain removes at the end.
var (
	binDir    string
	buildOnce sync.Once
	bins      cluster.Bins
	// skipAll, when set, says why the end-to-end tests cannot run here (no go tool); buildErr
	// is why the build failed.
	skipAll  string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rbee-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "real/cluster:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBins builds the binaries on first use, skips the test without a go tool, and fails it
// when the build failed.
func needBins(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		if _, err := exec.LookPath("go"); err != nil {
			skipAll = "the go tool is not on PATH, so the rbee binaries cannot be built: the end-to-end tests with real processes are skipped"
			return
		}
		wd, err := os.Getwd()
		if err != nil {
			buildErr = err
			return
		}
		root, err := cluster.ModuleRoot(wd)
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bins, buildErr = cluster.Build(ctx, root, binDir)
	})
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// testCluster is the processes of one test: each gets fresh ports, the test's data folder, a
// log; all are stopped when the test ends, and a process left running is an error.
type testCluster struct {
	t      *testing.T
	dir    string // the data folder every process of the test shares (one machine folder each)
	logDir string // the cluster.Proc logs
	procs  []*cluster.Proc
	// env is added to every process's environment.
	env []string
	// keeperLogs are the outputs of rbee-keeper runs, for the failure report.
	keeperLogs []string
}

// newCluster makes an empty cluster for t: dev mode (no key) unless key is set.
func newCluster(t *testing.T, key string) *testCluster {
	t.Helper()
	needBins(t)
	c := &testCluster{t: t, dir: t.TempDir(), logDir: t.TempDir(), env: []string{"RBEE_API_KEY=" + key}}
	t.Cleanup(c.cleanup)
	return c
}

// freePort is cluster.FreePort or the end of the test.
func (c *testCluster) freePort() int {
	c.t.Helper()
	p, err := cluster.FreePort()
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// start runs a process of the cluster (name, binary, arguments; --data-dir and --listen are
// added) and waits until it answers its health check.
func (c *testCluster) start(name, bin string, args ...string) *cluster.Proc {
	c.t.Helper()
	port := c.freePort()
	p := &cluster.Proc{Name: name, Bin: bins.Path(bin), LogDir: c.logDir, Env: c.env,
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Args: append([]string{"--data-dir", c.dir, "--listen", "127.0.0.1:" + strconv.Itoa(port)}, args...)}
	c.procs = append(c.procs, p)
	if err := p.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.waitHealthy(p)
	return p
}

func (c *testCluster) waitHealthy(p *cluster.Proc) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitHealthy(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// queen starts queen-rbee with the alias tiny for testModel, in dev mode when the cluster has
// no key.
func (c *testCluster) queen(extra ...string) *cluster.Proc {
	c.t.Helper()
	args := []string{"--alias", "tiny=" + testModel}
	if c.dev() {
		args = append(args, "--dev")
	}
	return c.start("queen", cluster.Queen, append(args, extra...)...)
}

func (c *testCluster) dev() bool { return c.env[0] == "RBEE_API_KEY=" }

// hive starts rbee-hive hive-1 (machine "local") for queen q, with quick heartbeats and
// stops, and workers from a free base port.
func (c *testCluster) hive(q *cluster.Proc, extra ...string) *cluster.Proc {
	c.t.Helper()
	args := []string{"--addr", testHive, "--queen-url", q.URL, "--heartbeat", "1s", "--stop-grace", "3s",
		"--base-port", strconv.Itoa(c.freePort())}
	if c.dev() {
		args = append(args, "--dev")
	}
	return c.start(testHive, cluster.Hive, append(args, extra...)...)
}

// machineDir is the hive's machine folder: its catalog, models, worker logs and process records.
func (c *testCluster) machineDir() string { return filepath.Join(c.dir, "local") }

// getJSON GETs url into v with the cluster's key.
func (c *testCluster) getJSON(url string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if !c.dev() {
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(c.env[0], "RBEE_API_KEY="))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// waitWorkers waits until the queen's registry holds the named workers, each idle and healthy.
func (c *testCluster) waitWorkers(q *cluster.Proc, ids ...string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var list gateway.WorkersResponse
		err := c.getJSON(q.URL+"/v1/workers", &list)
		if err == nil {
			ready := map[string]bool{}
			for _, w := range list.Workers {
				ready[w.ID] = w.State == api.StateIdle && w.Health == api.HealthHealthy
			}
			all := true
			for _, id := range ids {
				all = all && ready[id]
			}
			if all {
				return
			}
			b, _ := json.Marshal(list.Workers)
			last = string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("workers %v were not all registered idle and healthy within 30s; the registry: %s", ids, last)
}

// procRecord is what the hive's process table keeps of a worker process (real/proc).
type procRecord struct {
	PID  int      `json:"pid"`
	Addr string   `json:"addr"`
	Args []string `json:"args"`
}

// workerPID is the PID of the worker process at addr, from the hive's process records.
func (c *testCluster) workerPID(addr string) int {
	c.t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.machineDir(), "procs", testHive, "proc-*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r procRecord
		if json.Unmarshal(b, &r) == nil && r.Addr == addr && r.PID > 0 {
			return r.PID
		}
	}
	c.t.Fatalf("the hive has no process record of worker %s in %s", addr, filepath.Join(c.machineDir(), "procs", testHive))
	return 0
}

// keeper runs rbee-keeper with args to its end (or 60 s), returning stdout, stderr and the exit
// code.
func (c *testCluster) keeper(args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Path(cluster.Keeper), args...)
	cmd.Env = append(os.Environ(), c.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	c.keeperLogs = append(c.keeperLogs, fmt.Sprintf("rbee-keeper %s\n  exit %d (%v)\n  stdout: %q\n  stderr: %s",
		strings.Join(args, " "), code, err, stdout.String(), stderr.String()))
	return stdout.String(), stderr.String(), code
}

// cleanup stops every process (the hive stops its workers), reports one left running, and
// prints the logs of a failed test.
func (c *testCluster) cleanup() {
	t := c.t
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if err := p.Stop(15 * time.Second); err != nil {
			t.Errorf("stopping %s: %v", p.Name, err)
		}
		if p.Running() {
			t.Errorf("%s (pid %d) still runs after it was stopped", p.Name, p.PID())
		}
	}
	// The hive stops its workers before it exits; wait briefly for their ends to be reaped.
	var left []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if left = c.ownProcesses(); len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range left {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("process %d was left running after the test: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if t.Failed() || os.Getenv("E2E_LOGS") != "" {
		c.dumpLogs()
	}
}

// ownProcesses lists the live processes of this test: a binary from the build folder whose
// command line or environment names the test's data folder.
func (c *testCluster) ownProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Dir(strings.TrimSuffix(exe, " (deleted)")) != filepath.Clean(bins.Dir) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(cmdline, []byte(c.dir)) || bytes.Contains(environ, []byte("RBEE_DATA_DIR="+c.dir)) {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); isZombie(st) {
				continue
			}
			out = append(out, pid)
		}
	}
	return out
}

// isZombie reads the state letter of /proc/<pid>/stat (after the command's closing parenthesis).
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// dumpLogs prints the end of every log of the test: the processes', the workers' (written
// under the hive's machine folder) and the rbee-keeper runs'.
func (c *testCluster) dumpLogs() {
	t := c.t
	for _, p := range c.procs {
		t.Logf("=== log of %s (end) ===\n%s", p.Name, tailOf(p.Log(), 6000))
	}
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*", "logs", "*.log"))
	sort.Strings(logs)
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		t.Logf("=== worker log %s (end) ===\n%s", f, tailOf(string(b), 4000))
	}
	for _, k := range c.keeperLogs {
		t.Logf("=== %s", k)
	}
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// sseEvent is one server-sent event: its name ("" for a data-only event) and data.
type sseEvent struct {
	Name, Data string
}

// readSSE calls fn for each event of an event stream until fn returns false, the stream ends
// or fails. Comment lines are skipped.
func readSSE(r io.Reader, fn func(sseEvent) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil || ev.Name != "" {
				ev.Data = strings.Join(data, "\n")
				if !fn(ev) {
					return nil
				}
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.Name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}
