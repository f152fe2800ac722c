// Package clean holds code the determinism checker must accept.
package clean

import (
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	tm "time"
)

// Config uses the renamed time import only for a duration.
type Config struct {
	Timeout tm.Duration
}

func names(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m { //det:sorted keys are sorted below
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}

func count(m map[string]int) (n int) {
	for range m {
		n++
	}
	return n
}

func pick(r *rand.Rand, xs []string) string {
	return xs[r.IntN(len(xs))]
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0))
}

func buffer() []byte {
	return make([]byte, 8)
}
