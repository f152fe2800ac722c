package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// fakeBin is the test program (testdata/fakeworker), built once by TestMain.
var fakeBin string

const (
	hive    node.Addr = "hive-1"
	waitMax           = 20 * time.Second
	// hiveEnv makes the test binary act as a hive that spawns a worker and dies (see hiveMain).
	hiveEnv = "PROC_TEST_HIVE_STATEDIR"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(hiveEnv); dir != "" {
		hiveMain(dir)
		return
	}
	tmp, err := os.MkdirTemp("", "proc-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeBin = filepath.Join(tmp, "fakeworker")
	out, err := exec.Command("go", "build", "-o", fakeBin, "./testdata/fakeworker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the test program testdata/fakeworker failed: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// hiveMain is a hive process that spawns one worker through a table on dir and then dies
// without closing the table, as a crashed hive would. It prints the spawn's answer as JSON.
func hiveMain(dir string) {
	port, _ := strconv.Atoi(os.Getenv("PROC_TEST_PORT"))
	t, err := Open(Config{StateDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	answers := make(chan api.ProcSpawned, 1)
	t.Bind(func(to node.Addr, m node.Msg) {
		if r, ok := m.(api.ProcSpawned); ok {
			answers <- r
		}
	})
	t.Deliver(hive, api.ProcSpawn{ReqID: 1, Binary: os.Getenv("PROC_TEST_BIN"), Port: port, Addr: "worker-1"})
	b, _ := json.Marshal(<-answers)
	fmt.Println(string(b))
	os.Exit(0)
}

// inbox records what a table sends.
type inbox struct {
	mu   sync.Mutex
	msgs []sent
}

type sent struct {
	to node.Addr
	m  node.Msg
}

func (b *inbox) send(to node.Addr, m node.Msg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, sent{to, m})
}

func (b *inbox) all() []sent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sent(nil), b.msgs...)
}

// waitFor returns the first message that matches, failing the test after waitMax.
func waitFor[M node.Msg](t *testing.T, b *inbox, what string, match func(to node.Addr, m M) bool) M {
	t.Helper()
	var got M
	eventually(t, what, func() bool {
		for _, s := range b.all() {
			if m, ok := s.m.(M); ok && match(s.to, m) {
				got = m
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("sent so far: %+v", b.all()) })
	return got
}

func count[M node.Msg](b *inbox, match func(to node.Addr, m M) bool) int {
	n := 0
	for _, s := range b.all() {
		if m, ok := s.m.(M); ok && match(s.to, m) {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds, failing after waitMax.
func eventually(t *testing.T, what string, cond func() bool, more ...func() string) {
	t.Helper()
	deadline := time.Now().Add(waitMax)
	for !cond() {
		if time.Now().After(deadline) {
			extra := ""
			for _, f := range more {
				extra += "; " + f()
			}
			t.Fatalf("after %v, still waiting for: %s%s", waitMax, what, extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openTable(t *testing.T, cfg Config) (*Table, *inbox) {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	tb, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := &inbox{}
	tb.Bind(b.send)
	t.Cleanup(func() { tb.Close() })
	return tb, b
}

// killLater kills pid's group when the test ends, if pid still names the same process.
func killLater(t *testing.T, pid int) {
	st, err := readStat(pid)
	if err != nil {
		return
	}
	t.Cleanup(func() {
		if cur, err := readStat(pid); err == nil && cur.StartTicks == st.StartTicks {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// spawn asks tb for a fake worker at addr and returns the answer.
func spawn(t *testing.T, tb *Table, b *inbox, reqID uint64, addr node.Addr, port int, args ...string) api.ProcSpawned {
	t.Helper()
	tb.Deliver(hive, api.ProcSpawn{ReqID: reqID, Binary: fakeBin, Args: args, Port: port, Addr: addr})
	r := waitFor(t, b, fmt.Sprintf("ProcSpawned for request %d", reqID), func(to node.Addr, m api.ProcSpawned) bool {
		return to == hive && m.ReqID == reqID
	})
	if r.PID != 0 {
		killLater(t, r.PID)
	}
	return r
}

func mustSpawn(t *testing.T, tb *Table, b *inbox, reqID uint64, addr node.Addr, port int, args ...string) api.ProcSpawned {
	t.Helper()
	r := spawn(t, tb, b, reqID, addr, port, args...)
	if !r.Err.OK() || r.PID <= 0 {
		t.Fatalf("spawn %s: %+v", addr, r)
	}
	return r
}

func exitOf(t *testing.T, b *inbox, pid int) api.ProcExited {
	t.Helper()
	return waitFor(t, b, fmt.Sprintf("ProcExited of pid %d", pid), func(to node.Addr, m api.ProcExited) bool {
		return to == hive && m.PID == pid
	})
}

// assertReaped checks that pid is no zombie of ours: /proc/<pid> is gone or names a later
// process.
func assertReaped(t *testing.T, pid int, startTicks uint64) {
	t.Helper()
	eventually(t, fmt.Sprintf("pid %d reaped", pid), func() bool {
		st, err := readStat(pid)
		return err != nil || st.StartTicks != startTicks
	}, func() string { st, _ := readStat(pid); return fmt.Sprintf("stat: %+v", st) })
}

func logOf(t *testing.T, dir string, addr node.Addr) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, logName(addr)))
	return string(b)
}

func listOf(t *testing.T, tb *Table, b *inbox, reqID uint64) []api.ProcInfo {
	t.Helper()
	tb.Deliver(hive, api.ProcListReq{ReqID: reqID})
	return waitFor(t, b, "ProcListResp", func(to node.Addr, m api.ProcListResp) bool {
		return to == hive && m.ReqID == reqID
	}).Procs
}

func TestSpawnListTerm(t *testing.T) {
	state, logs := t.TempDir(), t.TempDir()
	var mu sync.Mutex
	var routes []string
	tb, b := openTable(t, Config{StateDir: state, LogDir: logs, Env: []string{"FAKE_ECHO=hello"},
		ExtraArgs: func(m api.ProcSpawn) []string { return []string{"--id", string(m.Addr)} },
		OnSpawn: func(addr node.Addr, port int) {
			mu.Lock()
			routes = append(routes, fmt.Sprintf("%s:%d", addr, port))
			mu.Unlock()
		}})
	port := freePort(t)
	r := mustSpawn(t, tb, b, 1, "worker-1", port)
	if r.Version != "fakeworker 1.2.3" {
		t.Errorf("version %q, want %q", r.Version, "fakeworker 1.2.3")
	}
	mu.Lock()
	if want := fmt.Sprintf("worker-1:%d", port); len(routes) != 1 || routes[0] != want {
		t.Errorf("OnSpawn calls %v, want [%s]", routes, want)
	}
	mu.Unlock()
	st, err := readStat(r.PID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker's output in its log", func() bool {
		l := logOf(t, logs, "worker-1")
		return strings.Contains(l, "ready") &&
			strings.Contains(l, fmt.Sprintf("args --port %d --id worker-1", port)) && strings.Contains(l, "echo hello")
	}, func() string { return logOf(t, logs, "worker-1") })
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the worker does not listen on its port: %v", err)
	}
	c.Close()
	if pgid, err := syscall.Getpgid(r.PID); err != nil || pgid != r.PID {
		t.Errorf("the worker's process group is %d (%v), want its own (%d)", pgid, err, r.PID)
	}
	if _, err := os.Stat(recordPath(state, r.PID)); err != nil {
		t.Errorf("no record of the worker in StateDir: %v", err)
	}
	got := listOf(t, tb, b, 2)
	want := []api.ProcInfo{{PID: r.PID, Binary: fakeBin, Port: port, Addr: "worker-1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list %+v, want %+v", got, want)
	}

	tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "TERM"})
	if e := exitOf(t, b, r.PID); e.Code != 0 || e.Signal != "" {
		t.Errorf("exit after TERM: %+v, want code 0", e)
	}
	assertReaped(t, r.PID, st.StartTicks)
	if _, err := os.Stat(recordPath(state, r.PID)); !os.IsNotExist(err) {
		t.Errorf("the record of the ended worker is still in StateDir (%v)", err)
	}
	if got := listOf(t, tb, b, 3); len(got) != 0 {
		t.Errorf("list after the exit: %+v, want none", got)
	}
	if !strings.Contains(logOf(t, logs, "worker-1"), "got TERM") {
		t.Errorf("the worker did not log its TERM: %s", logOf(t, logs, "worker-1"))
	}
}

func TestSpawnRefusals(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name    string
		cfg     Config
		spawn   api.ProcSpawn
		code    api.Code
		message string
	}{
		{"name not on PATH", Config{}, api.ProcSpawn{Binary: "no-such-rbee-binary-xyz"}, api.CodeBinaryMissing, "not on PATH"},
		{"path missing", Config{}, api.ProcSpawn{Binary: "/nonexistent/llm-worker-rbee"}, api.CodeBinaryMissing, "no such file"},
		{"not executable", Config{}, api.ProcSpawn{Binary: notExec}, api.CodeBinaryMissing, "not executable"},
		{"port in use", Config{}, api.ProcSpawn{Binary: fakeBin, Port: heldPort}, api.CodePortInUse, strconv.Itoa(heldPort)},
		{"no address", Config{}, api.ProcSpawn{Binary: fakeBin, Addr: "-"}, api.CodeInvalidRequest, "address"},
		{"bad port", Config{}, api.ProcSpawn{Binary: fakeBin, Port: 70000}, api.CodeInvalidRequest, "70000"},
		{"version fails", Config{Env: []string{"FAKE_VERSION_FAIL=1"}}, api.ProcSpawn{Binary: fakeBin},
			api.CodeVersionMismatch, "cannot print a version today"},
		{"version hangs", Config{Env: []string{"FAKE_VERSION_SLEEP=60s"}, VersionTimeout: 300 * time.Millisecond},
			api.ProcSpawn{Binary: fakeBin}, api.CodeVersionMismatch, "did not finish within 300ms"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb, b := openTable(t, tc.cfg)
			m := tc.spawn
			m.ReqID = uint64(i + 1)
			if m.Addr == "" {
				m.Addr = "worker-x"
			} else if m.Addr == "-" {
				m.Addr = ""
			}
			start := time.Now()
			tb.Deliver(hive, m)
			r := waitFor(t, b, "ProcSpawned", func(to node.Addr, r api.ProcSpawned) bool { return r.ReqID == m.ReqID })
			if r.PID != 0 {
				killLater(t, r.PID)
			}
			if r.Err.Code != tc.code || r.PID != 0 || !strings.Contains(r.Err.Message, tc.message) || r.Err.Suggestion == "" {
				t.Errorf("answer %+v, want code %s, no PID, a message with %q and a suggestion", r, tc.code, tc.message)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the refusal took %v", d)
			}
			if got := tb.List(); len(got) != 0 {
				t.Errorf("processes after a refused spawn: %+v", got)
			}
		})
	}
}

func TestPortAndAddressHeldByOwnProcess(t *testing.T) {
	tb, b := openTable(t, Config{})
	port := freePort(t)
	first := mustSpawn(t, tb, b, 1, "worker-1", port)
	// The same port at another address: refused by the table itself, naming the holder.
	r := spawn(t, tb, b, 2, "worker-2", port)
	if r.Err.Code != api.CodePortInUse || !strings.Contains(r.Err.Message, strconv.Itoa(first.PID)) {
		t.Errorf("same port: %+v, want PORT_IN_USE naming pid %d", r, first.PID)
	}
	// The same address on another port.
	r = spawn(t, tb, b, 3, "worker-1", freePort(t))
	if r.Err.Code != api.CodePortInUse || !strings.Contains(r.Err.Message, "worker-1") {
		t.Errorf("same address: %+v, want PORT_IN_USE naming worker-1", r)
	}
	if got := tb.List(); len(got) != 1 {
		t.Errorf("list %+v, want only the first worker", got)
	}
}

func TestExits(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		signal string // sent by the test, if any
		code   int
		killed string
	}{
		{"KILL", nil, "KILL", 0, "KILL"},
		{"TERM ignored then KILL", []string{"--ignore-term"}, "", 0, "KILL"},
		{"exit code", []string{"--exit-code", "3", "--after", "100ms"}, "", 3, ""},
		{"segfault", []string{"--crash", "--after", "100ms"}, "", 0, "SEGV"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := t.TempDir()
			tb, b := openTable(t, Config{LogDir: logs})
			r := mustSpawn(t, tb, b, uint64(i+1), "worker-1", freePort(t), tc.args...)
			st, err := readStat(r.PID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.signal != "":
				tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: tc.signal})
			case tc.name == "TERM ignored then KILL":
				eventually(t, "the worker ready", func() bool { return strings.Contains(logOf(t, logs, "worker-1"), "ready") })
				tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "TERM"})
				// A TERM it ignores ends nothing: it is still listed after a later list...
				if got := listOf(t, tb, b, 100); len(got) != 1 {
					t.Errorf("list after an ignored TERM: %+v", got)
				}
				tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "KILL"})
			}
			e := exitOf(t, b, r.PID)
			if e.Code != tc.code || e.Signal != tc.killed {
				t.Errorf("exit %+v, want code %d signal %q", e, tc.code, tc.killed)
			}
			assertReaped(t, r.PID, st.StartTicks)
			if n := count(b, func(_ node.Addr, m api.ProcExited) bool { return m.PID == r.PID }); n != 1 {
				t.Errorf("%d exit reports, want 1", n)
			}
		})
	}
}

