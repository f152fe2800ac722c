package scenario

import (
	"runtime"
	"sort"
	"sync"
	"testing"
)

// TestDeclaredMarksAreReached runs the standard soak (every scenario, seeds 1-3) and fails if a
// declared rare path was never reached.
func TestDeclaredMarksAreReached(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario three times")
	}
	var jobs []Scenario
	for _, e := range Catalogue() {
		for seed := uint64(1); seed <= 3; seed++ {
			jobs = append(jobs, e.Generate(seed, Knobs{}))
		}
	}
	hits := map[string]int{}
	var mu sync.Mutex
	work := make(chan Scenario)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sc := range work {
				res := Run(sc, Options{})
				mu.Lock()
				for m, n := range res.Marks {
					hits[m] += n
				}
				mu.Unlock()
			}
		}()
	}
	for _, sc := range jobs {
		work <- sc
	}
	close(work)
	wg.Wait()
	var missed []string
	for _, m := range DeclaredMarks {
		if hits[m] == 0 {
			missed = append(missed, m)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Fatalf("the standard soak (%d runs) never reached these declared paths: %q", len(jobs), missed)
	}
}
