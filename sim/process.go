package sim

import (
	"fmt"
	"sort"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// The simulated process table: the process port of one machine (api.ProcSpawn, ProcSignal,
// ProcExit, ProcListReq), as the OS serves it to the processes of that machine.
//
// What the table guarantees, and how it learns what happens to its processes:
//
//   - A spawned process is a simulated process (Sim.AddAgain) at the spawn's Addr on the
//     table's machine, started at once. It is live until it exits (api.ProcExit), is killed
//     (ProcSignal KILL), or crashes.
//   - A crash fault (Sim.Crash) on a live process runs the crash hook the table installed on it:
//     the table marks it dead and its parent gets ProcExited{Signal: "SEGV"} at once. Nothing
//     polls.
//   - A crash-restart fault that later restarts a crashed process (Sim.Restart) makes it live
//     again under a NEW PID with the same parent, binary, arguments, port and address: a fresh
//     process, as a supervisor would start. The parent is told nothing (the port has no
//     "started" message); it sees the process in ProcListResp, and the program announces
//     itself. Its end is reported to the parent under the new PID. Killed and exited
//     processes end for good (Sim.Exit): a restart fault does nothing for them.
//   - The table is the machine's OS: when it goes down (a power failure crashes it with
//     everything else, or a crash fault hits it alone), every process of the machine ends for
//     good with it. When it starts again no process is running, and each dead process's
//     parent is told ProcExited{Signal: "KILL"} (a parent that went down too never hears it).
//     PIDs keep counting up across such restarts, so a PID from before never names a new
//     process.
//   - What the table sends (answers, exits, ProcTerm) is delivered reliably and at once, as a
//     kernel does: a child's exit is never lost. Requests reach it over the simulated network
//     like any message, so callers retry (a repeated ProcSpawn with the same ReqID from the
//     same caller is answered again, not run twice).
//   - Only processes of the table's own machine are served; anything else is dropped.

const (
	// spawnDedupMax bounds how many spawn answers the table remembers to answer repeats.
	spawnDedupMax = 1024
	// spawnArgsExitCode is the exit code of a process whose program refused its arguments.
	spawnArgsExitCode = 2
	// portMax is the largest TCP port.
	portMax = 65535
)

// Program is a binary installed on a simulated machine.
type Program struct {
	// Version is what the binary's --version prints; ProcSpawned carries it.
	Version string
	// New builds the process's node from its command line (the arguments after the binary)
	// and the address it will run at. An error is the program refusing to start: the process
	// exits at once with code 2, the error being what it printed. New runs again when a
	// crash-restart fault restarts the process. Required.
	New func(args []string, self node.Addr) (node.Node, error)
}

// ProcessTableConfig configures a ProcessTable.
type ProcessTableConfig struct {
	// Machine is the machine whose processes the table runs; the table itself must be added
	// on it. Required.
	Machine string
	// Programs are the installed binaries, by the name a ProcSpawn gives (its Binary).
	Programs map[string]Program
}

// ProcessTable is the simulated OS process table of one machine, a node.Node: add it on its
// machine (at an address such as "procs@machine-1") with a factory that returns this same
// value at every start, as with the Hub: what it knows outlives its crashes, as the
// simulator's ground truth. See the comment at the top of this file for its guarantees.
type ProcessTable struct {
	s       *Sim
	cfg     ProcessTableConfig
	self    node.Addr // learned at the first Start
	nextPID int
	// procs holds the latest process at each address the table ever ran one at.
	procs map[node.Addr]*tableProc
	// live holds the live processes by PID.
	live map[int]*tableProc
	// held are ports held outside the table's processes (HoldPort), with their holder.
	held       map[int]string
	spawned    map[spawnKey]api.ProcSpawned
	spawnOrder []spawnKey // oldest first, for eviction
	// orphans died when the table went down; their parents are told at the next Start.
	orphans []*tableProc
}

type spawnKey struct {
	from  node.Addr
	reqID uint64
}

type procState int

const (
	procLive procState = iota
	// procCrashed: died of a crash fault; a restart fault may bring it back under a new PID.
	procCrashed
	// procGone: exited, killed, or went down with the table; never runs again.
	procGone
)

type tableProc struct {
	info   api.ProcInfo
	args   []string
	parent node.Addr
	prog   Program
	state  procState
	// first is the node built at spawn time, handed to the simulator at the first start.
	first node.Node
}

// NewProcessTable returns the process table of cfg.Machine in s. It panics on an invalid
// config (no machine, a program without New): a scenario bug.
func NewProcessTable(s *Sim, cfg ProcessTableConfig) *ProcessTable {
	if cfg.Machine == "" {
		panic("sim: process table without a machine")
	}
	progs := make(map[string]Program, len(cfg.Programs))
	for name, p := range cfg.Programs { //det:sorted (copied into a map)
		if name == "" || p.New == nil {
			panic(fmt.Sprintf("sim: process table of %s: program %q has no name or no New", cfg.Machine, name))
		}
		progs[name] = p
	}
	cfg.Programs = progs
	return &ProcessTable{s: s, cfg: cfg, procs: map[node.Addr]*tableProc{}, live: map[int]*tableProc{},
		held: map[int]string{}, spawned: map[spawnKey]api.ProcSpawned{}}
}

// HoldPort marks port as held by something the table does not run (holder names it in
// PORT_IN_USE errors): a harness's way to make a port conflict. Held ports are not listed.
func (t *ProcessTable) HoldPort(port int, holder string) { t.held[port] = holder }

// ReleasePort undoes HoldPort.
func (t *ProcessTable) ReleasePort(port int) { delete(t.held, port) }

// Live returns the live processes, by PID. For monitors: read only.
func (t *ProcessTable) Live() []api.ProcInfo {
	out := make([]api.ProcInfo, 0, len(t.live))
	for _, p := range t.sortedLive() {
		out = append(out, p.info)
	}
	return out
}

func (t *ProcessTable) sortedLive() []*tableProc {
	ps := make([]*tableProc, 0, len(t.live))
	for _, p := range t.live { //det:sorted
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].info.PID < ps[j].info.PID })
	return ps
}

