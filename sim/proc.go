package sim

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// proc is one simulated process: a Node value (rebuilt at every start), its timers, its clock
// and its place on a machine.
type proc struct {
	addr      node.Addr
	machine   string
	disk      *Disk // the machine's disk
	factory   func() node.Node
	node      node.Node
	up        bool
	paused    bool
	busy      bool   // held for slow disk I/O (see Disk.SetSlowIO) until a scheduled wake-up
	inc       uint64 // grows at every crash; events scheduled for an older incarnation are void
	rng       *rand.Rand
	clock     Clock
	timers    map[node.TimerID]struct{}
	nextTimer node.TimerID
	held      []event // deliveries and timers held while paused
	log       *slog.Logger
	crashes   int
	// gone: the process ended for good (Exit); Restart does nothing until AddAgain.
	gone bool
	// onCrash, when set, is called at the end of every Crash (not Exit) of the process: how
	// the machine's ProcessTable learns that one of its processes died of a fault.
	onCrash func()
}

// Up reports whether the process at addr is running (paused counts as running).
func (s *Sim) Up(addr node.Addr) bool { return s.mustProc(addr).up }

// Paused reports whether the process at addr is paused.
func (s *Sim) Paused(addr node.Addr) bool { return s.mustProc(addr).paused }

// Crash kills the process at addr: its Node, timers and undelivered messages are gone; a Node
// that implements io.Closer is closed, as the OS releases a dead process's files and locks. Its
// machine's disk keeps every write (the OS still has it); see PowerFail for losing unsynced
// writes. Crashing a process that is down does nothing.
func (s *Sim) Crash(addr node.Addr) {
	p := s.mustProc(addr)
	if !p.up {
		return
	}
	s.down(p, "crash")
	p.crashes++
	if p.onCrash != nil {
		p.onCrash()
	}
}

// down ends the running incarnation of p: its Node, timers and undelivered messages are gone;
// a Node that implements io.Closer is closed.
func (s *Sim) down(p *proc, kind string) {
	s.trace.record(s.now, kind, "", p.addr, "", nil)
	if c, ok := p.node.(io.Closer); ok {
		// The process dies: the OS releases what it held (open files, locks). Close must not
		// commit or write anything; it only lets go.
		c.Close()
	}
	p.up, p.paused, p.busy, p.node = false, false, false, nil
	p.inc++
	clear(p.timers)
	p.held = nil
}

// Exit ends the process at addr for good, as a process that exits (or is killed) and that
// nobody restarts: if it is up it goes down as in Crash (not counted as a crash, and no crash
// hook runs), and whether it was up or not, Restart does nothing for it from now on (a restart
// already scheduled is void too). AddAgain puts a new process at the address.
func (s *Sim) Exit(addr node.Addr) {
	p := s.mustProc(addr)
	p.gone = true
	if p.up {
		s.down(p, "exit")
		return
	}
	p.inc++ // void a scheduled start
}

// Gone reports whether the process at addr ended for good (Exit) and was not added again.
func (s *Sim) Gone(addr node.Addr) bool { return s.mustProc(addr).gone }

// setCrashHook installs fn as the crash hook of the process at addr (nil removes it).
func (s *Sim) setCrashHook(addr node.Addr, fn func()) { s.mustProc(addr).onCrash = fn }

// Restart starts a crashed process again after delay, from its factory, on the same disk.
// Restarting a process that is up, or gone for good (Exit), does nothing.
func (s *Sim) Restart(addr node.Addr, delay time.Duration) {
	p := s.mustProc(addr)
	s.schedule(event{at: s.now + delay, kind: evStart, to: p, inc: p.inc})
}

// PowerFail crashes every process on machine and loses the unsynced writes on its disk that
// had not reached the platter: a random prefix of each file's unsynced writes survives, the
// last possibly torn at a sector boundary (Disk.PowerFailTorn, drawn from the run seed). A disk
// frozen by a crash point (PowerFailAtWrite, Disk.CrashAfterWrites) thaws.
func (s *Sim) PowerFail(machine string) {
	for _, p := range s.order {
		if p.machine == machine {
			s.Crash(p.addr)
		}
	}
	s.trace.record(s.now, "powerfail", "", node.Addr(machine), "", nil)
	s.Disk(machine).PowerFailTorn(s.diskRng)
}

