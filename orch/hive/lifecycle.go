package hive

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	llmworker "github.com/rbee-sim/rbee-sim/orch/worker"
)

// Worker lifecycle (Config.ProcessTable): the hive runs its worker processes itself, through
// its machine's process port (api.ProcSpawn, ProcSignal, ProcExited, ProcListReq).
//
//   - Start: the hive lists the running processes, adopts those at its workers' addresses and
//     spawns the rest: WorkerBinary with worker.Config.Args, the engine at "<id>-engine" by
//     convention, on the lowest port from BasePort that no other process (listed, or named by
//     an earlier PORT_IN_USE) and none of its other workers holds. Every spawn follows a fresh
//     list, so a process a fault restarted at a worker's address is adopted, not doubled.
//   - PORT_IN_USE: the port is remembered as taken and the worker spawned again on another;
//     the conflict is not met again. BINARY_MISSING, a refused spawn, or a binary whose version
//     differs from Config.Version (killed at once): the worker is failed, never registered, and
//     tried again after failedRetryInterval.
//   - Loading: no WorkerReady (or status) within LoadTimeout of the spawn, or a WorkerReady
//     with an error: the process is killed (LOADING_TIMEOUT) and respawned after a backoff.
//   - An exit the hive did not ask for is a crash (WORKER_CRASHED, counted by Crashes): the
//     worker is removed from the registry and respawned after a backoff of 1s doubling to
//     30s, which resets once a worker stayed ready for backoffResetAfter.
//   - Idle (IdleTimeout): a worker whose every status shows no active and no queued request for
//     IdleTimeout is removed from the registry and stopped (TERM, KILL after StopGrace); it is
//     not respawned, and the hive runs on.
//   - Shutdown (ProcTerm to the hive, or Shutdown): TERM to every worker at once, all removed
//     from the registry, KILL to those still running after StopGrace, then the hive exits
//     (api.ProcExit to its table): within shutdownMax in all.
//
// Reports of a worker (WorkerReady, WorkerStatus) count only while its process is loading or
// running: a late report from a process being stopped, or from one the hive has not adopted
// yet, registers nothing. Requests to the process table are resent every RetryInterval until
// answered (a spawn with its request ID, so the table answers a repeat instead of spawning
// twice); the table's answers and exit reports are not lost (a kernel does not lose them).

// Limits of worker lifecycle.
const (
	// backoffBase and backoffMax bound the wait before a crashed worker is respawned.
	backoffBase = time.Second
	backoffMax  = 30 * time.Second
	// backoffResetAfter: a worker ready this long starts its backoff from backoffBase again.
	backoffResetAfter = time.Minute
	// failedRetryInterval is the wait before a worker that could not start (missing binary,
	// version mismatch, no free port) is tried again.
	failedRetryInterval = time.Minute
	// shutdownMax bounds a graceful shutdown from its start to the hive's exit.
	shutdownMax = 30 * time.Second
	// portSpanMax is how many ports from BasePort the hive tries.
	portSpanMax = 1024
	// portMax is the largest TCP port.
	portMax = 65535
	// engineSuffix names a worker's engine: the engine of worker "w" is at "w-engine".
	engineSuffix = "-engine"
)

// lifeState is where a worker's process is; only the become* methods and stopping change it.
type lifeState uint8

const (
	lifeWant     lifeState = iota // needs a process: spawned (or adopted) at the next list
	lifeSpawning                  // ProcSpawn sent, no answer yet
	lifeLoading                   // the process runs; no ready report yet
	lifeRunning                   // ready
	lifeStopping                  // TERM or KILL sent; waiting for its exit
	lifeBackoff                   // waiting to respawn after a crash or a failed load
	lifeFailed                    // could not start; tried again after failedRetryInterval
	lifeStopped                   // stopped for idleness or shutdown; not respawned
)

var lifeStateNames = [...]string{"want", "spawning", "loading", "running", "stopping", "backoff", "failed", "stopped"}

func (s lifeState) String() string { return lifeStateNames[s] }

// stopReason says why the hive stops a worker's process, and so what follows its exit.
type stopReason uint8

const (
	stopLoadFailed  stopReason = iota + 1 // timeout or failed load: backoff, then respawn
	stopVersion                           // version mismatch: failed
	stopIdle                              // idle timeout: stopped
	stopShutdown                          // the hive shuts down: stopped
	stopDrained                           // drained for a rolling update: stopped
	stopStartFailed                       // a worker started on request failed to start: stopped
)

