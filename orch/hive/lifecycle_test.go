package hive

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	llmworker "github.com/rbee-sim/rbee-sim/orch/worker"
)

// Worker lifecycle (Config.ProcessTable): scenarios lifecycle/start, lifecycle/start-failures,
// lifecycle/loading-timeout, lifecycle/crash, lifecycle/shutdown and lifecycle/idle.

const (
	tableAddr   node.Addr = "procs@m1"
	loadTimeout           = 20 * time.Second
	stopGrace             = 5 * time.Second
)

func lifeConfig() Config {
	cfg := processConfig()
	cfg.ProcessTable, cfg.Version = tableAddr, "0.3.0"
	cfg.LoadTimeout, cfg.StopGrace = loadTimeout, stopGrace
	cfg.WorkerModelBytes = map[string]int64{"m1": 1 << 30}
	return cfg
}

// lifeFixture is a hive with a process table, driven by hand; sent holds what the hive sent
// and the test has not taken yet.
type lifeFixture struct {
	*fixture
	sent []nodetest.Sent
}

func lifeStart(t *testing.T, cfg Config) *lifeFixture {
	t.Helper()
	return &lifeFixture{fixture: start(t, cfg, 1, nil)}
}

// take returns and forgets every message of type T the hive sent to to.
func take[T node.Msg](l *lifeFixture, to node.Addr) []T {
	l.sent = append(l.sent, l.env.TakeSent()...)
	var got []T
	keep := l.sent[:0]
	for _, s := range l.sent {
		if m, ok := s.Msg.(T); ok && s.To == to {
			got = append(got, m)
		} else {
			keep = append(keep, s)
		}
	}
	l.sent = keep
	return got
}

func (l *lifeFixture) deliver(from node.Addr, m node.Msg) { l.h.Handle(l.env, from, m) }

func (l *lifeFixture) advance(d time.Duration) { l.env.Advance(l.h, d) }

// list answers the hive's outstanding process list with procs.
func (l *lifeFixture) list(procs ...api.ProcInfo) {
	l.t.Helper()
	reqs := take[api.ProcListReq](l, tableAddr)
	if len(reqs) == 0 {
		l.t.Fatal("the hive asked for no process list")
	}
	l.deliver(tableAddr, api.ProcListResp{ReqID: reqs[len(reqs)-1].ReqID, Procs: procs})
}

// spawns returns the spawns the hive sent, by worker address (the last one of each).
func (l *lifeFixture) spawns() map[node.Addr]api.ProcSpawn {
	out := map[node.Addr]api.ProcSpawn{}
	for _, s := range take[api.ProcSpawn](l, tableAddr) {
		out[s.Addr] = s
	}
	return out
}

func (l *lifeFixture) spawned(s api.ProcSpawn, pid int) {
	l.deliver(tableAddr, api.ProcSpawned{ReqID: s.ReqID, PID: pid, Version: "0.3.0"})
}

// ready makes the worker report ready and acknowledges its registration.
func (l *lifeFixture) ready(id string) api.RegisterReq {
	l.t.Helper()
	l.deliver(node.Addr(id), api.WorkerReady{Worker: id, Slots: 1})
	regs := take[api.RegisterReq](l, queenAddr)
	if len(regs) != 1 || regs[0].Spec.ID != id {
		l.t.Fatalf("after %s's ready report the hive registered %+v, want %s once", id, regs, id)
	}
	l.deliver(queenAddr, api.RegistryResp{ReqID: regs[0].ReqID, Op: "register",
		Record: api.WorkerRecord{WorkerSpec: regs[0].Spec, State: regs[0].State}, Epoch: 1})
	return regs[0]
}

// ackRemovals answers every removal sent and returns the workers removed (a retried removal
// counts once).
func (l *lifeFixture) ackRemovals() []string {
	var ids []string
	for _, r := range take[api.RemoveReq](l, queenAddr) {
		l.deliver(queenAddr, api.RegistryResp{ReqID: r.ReqID, Op: "remove", Epoch: 1})
		if !slices.Contains(ids, r.Worker) {
			ids = append(ids, r.Worker)
		}
	}
	return ids
}

