package faults

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// engineFault is a fault of a worker's simulated inference engine (sim.Engine): it hangs,
// runs out of memory, or crashes. It does nothing when the engine is down.
type engineFault struct {
	name, doc string
	// withFor: For is the fault's duration (a hang); otherwise it is instant.
	withFor bool
	apply1  func(e *sim.Engine, f Fault)
}

// engineKinds are the engine's faults, in catalogue order.
var engineKinds = []engineFault{
	{name: "engine-crash", doc: "Targets [engine]: the engine crashes: every running completion ends with ENGINE_ERROR and the engine refuses work until its worker loads the model again. Instant.",
		apply1: func(e *sim.Engine, _ Fault) { e.FailNext("crash") }},
	{name: "engine-hang", withFor: true, doc: "Targets [engine]: for For, the engine produces no token and no end for any completion (a stuck GPU kernel); then it goes on.",
		apply1: func(e *sim.Engine, f Fault) { e.Hang(f.For) }},
	{name: "engine-oom", doc: "Targets [engine]: the next completion the engine starts fails at once with ENGINE_ERROR (CUDA out of memory). Instant.",
		apply1: func(e *sim.Engine, _ Fault) { e.FailNext("oom") }},
}

func (k engineFault) Name() string                           { return k.name }
func (k engineFault) Doc() string                            { return k.doc }
func (k engineFault) Available(t Topology) bool              { return len(t.Engines) > 0 }
func (k engineFault) lasting() bool                          { return false }
func (k engineFault) describe(f Fault) string                { return string(one(f)) }
func (k engineFault) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }

func (k engineFault) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	f := Fault{Kind: k.name, At: at, Targets: []node.Addr{pick(rng, sortedAddrs(t.Engines))}}
	if k.withFor {
		f.For = time.Duration(1+rng.Int64N(int64(max(1, min(maxFor, 90*time.Second)/time.Second)))) * time.Second
	}
	return f
}

func (k engineFault) check(t Topology, f Fault) error {
	used := fTargets
	if k.withFor {
		used |= fFor
	}
	isEngine := role{"engine", func(a node.Addr) bool {
		for _, e := range t.Engines {
			if e == a {
				return true
			}
		}
		return false
	}}
	if err := firstErr(unused(f, used), targets(f, 1, isEngine)); err != nil {
		return err
	}
	if k.withFor && f.For <= 0 {
		return fmt.Errorf("%s needs a positive For (how long the engine hangs)", k.name)
	}
	return nil
}

func (k engineFault) apply(st *state, f Fault) func() {
	if e, ok := st.s.Node(f.Targets[0]).(*sim.Engine); ok {
		k.apply1(e, f)
	}
	return nil
}