// lifeWorker is one worker's process as the hive runs it.
type lifeWorker struct {
	id       string
	state    lifeState
	gen      uint64 // grows at every state change; a timer of an older gen is void
	pid      int    // 0 when no process is known
	port     int    // the port given to its process, kept across respawns; 0 when none
	spawn    api.ProcSpawn
	why      stopReason
	killSent bool // resent every retry tick until the exit comes
	failures int  // failed starts since the worker last stayed ready; sets the backoff
	crashes  int
	idle     node.TimerID // armed while every status shows the worker idle
}

type lifecycleState struct {
	on      bool
	ws      []*lifeWorker // sorted by ID
	byID    map[string]*lifeWorker
	byPID   map[int]*lifeWorker
	listReq uint64 // the outstanding ProcListReq, 0 when none
	// listed are the ports of other processes in the last list; conflicts the ports named
	// by PORT_IN_USE (held by something that may not be listed), remembered for good.
	listed, conflicts map[int]bool
	shutdown, exited  bool
}

// Timer messages of worker lifecycle.
type (
	lifeTimer struct {
		Worker string
		Gen    uint64
	}
	lifeIdle struct {
		Worker string
		PID    int
	}
	lifeStable struct {
		Worker string
		PID    int
	}
	lifeRetryTick    struct{}
	shutdownGrace    struct{}
	shutdownDeadline struct{}
)

func (lifeTimer) MsgName() string        { return "hive.life_timer" }
func (lifeIdle) MsgName() string         { return "hive.life_idle" }
func (lifeStable) MsgName() string       { return "hive.life_stable" }
func (lifeRetryTick) MsgName() string    { return "hive.life_retry_tick" }
func (shutdownGrace) MsgName() string    { return "hive.shutdown_grace" }
func (shutdownDeadline) MsgName() string { return "hive.shutdown_deadline" }

// validateLifecycle lists the problems of the lifecycle fields of c.
func (c Config) validateLifecycle() []string {
	var errs []string
	if c.LoadTimeout < 0 || c.StopGrace < 0 || c.IdleTimeout < 0 {
		errs = append(errs, "LoadTimeout, StopGrace and IdleTimeout must not be negative")
	}
	if c.StopGrace >= shutdownMax {
		errs = append(errs, fmt.Sprintf("StopGrace %v must be below %v: a shutdown ends within %v", c.StopGrace, shutdownMax, shutdownMax))
	}
	if c.BasePort < 0 || c.BasePort > portMax {
		errs = append(errs, fmt.Sprintf("BasePort %d is not a TCP port (1 to %d; 0 means 9300)", c.BasePort, portMax))
	}
	// A worker process reports its status every StatusInterval (no flag changes it): a status
	// timeout not above that counts every idle worker dead between two of its reports.
	if every := llmworker.DefaultConfig().StatusInterval; c.WorkerProcesses && c.WorkerStatusTimeout != 0 && c.WorkerStatusTimeout <= every {
		errs = append(errs, fmt.Sprintf("WorkerStatusTimeout %v must be longer than the %v between a worker's status reports, or every idle worker is counted dead and removed from the registry between two reports", c.WorkerStatusTimeout, every))
	}
	if c.ProcessTable == "" {
		return errs
	}
	if !c.WorkerProcesses {
		errs = append(errs, "ProcessTable needs WorkerProcesses: spawned workers are processes of their own")
	}
	for i, w := range c.Workers {
		wc := c.workerConfig(w, "hive")
		if err := wc.Validate(); err != nil {
			errs = append(errs, fmt.Sprintf("workers[%d]: cannot be spawned: %v", i, err))
		}
	}
	return errs
}

// workerConfig is the configuration a spawned worker gets, on its command line.
func (c Config) workerConfig(spec api.WorkerSpec, hive node.Addr) llmworker.Config {
	wc := llmworker.DefaultConfig()
	wc.ID, wc.Hive, wc.Engine, wc.Model = spec.ID, hive, node.Addr(spec.ID+engineSuffix), spec.Model
	wc.ModelBytes, wc.Slots = c.WorkerModelBytes[spec.Model], spec.Slots
	return wc
}

// Crashes is how many times the worker's process exited without being asked to, since the
// hive started.
func (h *Hive) Crashes(id string) int {
	if w := h.life.byID[id]; w != nil {
		return w.crashes
	}
	return 0
}

