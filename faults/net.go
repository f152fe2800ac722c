package faults

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/sim"
)

// Limits of the network kinds.
const (
	perMilleMax = 1000 // a probability of 1
	// perMilleDrawMax is the highest probability Draw picks: beyond it the network is a
	// partition, which the partition kinds already cover.
	perMilleDrawMax = 500
	// netDelayMax is the most extra latency a valid net-delay adds.
	netDelayMax = time.Minute
	// netDelayDrawMax is the most extra latency Draw picks.
	netDelayDrawMax = time.Second
	// reorderDelay is how far net-reorder may hold a message back so later ones overtake it.
	reorderDelay = 50 * time.Millisecond
)

// either combines two independent probabilities: the chance that at least one happens.
func either(p float64, perMille int64) float64 {
	q := float64(perMille) / perMilleMax
	return 1 - (1-p)*(1-q)
}

// checkNet is the check of every network kind: no targets, Value in [0, hi].
func checkNet(f Fault, hi int64, unit string) error {
	return firstErr(unused(f, fValue|fFor), valueIn(f, 0, hi, unit))
}

// drawNet draws a network fault with Value in [lo, hi].
func drawNet(rng *rand.Rand, name string, at, maxFor time.Duration, lo, hi int64) Fault {
	return Fault{Kind: name, At: at, Value: drawIn(rng, lo, hi), For: drawFor(rng, maxFor)}
}

func perMille(v int64) string { return fmt.Sprintf("%g%%", float64(v)/10) }

// netLoss loses messages on every link.
type netLoss struct{}

func (netLoss) Name() string { return "net-loss" }
func (netLoss) Doc() string {
	return "Value: per-mille chance (0 to 1000) that a message is lost, on every link without a " +
		"link configuration of its own, until For passes; overlapping network faults combine."
}
func (netLoss) Available(Topology) bool { return true }
func (k netLoss) Draw(rng *rand.Rand, _ Topology, at, maxFor time.Duration) Fault {
	return drawNet(rng, k.Name(), at, maxFor, 1, perMilleDrawMax)
}
func (k netLoss) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (netLoss) check(_ Topology, f Fault) error          { return checkNet(f, perMilleMax, "per-mille") }
func (netLoss) apply(st *state, f Fault) func() {
	return st.pushNet(func(c sim.LinkConfig) sim.LinkConfig { c.Loss = either(c.Loss, f.Value); return c })
}
func (netLoss) lasting() bool           { return true }
func (netLoss) describe(f Fault) string { return "loss " + perMille(f.Value) }

// netDuplicate delivers messages twice on every link.
type netDuplicate struct{}

func (netDuplicate) Name() string { return "net-duplicate" }
func (netDuplicate) Doc() string {
	return "Value: per-mille chance (0 to 1000) that a message is delivered twice, on every link " +
		"without a link configuration of its own, until For passes."
}
func (netDuplicate) Available(Topology) bool { return true }
func (k netDuplicate) Draw(rng *rand.Rand, _ Topology, at, maxFor time.Duration) Fault {
	return drawNet(rng, k.Name(), at, maxFor, 1, perMilleDrawMax)
}
func (k netDuplicate) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (netDuplicate) check(_ Topology, f Fault) error          { return checkNet(f, perMilleMax, "per-mille") }
func (netDuplicate) apply(st *state, f Fault) func() {
	return st.pushNet(func(c sim.LinkConfig) sim.LinkConfig {
		c.Duplicate = either(c.Duplicate, f.Value)
		return c
	})
}
func (netDuplicate) lasting() bool           { return true }
func (netDuplicate) describe(f Fault) string { return "duplicate " + perMille(f.Value) }

// netReorder holds some messages back so later ones overtake them.
type netReorder struct{}

func (netReorder) Name() string { return "net-reorder" }
func (netReorder) Doc() string {
	return "Value: per-mille chance (0 to 1000) that a message is held back up to 50ms so later " +
		"ones overtake it, on every link without a link configuration of its own, until For passes."
}
func (netReorder) Available(Topology) bool { return true }
func (k netReorder) Draw(rng *rand.Rand, _ Topology, at, maxFor time.Duration) Fault {
	return drawNet(rng, k.Name(), at, maxFor, 1, perMilleDrawMax)
}
func (k netReorder) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (netReorder) check(_ Topology, f Fault) error          { return checkNet(f, perMilleMax, "per-mille") }
func (netReorder) apply(st *state, f Fault) func() {
	return st.pushNet(func(c sim.LinkConfig) sim.LinkConfig {
		c.Reorder = either(c.Reorder, f.Value)
		c.ReorderDelay = max(c.ReorderDelay, reorderDelay)
		return c
	})
}
func (netReorder) lasting() bool           { return true }
func (netReorder) describe(f Fault) string { return "reorder " + perMille(f.Value) }

// netDelay slows every link down.
type netDelay struct{}

func (netDelay) Name() string { return "net-delay" }
func (netDelay) Doc() string {
	return "Value: extra latency in nanoseconds (0 to 1m) on every link without a link " +
		"configuration of its own, until For passes."
}
func (netDelay) Available(Topology) bool { return true }
func (k netDelay) Draw(rng *rand.Rand, _ Topology, at, maxFor time.Duration) Fault {
	return drawNet(rng, k.Name(), at, maxFor, int64(time.Millisecond), int64(netDelayDrawMax))
}
func (k netDelay) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (netDelay) check(_ Topology, f Fault) error          { return checkNet(f, int64(netDelayMax), "ns") }
func (netDelay) apply(st *state, f Fault) func() {
	return st.pushNet(func(c sim.LinkConfig) sim.LinkConfig {
		c.Latency += time.Duration(f.Value)
		return c
	})
}
func (netDelay) lasting() bool           { return true }
func (netDelay) describe(f Fault) string { return signed(time.Duration(f.Value)) }
