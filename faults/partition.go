package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// partitionGroupsMax is the most groups partition-split makes.
const partitionGroupsMax = 3

// both is the two directions between a and b.
func both(a, b node.Addr) []link { return []link{{a, b}, {b, a}} }

// cut blocks links for a fault and returns the end that unblocks exactly those.
func cut(st *state, links []link) func() {
	st.block(links)
	return func() { st.unblock(links) }
}

// drawPair draws two different nodes.
func drawPair(rng *rand.Rand, t Topology) []node.Addr {
	ns := t.nodes()
	i := rng.IntN(len(ns))
	j := rng.IntN(len(ns) - 1)
	if j >= i {
		j++
	}
	return []node.Addr{ns[i], ns[j]}
}

// partitionSymmetric cuts two nodes off from each other, both ways.
type partitionSymmetric struct{}

func (partitionSymmetric) Name() string { return "partition-symmetric" }
func (partitionSymmetric) Doc() string {
	return "Targets [a, b], any nodes: a and b cannot reach each other, both ways, until For passes."
}
func (partitionSymmetric) Available(t Topology) bool { return len(t.nodes()) >= 2 }
func (k partitionSymmetric) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: drawPair(rng, t), For: drawFor(rng, maxFor)}
}
func (k partitionSymmetric) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (partitionSymmetric) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fFor), targets(f, 2, anyNode(t)))
}
func (partitionSymmetric) apply(st *state, f Fault) func() {
	return cut(st, both(f.Targets[0], f.Targets[1]))
}
func (partitionSymmetric) lasting() bool { return true }
func (partitionSymmetric) describe(f Fault) string {
	return joinAddrs(f.Targets, " <-> ")
}

// partitionOneway cuts one direction of a link.
type partitionOneway struct{}

func (partitionOneway) Name() string { return "partition-oneway" }
func (partitionOneway) Doc() string {
	return "Targets [from, to], any nodes: messages from -> to are lost until For passes; to -> from still works."
}
func (partitionOneway) Available(t Topology) bool { return len(t.nodes()) >= 2 }
func (k partitionOneway) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: drawPair(rng, t), For: drawFor(rng, maxFor)}
}
func (k partitionOneway) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (partitionOneway) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fFor), targets(f, 2, anyNode(t)))
}
func (partitionOneway) apply(st *state, f Fault) func() {
	return cut(st, []link{{f.Targets[0], f.Targets[1]}})
}
func (partitionOneway) lasting() bool           { return true }
func (partitionOneway) describe(f Fault) string { return joinAddrs(f.Targets, " -> ") }

// partitionIsolate cuts one node off from every other process.
type partitionIsolate struct{}

func (partitionIsolate) Name() string { return "partition-isolate" }
func (partitionIsolate) Doc() string {
	return "Targets [a], any node: a cannot reach any other process (every process of the Sim, " +
		"not only the topology's) nor be reached, until For passes."
}
func (partitionIsolate) Available(t Topology) bool { return len(t.nodes()) >= 2 }
func (k partitionIsolate) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{pick(rng, t.nodes())}, For: drawFor(rng, maxFor)}
}
func (k partitionIsolate) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (partitionIsolate) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fFor), targets(f, 1, anyNode(t)))
}
func (partitionIsolate) apply(st *state, f Fault) func() {
	a := f.Targets[0]
	var links []link
	for _, b := range sortedAddrs(st.s.Addrs(), st.t.nodes()) {
		if b != a {
			links = append(links, both(a, b)...)
		}
	}
	return cut(st, links)
}
func (partitionIsolate) lasting() bool           { return true }
func (partitionIsolate) describe(f Fault) string { return joinAddrs(f.Targets, " ") }

// partitionSplit splits the topology's nodes into groups that cannot reach each other.
type partitionSplit struct{}

func (partitionSplit) Name() string { return "partition-split" }
func (partitionSplit) Doc() string {
	return "Groups: 2 or 3 disjoint, non-empty groups of nodes (drawn to cover every node of the " +
		"topology): no message crosses between groups until For passes. Processes in no group " +
		"(a hub) keep every link."
}
func (partitionSplit) Available(t Topology) bool { return len(t.nodes()) >= 2 }
func (k partitionSplit) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	ns := t.nodes()
	n := 2 + rng.IntN(min(partitionGroupsMax, len(ns))-1)
	groups := make([][]node.Addr, n)
	for i, p := range rng.Perm(len(ns)) {
		g := i // the first n nodes found one group each, so none is empty
		if i >= n {
			g = rng.IntN(n)
		}
		groups[g] = append(groups[g], ns[p])
	}
	for _, g := range groups {
		slices.Sort(g)
	}
	slices.SortFunc(groups, func(a, b []node.Addr) int { return strings.Compare(string(a[0]), string(b[0])) })
	return Fault{Kind: k.Name(), At: at, Groups: groups, For: drawFor(rng, maxFor)}
}
func (k partitionSplit) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (partitionSplit) check(t Topology, f Fault) error {
	if err := unused(f, fGroups|fFor); err != nil {
		return err
	}
	if len(f.Groups) < 2 || len(f.Groups) > partitionGroupsMax {
		return fmt.Errorf("groups: partition-split needs 2 to %d groups, got %d", partitionGroupsMax, len(f.Groups))
	}
	seen := map[node.Addr]int{}
	for i, g := range f.Groups {
		if len(g) == 0 {
			return fmt.Errorf("groups[%d]: is empty", i)
		}
		for j, a := range g {
			if !t.isNode(a) {
				return fmt.Errorf("groups[%d][%d]: %q is not a node of the topology", i, j, a)
			}
			if prev, dup := seen[a]; dup {
				return fmt.Errorf("groups[%d][%d]: %q is also in groups[%d]; groups must be disjoint", i, j, a, prev)
			}
			seen[a] = i
		}
	}
	return nil
}
func (partitionSplit) apply(st *state, f Fault) func() {
	var links []link
	for i, g := range f.Groups {
		for _, h := range f.Groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					links = append(links, both(a, b)...)
				}
			}
		}
	}
	return cut(st, links)
}
func (partitionSplit) lasting() bool { return true }
func (partitionSplit) describe(f Fault) string {
	gs := make([]string, len(f.Groups))
	for i, g := range f.Groups {
		gs[i] = "[" + joinAddrs(g, " ") + "]"
	}
	return strings.Join(gs, " | ")
}
