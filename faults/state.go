package faults

import (
	"slices"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// link is one directed link.
type link struct{ from, to node.Addr }

// state is the bookkeeping of the faults active on one Sim, so that overlapping faults end
// independently. It lives in an Injector, never in a package variable: different Sims run on
// different goroutines.
type state struct {
	s *sim.Sim
	t Topology
	// blocks counts the active faults that cut each link.
	blocks map[link]int
	// external marks links that were already cut, by someone else, when a fault first cut them:
	// they stay cut when the faults end.
	external map[link]bool
	net      netStack
	drift    map[node.Addr]*driftStack
	// down counts the active faults that hold each process down; crashed marks the processes
	// those faults crashed, which they restart when the count reaches zero.
	down    map[node.Addr]int
	crashed map[node.Addr]bool
	// pauses counts the active pauses of each process; paused marks the ones a fault paused.
	pauses map[node.Addr]int
	paused map[node.Addr]bool
	// disk holds the active disk-full and disk-slow faults of each disk setting.
	disk map[diskSetting]*diskStack
	// traps maps a machine to the power-fail-at-write fault whose crash point is armed on its
	// disk, so that the end of a replaced one leaves the newer one armed.
	traps map[string]uint64
	// hub holds, per hub fault kind, the active faults in start order: the latest one sets the
	// hub; when one ends, the latest still active is set again (or the setting cleared).
	hub    map[string][]hubEntry
	nextID uint64
}

// hubEntry is one active hub fault.
type hubEntry struct {
	id uint64
	f  Fault
}

func newState(s *sim.Sim, t Topology) *state {
	return &state{s: s, t: t, blocks: map[link]int{}, external: map[link]bool{},
		drift: map[node.Addr]*driftStack{}, down: map[node.Addr]int{}, crashed: map[node.Addr]bool{},
		pauses: map[node.Addr]int{}, paused: map[node.Addr]bool{}, disk: map[diskSetting]*diskStack{},
		traps: map[string]uint64{}, hub: map[string][]hubEntry{}}
}

func (st *state) id() uint64 {
	st.nextID++
	return st.nextID
}

// block cuts links for one fault.
func (st *state) block(links []link) {
	n := st.s.Network()
	for _, l := range links {
		if st.blocks[l] == 0 && n.Blocked(l.from, l.to) {
			st.external[l] = true
		}
		st.blocks[l]++
		n.Block(l.from, l.to)
	}
}

// unblock ends one fault's cuts. sim.Network can only heal everything, so this heals, then cuts
// again every link that was cut before and is still wanted: by another fault, or by whoever cut
// it outside this package.
func (st *state) unblock(links []link) {
	freed := map[link]bool{}
	for _, l := range links {
		st.blocks[l]--
		if st.blocks[l] > 0 {
			continue
		}
		delete(st.blocks, l)
		if !st.external[l] {
			freed[l] = true
		}
		delete(st.external, l)
	}
	if len(freed) == 0 {
		return
	}
	n := st.s.Network()
	still := st.blockedLinks()
	n.Heal()
	for _, l := range still {
		if !freed[l] {
			n.Block(l.from, l.to)
		}
	}
}

// blockedLinks lists every cut link between known addresses, in order.
func (st *state) blockedLinks() []link {
	addrs := sortedAddrs(st.s.Addrs(), st.t.nodes())
	var out []link
	for _, a := range addrs {
		for _, b := range addrs {
			if st.s.Network().Blocked(a, b) {
				out = append(out, link{a, b})
			}
		}
	}
	return out
}

// netLayer is one active network fault: how it changes the default link.
type netLayer struct {
	id    uint64
	apply func(sim.LinkConfig) sim.LinkConfig
}

// netStack is the active network faults in the order they started, over the default link found
// when the first started.
type netStack struct {
	base   sim.LinkConfig
	layers []netLayer
}

// pushNet starts a network fault and returns its end.
func (st *state) pushNet(apply func(sim.LinkConfig) sim.LinkConfig) (end func()) {
	if len(st.net.layers) == 0 {
		st.net.base = st.s.Network().Default()
	}
	id := st.id()
	st.net.layers = append(st.net.layers, netLayer{id, apply})
	st.applyNet()
	return func() {
		st.net.layers = slices.DeleteFunc(st.net.layers, func(l netLayer) bool { return l.id == id })
		st.applyNet()
	}
}

func (st *state) applyNet() {
	c := st.net.base
	for _, l := range st.net.layers {
		c = l.apply(c)
	}
	st.s.Network().SetDefault(c)
}

// driftStack is the active drift faults of one clock over the drift it had before them; the
// latest one that is still active wins.
type driftStack struct {
	base   int64
	layers []driftLayer
}

type driftLayer struct {
	id  uint64
	ppm int64
}

// pushDrift starts a drift fault on a and returns its end.
func (st *state) pushDrift(a node.Addr, ppm int64) (end func()) {
	d := st.drift[a]
	if d == nil {
		d = &driftStack{base: st.s.Clock(a).DriftPPM()}
		st.drift[a] = d
	}
	id := st.id()
	d.layers = append(d.layers, driftLayer{id, ppm})
	st.applyDrift(a)
	return func() {
		d.layers = slices.DeleteFunc(d.layers, func(l driftLayer) bool { return l.id == id })
		st.applyDrift(a)
		if len(d.layers) == 0 {
			delete(st.drift, a)
		}
	}
}

func (st *state) applyDrift(a node.Addr) {
	d := st.drift[a]
	ppm := d.base
	if n := len(d.layers); n > 0 {
		ppm = d.layers[n-1].ppm
	}
	st.s.Clock(a).SetDrift(st.s.Now(), ppm)
}

// holdDown counts one more fault holding each of addrs down; crashed lists those it crashed.
func (st *state) holdDown(addrs, crashed []node.Addr) {
	for _, a := range addrs {
		st.down[a]++
	}
	for _, a := range crashed {
		st.crashed[a] = true
	}
}

// release ends one fault's hold on addrs and restarts those no fault holds down any more.
func (st *state) release(addrs []node.Addr) {
	for _, a := range addrs {
		st.down[a]--
		if st.down[a] > 0 {
			continue
		}
		delete(st.down, a)
		if st.crashed[a] {
			delete(st.crashed, a)
			st.s.Restart(a, 0)
		}
	}
}

// upNow lists the processes that are up, in order.
func (st *state) upNow() []node.Addr {
	return slices.DeleteFunc(st.s.Addrs(), func(a node.Addr) bool { return !st.s.Up(a) })
}