func TestKillReachesTheProcessGroup(t *testing.T) {
	logs := t.TempDir()
	tb, b := openTable(t, Config{LogDir: logs})
	r := mustSpawn(t, tb, b, 1, "worker-1", freePort(t), "--child")
	var gc int
	eventually(t, "the grandchild's PID in the log", func() bool {
		for _, l := range strings.Split(logOf(t, logs, "worker-1"), "\n") {
			if n, err := fmt.Sscanf(l, "grandchild %d", &gc); n == 1 && err == nil {
				return true
			}
		}
		return false
	})
	gst, err := readStat(gc)
	if err != nil {
		t.Fatal(err)
	}
	killLater(t, gc)
	tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "KILL"})
	exitOf(t, b, r.PID)
	eventually(t, "the grandchild killed with its parent", func() bool {
		st, err := readStat(gc)
		return err != nil || st.StartTicks != gst.StartTicks || st.State == 'Z'
	})
}

func TestSignalsTheTableDoesNotServe(t *testing.T) {
	tb, b := openTable(t, Config{})
	r := mustSpawn(t, tb, b, 1, "worker-1", freePort(t))
	tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "BOGUS"})
	tb.Deliver(hive, api.ProcSignal{PID: os.Getpid(), Signal: "KILL"}) // not ours: ignored (we live)
	tb.Deliver(hive, api.ProcSignal{PID: 0, Signal: "KILL"})
	if got := listOf(t, tb, b, 2); len(got) != 1 || got[0].PID != r.PID {
		t.Fatalf("list %+v, want the worker still running", got)
	}
	tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "KILL"})
	if e := exitOf(t, b, r.PID); e.Signal != "KILL" {
		t.Errorf("exit %+v", e)
	}
}