// ackDrains answers the Get and UpdateState requests that mark workers draining, and returns
// the workers marked.
func (l *lifeFixture) ackDrains() []string {
	for _, g := range take[api.GetReq](l, queenAddr) {
		l.deliver(queenAddr, api.RegistryResp{ReqID: g.ReqID, Op: "get", Epoch: 1,
			Record: api.WorkerRecord{WorkerSpec: api.WorkerSpec{ID: g.Worker}, State: api.StateIdle, Version: 3}})
	}
	var ids []string
	for _, u := range take[api.UpdateStateReq](l, queenAddr) {
		if u.To != api.StateDraining || u.ExpectVersion != 3 {
			l.t.Fatalf("marking draining sent %+v", u)
		}
		l.deliver(queenAddr, api.RegistryResp{ReqID: u.ReqID, Op: "update_state", Epoch: 1})
		if !slices.Contains(ids, u.Worker) {
			ids = append(ids, u.Worker)
		}
	}
	return ids
}

func (l *lifeFixture) signals() []api.ProcSignal { return take[api.ProcSignal](l, tableAddr) }

func (l *lifeFixture) marked(mark string) bool { return hasMark(l.env.Observed, mark) }

// running starts a hive whose two workers are spawned (w-a pid 11, w-b pid 12) and ready.
func running(t *testing.T, cfg Config) *lifeFixture {
	t.Helper()
	l := lifeStart(t, cfg)
	l.list()
	sp := l.spawns()
	l.spawned(sp["w-a"], 11)
	l.spawned(sp["w-b"], 12)
	l.ready("w-a")
	l.ready("w-b")
	return l
}

// TestLifecycleStartSpawnsWithArgs (lifecycle/start): the hive lists the processes, then
// spawns every worker with its command line, each on its own port from BasePort, and
// registers none before it reports ready.
func TestLifecycleStartSpawnsWithArgs(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("registered %+v before any worker ran", regs)
	}
	if sp := l.spawns(); len(sp) != 0 {
		t.Fatalf("spawned %+v before the process list came", sp)
	}
	l.list()
	sp := l.spawns()
	for id, port := range map[string]int{"w-a": 9300, "w-b": 9301} { //det:sorted (test)
		s, ok := sp[node.Addr(id)]
		if !ok || s.Binary != "llm-worker-rbee" || s.Port != port {
			t.Fatalf("spawn of %s = %+v, want llm-worker-rbee on port %d", id, s, port)
		}
		n := len(s.Args)
		if n < 2 || s.Args[n-2] != "--port" || s.Args[n-1] != strconv.Itoa(port) {
			t.Fatalf("%s's command line %q does not end with --port %d", id, s.Args, port)
		}
		wc, err := llmworker.ParseArgs(s.Args)
		if err != nil {
			t.Fatalf("%s's command line does not parse: %v", id, err)
		}
		spec := l.spec(id)
		if wc.ID != id || wc.Hive != hiveAddr || wc.Engine != node.Addr(id+"-engine") || wc.Model != spec.Model ||
			wc.Slots != spec.Slots || wc.ModelBytes != 1<<30 {
			t.Fatalf("%s's command line gives %+v", id, wc)
		}
	}
	// A repeated answer to a spawn changes nothing; loading workers register only when ready.
	l.spawned(sp["w-a"], 11)
	l.spawned(sp["w-a"], 11)
	l.ready("w-a")
	if got := l.h.Registered(); !slices.Equal(got, []string{"w-a"}) {
		t.Fatalf("Registered() = %v, want [w-a]", got)
	}
}

// TestLifecycleAdoptsRunningWorkers: after a hive restart, a live worker process at a worker's
// address is adopted (not spawned again) and registered from its status report.
func TestLifecycleAdoptsRunningWorkers(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	l.list(api.ProcInfo{PID: 40, Binary: "llm-worker-rbee", Port: 9301, Addr: "w-b"},
		api.ProcInfo{PID: 41, Binary: "nginx", Port: 9300, Addr: "nginx"})
	sp := l.spawns()
	if _, ok := sp["w-b"]; ok || len(sp) != 1 || sp["w-a"].Port != 9302 {
		t.Fatalf("spawned %+v, want only w-a, on 9302 (9300 nginx's, 9301 w-b's)", sp)
	}
	if !l.marked("hive adopted a running worker process") {
		t.Fatal("no adoption mark")
	}
	l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1})
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 1 || regs[0].Spec.ID != "w-b" {
		t.Fatalf("an adopted worker's status registered %+v, want w-b", regs)
	}
	// Its crash is followed like any other.
	l.deliver(tableAddr, api.ProcExited{PID: 40, Signal: "SEGV"})
	if l.h.Crashes("w-b") != 1 {
		t.Fatalf("Crashes(w-b) = %d after the adopted process crashed", l.h.Crashes("w-b"))
	}
}