// Start implements node.Node: a (re)booted machine runs no process. Parents of the processes
// that went down with the table are told now.
func (t *ProcessTable) Start(env node.Env) {
	if me := t.s.mustProc(env.Self()); me.machine != t.cfg.Machine {
		panic(fmt.Sprintf("sim: the process table of %s was added on machine %s", t.cfg.Machine, me.machine))
	}
	t.self = env.Self()
	t.s.setCrashHook(t.self, t.machineDown)
	for _, p := range t.orphans {
		t.tell(p.parent, api.ProcExited{PID: p.info.PID, Signal: "KILL"})
	}
	t.orphans = nil
}

// Handle implements node.Node.
func (t *ProcessTable) Handle(env node.Env, from node.Addr, m node.Msg) {
	if !t.local(from) {
		env.Log().Warn("process table: a request from another machine dropped", "from", from, "msg", m.MsgName())
		return
	}
	switch m := m.(type) {
	case api.ProcSpawn:
		t.handleSpawn(env, from, m)
	case api.ProcSignal:
		t.handleSignal(env, from, m)
	case api.ProcExit:
		t.handleExit(env, from, m)
	case api.ProcListReq:
		t.tell(from, api.ProcListResp{ReqID: m.ReqID, Procs: t.Live()})
	default:
		env.Log().Warn("process table: unexpected message dropped", "from", from, "msg", m.MsgName())
	}
}

// local reports whether addr is a process of the table's machine.
func (t *ProcessTable) local(addr node.Addr) bool {
	p, ok := t.s.procs[addr]
	return ok && p.machine == t.cfg.Machine
}

// tell delivers m to addr at once and without the network, as the kernel does; it is dropped
// if addr is down.
func (t *ProcessTable) tell(addr node.Addr, m node.Msg) {
	if _, ok := t.s.procs[addr]; ok {
		t.s.Inject(t.self, addr, m)
	}
}

