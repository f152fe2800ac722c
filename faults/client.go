package faults

import (
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// clientGone kills a client for good, as closing a laptop or kill -9 does: it never comes
// back, and nobody tells the cluster except the broken connections.
type clientGone struct{}

func (clientGone) Name() string { return "client-gone" }
func (clientGone) Doc() string {
	return "Targets [client]: the client process dies for good (sim.Sim.Exit) without cancelling anything; " +
		"servers learn it only from broken stream connections. Instant."
}
func (clientGone) Available(t Topology) bool { return len(t.Clients) > 0 }
func (k clientGone) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{pick(rng, sortedAddrs(t.Clients))}}
}
func (k clientGone) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (clientGone) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets), targets(f, 1, role{"client", t.isClient}))
}
func (clientGone) apply(st *state, f Fault) func() {
	st.s.Exit(f.Targets[0])
	return nil
}
func (clientGone) lasting() bool           { return false }
func (clientGone) describe(f Fault) string { return joinAddrs(f.Targets, " ") }