// TestLifecyclePortConflictAvoided (lifecycle/start-failures): PORT_IN_USE makes the hive
// remember the port as taken and spawn the worker on another; a respawn keeps the new port.
func TestLifecyclePortConflictAvoided(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	l.list()
	sp := l.spawns()
	l.spawned(sp["w-b"], 12)
	l.deliver(tableAddr, api.ProcSpawned{ReqID: sp["w-a"].ReqID,
		Err: api.Errorf(api.CodePortInUse, "choose another port", "port 9300 is in use by nginx")})
	if !l.marked("hive avoided a port conflict") {
		t.Fatal("no port conflict mark")
	}
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("a worker that failed to spawn was registered: %+v", regs)
	}
	l.list(api.ProcInfo{PID: 12, Binary: "llm-worker-rbee", Port: 9301, Addr: "w-b"})
	again := l.spawns()
	if len(again) != 1 || again["w-a"].Port != 9302 || again["w-a"].ReqID == sp["w-a"].ReqID {
		t.Fatalf("after the conflict the hive spawned %+v, want w-a on 9302 (9300 taken, 9301 w-b's) with a new request", again)
	}
	l.spawned(again["w-a"], 13)
	l.ready("w-a")
	// A crash and respawn: the port that worked is kept; 9300 is not tried again even though
	// no list names its holder.
	l.deliver(tableAddr, api.ProcExited{PID: 13, Signal: "SEGV"})
	l.advance(backoffBase)
	l.list(api.ProcInfo{PID: 12, Binary: "llm-worker-rbee", Port: 9301, Addr: "w-b"})
	if re := l.spawns(); re["w-a"].Port != 9302 {
		t.Fatalf("the respawn went to port %d, want 9302 again", re["w-a"].Port)
	}
}

// TestLifecycleBinaryMissing (lifecycle/start-failures): BINARY_MISSING marks the worker
// failed; it is never registered and tried again only after a minute.
func TestLifecycleBinaryMissing(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	l.list()
	sp := l.spawns()
	l.spawned(sp["w-b"], 12)
	l.deliver(tableAddr, api.ProcSpawned{ReqID: sp["w-a"].ReqID,
		Err: api.Errorf(api.CodeBinaryMissing, "install llm-worker-rbee or fix the path", "no such file: llm-worker-rbee")})
	if !l.marked("worker failed: binary missing") {
		t.Fatal("no binary-missing mark")
	}
	l.deliver("w-a", api.WorkerReady{Worker: "w-a", Slots: 2}) // forged or stale: ignored
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("a failed worker was registered: %+v", regs)
	}
	l.advance(failedRetryInterval - time.Second)
	l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1})
	if reqs := take[api.ProcListReq](l, tableAddr); len(reqs) != 0 {
		t.Fatalf("retried within the minute: %+v", reqs)
	}
	l.advance(time.Second)
	l.list(api.ProcInfo{PID: 12, Binary: "llm-worker-rbee", Port: 9301, Addr: "w-b"})
	if again := l.spawns(); len(again) != 1 || again["w-a"].Binary != "llm-worker-rbee" {
		t.Fatalf("after a minute the hive spawned %+v, want w-a again", again)
	}
}

