package scenario

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// GenerateVariant with nothing to vary is Generate; with swarm testing each seed enables a
// non-empty subset of the available kinds with intensities, the schedule draws only from it
// (besides the faults the scenario is about), and the draw is a function of the seed.
func TestGenerateVariantSwarms(t *testing.T) {
	sizes := map[int]int{}
	for _, e := range Catalogue() {
		for seed := uint64(1); seed <= 4; seed++ {
			plain := e.Generate(seed, Knobs{})
			same, v := e.GenerateVariant(seed, Knobs{}, SwarmOptions{})
			if !reflect.DeepEqual(plain, same) || len(v.Swarm) > 0 || v.Liveness() {
				t.Fatalf("%s seed %d: no variation changed the scenario (%+v)", e.ID, seed, v)
			}
			sc, v := e.GenerateVariant(seed, Knobs{}, SwarmOptions{Swarm: true})
			again, v2 := e.GenerateVariant(seed, Knobs{}, SwarmOptions{Swarm: true})
			if !reflect.DeepEqual(sc, again) || !reflect.DeepEqual(v, v2) {
				t.Fatalf("%s seed %d: two draws differ", e.ID, seed)
			}
			if err := sc.Validate(); err != nil {
				t.Fatalf("%s seed %d: %v", e.ID, seed, err)
			}
			if !reflect.DeepEqual(sc.Hives, plain.Hives) || !reflect.DeepEqual(sc.Clients, plain.Clients) || sc.Chaos != plain.Chaos {
				t.Fatalf("%s seed %d: swarm testing changed the topology or workload", e.ID, seed)
			}
			avail := e.AvailableKinds(plain)
			if len(avail) == 0 {
				continue
			}
			if len(v.Swarm) == 0 {
				t.Fatalf("%s seed %d: empty swarm of %v", e.ID, seed, avail)
			}
			sizes[len(v.Swarm)]++
			enabled := map[string]bool{}
			for _, k := range v.Swarm {
				enabled[k.Kind] = true
				if !slices.Contains(avail, k.Kind) || !slices.Contains([]int{1, 2, 4}, k.Intensity) || k.Faults < 1 {
					t.Errorf("%s seed %d: swarm kind %+v (available %v)", e.ID, seed, k, avail)
				}
			}
			ensured := map[string]bool{}
			for _, f := range plain.Faults {
				ensured[f.Kind] = true
			}
			for _, f := range sc.Faults {
				if !enabled[f.Kind] && !ensured[f.Kind] {
					t.Errorf("%s seed %d: fault %s neither in the swarm %v nor one the scenario guarantees", e.ID, seed, f.Kind, v.Swarm)
				}
			}
		}
	}
	if len(sizes) < 3 {
		t.Errorf("swarm sizes %v: the subsets hardly vary", sizes)
	}
}

// In liveness mode the faults stop at a drawn point of the chaos phase: no fault begins after
// it, the chaos phase ends there, and the settle phase (the convergence bound) is kept.
func TestGenerateVariantLivenessMode(t *testing.T) {
	live := 0
	for _, e := range Catalogue() {
		for seed := uint64(1); seed <= 3; seed++ {
			plain := e.Generate(seed, Knobs{})
			sc, v := e.GenerateVariant(seed, Knobs{}, SwarmOptions{Liveness: 1})
			if !v.Liveness() || sc.Chaos != v.LivenessStop || v.Settle != plain.Settle || sc.Settle != plain.Settle || len(sc.Require) != 0 {
				t.Fatalf("%s seed %d: %+v, chaos %v", e.ID, seed, v, sc.Chaos)
			}
			if sc.Chaos < plain.Chaos/4 || sc.Chaos >= plain.Chaos || sc.Chaos%time.Second != 0 {
				t.Errorf("%s seed %d: faults stop at %v of %v", e.ID, seed, sc.Chaos, plain.Chaos)
			}
			for _, f := range sc.Faults {
				if f.At >= sc.Chaos {
					t.Errorf("%s seed %d: fault %s at %v after the stop %v", e.ID, seed, f.Kind, f.At, sc.Chaos)
				}
			}
			if err := sc.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, v := e.GenerateVariant(seed, Knobs{}, SwarmOptions{Liveness: 0.25}); v.Liveness() {
				live++
			}
		}
	}
	if n := 3 * len(Catalogue()); live < n/10 || live > n/2 {
		t.Errorf("%d of %d runs in liveness mode at a share of 0.25", live, n)
	}
}

// The smaller neighbours Shrink tries are valid scenarios: removing a hive or a worker takes
// the faults, drains and delayed starts that name it along, and a shorter chaos phase keeps
// only the faults that begin in it.
func TestShrinkStepsAreValid(t *testing.T) {
	for _, e := range Catalogue() {
		sc := e.Generate(1, Knobs{})
		nodes := nodeCount(sc)
		for i, c := range shrinkSteps(sc) {
			if err := c.Validate(); err != nil {
				t.Errorf("%s: step %d: %v", e.ID, i, err)
			}
			if nodeCount(c) > nodes || len(c.Faults) > len(sc.Faults) || c.Chaos > sc.Chaos || c.WorkerCount() > sc.WorkerCount() {
				t.Errorf("%s: step %d is not smaller", e.ID, i)
			}
			for _, f := range c.Faults {
				if f.At >= c.Chaos {
					t.Errorf("%s: step %d keeps a fault at %v after its chaos phase of %v", e.ID, i, f.At, c.Chaos)
				}
			}
		}
	}
}