// Exited reports whether the hive finished a shutdown: it handles nothing any more.
func (h *Hive) Exited() bool { return h.life.exited }

// startLifecycle lists the machine's processes, to adopt or spawn every worker.
func (h *Hive) startLifecycle(env node.Env) {
	h.life = lifecycleState{on: h.cfg.ProcessTable != "", byID: map[string]*lifeWorker{},
		byPID: map[int]*lifeWorker{}, listed: map[int]bool{}, conflicts: map[int]bool{}}
	if !h.life.on {
		return
	}
	for _, w := range h.workers {
		lw := &lifeWorker{id: w.spec.ID}
		h.life.ws = append(h.life.ws, lw)
		h.life.byID[lw.id] = lw
	}
	h.requestList(env)
	env.After(h.cfg.RetryInterval, lifeRetryTick{})
}

// addLifeWorker runs the process of a worker added at run time (start.go): it is spawned (or
// adopted) after the next process list.
func (h *Hive) addLifeWorker(env node.Env, id string) {
	if !h.life.on {
		return
	}
	lw := &lifeWorker{id: id}
	h.life.ws = append(h.life.ws, lw)
	sort.Slice(h.life.ws, func(i, j int) bool { return h.life.ws[i].id < h.life.ws[j].id })
	h.life.byID[id] = lw
	h.requestList(env)
}

// become moves w to state s, voiding its timers.
func (h *Hive) become(w *lifeWorker, s lifeState) {
	w.state = s
	w.gen++
}

// after arms w's one state timer.
func (h *Hive) after(env node.Env, w *lifeWorker, d time.Duration) {
	env.After(d, lifeTimer{Worker: w.id, Gen: w.gen})
}

func (h *Hive) requestList(env node.Env) {
	if h.life.listReq != 0 {
		return
	}
	h.life.listReq = h.nextReqID()
	env.Send(h.cfg.ProcessTable, api.ProcListReq{ReqID: h.life.listReq})
}

// handleLifeRetryTick resends what the process table has not answered yet.
func (h *Hive) handleLifeRetryTick(env node.Env) {
	env.After(h.cfg.RetryInterval, lifeRetryTick{})
	if h.life.listReq != 0 {
		env.Send(h.cfg.ProcessTable, api.ProcListReq{ReqID: h.life.listReq})
	}
	for _, w := range h.life.ws {
		switch {
		case w.state == lifeSpawning:
			env.Send(h.cfg.ProcessTable, w.spawn)
		case w.state == lifeStopping && w.killSent:
			env.Send(h.cfg.ProcessTable, api.ProcSignal{PID: w.pid, Signal: "KILL"})
		}
	}
	h.checkShutdownDone(env)
}

// handleProcList adopts the live processes at wanting workers' addresses and spawns the rest.
func (h *Hive) handleProcList(env node.Env, m api.ProcListResp) {
	if m.ReqID != h.life.listReq || h.life.shutdown {
		return
	}
	h.life.listReq = 0
	ours := map[node.Addr]api.ProcInfo{}
	clear(h.life.listed)
	for _, p := range m.Procs {
		if w := h.life.byID[string(p.Addr)]; w != nil && p.Binary == h.cfg.WorkerBinary {
			ours[p.Addr] = p
		} else if p.Port != 0 {
			h.life.listed[p.Port] = true
		}
	}
	for _, w := range h.life.ws { // adopt first: adopted processes hold their ports
		if p, ok := ours[node.Addr(w.id)]; ok && w.state == lifeWant {
			h.adopt(env, w, p)
		}
	}
	for _, w := range h.life.ws {
		if w.state == lifeWant {
			h.spawnWorker(env, w)
		}
	}
}

// adopt takes a running process of ours as the worker's: it counts as loading until it reports.
func (h *Hive) adopt(env node.Env, w *lifeWorker, p api.ProcInfo) {
	env.Log().Info("adopting a running worker process", "worker", w.id, "pid", p.PID, "port", p.Port)
	env.Observe(node.Mark("hive adopted a running worker process"))
	w.pid, w.port = p.PID, p.Port
	h.life.byPID[p.PID] = w
	h.becomeLoading(env, w)
}