// PowerFailAtWrite arms a crash point: at the k-th mutating operation (WriteAt, Truncate, Sync,
// Rename or Remove; see Disk.CrashAfterWrites) on machine's disk from now on, the machine loses
// power. The model is "nothing after the k-th write reaches the disk": that operation and every
// later one fail with EIO and change nothing (the disk is frozen), and an action named
// "power-fail at write k MACHINE" is scheduled at the current time. The node handling an event
// when its write hits the crash point keeps running until its Start or Handle returns (its
// further writes fail; what it sends still goes out); then, after the events already queued for
// that same instant, the action runs PowerFail(machine), which crashes every process on the
// machine, tears its unsynced writes as usual and thaws the disk, and restarts every process of
// the machine that was up, after restartAfter. k <= 0 disarms a crash point not reached yet; a
// later call replaces one. Arming changes nothing in the trace until the crash point is reached.
func (s *Sim) PowerFailAtWrite(machine string, k int, restartAfter time.Duration) {
	d := s.Disk(machine)
	if k <= 0 {
		d.CrashAfterWrites(0, nil)
		return
	}
	d.CrashAfterWrites(k, func() {
		s.At(s.now, fmt.Sprintf("power-fail at write %d %s", k, machine), func() {
			var up []node.Addr
			for _, p := range s.order {
				if p.machine == machine && p.up {
					up = append(up, p.addr)
				}
			}
			s.PowerFail(machine)
			for _, a := range up {
				s.Restart(a, restartAfter)
			}
		})
	})
}

// Pause stops the process at addr from running: messages and timers for it wait until Resume.
// A paused node is a slow node, not a dead one.
func (s *Sim) Pause(addr node.Addr) {
	p := s.mustProc(addr)
	if !p.up || p.paused {
		return
	}
	s.trace.record(s.now, "pause", "", addr, "", nil)
	p.paused = true
}

// Resume lets a paused process run again; what it missed is delivered now, in order.
func (s *Sim) Resume(addr node.Addr) {
	p := s.mustProc(addr)
	if !p.paused {
		return
	}
	s.trace.record(s.now, "resume", "", addr, "", nil)
	p.paused = false
	if !p.busy {
		s.releaseHeld(p)
	}
}

// releaseHeld delivers now, in order, what waited while p was paused or busy.
func (s *Sim) releaseHeld(p *proc) {
	held := p.held
	p.held = nil
	for _, e := range held {
		e.at = s.now
		s.schedule(e)
	}
}

// Crashes is how many times the process at addr crashed.
func (s *Sim) Crashes(addr node.Addr) int { return s.mustProc(addr).crashes }

// env is the node.Env of one process during one event.
type env struct {
	s *Sim
	p *proc
}

var _ node.Env = (*env)(nil)

func (e *env) Self() node.Addr { return e.p.addr }

func (e *env) Now() time.Time { return Epoch.Add(e.p.clock.Local(e.s.now)) }

func (e *env) Send(to node.Addr, m node.Msg) { e.s.send(e.p, to, m) }

func (e *env) After(d time.Duration, m node.Msg) node.TimerID {
	p := e.p
	p.nextTimer++
	id := p.nextTimer
	p.timers[id] = struct{}{}
	e.s.schedule(event{at: e.s.now + p.clock.TrueDelay(d), kind: evTimer, to: p, inc: p.inc,
		from: p.addr, msg: m, timer: id})
	return id
}

func (e *env) Cancel(id node.TimerID) { delete(e.p.timers, id) }

func (e *env) Rand() *rand.Rand { return e.p.rng }

func (e *env) Disk() node.Disk { return e.p.disk }

func (e *env) Log() *slog.Logger { return e.p.log }

func (e *env) Observe(o node.Observation) {
	if m, ok := o.(node.Mark); ok {
		e.s.marks[string(m)]++
	}
	if e.s.hooks.Observed != nil {
		e.s.hooks.Observed(e.s.now, e.p.addr, o)
	}
}

// Shutdown ends the simulation for good: every live node that is an io.Closer is closed, as a
// process's files are released when it exits. Call it once the run has been judged; the Sim
// must not run again.
func (s *Sim) Shutdown() {
	for _, p := range s.order {
		if c, ok := p.node.(io.Closer); ok && p.up {
			c.Close()
		}
	}
	s.stopped = true
}
