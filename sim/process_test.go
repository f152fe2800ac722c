package sim

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/worker"
)

const (
	procTableAddr node.Addr = "procs@m1"
	procParent    node.Addr = "hive-1"
	procMachine             = "m1"
)

// recorder is a parent process: it records everything it is sent.
type recorder struct{ got []node.Msg }

func (r *recorder) Start(node.Env) {}
func (r *recorder) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	r.got = append(r.got, m)
}

func (r *recorder) take() []node.Msg {
	g := r.got
	r.got = nil
	return g
}

// testProgram is a worker: --bad makes it refuse to start, --ignore-term makes it ignore TERM;
// otherwise it exits with code 0 on TERM.
type testProgram struct {
	ignoreTerm bool
	terms      int
}

func (p *testProgram) Start(node.Env) {}
func (p *testProgram) Handle(env node.Env, _ node.Addr, m node.Msg) {
	if _, ok := m.(api.ProcTerm); ok {
		p.terms++
		if !p.ignoreTerm {
			env.Send(procTableAddr, api.ProcExit{Code: 0})
		}
	}
}

type procFixture struct {
	s      *Sim
	table  *ProcessTable
	parent *recorder
	req    uint64
}

func newProcFixture(t *testing.T) *procFixture {
	t.Helper()
	s := New(Options{Seed: 7})
	f := &procFixture{s: s, parent: &recorder{}}
	f.table = NewProcessTable(s, ProcessTableConfig{Machine: procMachine, Programs: map[string]Program{
		"llm-worker-rbee": {Version: "0.3.0", New: func(args []string, self node.Addr) (node.Node, error) {
			if slices.Contains(args, "--bad") {
				return nil, errors.New("unknown flag --bad")
			}
			return &testProgram{ignoreTerm: slices.Contains(args, "--ignore-term")}, nil
		}},
	}})
	s.Add(procTableAddr, procMachine, 0, func() node.Node { return f.table })
	s.Add(procParent, procMachine, 0, func() node.Node { return f.parent })
	s.Run(time.Millisecond)
	return f
}

// ask sends m to the table from the parent and runs the sim a little.
func (f *procFixture) ask(m node.Msg) []node.Msg {
	f.s.Inject(procParent, procTableAddr, m)
	f.s.Run(f.s.Now() + 100*time.Millisecond)
	return f.parent.take()
}

func (f *procFixture) spawn(t *testing.T, addr node.Addr, port int, args ...string) api.ProcSpawned {
	t.Helper()
	f.req++
	got := f.ask(api.ProcSpawn{ReqID: f.req, Binary: "llm-worker-rbee", Args: args, Port: port, Addr: addr})
	if len(got) == 0 {
		t.Fatalf("spawn of %s answered nothing", addr)
	}
	r, ok := got[0].(api.ProcSpawned)
	if !ok || r.ReqID != f.req {
		t.Fatalf("spawn of %s answered %+v, want ProcSpawned for request %d", addr, got, f.req)
	}
	return r
}

func (f *procFixture) list(t *testing.T) []api.ProcInfo {
	t.Helper()
	f.req++
	got := f.ask(api.ProcListReq{ReqID: f.req})
	if len(got) != 1 {
		t.Fatalf("list answered %+v", got)
	}
	return got[0].(api.ProcListResp).Procs
}

func TestProcessSpawnRunsTheProgramAndListsIt(t *testing.T) {
	f := newProcFixture(t)
	r := f.spawn(t, "w-a", 9300, "--id", "w-a")
	if !r.Err.OK() || r.PID != 1 || r.Version != "0.3.0" {
		t.Fatalf("spawn answered %+v, want pid 1, version 0.3.0", r)
	}
	if !f.s.Up("w-a") {
		t.Fatal("the spawned process is not running")
	}
	if _, ok := f.s.Node("w-a").(*testProgram); !ok {
		t.Fatalf("the node at w-a is %T, want the program's node", f.s.Node("w-a"))
	}
	want := []api.ProcInfo{{PID: 1, Binary: "llm-worker-rbee", Port: 9300, Addr: "w-a"}}
	if got := f.list(t); !slices.Equal(got, want) {
		t.Fatalf("list = %+v, want %+v", got, want)
	}
	// A retried spawn (same request ID) gets the same answer and spawns nothing.
	got := f.ask(api.ProcSpawn{ReqID: 1, Binary: "llm-worker-rbee", Port: 9300, Addr: "w-a"})
	if len(got) != 1 || got[0].(api.ProcSpawned) != r {
		t.Fatalf("a retried spawn answered %+v, want %+v again", got, r)
	}
	if n := len(f.table.Live()); n != 1 {
		t.Fatalf("%d live processes after a retried spawn, want 1", n)
	}
}

