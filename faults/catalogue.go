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

// Kind is one kind of fault in the catalogue.
type Kind interface {
	// Name is the kind's catalogue name, the Kind of its faults ("partition-isolate").
	Name() string
	// Doc says what the fault does, what it targets and what its Value means.
	Doc() string
	// Available reports whether the topology has something this kind can target.
	Available(t Topology) bool
	// Draw returns a random fault of this kind starting at at and lasting at most maxFor
	// (instant kinds last 0). It draws only from rng, so the same rng state gives the same
	// fault. It panics when the kind is not Available in t.
	Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault
	// Inject applies f to s now (f.At is ignored) and schedules its end after f.For with s.At.
	// It keeps no bookkeeping shared with other faults: for faults that may overlap, use one
	// Injector for the whole run.
	Inject(s *sim.Sim, t Topology, f Fault)
}

// kind is what every catalogue entry implements besides Kind.
type kind interface {
	Kind
	// check validates the kind-specific fields of f against t.
	check(t Topology, f Fault) error
	// apply starts f now and returns what ends it (nil for instant kinds).
	apply(st *state, f Fault) (end func())
	// lasting reports whether the fault has an end for the Injector to schedule.
	lasting() bool
	// describe is f's targets and value in words, for Summary.
	describe(f Fault) string
}

// catalogue is every kind, sorted by name.
var catalogue = []kind{
	clientGone{}, clockDrift{}, clockJump{}, clockSkew{}, crashRestart{}, deviceFault{},
	diskClobberHeader{}, diskFlip{}, diskFsyncFail{}, diskFull{}, diskSlow{}, diskTruncate{},
	netDelay{}, netDuplicate{}, netLoss{}, netReorder{},
	partitionIsolate{}, partitionOneway{}, partitionSplit{}, partitionSymmetric{},
	pause{}, powerFail{}, powerFailAtWrite{}, workerHang{},
}

func init() {
	for _, k := range hubKinds {
		catalogue = append(catalogue, k)
	}
	for _, k := range engineKinds {
		catalogue = append(catalogue, k)
	}
	slices.SortFunc(catalogue, func(a, b kind) int { return strings.Compare(a.Name(), b.Name()) })
}

// Catalogue returns every kind of fault, sorted by name.
func Catalogue() []Kind {
	out := make([]Kind, len(catalogue))
	for i, k := range catalogue {
		out[i] = k
	}
	return out
}

// Lookup finds a kind by name.
func Lookup(name string) (Kind, bool) {
	k, ok := lookup(name)
	return k, ok
}

func lookup(name string) (kind, bool) {
	i, ok := slices.BinarySearchFunc(catalogue, name, func(k kind, n string) int {
		return strings.Compare(k.Name(), n)
	})
	if !ok {
		return nil, false
	}
	return catalogue[i], true
}

func mustLookup(name string) kind {
	k, ok := lookup(name)
	if !ok {
		panic(fmt.Sprintf("faults: unknown fault kind %q", name))
	}
	return k
}

func names() []string {
	out := make([]string, len(catalogue))
	for i, k := range catalogue {
		out[i] = k.Name()
	}
	return out
}

// injectAlone is Kind.Inject: f on s now, with bookkeeping of its own.
func injectAlone(k kind, s *sim.Sim, t Topology, f Fault) {
	NewInjector(s, t).inject(k, f)
}

// mustAvailable panics when a kind is drawn on a topology it cannot target.
func mustAvailable(k Kind, t Topology) {
	if !k.Available(t) {
		panic(fmt.Sprintf("faults: %s drawn on a topology it cannot target: %+v", k.Name(), t))
	}
}

// pick returns a random element of a non-empty sorted list.
func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// drawFor draws a duration in [1ns, maxFor], or 0 when maxFor is not positive.
func drawFor(rng *rand.Rand, maxFor time.Duration) time.Duration {
	if maxFor <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(maxFor))) + 1
}

// drawIn draws an integer in [lo, hi].
func drawIn(rng *rand.Rand, lo, hi int64) int64 { return lo + rng.Int64N(hi-lo+1) }

// signed prints a duration with its sign: "+5s", "-30s".
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// one returns the single target of f, or "" if it has not exactly one.
func one(f Fault) node.Addr {
	if len(f.Targets) != 1 {
		return ""
	}
	return f.Targets[0]
}