// TestLifecycleVersionMismatch (lifecycle/start-failures): a worker binary of another version
// is killed at once and never registered; its exit is no crash.
func TestLifecycleVersionMismatch(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	l.list()
	sp := l.spawns()
	l.deliver(tableAddr, api.ProcSpawned{ReqID: sp["w-a"].ReqID, PID: 11, Version: "0.2.9"})
	if sig := l.signals(); len(sig) != 1 || sig[0] != (api.ProcSignal{PID: 11, Signal: "KILL"}) {
		t.Fatalf("after a version mismatch the hive sent %+v, want KILL to pid 11", sig)
	}
	if !l.marked("worker refused: version mismatch") {
		t.Fatal("no version-mismatch mark")
	}
	l.deliver("w-a", api.WorkerReady{Worker: "w-a", Slots: 2})
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("a worker of the wrong version was registered: %+v", regs)
	}
	// The KILL is resent until the exit comes.
	l.advance(retryEvery)
	if sig := l.signals(); len(sig) != 1 || sig[0].Signal != "KILL" {
		t.Fatalf("unanswered KILL not resent: %+v", sig)
	}
	l.deliver(tableAddr, api.ProcExited{PID: 11, Signal: "KILL"})
	if l.h.Crashes("w-a") != 0 {
		t.Fatal("a kill the hive asked for counted as a crash")
	}
	l.advance(30 * time.Second)
	if sp := l.spawns(); sp["w-a"].Addr != "" { // w-b's unanswered spawn is resent, w-a is not
		t.Fatalf("a version mismatch was respawned at once: %+v", sp)
	}
}

// TestLifecycleLoadingTimeout (lifecycle/loading-timeout): no ready report within LoadTimeout:
// the process is killed, never registered (a late ready report counts for nothing), and
// respawned after a backoff.
func TestLifecycleLoadingTimeout(t *testing.T) {
	l := lifeStart(t, lifeConfig())
	l.list()
	sp := l.spawns()
	l.spawned(sp["w-a"], 11)
	l.spawned(sp["w-b"], 12)
	l.advance(loadTimeout / 2)
	l.ready("w-b")
	l.advance(loadTimeout/2 - time.Millisecond)
	if sig := l.signals(); len(sig) != 0 {
		t.Fatalf("killed before the loading timeout: %+v", sig)
	}
	l.advance(time.Millisecond)
	if sig := l.signals(); len(sig) != 1 || sig[0] != (api.ProcSignal{PID: 11, Signal: "KILL"}) {
		t.Fatalf("at the loading timeout the hive sent %+v, want KILL to w-a's pid 11", sig)
	}
	if !l.marked("worker killed: loading timeout") {
		t.Fatal("no loading-timeout mark")
	}
	l.deliver("w-a", api.WorkerReady{Worker: "w-a", Slots: 2}) // too late
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("a worker killed for its loading timeout was registered: %+v", regs)
	}
	if rm := take[api.RemoveReq](l, queenAddr); len(rm) != 0 {
		t.Fatalf("a never-registered worker was removed: %+v", rm)
	}
	l.deliver(tableAddr, api.ProcExited{PID: 11, Signal: "KILL"})
	l.advance(backoffBase)
	l.list(api.ProcInfo{PID: 12, Binary: "llm-worker-rbee", Port: 9301, Addr: "w-b"})
	if again := l.spawns(); len(again) != 1 || again["w-a"].Port != 9300 {
		t.Fatalf("after the backoff the hive spawned %+v, want w-a again on 9300", again)
	}
}

// TestLifecycleCrashRemovesAndRespawnsWithBackoff (lifecycle/crash): an exit the hive did not
// ask for is counted, removes the worker from the registry, and respawns it after 1s, 2s, 4s;
// the respawned worker registers with a new incarnation.
func TestLifecycleCrashRemovesAndRespawnsWithBackoff(t *testing.T) {
	l := running(t, lifeConfig())
	first := l.spec("w-a").Incarnation
	pid := 11
	for i, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		l.deliver(tableAddr, api.ProcExited{PID: pid, Signal: "SEGV"})
		if got := l.h.Crashes("w-a"); got != i+1 {
			t.Fatalf("Crashes(w-a) = %d after %d crashes", got, i+1)
		}
		if rm := take[api.RemoveReq](l, queenAddr); i == 0 && (len(rm) != 1 || rm[0].Worker != "w-a") {
			t.Fatalf("a crashed registered worker was not removed: %+v", rm)
		}
		l.advance(backoff - time.Millisecond)
		if reqs := take[api.ProcListReq](l, tableAddr); len(reqs) != 0 {
			t.Fatalf("crash %d: respawn began before the %v backoff", i+1, backoff)
		}
		l.advance(time.Millisecond)
		l.list()
		sp := l.spawns()
		if _, ok := sp["w-a"]; !ok || len(sp) != 1 {
			t.Fatalf("crash %d: after the backoff the hive spawned %+v, want w-a", i+1, sp)
		}
		pid = 101 + i
		l.spawned(sp["w-a"], pid)
		l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1, Active: 1})
	}
	if !l.marked("worker crashed") {
		t.Fatal("no crash mark")
	}
	if r := l.ready("w-a"); r.Spec.Incarnation <= first {
		t.Fatalf("the respawned worker registered incarnation %d, want above %d", r.Spec.Incarnation, first)
	}
	if l.h.Crashes("w-b") != 0 {
		t.Fatal("w-b counted a crash")
	}
}

