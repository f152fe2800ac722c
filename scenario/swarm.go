package scenario

import (
	"cmp"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
)

// streamSwarm is the random stream of a soak's variation of a scenario (its swarm of fault
// kinds, their intensities, the liveness stop), apart from the workload's and the faults'
// streams so that switching swarm testing on or off never shifts the topology or workload.
const streamSwarm uint64 = 0x737761726d // "swarm"

// SwarmOptions say how a soak varies the scenarios it generates.
type SwarmOptions struct {
	// Swarm enables a random subset of the scenario's fault kinds (faults.Swarm), each with
	// a random intensity, instead of drawing from all of them.
	Swarm bool
	// Liveness is the share of runs, 0 to 1, in liveness mode: the faults stop at a random
	// point of the chaos phase (those still on are healed, those not yet begun are dropped)
	// and the cluster must converge within the scenario's settle phase.
	Liveness float64
}

// SwarmKind is one fault kind a swarm enabled, with its intensity.
type SwarmKind struct {
	Kind string `json:"kind"`
	// Intensity is 1 (low), 2 (medium) or 4 (high): the kind's weight when the schedule's
	// faults pick their kinds, and how long its faults may last (a quarter, half or all of
	// the scenario's longest fault).
	Intensity int `json:"intensity"`
	// Faults is how many faults of the kind the schedule has (the scenario's own guaranteed
	// faults included).
	Faults int `json:"faults"`
}

// Variant is how a soak varied one generated scenario.
type Variant struct {
	// Swarm lists the enabled fault kinds; empty when swarm testing was off or the scenario
	// has no fault kind.
	Swarm []SwarmKind `json:"swarm,omitempty"`
	// LivenessStop, in liveness mode, is when the faults stopped (the scenario's Chaos);
	// Settle is the bound convergence had to meet.
	LivenessStop time.Duration `json:"liveness_stop,omitempty"`
	Settle       time.Duration `json:"settle,omitempty"`
}

// Liveness says the run was in liveness mode.
func (v Variant) Liveness() bool { return v.LivenessStop > 0 }

// swarmIntensities are the intensity levels, low to high.
var swarmIntensities = []int{1, 2, 4}

// GenerateVariant draws the scenario of Generate and varies it as o says; everything is drawn
// from the seed, so the same seed and options give the same scenario. The topology and the
// workload are Generate's. With o.Swarm the fault schedule is redrawn from a random non-empty
// subset of the available kinds, 2 to 12 faults (at least one per enabled kind) whose kinds are
// picked with the intensities as weights; the faults the scenario is about are then added as
// Generate adds them. In liveness mode a run keeps only the faults that begin before a stop
// drawn in [Chaos/4, Chaos), and Chaos becomes that stop; as it may cut off the rare path the
// scenario is about, its Require list is dropped (the checkers still judge the run).
func (e Entry) GenerateVariant(seed uint64, k Knobs, o SwarmOptions) (Scenario, Variant) {
	sc := e.Generate(seed, k)
	var v Variant
	rng := rand.New(rand.NewPCG(seed, streamSwarm))
	if o.Swarm {
		sc, v.Swarm = e.swarm(rng, sc, k)
	}
	// From a stream of its own, with the scenario's ID mixed in: the same seed does not put
	// every scenario in liveness mode at once, and the swarm's draws do not shift it.
	h := fnv.New64a()
	h.Write([]byte(e.ID))
	lrng := rand.New(rand.NewPCG(seed, streamSwarm^h.Sum64()))
	live, at := lrng.Float64(), lrng.Float64()
	if live < o.Liveness {
		stop := sc.Chaos/4 + time.Duration(at*float64(sc.Chaos-sc.Chaos/4))
		stop = max(stop.Truncate(time.Second), time.Second)
		kept := faults.Schedule{}
		for _, f := range sc.Faults {
			if f.At < stop {
				kept = append(kept, f)
			}
		}
		sc.Faults, sc.Chaos, sc.Require = kept, stop, nil
		v.LivenessStop, v.Settle = stop, sc.Settle
		for i := range v.Swarm {
			v.Swarm[i].Faults = 0
			for _, f := range kept {
				if f.Kind == v.Swarm[i].Kind {
					v.Swarm[i].Faults++
				}
			}
		}
	}
	return sc, v
}

// swarm redraws sc's fault schedule from a swarm of its available kinds.
func (e Entry) swarm(rng *rand.Rand, sc Scenario, k Knobs) (Scenario, []SwarmKind) {
	topo := sc.Topology()
	var kinds []faults.Kind
	for _, name := range e.AvailableKinds(sc) {
		if kd, ok := faults.Lookup(name); ok {
			kinds = append(kinds, kd)
		}
	}
	names := faults.Swarm(rng, kinds, topo)
	if len(names) == 0 {
		return sc, nil
	}
	sw := make([]SwarmKind, len(names))
	total := 0
	for i, n := range names {
		sw[i] = SwarmKind{Kind: n, Intensity: swarmIntensities[rng.IntN(len(swarmIntensities))]}
		total += sw[i].Intensity
	}
	count := k.Faults
	if count == 0 {
		count = 2 + rng.IntN(11)
	}
	count = max(count, len(sw))
	maxFor := e.MaxFaultFor
	if maxFor == 0 {
		maxFor = time.Minute
	}
	start, end := 10*time.Second, sc.Chaos-maxFor
	var sch faults.Schedule
	for i := range count {
		// Each enabled kind once, then kinds by weight.
		j := i
		if i >= len(sw) {
			j = weighted(rng, sw, total)
		}
		sch = append(sch, faults.RandomSchedule(rng, topo, []string{sw[j].Kind}, start, end, 1,
			maxFor*time.Duration(sw[j].Intensity)/4)...)
	}
	slices.SortStableFunc(sch, func(a, b faults.Fault) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.Kind, b.Kind))
	})
	sc.Faults = sch
	if e.ensure != nil {
		e.ensure(rng, &sc)
	}
	for _, f := range sc.Faults {
		for i := range sw {
			if sw[i].Kind == f.Kind {
				sw[i].Faults++
			}
		}
	}
	return sc, sw
}

// weighted picks an index of sw with probability proportional to its intensity.
func weighted(rng *rand.Rand, sw []SwarmKind, total int) int {
	x := rng.IntN(total)
	for i, s := range sw {
		if x < s.Intensity {
			return i
		}
		x -= s.Intensity
	}
	return len(sw) - 1
}