func TestSpawnRepeatIsAnsweredNotRunTwice(t *testing.T) {
	tb, b := openTable(t, Config{Env: []string{"FAKE_VERSION_SLEEP=200ms"}})
	m := api.ProcSpawn{ReqID: 7, Binary: fakeBin, Port: freePort(t), Addr: "worker-1"}
	tb.Deliver(hive, m)
	tb.Deliver(hive, m) // while the first is starting: dropped, its answer comes
	first := waitFor(t, b, "ProcSpawned", func(_ node.Addr, r api.ProcSpawned) bool { return r.ReqID == 7 })
	killLater(t, first.PID)
	tb.Deliver(hive, m) // after the answer: answered again
	eventually(t, "a second answer", func() bool {
		return count(b, func(_ node.Addr, r api.ProcSpawned) bool { return r.ReqID == 7 }) == 2
	})
	for _, s := range b.all() {
		if r, ok := s.m.(api.ProcSpawned); ok && fmt.Sprint(r) != fmt.Sprint(first) {
			t.Errorf("answers differ: %+v and %+v", r, first)
		}
	}
	if got := listOf(t, tb, b, 8); len(got) != 1 {
		t.Errorf("list %+v, want one process", got)
	}
}

func TestSpawnThatExitsAtOnceIsAnsweredFirst(t *testing.T) {
	tb, b := openTable(t, Config{})
	r := mustSpawn(t, tb, b, 1, "worker-1", 0, "--exit-code", "2")
	exitOf(t, b, r.PID)
	var order []string
	for _, s := range b.all() {
		order = append(order, s.m.MsgName())
	}
	if len(order) != 2 || order[0] != "proc.spawned" || order[1] != "proc.exited" {
		t.Errorf("messages %v, want the answer before the exit", order)
	}
}