// TestLifecycleGracefulShutdown (lifecycle/shutdown): TERM to every worker at once, all
// removed from the registry; the one that ignores TERM is killed after StopGrace; then the
// hive exits through its process table, well within 30s.
func TestLifecycleGracefulShutdown(t *testing.T) {
	l := running(t, lifeConfig())
	l.deliver("keeper-1", api.ProcTerm{}) // not from the table: ignored
	if sig := l.signals(); len(sig) != 0 {
		t.Fatalf("a TERM from a peer started a shutdown: %+v", sig)
	}
	l.deliver(tableAddr, api.ProcTerm{})
	sig := l.signals()
	want := []api.ProcSignal{{PID: 11, Signal: "TERM"}, {PID: 12, Signal: "TERM"}}
	if !slices.Equal(sig, want) {
		t.Fatalf("shutdown sent %+v, want %+v at once", sig, want)
	}
	if dr := l.ackDrains(); !slices.Equal(dr, []string{"w-a", "w-b"}) {
		t.Fatalf("shutdown marked %v draining, want both workers (their running requests finish)", dr)
	}
	if rm := l.ackRemovals(); len(rm) != 0 {
		t.Fatalf("shutdown removed %v before they exited", rm)
	}
	l.deliver(tableAddr, api.ProcExited{PID: 11, Code: 0}) // w-a stops; w-b ignores TERM
	if rm := l.ackRemovals(); !slices.Equal(rm, []string{"w-a"}) {
		t.Fatalf("after w-a exited the hive removed %v, want w-a", rm)
	}
	l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1})
	if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
		t.Fatalf("a worker re-registered during shutdown: %+v", regs)
	}
	l.advance(stopGrace - time.Millisecond)
	if sig := l.signals(); len(sig) != 0 || l.h.Exited() {
		t.Fatalf("before the grace ended: signals %+v, exited %v", sig, l.h.Exited())
	}
	l.advance(time.Millisecond)
	if sig := l.signals(); len(sig) != 1 || sig[0] != (api.ProcSignal{PID: 12, Signal: "KILL"}) {
		t.Fatalf("after the grace the hive sent %+v, want KILL to w-b only", sig)
	}
	l.deliver(tableAddr, api.ProcExited{PID: 12, Signal: "KILL"})
	if rm := l.ackRemovals(); !slices.Equal(rm, []string{"w-b"}) {
		t.Fatalf("after w-b was killed the hive removed %v, want w-b", rm)
	}
	if !l.h.Exited() {
		t.Fatal("the hive did not exit once every worker had exited and been removed")
	}
	if ex := take[api.ProcExit](l, tableAddr); len(ex) != 1 || ex[0].Code != 0 {
		t.Fatalf("the hive's exit sent %+v to its table, want one ProcExit{0}", ex)
	}
	if l.h.Crashes("w-a")+l.h.Crashes("w-b") != 0 {
		t.Fatal("a stop the hive asked for counted as a crash")
	}
	for _, m := range []string{"hive shutdown: started", "hive shutdown: TERM sent, workers removed from the registry",
		"hive shutdown: KILL after stop grace", "hive shutdown: exited"} {
		if !l.marked(m) {
			t.Errorf("no mark %q", m)
		}
	}
	// An exited hive does nothing more.
	l.advance(time.Minute)
	l.deliver("w-a", api.WorkerReady{Worker: "w-a", Slots: 2})
	if s := l.env.TakeSent(); len(s) != 0 {
		t.Fatalf("an exited hive sent %+v", s)
	}
}