func TestProcessSpawnRefusals(t *testing.T) {
	f := newProcFixture(t)
	got := f.ask(api.ProcSpawn{ReqID: 100, Binary: "llm-worker-rbee-typo", Port: 9300, Addr: "w-a"})
	r := got[0].(api.ProcSpawned)
	if r.Err.Code != api.CodeBinaryMissing || r.Err.Message != "no such file: llm-worker-rbee-typo" ||
		r.Err.Suggestion == "" || r.PID != 0 {
		t.Fatalf("missing binary answered %+v", r)
	}
	f.spawn(t, "w-a", 9300)
	r = f.spawn(t, "w-b", 9300)
	if r.Err.Code != api.CodePortInUse || r.Err.Message != "port 9300 is in use by pid 1 (llm-worker-rbee at w-a)" {
		t.Fatalf("spawn on a taken port answered %+v", r)
	}
	f.table.HoldPort(9301, "nginx (pid 412)")
	if r = f.spawn(t, "w-b", 9301); r.Err.Code != api.CodePortInUse || r.Err.Message != "port 9301 is in use by nginx (pid 412)" {
		t.Fatalf("spawn on a held port answered %+v", r)
	}
	if r = f.spawn(t, "w-a", 9302); r.Err.Code != api.CodePortInUse {
		t.Fatalf("spawn at a running process's address answered %+v", r)
	}
	if r = f.spawn(t, procParent, 9303); r.Err.Code != api.CodePortInUse {
		t.Fatalf("spawn at the parent's own address answered %+v", r)
	}
	if f.s.Node("w-b") != nil || len(f.table.Live()) != 1 {
		t.Fatalf("a refused spawn ran something: %+v", f.table.Live())
	}
	// A program that refuses its arguments gets a PID and exits at once with code 2.
	f.req++
	got = f.ask(api.ProcSpawn{ReqID: f.req, Binary: "llm-worker-rbee", Args: []string{"--bad"}, Port: 9304, Addr: "w-c"})
	if len(got) != 2 || got[0].(api.ProcSpawned).PID != 2 || got[1] != (api.ProcExited{PID: 2, Code: 2}) {
		t.Fatalf("a program refusing its arguments gave %+v, want spawned pid 2 then exit code 2", got)
	}
}

func TestProcessSignals(t *testing.T) {
	f := newProcFixture(t)
	a := f.spawn(t, "w-a", 9300)
	b := f.spawn(t, "w-b", 9301, "--ignore-term")
	// TERM: w-a exits with code 0; w-b ignores it and runs on.
	got := f.ask(api.ProcSignal{PID: a.PID, Signal: "TERM"})
	got = append(got, f.ask(api.ProcSignal{PID: b.PID, Signal: "TERM"})...)
	if f.s.Up("w-a") || !f.s.Up("w-b") {
		t.Fatalf("after TERM: w-a up %v, w-b up %v; want w-a exited, w-b running", f.s.Up("w-a"), f.s.Up("w-b"))
	}
	if len(got) != 1 || got[0] != (api.ProcExited{PID: a.PID, Code: 0}) {
		t.Fatalf("after TERM the parent got %+v, want w-a's exit with code 0", got)
	}
	// KILL ends w-b for good: a restart fault does not bring it back.
	got = f.ask(api.ProcSignal{PID: b.PID, Signal: "KILL"})
	if len(got) != 1 || got[0] != (api.ProcExited{PID: b.PID, Signal: "KILL"}) || f.s.Up("w-b") {
		t.Fatalf("after KILL the parent got %+v (w-b up %v)", got, f.s.Up("w-b"))
	}
	f.s.Restart("w-b", 0)
	f.s.Run(f.s.Now() + time.Second)
	if f.s.Up("w-b") || len(f.table.Live()) != 0 {
		t.Fatalf("a killed process came back: %+v", f.table.Live())
	}
	// A signal for a dead PID does nothing; its address can be spawned at again.
	if got := f.ask(api.ProcSignal{PID: b.PID, Signal: "KILL"}); len(got) != 0 {
		t.Fatalf("a KILL of a dead process gave %+v", got)
	}
	if r := f.spawn(t, "w-b", 9301); !r.Err.OK() || r.PID != 3 || !f.s.Up("w-b") {
		t.Fatalf("spawn at a killed process's address answered %+v", r)
	}
}