// TestAdoptAfterTheHiveDied: a hive process spawns a worker and dies; a new table on the same
// StateDir adopts the worker, lists it, signals it, and reports its end to the recorded
// parent.
func TestAdoptAfterTheHiveDied(t *testing.T) {
	state := t.TempDir()
	port := freePort(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), hiveEnv+"="+state, "PROC_TEST_PORT="+strconv.Itoa(port), "PROC_TEST_BIN="+fakeBin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the hive process failed: %v", err)
	}
	var spawned api.ProcSpawned
	if err := json.Unmarshal(out, &spawned); err != nil || spawned.PID <= 0 {
		t.Fatalf("the hive process printed %q (%v)", out, err)
	}
	killLater(t, spawned.PID)
	if _, alive := running(record{PID: spawned.PID, StartTicks: mustStat(t, spawned.PID).StartTicks}); !alive {
		t.Fatal("the worker did not outlive its hive")
	}

	var mu sync.Mutex
	var routes []string
	tb, b := openTable(t, Config{StateDir: state, PollInterval: 20 * time.Millisecond,
		OnSpawn: func(addr node.Addr, p int) {
			mu.Lock()
			routes = append(routes, fmt.Sprintf("%s:%d", addr, p))
			mu.Unlock()
		}})
	mu.Lock()
	if want := fmt.Sprintf("worker-1:%d", port); len(routes) != 1 || routes[0] != want {
		t.Errorf("OnSpawn calls %v, want [%s]", routes, want)
	}
	mu.Unlock()
	want := []api.ProcInfo{{PID: spawned.PID, Binary: fakeBin, Port: port, Addr: "worker-1"}}
	if got := listOf(t, tb, b, 1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list %+v, want %+v", got, want)
	}
	// Its port is taken for new spawns.
	if r := spawn(t, tb, b, 2, "worker-2", port); r.Err.Code != api.CodePortInUse {
		t.Errorf("spawn on the adopted worker's port: %+v", r)
	}
	tb.Deliver(hive, api.ProcSignal{PID: spawned.PID, Signal: "TERM"})
	if e := exitOf(t, b, spawned.PID); e.Code != -1 || e.Signal != "" {
		t.Errorf("exit of the adopted worker %+v, want code -1 (unknown)", e)
	}
	if !strings.Contains(logOf(t, state, "worker-1"), "got TERM") {
		t.Errorf("the worker's log (in StateDir, as LogDir is empty) lacks its TERM: %q", logOf(t, state, "worker-1"))
	}
	if _, err := os.Stat(recordPath(state, spawned.PID)); !os.IsNotExist(err) {
		t.Errorf("the record of the ended worker is still there (%v)", err)
	}
	if got := listOf(t, tb, b, 3); len(got) != 0 {
		t.Errorf("list after the exit: %+v", got)
	}
}

