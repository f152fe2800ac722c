package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// drawServer draws a fault on one queen or hive.
func drawServer(rng *rand.Rand, k Kind, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{pick(rng, t.servers())}, For: drawFor(rng, maxFor)}
}

// checkServer is the check of kinds with one queen or hive target and no value.
func checkServer(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fFor), targets(f, 1, server(t)))
}

// crashRestart crashes a process and restarts it later.
type crashRestart struct{}

func (crashRestart) Name() string { return "crash-restart" }
func (crashRestart) Doc() string {
	return "Targets [a], a queen or hive: a crashes (its volatile state and timers are gone, its " +
		"disk keeps every write) and restarts after For. A process already down is not crashed " +
		"again; overlapping faults keep it down until the last ends. Never clients."
}
func (crashRestart) Available(t Topology) bool { return len(t.servers()) > 0 }
func (k crashRestart) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	return drawServer(rng, k, t, at, maxFor)
}
func (k crashRestart) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (crashRestart) check(t Topology, f Fault) error          { return checkServer(t, f) }
func (crashRestart) apply(st *state, f Fault) func() {
	a := f.Targets[0]
	var crashed []node.Addr
	if st.s.Up(a) {
		st.s.Crash(a)
		crashed = f.Targets
	}
	st.holdDown(f.Targets, crashed)
	return func() { st.release(f.Targets) }
}
func (crashRestart) lasting() bool           { return true }
func (crashRestart) describe(f Fault) string { return joinAddrs(f.Targets, " ") }

// powerFail cuts the power of a machine.
type powerFail struct{}

func (powerFail) Name() string { return "power-fail" }
func (powerFail) Doc() string {
	return "Targets [a], a queen or hive on a machine that runs no client: a's machine loses " +
		"power; every process on it crashes, its disk keeps only a random prefix of each " +
		"file's unsynced writes (the last possibly torn at a 512-byte sector; sim.Disk." +
		"PowerFailTorn), and the processes it crashed restart after For."
}
func (powerFail) Available(t Topology) bool { return len(powerTargets(t)) > 0 }
func (k powerFail) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{pick(rng, powerTargets(t))}, For: drawFor(rng, maxFor)}
}
func (k powerFail) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (powerFail) check(t Topology, f Fault) error {
	if err := checkServer(t, f); err != nil {
		return err
	}
	return checkNoClientOn(t, f)
}

// apply powers the machine off. sim has no way to list a machine's processes, so the processes
// it crashed are the ones up before and down after; the topology's addresses on the machine are
// held down too, so an overlapping crash-restart cannot restart them while the power is off.
func (powerFail) apply(st *state, f Fault) func() {
	m := st.t.machine(f.Targets[0])
	before := st.upNow()
	st.s.PowerFail(m)
	crashed := slices.DeleteFunc(before, st.s.Up)
	held := sortedAddrs(crashed, st.t.onMachine(m))
	st.holdDown(held, crashed)
	return func() { st.release(held) }
}
func (powerFail) lasting() bool { return true }
func (powerFail) describe(f Fault) string {
	return fmt.Sprintf("%s's machine", joinAddrs(f.Targets, " "))
}

// powerTargets is, for every machine with a queen or hive and no client, its first server.
func powerTargets(t Topology) []node.Addr {
	var out []node.Addr
	seen := map[string]bool{}
	for _, a := range t.servers() {
		m := t.machine(a)
		if !seen[m] && t.clientOn(m) == "" {
			out = append(out, a)
		}
		seen[m] = true
	}
	return out
}

// pause makes a process slow: it handles nothing until it resumes.
type pause struct{}

func (pause) Name() string { return "pause" }
func (pause) Doc() string {
	return "Targets [a], a queen or hive: a is paused (messages and timers for it wait) and " +
		"resumes after For, handling what it missed in order: a slow node, not a dead one. A " +
		"process that is down is not paused; a crash ends a pause."
}
func (pause) Available(t Topology) bool { return len(t.servers()) > 0 }
func (k pause) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	return drawServer(rng, k, t, at, maxFor)
}
func (k pause) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (pause) check(t Topology, f Fault) error          { return checkServer(t, f) }
func (pause) apply(st *state, f Fault) func() {
	a := f.Targets[0]
	st.pauses[a]++
	if st.s.Up(a) && !st.s.Paused(a) {
		st.s.Pause(a)
		st.paused[a] = true
	}
	return func() {
		st.pauses[a]--
		if st.pauses[a] > 0 {
			return
		}
		delete(st.pauses, a)
		if st.paused[a] {
			delete(st.paused, a)
			st.s.Resume(a)
		}
	}
}
func (pause) lasting() bool           { return true }
func (pause) describe(f Fault) string { return joinAddrs(f.Targets, " ") }

// checkNoClientOn refuses a power fault on a machine that runs a client: faults never crash
// clients, which record the history.
func checkNoClientOn(t Topology, f Fault) error {
	m := t.machine(f.Targets[0])
	if c := t.clientOn(m); c != "" {
		return fmt.Errorf("targets[0]: machine %q of %q also runs client %q, and faults never crash clients", m, f.Targets[0], c)
	}
	return nil
}