func TestProcessCrashTellsTheParentAndARestartIsANewPID(t *testing.T) {
	f := newProcFixture(t)
	a := f.spawn(t, "w-a", 9300)
	f.s.Crash("w-a")
	f.s.Run(f.s.Now() + time.Millisecond)
	if got := f.parent.take(); len(got) != 1 || got[0] != (api.ProcExited{PID: a.PID, Signal: "SEGV"}) {
		t.Fatalf("after a crash the parent got %+v, want SEGV for pid %d", got, a.PID)
	}
	if live := f.list(t); len(live) != 0 {
		t.Fatalf("a crashed process is listed: %+v", live)
	}
	// A crash-restart fault brings it back as a new process, same parent, new PID.
	f.s.Restart("w-a", time.Second)
	f.s.Run(f.s.Now() + 2*time.Second)
	want := []api.ProcInfo{{PID: a.PID + 1, Binary: "llm-worker-rbee", Port: 9300, Addr: "w-a"}}
	if got := f.list(t); !slices.Equal(got, want) {
		t.Fatalf("after the restart the list is %+v, want %+v", got, want)
	}
	f.s.Crash("w-a")
	f.s.Run(f.s.Now() + time.Millisecond)
	if got := f.parent.take(); len(got) != 1 || got[0] != (api.ProcExited{PID: a.PID + 1, Signal: "SEGV"}) {
		t.Fatalf("the restarted process's crash gave the parent %+v", got)
	}
}

func TestProcessPowerFailureLeavesNothingRunning(t *testing.T) {
	f := newProcFixture(t)
	f.spawn(t, "w-a", 9300)
	f.spawn(t, "w-b", 9301)
	// As PowerFailAtWrite does: everything on the machine goes down, and what was up restarts.
	f.s.PowerFail(procMachine)
	for _, a := range []node.Addr{procTableAddr, procParent, "w-a", "w-b"} {
		f.s.Restart(a, time.Second)
	}
	f.s.Run(f.s.Now() + 2*time.Second)
	// The restarted parent hears of the processes that died (PIDs it never knew).
	want := []node.Msg{api.ProcExited{PID: 1, Signal: "KILL"}, api.ProcExited{PID: 2, Signal: "KILL"}}
	if got := f.parent.take(); !slices.Equal(got, want) {
		t.Fatalf("after the power failure the parent got %+v, want %+v", got, want)
	}
	if f.s.Up("w-a") || f.s.Up("w-b") || len(f.table.Live()) != 0 {
		t.Fatalf("after a power failure processes run: w-a %v, w-b %v, table %+v",
			f.s.Up("w-a"), f.s.Up("w-b"), f.table.Live())
	}
	if got := f.list(t); len(got) != 0 {
		t.Fatalf("after a power failure the list is %+v", got)
	}
	// PIDs count on: nothing from before is named again.
	if r := f.spawn(t, "w-a", 9300); !r.Err.OK() || r.PID != 3 {
		t.Fatalf("spawn after the power failure answered %+v, want pid 3", r)
	}
}

func TestProcessTableCrashAloneKillsItsProcessesAndTellsTheParents(t *testing.T) {
	f := newProcFixture(t)
	a := f.spawn(t, "w-a", 9300)
	f.s.Crash(procTableAddr)
	if f.s.Up("w-a") {
		t.Fatal("a process outlived its machine's process table")
	}
	f.s.Restart(procTableAddr, time.Second)
	f.s.Run(f.s.Now() + 2*time.Second)
	if got := f.parent.take(); len(got) != 1 || got[0] != (api.ProcExited{PID: a.PID, Signal: "KILL"}) {
		t.Fatalf("after the table's restart the parent got %+v, want pid %d killed", got, a.PID)
	}
}

func TestProcessTableServesOnlyItsMachine(t *testing.T) {
	f := newProcFixture(t)
	remote := &recorder{}
	f.s.Add("hive-2", "m2", f.s.Now(), func() node.Node { return remote })
	f.s.Run(f.s.Now() + time.Millisecond)
	f.s.Inject("hive-2", procTableAddr, api.ProcSpawn{ReqID: 1, Binary: "llm-worker-rbee", Port: 9300, Addr: "w-a"})
	f.s.Run(f.s.Now() + time.Second)
	if len(remote.got) != 0 || len(f.table.Live()) != 0 {
		t.Fatalf("a remote spawn was served: %+v, %+v", remote.got, f.table.Live())
	}
}