func mustStat(t *testing.T, pid int) procStat {
	t.Helper()
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReopenInTheSameProcess: a closed table sends nothing more; the next table on its
// StateDir adopts its children and reports their end once.
func TestReopenInTheSameProcess(t *testing.T) {
	state := t.TempDir()
	first, b1 := openTable(t, Config{StateDir: state})
	r := mustSpawn(t, first, b1, 1, "worker-1", freePort(t))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.PID, 0); err != nil {
		t.Fatalf("Close stopped the child: %v", err)
	}
	second, b2 := openTable(t, Config{StateDir: state, PollInterval: 20 * time.Millisecond})
	if got := second.List(); len(got) != 1 || got[0].PID != r.PID {
		t.Fatalf("the new table lists %+v, want pid %d", got, r.PID)
	}
	second.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "KILL"})
	e := exitOf(t, b2, r.PID)
	if (e.Code != -1 || e.Signal != "") && e.Signal != "KILL" {
		t.Errorf("exit %+v, want KILL (reaped by the new table) or code -1 (reaped by the old one's waiter)", e)
	}
	eventually(t, "the child reaped", func() bool {
		st, err := readStat(r.PID)
		return err != nil || st.State != 'Z'
	})
	if n := count(b1, func(_ node.Addr, m api.ProcExited) bool { return true }); n != 0 {
		t.Errorf("the closed table reported %d exits", n)
	}
	if n := count(b2, func(_ node.Addr, m api.ProcExited) bool { return true }); n != 1 {
		t.Errorf("the new table reported %d exits, want 1", n)
	}
}

