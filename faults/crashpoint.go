package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Ranges of power-fail-at-write's k.
const (
	maxCrashWrite   = 10000
	drawnCrashWrite = 200
)

// powerFailAtWrite cuts a machine's power at a chosen write of its disk: a deterministic crash
// point, where power-fail strikes at a moment chosen by time.
type powerFailAtWrite struct{}

func (powerFailAtWrite) Name() string { return "power-fail-at-write" }
func (powerFailAtWrite) Doc() string {
	return "Targets [h], a hive on a machine that runs no client; Value k (1 to 10000); For: " +
		"the restart delay. At At, a crash point is armed on h's machine's disk (sim.Disk." +
		"CrashAfterWrites): its k-th mutating operation from then on (each WriteAt, Truncate, " +
		"Sync, Rename or Remove, by any process, counts one) and every later one fail with EIO " +
		"(\"simulated power failure at write k\") and change nothing: nothing after the k-th " +
		"write reaches the disk. The process that made it runs on until its event ends; then " +
		"the machine loses power as with power-fail (every process on it crashes, the unsynced " +
		"writes are torn, the disk thaws) and the processes it crashed restart For later, " +
		"however late the k-th write came. A crash point never reached does nothing; a later " +
		"fault of this kind on the same machine replaces one not reached yet. HealAll " +
		"disarms a crash point not reached and restarts at once what one crashed."
}
func (powerFailAtWrite) Available(t Topology) bool { return len(crashPointTargets(t)) > 0 }
func (k powerFailAtWrite) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	h := pick(rng, crashPointTargets(t))
	v := drawIn(rng, 1, drawnCrashWrite)
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{h}, Value: v, For: drawFor(rng, maxFor)}
}

// Inject arms the crash point now. Unlike lasting kinds, nothing ends at f.For after the start:
// For counts from the power failure.
func (k powerFailAtWrite) Inject(s *sim.Sim, t Topology, f Fault) { NewInjector(s, t).start(k, f) }
func (powerFailAtWrite) check(t Topology, f Fault) error {
	if err := firstErr(unused(f, fTargets|fValue|fFor), targets(f, 1, hive(t)),
		valueIn(f, 1, maxCrashWrite, "(the k-th write from the start)")); err != nil {
		return err
	}
	return checkNoClientOn(t, f)
}

// apply arms the machine's disk. When the k-th write springs the trap (from inside a node's
// event), an action at the same instant powers the machine off with the same bookkeeping as
// power-fail, so overlapping crashes and power failures restart nothing early, and schedules
// the restart For later. The returned end is for HealAll only: the kind is not lasting, as
// its For starts at a write, not at At.
func (powerFailAtWrite) apply(st *state, f Fault) func() {
	m := st.t.machine(f.Targets[0])
	d := st.s.Disk(m)
	id := st.id()
	st.traps[m] = id
	var fired, off, healed, restarted bool
	var held []node.Addr
	restart := func() {
		if !restarted {
			restarted = true
			st.release(held)
		}
	}
	d.CrashAfterWrites(int(f.Value), func() {
		fired = true
		if st.traps[m] == id {
			delete(st.traps, m)
		}
		st.s.At(st.s.Now(), fmt.Sprintf("power-fail at write %d %s", f.Value, m), func() {
			before := st.upNow()
			st.s.PowerFail(m)
			crashed := slices.DeleteFunc(before, st.s.Up)
			held = sortedAddrs(crashed, st.t.onMachine(m))
			st.holdDown(held, crashed)
			off = true
			if healed {
				restart()
				return
			}
			st.s.At(st.s.Now()+f.For, f.action("end"), restart)
		})
	})
	return func() {
		healed = true
		switch {
		case !fired && st.traps[m] == id:
			d.CrashAfterWrites(0, nil)
			delete(st.traps, m)
		case off:
			restart()
		}
	}
}
func (powerFailAtWrite) lasting() bool { return false }
func (powerFailAtWrite) describe(f Fault) string {
	return fmt.Sprintf("%s's machine at write %d", one(f), f.Value)
}

// crashPointTargets is every hive on a machine that runs no client, sorted.
func crashPointTargets(t Topology) []node.Addr {
	var out []node.Addr
	for _, h := range sortedAddrs(t.Hives) {
		if t.clientOn(t.machine(h)) == "" {
			out = append(out, h)
		}
	}
	return out
}