// TestProcessExitOfAScenarioNode: a process the table did not spawn (the scenario's hive)
// that exits ends for good.
func TestProcessExitOfAScenarioNode(t *testing.T) {
	f := newProcFixture(t)
	f.ask(api.ProcExit{Code: 0})
	if f.s.Up(procParent) || !f.s.Gone(procParent) {
		t.Fatal("a process that exited is still up")
	}
}

// e2eEngine loads any model at once.
type e2eEngine struct{}

func (e2eEngine) Start(node.Env) {}
func (e2eEngine) Handle(env node.Env, from node.Addr, m node.Msg) {
	if _, ok := m.(api.EngineLoad); ok {
		env.Send(from, api.EngineLoaded{})
	}
}

// e2eQueen accepts every registry request.
type e2eQueen struct{ removes int }

func (q *e2eQueen) Start(node.Env) {}
func (q *e2eQueen) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.RegisterReq:
		env.Send(from, api.RegistryResp{ReqID: m.ReqID, Op: "register", Record: api.WorkerRecord{WorkerSpec: m.Spec}, Epoch: 1})
	case api.RemoveReq:
		q.removes++
		env.Send(from, api.RegistryResp{ReqID: m.ReqID, Op: "remove", Epoch: 1})
	case api.HeartbeatReq:
		env.Send(from, api.RegistryResp{ReqID: m.ReqID, Op: "heartbeat", Epoch: 1})
	}
}

// TestProcessTableRunsAHiveAndItsWorker: the real hive spawns the real worker through the
// table; a crash fault is seen by the hive (SEGV), which respawns the worker; a TERM to the
// hive stops the worker and ends the hive within 30s.
func TestProcessTableRunsAHiveAndItsWorker(t *testing.T) {
	s := New(Options{Seed: 1})
	table := NewProcessTable(s, ProcessTableConfig{Machine: procMachine, Programs: map[string]Program{
		"llm-worker-rbee": {Version: "0.3.0", New: func(args []string, _ node.Addr) (node.Node, error) {
			cfg, err := worker.ParseArgs(args)
			if err != nil {
				return nil, err
			}
			return worker.New(cfg), nil
		}},
	}})
	q := &e2eQueen{}
	s.Add(procTableAddr, procMachine, 0, func() node.Node { return table })
	s.Add("queen-1", "m0", 0, func() node.Node { return q })
	s.Add("w-a-engine", procMachine, 0, func() node.Node { return e2eEngine{} })
	cfg := hive.DefaultConfig("queen-1")
	cfg.Workers = []api.WorkerSpec{{ID: "w-a", Model: "m1", Capability: "cpu", Slots: 2}}
	cfg.WorkerProcesses, cfg.ProcessTable, cfg.Version = true, procTableAddr, "0.3.0"
	var h *hive.Hive
	s.Add(procParent, procMachine, time.Millisecond, func() node.Node { h = hive.New(cfg); return h })
	s.Run(5 * time.Second)
	if live := table.Live(); len(live) != 1 || live[0].Addr != "w-a" || !slices.Equal(h.Registered(), []string{"w-a"}) {
		t.Fatalf("after start: live %+v, registered %v; want w-a running and registered", live, h.Registered())
	}
	first := table.Live()[0].PID
	s.Crash("w-a")
	s.Run(20 * time.Second)
	live := table.Live()
	if h.Crashes("w-a") != 1 || q.removes == 0 || len(live) != 1 || live[0].PID == first ||
		!slices.Equal(h.Registered(), []string{"w-a"}) {
		t.Fatalf("after a crash: crashes %d, removals %d, live %+v, registered %v; want one crash, "+
			"a removal, and w-a respawned and registered", h.Crashes("w-a"), q.removes, live, h.Registered())
	}
	s.Inject(procTableAddr, procParent, api.ProcTerm{})
	s.Run(s.Now() + 30*time.Second)
	if len(table.Live()) != 0 || s.Up(procParent) || s.Up("w-a") {
		t.Fatalf("30s after the hive's TERM: live %+v, hive up %v; want nothing running", table.Live(), s.Up(procParent))
	}
}
