package faults

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Swarm is swarm testing: it returns the names of a random non-empty subset of the kinds that
// are available in t, each kept with probability 1/2 (one drawn at random when none is kept),
// sorted. It returns nil when no kind is available.
func Swarm(rng *rand.Rand, kinds []Kind, t Topology) []string {
	var avail, kept []string
	for _, k := range kinds {
		if k.Available(t) {
			avail = append(avail, k.Name())
		}
	}
	slices.Sort(avail)
	avail = slices.Compact(avail)
	if len(avail) == 0 {
		return nil
	}
	for _, name := range avail {
		if rng.IntN(2) == 0 {
			kept = append(kept, name)
		}
	}
	if len(kept) == 0 {
		kept = []string{pick(rng, avail)}
	}
	return kept
}

// RandomSchedule draws count faults of the enabled kinds that are available in t, at uniform
// times in [start, end), each lasting at most maxFor and ending no later than end, sorted by At
// then Kind. The order of enabled does not matter. It returns nil when no enabled kind is
// available, count is not positive or the window is empty. An enabled name that is not in the
// catalogue panics: names come from Swarm or a validated scenario.
func RandomSchedule(rng *rand.Rand, t Topology, enabled []string, start, end time.Duration, count int,
	maxFor time.Duration) Schedule {
	kinds := availableKinds(t, enabled)
	if len(kinds) == 0 || count <= 0 || end <= start {
		return nil
	}
	sch := make(Schedule, 0, count)
	for range count {
		k := pick(rng, kinds)
		at := start + time.Duration(rng.Int64N(int64(end-start)))
		sch = append(sch, k.Draw(rng, t, at, min(maxFor, end-at)))
	}
	slices.SortStableFunc(sch, func(a, b Fault) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.Kind, b.Kind))
	})
	return sch
}

// availableKinds looks up the enabled names, sorted and without duplicates, and keeps those
// available in t.
func availableKinds(t Topology, enabled []string) []kind {
	names := slices.Compact(sortedStrings(enabled))
	var out []kind
	for _, name := range names {
		k, ok := lookup(name)
		if !ok {
			panic(fmt.Sprintf("faults: RandomSchedule enabled unknown fault kind %q", name))
		}
		if k.Available(t) {
			out = append(out, k)
		}
	}
	return out
}