// TestLifecycleShutdownDeadline: a shutdown whose removals are never acknowledged still ends,
// at 30s.
func TestLifecycleShutdownDeadline(t *testing.T) {
	l := running(t, lifeConfig())
	l.h.Shutdown(l.env)
	l.deliver(tableAddr, api.ProcExited{PID: 11, Code: 0})
	l.deliver(tableAddr, api.ProcExited{PID: 12, Code: 0})
	l.advance(shutdownMax - time.Millisecond)
	if l.h.Exited() {
		t.Fatal("exited with removals unacknowledged before the deadline")
	}
	l.advance(time.Millisecond)
	if !l.h.Exited() || !l.marked("hive shutdown: exited at the deadline") {
		t.Fatal("the hive did not exit at the shutdown deadline")
	}
}

// TestLifecycleIdleTimeout (lifecycle/idle): a worker idle in every status for IdleTimeout is
// removed and stopped (TERM, KILL after StopGrace), not respawned; a busy status resets the
// wait; the hive stays up.
func TestLifecycleIdleTimeout(t *testing.T) {
	cfg := lifeConfig()
	cfg.IdleTimeout = 30 * time.Second
	l := running(t, cfg)
	status := func(active int) {
		l.deliver("w-a", api.WorkerStatus{Worker: "w-a", Slots: 2})
		l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1, Active: active})
	}
	// w-b idles for 20s, works once, then idles; w-a idles throughout.
	for i := 0; i < 4; i++ {
		status(0)
		l.advance(5 * time.Second)
	}
	status(1)
	if sig := l.signals(); len(sig) != 0 {
		t.Fatalf("stopped before any worker idled 30s: %+v", sig)
	}
	for i := 0; i < 2; i++ {
		l.advance(5 * time.Second)
		status(0)
	}
	if sig := l.signals(); len(sig) != 1 || sig[0] != (api.ProcSignal{PID: 11, Signal: "TERM"}) {
		t.Fatalf("after 30s idle the hive sent %+v, want TERM to w-a only", sig)
	}
	if dr := l.ackDrains(); !slices.Equal(dr, []string{"w-a"}) {
		t.Fatalf("idle stop marked %v draining, want w-a", dr)
	}
	l.advance(stopGrace)
	if sig := l.signals(); len(sig) != 1 || sig[0] != (api.ProcSignal{PID: 11, Signal: "KILL"}) {
		t.Fatalf("after the grace the hive sent %+v, want KILL to w-a", sig)
	}
	l.deliver(tableAddr, api.ProcExited{PID: 11, Signal: "KILL"})
	if rm := l.ackRemovals(); !slices.Equal(rm, []string{"w-a"}) {
		t.Fatalf("after the idle worker exited the hive removed %v, want w-a", rm)
	}
	if !l.marked("worker stopped: idle timeout") || l.h.Crashes("w-a") != 0 || l.h.Exited() {
		t.Fatal("the idle stop was not marked, counted as a crash, or ended the hive")
	}
	for i := 0; i < 12; i++ {
		l.advance(5 * time.Second)
		l.deliver("w-b", api.WorkerStatus{Worker: "w-b", Slots: 1, Active: 1})
	}
	if sp := take[api.ProcSpawn](l, tableAddr); len(sp) != 0 {
		t.Fatalf("an idle-stopped worker was respawned: %+v", sp)
	}
	if got := l.h.Registered(); !slices.Equal(got, []string{"w-b"}) {
		t.Fatalf("Registered() = %v, want [w-b]", got)
	}
}

func TestLifecycleConfigValidation(t *testing.T) {
	cfg := lifeConfig()
	cfg.WorkerProcesses = false
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "needs WorkerProcesses") {
		t.Errorf("ProcessTable without WorkerProcesses: %v", err)
	}
	cfg = lifeConfig()
	cfg.Workers[0].Slots = llmworker.SlotsLimit + 1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cannot be spawned") {
		t.Errorf("a worker the binary cannot run: %v", err)
	}
	cfg = lifeConfig()
	cfg.StopGrace = shutdownMax
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "StopGrace") {
		t.Errorf("a grace as long as the whole shutdown: %v", err)
	}
	cfg = processConfig()
	cfg.ProcessTable = tableAddr
	if d := cfg.withDefaults(); d.WorkerBinary != "llm-worker-rbee" || d.BasePort != 9300 ||
		d.LoadTimeout != 30*time.Second || d.StopGrace != 10*time.Second || d.IdleTimeout != 0 {
		t.Errorf("defaults %+v", d)
	}
}