func TestRecordsThatAreNotAdopted(t *testing.T) {
	state := t.TempDir()
	// A record whose PID is alive but started at another time: the PID was reused.
	me := mustStat(t, os.Getpid())
	reused := record{PID: os.Getpid(), Binary: "llm-worker-rbee", Port: 1, Addr: "worker-reused",
		Parent: hive, StartTicks: me.StartTicks + 1}
	// A record of a process that ended.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	gone := record{PID: done.Process.Pid, Binary: "llm-worker-rbee", Port: 2, Addr: "worker-gone", Parent: hive, StartTicks: 12345}
	for _, r := range []record{reused, gone} {
		if err := writeRecord(state, r); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := filepath.Join(state, "proc-99.json")
	if err := os.WriteFile(corrupt, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	called := false
	tb, b := openTable(t, Config{StateDir: state, OnSpawn: func(node.Addr, int) { called = true }})
	if got := listOf(t, tb, b, 1); len(got) != 0 {
		t.Errorf("adopted %+v, want nothing", got)
	}
	if called {
		t.Error("OnSpawn was called for a process that is not adopted")
	}
	for _, r := range []record{reused, gone} {
		if _, err := os.Stat(recordPath(state, r.PID)); !os.IsNotExist(err) {
			t.Errorf("the record of %s was kept (%v)", r.Addr, err)
		}
	}
	if _, err := os.Stat(corrupt + ".corrupt"); err != nil {
		t.Errorf("the unreadable record was not kept aside: %v", err)
	}
}

func TestOneTablePerStateDir(t *testing.T) {
	state := t.TempDir()
	openTable(t, Config{StateDir: state})
	_, err := Open(Config{StateDir: state})
	if err == nil || !strings.Contains(err.Error(), "in use by another process table") ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v", err)
	}
	mk := New(Config{StateDir: state})
	if p := mk((&inbox{}).send); p != nil {
		t.Errorf("New on a locked StateDir built a port")
	}
}

func TestProcExitCallsExitOnce(t *testing.T) {
	codes := make(chan int, 4)
	tb, _ := openTable(t, Config{Exit: func(code int) { codes <- code }})
	tb.Deliver(hive, api.ProcExit{Code: 7})
	tb.Deliver(hive, api.ProcExit{Code: 8})
	select {
	case c := <-codes:
		if c != 7 {
			t.Errorf("Exit(%d), want 7", c)
		}
	case <-time.After(waitMax):
		t.Fatal("Exit was not called")
	}
	tb.Close()
	select {
	case c := <-codes:
		t.Errorf("Exit called again with %d", c)
	default:
	}
}

func TestTermSendsProcTermFromTheTable(t *testing.T) {
	tb, b := openTable(t, Config{})
	terms := make(chan struct{}, 4)
	stop := NotifyTerm(context.Background(), func() {
		tb.Term(hive)
		terms <- struct{}{}
	})
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-terms:
	case <-time.After(waitMax):
		t.Fatal("onTerm was not called for SIGTERM")
	}
	waitFor(t, b, "ProcTerm to the hive", func(to node.Addr, _ api.ProcTerm) bool { return to == hive })
	stop()
	stop() // a repeat is fine
}

func TestCloseLeavesChildrenRunning(t *testing.T) {
	tb, b := openTable(t, Config{})
	port := freePort(t)
	r := mustSpawn(t, tb, b, 1, "worker-1", port)
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.PID, 0); err != nil {
		t.Fatalf("the child did not survive Close: %v", err)
	}
	tb.Deliver(hive, api.ProcSignal{PID: r.PID, Signal: "KILL"}) // closed: ignored
	if err := syscall.Kill(r.PID, 0); err != nil {
		t.Fatalf("a closed table signalled its child: %v", err)
	}
}

func TestLogIsAppended(t *testing.T) {
	logs := t.TempDir()
	tb, b := openTable(t, Config{LogDir: logs})
	for i := uint64(1); i <= 2; i++ {
		r := mustSpawn(t, tb, b, i, "worker/1", 0, "--exit-code", "0")
		exitOf(t, b, r.PID)
	}
	l := logOf(t, logs, "worker/1")
	if n := strings.Count(l, "ready"); n != 2 || strings.Count(l, "=== ") != 2 {
		t.Errorf("log of two runs:\n%s", l)
	}
	if _, err := os.Stat(filepath.Join(logs, "worker_1.log")); err != nil {
		t.Errorf("log file name: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 0 0 0\n"
	st, err := parseStat(line)
	if err != nil || st.State != 'S' || st.PPID != 1 || st.StartTicks != 987654 {
		t.Errorf("parseStat: %+v, %v", st, err)
	}
	if _, err := parseStat("1234 (x) S 1"); err == nil {
		t.Error("a short line parsed")
	}
}

func TestHasFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--id", "w", "--port", "1"}, true},
		{[]string{"-port=1"}, true},
		{[]string{"--portal", "x"}, false},
		{[]string{"--", "--port", "1"}, false},
	} {
		if got := hasFlag(tc.args, "port"); got != tc.want {
			t.Errorf("hasFlag(%v) = %v", tc.args, got)
		}
	}
}