func (t *ProcessTable) handleSpawn(env node.Env, from node.Addr, m api.ProcSpawn) {
	key := spawnKey{from, m.ReqID}
	if r, ok := t.spawned[key]; ok {
		t.tell(from, r) // a retry: the same answer, nothing spawned twice
		return
	}
	r, refused := t.spawn(from, m)
	t.remember(key, r)
	t.tell(from, r)
	if refused != nil {
		env.Log().Warn("process table: the program refused its arguments and exited", "binary", m.Binary,
			"pid", r.PID, "code", spawnArgsExitCode, "stderr", refused.Error())
		t.tell(from, api.ProcExited{PID: r.PID, Code: spawnArgsExitCode})
	}
}

// spawn starts m's program for parent. refused is the program's own error (the process got a
// PID and exited at once); a refusal by the table is in r.Err.
func (t *ProcessTable) spawn(parent node.Addr, m api.ProcSpawn) (r api.ProcSpawned, refused error) {
	r.ReqID = m.ReqID
	prog, ok := t.cfg.Programs[m.Binary]
	if !ok {
		r.Err = api.Errorf(api.CodeBinaryMissing, "install "+m.Binary+" or fix the path",
			"no such file: %s", m.Binary)
		return r, nil
	}
	if m.Addr == "" || m.Port < 0 || m.Port > portMax {
		r.Err = api.Errorf(api.CodeInvalidRequest, "give an address and a port from 0 to 65535",
			"cannot spawn %s at address %q, port %d", m.Binary, m.Addr, m.Port)
		return r, nil
	}
	if holder := t.portHolder(m.Port, nil); holder != "" {
		r.Err = api.Errorf(api.CodePortInUse, "choose another port, or stop the process that holds it",
			"port %d is in use by %s", m.Port, holder)
		return r, nil
	}
	if why := t.addrTaken(m.Addr); why != "" {
		r.Err = api.Errorf(api.CodePortInUse, "choose another address, or stop the process that holds it",
			"address %s is in use by %s", m.Addr, why)
		return r, nil
	}
	args := append([]string(nil), m.Args...)
	n, err := prog.New(args, m.Addr)
	t.nextPID++
	r.PID, r.Version = t.nextPID, prog.Version
	if err != nil {
		return r, err
	}
	p := &tableProc{info: api.ProcInfo{PID: r.PID, Binary: m.Binary, Port: m.Port, Addr: m.Addr},
		args: args, parent: parent, prog: prog, first: n}
	t.procs[m.Addr], t.live[r.PID] = p, p
	t.s.AddAgain(m.Addr, t.cfg.Machine, t.s.Now(), t.factory(m.Addr))
	t.s.setCrashHook(m.Addr, func() { t.crashed(m.Addr) })
	return r, nil
}

func (t *ProcessTable) remember(key spawnKey, r api.ProcSpawned) {
	t.spawned[key] = r
	t.spawnOrder = append(t.spawnOrder, key)
	if len(t.spawnOrder) > spawnDedupMax {
		delete(t.spawned, t.spawnOrder[0])
		t.spawnOrder = t.spawnOrder[1:]
	}
}

// portHolder names the holder of port other than self, or "" when it is free (port 0 is no
// port).
func (t *ProcessTable) portHolder(port int, self *tableProc) string {
	if port == 0 {
		return ""
	}
	if h, ok := t.held[port]; ok {
		return h
	}
	for _, p := range t.sortedLive() {
		if p.info.Port == port && p != self {
			return describe(p)
		}
	}
	return ""
}

// addrTaken says why a new process cannot run at addr, or "" when it can: the address is
// unknown to the simulation, ended for good, or ours and down (a crashed process of ours).
func (t *ProcessTable) addrTaken(addr node.Addr) string {
	sp, ok := t.s.procs[addr]
	if !ok || sp.gone {
		return ""
	}
	if p := t.procs[addr]; p != nil && p.state == procLive {
		return describe(p)
	}
	if sp.up {
		return "a process the table does not run"
	}
	if t.procs[addr] == nil {
		return "another process that may restart"
	}
	return ""
}

func describe(p *tableProc) string {
	return fmt.Sprintf("pid %d (%s at %s)", p.info.PID, p.info.Binary, p.info.Addr)
}