func (h *Hive) spawnWorker(env node.Env, w *lifeWorker) {
	port := h.pickPort(w)
	if port == 0 {
		err := api.Errorf(api.CodePortInUse, "free a port or raise BasePort",
			"worker %s: no free port among %d from %d", w.id, portSpanMax, h.cfg.BasePort)
		h.becomeFailed(env, w, err)
		return
	}
	w.port = port
	args := append(h.workerConfig(h.byID[w.id].spec, env.Self()).Args(), "--port", strconv.Itoa(port))
	w.spawn = api.ProcSpawn{ReqID: h.nextReqID(), Binary: h.cfg.WorkerBinary, Args: args, Port: port,
		Addr: node.Addr(w.id)}
	h.become(w, lifeSpawning)
	env.Log().Info("spawning a worker process", "worker", w.id, "binary", h.cfg.WorkerBinary, "port", port)
	env.Observe(node.Mark("hive spawned a worker process"))
	env.Send(h.cfg.ProcessTable, w.spawn)
}

// pickPort keeps w's port while nothing else holds it, or takes the lowest free one from
// BasePort; 0 when none is free.
func (h *Hive) pickPort(w *lifeWorker) int {
	free := func(p int) bool {
		if h.life.listed[p] || h.life.conflicts[p] {
			return false
		}
		for _, o := range h.life.ws {
			if o != w && o.port == p {
				return false
			}
		}
		return true
	}
	if w.port != 0 && free(w.port) {
		return w.port
	}
	for p := h.cfg.BasePort; p < h.cfg.BasePort+portSpanMax && p <= portMax; p++ {
		if free(p) {
			return p
		}
	}
	return 0
}

// handleProcSpawned follows the answer to a worker's spawn.
func (h *Hive) handleProcSpawned(env node.Env, m api.ProcSpawned) {
	w := h.spawning(m.ReqID)
	if w == nil {
		return // a repeat, or the answer to a spawn given up
	}
	if m.Err.OK() || m.PID != 0 {
		w.pid = m.PID
		h.life.byPID[m.PID] = w
	}
	switch {
	case h.life.shutdown:
		h.stopping(env, w, stopShutdown, true)
	case m.Err.Code == api.CodePortInUse:
		env.Log().Warn("worker port taken; spawning it on another", "worker", w.id, "port", w.port,
			"message", m.Err.Message)
		env.Observe(node.Mark("hive avoided a port conflict"))
		h.life.conflicts[w.port] = true
		w.port = 0
		h.become(w, lifeWant)
		h.requestList(env)
	case !m.Err.OK():
		h.becomeFailed(env, w, m.Err)
	case h.cfg.Version != "" && m.Version != h.cfg.Version:
		err := api.Errorf(api.CodeVersionMismatch, "install "+h.cfg.WorkerBinary+" "+h.cfg.Version+" next to this hive",
			"worker %s: %s is version %s, but this hive is version %s; killed it", w.id, h.cfg.WorkerBinary, m.Version, h.cfg.Version)
		logLifeError(env, w, err)
		env.Observe(node.Mark("worker refused: version mismatch"))
		why := stopVersion
		if h.startFailed(env, w, err) {
			why = stopStartFailed
		}
		h.stopping(env, w, why, true)
	default:
		h.becomeLoading(env, w)
	}
}

func (h *Hive) spawning(reqID uint64) *lifeWorker {
	for _, w := range h.life.ws {
		if w.state == lifeSpawning && w.spawn.ReqID == reqID {
			return w
		}
	}
	return nil
}

func logLifeError(env node.Env, w *lifeWorker, err api.Error) {
	env.Log().Error("worker lifecycle", "worker", w.id, "code", err.Code, "message", err.Message,
		"suggestion", err.Suggestion)
}

func (h *Hive) becomeLoading(env node.Env, w *lifeWorker) {
	h.become(w, lifeLoading)
	h.after(env, w, h.cfg.LoadTimeout)
}

func (h *Hive) becomeRunning(env node.Env, w *lifeWorker) {
	h.become(w, lifeRunning)
	env.After(backoffResetAfter, lifeStable{Worker: w.id, PID: w.pid})
}

// becomeFailed gives up on starting w for failedRetryInterval; it is never registered.
func (h *Hive) becomeFailed(env node.Env, w *lifeWorker, err api.Error) {
	logLifeError(env, w, err)
	switch err.Code {
	case api.CodeBinaryMissing:
		env.Observe(node.Mark("worker failed: binary missing"))
	default:
		env.Observe(node.Mark("worker failed to start"))
	}
	if h.startFailed(env, w, err) {
		h.become(w, lifeStopped) // a start on request is not tried again
		return
	}
	h.become(w, lifeFailed)
	h.after(env, w, failedRetryInterval)
}

