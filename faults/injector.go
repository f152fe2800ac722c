package faults

import (
	"fmt"
	"maps"
	"slices"

	"github.com/rbee-sim/rbee-sim/sim"
)

// Injector runs fault schedules on one Sim and keeps the bookkeeping that lets overlapping
// faults end independently (see the package comment). Use one Injector per Sim for every fault
// of a run; it is not safe for use from two goroutines, like the Sim itself.
type Injector struct {
	s         *sim.Sim
	st        *state
	activated map[string]int
	// active holds the ends of the faults that started and have not ended, by start order.
	active map[uint64]func()
}

// NewInjector returns an Injector for faults on s drawn for topology t.
func NewInjector(s *sim.Sim, t Topology) *Injector {
	return &Injector{s: s, st: newState(s, t), activated: map[string]int{}, active: map[uint64]func(){}}
}

// Schedule registers every fault's start, and the end of every fault that lasts, as s.At
// actions named "fault KIND start TARGETS" and "fault KIND end TARGETS", in schedule order.
// Faults whose time has passed start now. The schedule must pass Validate for the Injector's
// topology; Schedule panics with the validation error otherwise, as that is a caller's bug.
func (in *Injector) Schedule(sch Schedule) {
	if err := sch.Validate(in.st.t); err != nil {
		panic(fmt.Sprintf("faults: Schedule given an invalid schedule: %v", err))
	}
	for _, f := range sch {
		in.schedule(mustLookup(f.Kind), f)
	}
}

func (in *Injector) schedule(k kind, f Fault) {
	var id uint64
	in.s.At(f.At, f.action("start"), func() { id = in.start(k, f) })
	if k.lasting() {
		in.s.At(f.At+f.For, f.action("end"), func() { in.end(id) })
	}
}

// inject starts f now and schedules its end after f.For.
func (in *Injector) inject(k kind, f Fault) {
	id := in.start(k, f)
	if id != 0 {
		in.s.At(in.s.Now()+f.For, f.action("end"), func() { in.end(id) })
	}
}

// start applies f and returns the id of its end, 0 when it has none.
func (in *Injector) start(k kind, f Fault) uint64 {
	in.activated[f.Kind]++
	end := k.apply(in.st, f)
	if end == nil {
		return 0
	}
	id := in.st.id()
	in.active[id] = end
	return id
}

// end ends a fault unless it has ended already (by HealAll).
func (in *Injector) end(id uint64) {
	if e, ok := in.active[id]; ok {
		delete(in.active, id)
		e()
	}
}

// HealAll ends every active fault now, latest first, as if its time were up: partitions heal,
// the network default and clock drifts are restored, skews are undone, paused processes
// resume and crashed ones restart. Their scheduled ends then do nothing; faults that have not
// started yet still will. A worker hang is the hive's to end and is left alone. Call it between
// a chaos phase and a liveness phase.
func (in *Injector) HealAll() {
	ids := slices.Sorted(maps.Keys(in.active))
	slices.Reverse(ids)
	for _, id := range ids {
		in.end(id)
	}
}

// Activated counts, per kind, the faults whose start has run. A fault counts even when it had
// no visible effect (its target was already down, a device fault reached a hive that was down);
// a fault scheduled after the end of the run does not count, which lets a report call a run
// whose faults never fired invalid.
func (in *Injector) Activated() map[string]int { return maps.Clone(in.activated) }