// factory is what the simulator calls at every start of the process at addr: the node built
// at spawn the first time; after a crash, a fresh process under a new PID.
func (t *ProcessTable) factory(addr node.Addr) func() node.Node {
	return func() node.Node {
		p := t.procs[addr]
		if p.first != nil {
			n := p.first
			p.first = nil
			return n
		}
		return t.restarted(p)
	}
}

// restarted makes a crashed process live again under a new PID (see the top of this file).
func (t *ProcessTable) restarted(p *tableProc) node.Node {
	if p.state != procCrashed {
		panic(fmt.Sprintf("sim: process %s started again in state %d", describe(p), p.state))
	}
	t.nextPID++
	old := p.info.PID
	p.info.PID, p.state = t.nextPID, procLive
	t.live[p.info.PID] = p
	log := t.s.mustProc(t.self).log
	log.Info("process table: a crashed process was restarted by a fault under a new PID",
		"old_pid", old, "pid", p.info.PID, "addr", p.info.Addr)
	if holder := t.portHolder(p.info.Port, p); holder != "" {
		log.Warn("process table: the restarted process's port is taken; it exits", "port", p.info.Port, "holder", holder)
		return exitAtStart{table: t.self, code: spawnArgsExitCode}
	}
	n, err := p.prog.New(append([]string(nil), p.args...), p.info.Addr)
	if err != nil {
		log.Warn("process table: the restarted program refused its arguments; it exits", "err", err)
		return exitAtStart{table: t.self, code: spawnArgsExitCode}
	}
	return n
}

// crashed is the crash hook of the process at addr (Sim.Crash, by a fault).
func (t *ProcessTable) crashed(addr node.Addr) {
	p := t.procs[addr]
	if p == nil || p.state != procLive {
		return
	}
	p.state = procCrashed
	delete(t.live, p.info.PID)
	t.tell(p.parent, api.ProcExited{PID: p.info.PID, Signal: "SEGV"})
}

// machineDown is the table's own crash hook: every process of the machine ends for good.
func (t *ProcessTable) machineDown() {
	addrs := make([]node.Addr, 0, len(t.procs))
	for a := range t.procs { //det:sorted
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	for _, a := range addrs {
		p := t.procs[a]
		if p.state == procGone {
			continue
		}
		if p.state == procLive {
			t.orphans = append(t.orphans, p)
		}
		p.state = procGone
		t.s.Exit(a)
	}
	clear(t.live)
}

func (t *ProcessTable) handleSignal(env node.Env, from node.Addr, m api.ProcSignal) {
	p := t.live[m.PID]
	if p == nil {
		env.Log().Debug("process table: signal for no live process (ESRCH)", "from", from, "pid", m.PID)
		return
	}
	switch m.Signal {
	case "KILL":
		t.end(p, api.ProcExited{PID: p.info.PID, Signal: "KILL"})
	case "TERM":
		t.tell(p.info.Addr, api.ProcTerm{})
	default:
		env.Log().Warn("process table: unknown signal dropped", "from", from, "pid", m.PID, "signal", m.Signal)
	}
}

// handleExit ends the process that asked to exit. A process of the machine that the table did
// not spawn (one the scenario started) ends for good too; nobody is told.
func (t *ProcessTable) handleExit(env node.Env, from node.Addr, m api.ProcExit) {
	if p := t.procs[from]; p != nil {
		if p.state == procLive {
			t.end(p, api.ProcExited{PID: p.info.PID, Code: m.Code})
		}
		return
	}
	if t.s.Up(from) && from != t.self {
		env.Log().Info("process table: a process it did not spawn exited", "addr", from, "code", m.Code)
		t.s.Exit(from)
	}
}

// end ends a live process for good and tells its parent how.
func (t *ProcessTable) end(p *tableProc, how api.ProcExited) {
	p.state = procGone
	delete(t.live, p.info.PID)
	t.s.Exit(p.info.Addr)
	t.tell(p.parent, how)
}

// exitAtStart is a process that exits with code as soon as it starts.
type exitAtStart struct {
	table node.Addr
	code  int
}

func (x exitAtStart) Start(env node.Env)                   { env.Send(x.table, api.ProcExit{Code: x.code}) }
func (x exitAtStart) Handle(node.Env, node.Addr, node.Msg) {}