// becomeBackoff waits before a respawn: 1s, doubling with every failure since the worker last
// stayed ready, at most 30s.
func (h *Hive) becomeBackoff(env node.Env, w *lifeWorker) {
	d := backoffMax
	if w.failures < 5 { // 1s << 5 is past backoffMax
		d = min(backoffBase<<w.failures, backoffMax)
	}
	w.failures++
	h.become(w, lifeBackoff)
	h.after(env, w, d)
	env.Log().Info("respawning the worker after a backoff", "worker", w.id, "backoff", d.String())
}

// handleLifeTimer: a loading timeout, a stop grace, or the end of a backoff or failed wait.
func (h *Hive) handleLifeTimer(env node.Env, t lifeTimer) {
	w := h.life.byID[t.Worker]
	if w == nil || t.Gen != w.gen || h.life.shutdown {
		return
	}
	switch w.state {
	case lifeLoading:
		err := api.Errorf(api.CodeLoadingTimeout, "check the model file and the GPU, or raise LoadTimeout",
			"worker %s (pid %d) did not report ready within %v of its start; killed it", w.id, w.pid, h.cfg.LoadTimeout)
		logLifeError(env, w, err)
		env.Observe(node.Mark("worker killed: loading timeout"))
		why := stopLoadFailed
		if h.startFailed(env, w, err) {
			why = stopStartFailed
		}
		h.stopping(env, w, why, true)
	case lifeStopping:
		env.Log().Warn("worker did not stop within the grace period; killing it", "worker", w.id, "pid", w.pid,
			"grace", h.cfg.StopGrace.String())
		env.Observe(node.Mark("worker killed after stop grace"))
		h.kill(env, w)
	case lifeBackoff, lifeFailed:
		env.Observe(node.Mark("hive respawning a worker"))
		h.become(w, lifeWant)
		h.requestList(env)
	}
}

// stopping stops w's process for why: at once with KILL (kill) or with TERM and a grace period.
// A worker without a process just stops wanting one. Every worker that stops leaves the registry.
func (h *Hive) stopping(env node.Env, w *lifeWorker, why stopReason, kill bool) {
	if kill {
		h.removeFromRegistry(env, w)
	} else {
		// A graceful stop: the worker finishes what it runs, so the registry holds it as
		// draining (nothing new is routed to it, nothing running is failed over) until it
		// exits; then it is removed.
		h.drainForStop(env, w)
	}
	w.why, w.killSent = why, false
	if w.pid == 0 {
		h.afterExit(env, w)
		return
	}
	h.become(w, lifeStopping)
	if kill {
		h.kill(env, w)
		return
	}
	env.Send(h.cfg.ProcessTable, api.ProcSignal{PID: w.pid, Signal: "TERM"})
	if why != stopShutdown { // a shutdown has one grace for all
		h.after(env, w, h.cfg.StopGrace)
	}
}

func (h *Hive) kill(env node.Env, w *lifeWorker) {
	w.killSent = true
	env.Send(h.cfg.ProcessTable, api.ProcSignal{PID: w.pid, Signal: "KILL"})
}

// removeFromRegistry takes the worker out of the queen's registry if it may be there, and
// makes its next ready report a new incarnation.
func (h *Hive) removeFromRegistry(env node.Env, lw *lifeWorker) {
	w := h.byID[lw.id]
	if w.ready || w.registered || w.pending != nil {
		h.send(env, w, api.RemoveReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
	}
	w.ready, w.registered, w.lost = false, false, true
	if lw.idle != 0 {
		env.Cancel(lw.idle)
		lw.idle = 0
	}
}

// handleProcExited follows a worker process's end: what the hive asked for, or a crash.
func (h *Hive) handleProcExited(env node.Env, m api.ProcExited) {
	w := h.life.byPID[m.PID]
	if w == nil || w.pid != m.PID {
		env.Log().Debug("exit of a process that is not a worker of this hive", "pid", m.PID)
		return
	}
	delete(h.life.byPID, m.PID)
	w.pid = 0
	if w.state == lifeStopping {
		h.afterExit(env, w)
		return
	}
	how := fmt.Sprintf("exited with code %d", m.Code)
	if m.Signal != "" {
		how = "was killed by signal " + m.Signal
	}
	w.crashes++
	err := api.Errorf(api.CodeWorkerCrashed, "see the worker's log; it is respawned after a backoff",
		"worker %s (pid %d) %s without being asked to stop (crash %d)", w.id, m.PID, how, w.crashes)
	logLifeError(env, w, err)
	env.Observe(node.Mark("worker crashed"))
	h.removeFromRegistry(env, w)
	if h.startFailed(env, w, err) {
		h.become(w, lifeStopped)
		return
	}
	h.becomeBackoff(env, w)
}

// afterExit decides what follows a stop the hive asked for.
func (h *Hive) afterExit(env node.Env, w *lifeWorker) {
	w.killSent = false
	if hw := h.byID[w.id]; hw.drain != drainNone && hw.drain != drainRetired {
		// The process is gone: whatever the drain was doing, it ends with the removal.
		hw.drain = drainNone
		h.removeFromRegistry(env, w) // its drain request, pending or done, means it may be registered
	}
	switch {
	case h.life.shutdown || w.why == stopShutdown:
		h.become(w, lifeStopped)
		h.checkShutdownDone(env)
	case w.why == stopIdle:
		env.Observe(node.Mark("worker stopped: idle timeout"))
		h.become(w, lifeStopped)
	case w.why == stopDrained:
		env.Observe(node.Mark("worker stopped: drained"))
		h.become(w, lifeStopped)
	case w.why == stopStartFailed:
		h.become(w, lifeStopped)
	case w.why == stopVersion:
		h.become(w, lifeFailed)
		h.after(env, w, failedRetryInterval)
	default:
		h.becomeBackoff(env, w)
	}
}

// onWorkerReady passes a ready report on to the registry code while the worker's process is
// loading or running; a failed load is killed.
func (h *Hive) onWorkerReady(env node.Env, from node.Addr, m api.WorkerReady) {
	w := h.life.byID[m.Worker]
	if !h.life.on || w == nil || from != node.Addr(m.Worker) {
		h.handleWorkerReady(env, from, m)
		return
	}
	switch w.state {
	case lifeLoading:
		h.handleWorkerReady(env, from, m)
		if !m.Err.OK() {
			why := stopLoadFailed
			if h.startFailed(env, w, m.Err) {
				why = stopStartFailed
			}
			h.stopping(env, w, why, true)
		} else if h.byID[w.id].ready {
			h.becomeRunning(env, w)
		}
	case lifeRunning:
		h.handleWorkerReady(env, from, m)
	default:
		env.Log().Debug("hive ignores a ready report of a worker it is not loading", "worker", w.id, "state", w.state.String())
	}
}

// onWorkerStatus passes a status report on while the worker's process is loading or running,
// and follows its idleness.
func (h *Hive) onWorkerStatus(env node.Env, from node.Addr, m api.WorkerStatus) {
	w := h.life.byID[m.Worker]
	if !h.life.on || w == nil || from != node.Addr(m.Worker) {
		h.handleWorkerStatus(env, from, m)
		return
	}
	switch w.state {
	case lifeLoading:
		h.handleWorkerStatus(env, from, m)
		if h.byID[w.id].ready {
			h.becomeRunning(env, w)
		}
	case lifeRunning:
		h.handleWorkerStatus(env, from, m)
	default:
		return
	}
	h.noteIdle(env, w, m.Active == 0 && m.Queued == 0)
}

// noteIdle arms the idle timer at the first idle status and disarms it at a busy one.
func (h *Hive) noteIdle(env node.Env, w *lifeWorker, idle bool) {
	switch {
	case h.cfg.IdleTimeout == 0 || w.state != lifeRunning:
	case idle && w.idle == 0:
		w.idle = env.After(h.cfg.IdleTimeout, lifeIdle{Worker: w.id, PID: w.pid})
	case !idle && w.idle != 0:
		env.Cancel(w.idle)
		w.idle = 0
	}
}

func (h *Hive) handleLifeIdle(env node.Env, t lifeIdle) {
	w := h.life.byID[t.Worker]
	if w == nil || w.state != lifeRunning || w.pid != t.PID || w.idle == 0 || h.life.shutdown {
		return
	}
	w.idle = 0
	env.Log().Info("worker idle; stopping it", "worker", w.id, "pid", w.pid, "idle_for", h.cfg.IdleTimeout.String())
	env.Observe(node.Mark("worker idle timeout"))
	h.stopping(env, w, stopIdle, false)
}

func (h *Hive) handleLifeStable(t lifeStable) {
	if w := h.life.byID[t.Worker]; w != nil && w.state == lifeRunning && w.pid == t.PID {
		w.failures = 0
	}
}

// Shutdown stops the hive gracefully, as its SIGTERM (api.ProcTerm from its process table, or
// from itself) does: every worker process gets TERM at once and leaves the registry, those
// still running after StopGrace are killed, and the hive exits (api.ProcExit to its process
// table) once all have exited and their removals are acknowledged, or at shutdownMax. A
// repeat does nothing.
func (h *Hive) Shutdown(env node.Env) {
	if h.life.shutdown {
		return
	}
	h.life.shutdown = true
	env.Log().Info("hive shutting down", "grace", h.cfg.StopGrace.String(), "deadline", shutdownMax.String())
	env.Observe(node.Mark("hive shutdown: started"))
	for _, w := range h.life.ws {
		switch w.state {
		case lifeLoading, lifeRunning:
			h.stopping(env, w, stopShutdown, false)
		case lifeStopping:
			w.why = stopShutdown
		case lifeSpawning: // killed when its answer comes
		default:
			h.become(w, lifeStopped)
		}
	}
	for _, w := range h.workers { // workers whose processes the hive does not run
		if h.life.byID[w.spec.ID] == nil && (w.ready || w.registered || w.pending != nil) {
			w.ready, w.registered = false, false
			h.send(env, w, api.RemoveReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
		}
	}
	h.failStarts(env, api.Errorf(api.CodeStartUnsupported, "start the worker on another hive, or once this one is back",
		"hive %s is shutting down; the worker start was abandoned", env.Self()))
	env.Observe(node.Mark("hive shutdown: TERM sent, workers removed from the registry"))
	env.After(h.cfg.StopGrace, shutdownGrace{})
	env.After(shutdownMax, shutdownDeadline{})
	h.checkShutdownDone(env)
}

func (h *Hive) handleShutdownGrace(env node.Env) {
	for _, w := range h.life.ws {
		if w.state == lifeStopping && !w.killSent {
			env.Log().Warn("worker still running after the stop grace; killing it", "worker", w.id, "pid", w.pid)
			env.Observe(node.Mark("hive shutdown: KILL after stop grace"))
			h.kill(env, w)
		}
	}
}

// checkShutdownDone exits once no worker process runs or starts and every removal from the
// registry is acknowledged.
func (h *Hive) checkShutdownDone(env node.Env) {
	if !h.life.shutdown || h.life.exited {
		return
	}
	for _, w := range h.life.ws {
		if w.state == lifeSpawning || w.state == lifeStopping {
			return
		}
	}
	for _, w := range h.workers {
		if w.pending != nil {
			return
		}
	}
	h.exit(env, "hive shutdown: exited")
}

func (h *Hive) exit(env node.Env, mark string) {
	h.life.exited = true
	env.Log().Info("hive exiting", "mark", mark)
	env.Observe(node.Mark(mark))
	if h.cfg.ProcessTable != "" {
		env.Send(h.cfg.ProcessTable, api.ProcExit{Code: 0})
	}
}

func (h *Hive) handleShutdownDeadline(env node.Env) {
	if !h.life.exited {
		env.Log().Warn("hive shutdown did not finish in time; exiting anyway", "deadline", shutdownMax.String())
		h.exit(env, "hive shutdown: exited at the deadline")
	}
}

// handleProcTerm: SIGTERM from the hive's process table (or itself) starts a shutdown.
func (h *Hive) handleProcTerm(env node.Env, from node.Addr) {
	if from != env.Self() && (h.cfg.ProcessTable == "" || from != h.cfg.ProcessTable) {
		env.Log().Warn("hive ignores a TERM that its process table did not send", "from", from)
		return
	}
	h.Shutdown(env)
}

// fromTable reports whether a process-port message came from the hive's process table.
func (h *Hive) fromTable(env node.Env, from node.Addr, m node.Msg) bool {
	if h.life.on && from == h.cfg.ProcessTable {
		return true
	}
	env.Log().Warn("hive ignores a process message not from its process table", "from", from, "msg", m.MsgName())
	return false
}
