package scenario

import (
	"strings"
	"testing"
	"time"
)

// benchRuns runs b.N seeds of the entry with the knobs, failing on any failed run, and reports
// the time compression (simulated seconds per wall second) and the event rate. It returns the
// scenarios run and their results, for benchmark-specific metrics.
func benchRuns(b *testing.B, e Entry, k Knobs) ([]Scenario, []Result, float64) {
	var scs []Scenario
	var results []Result
	var simS float64
	var events uint64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sc := e.Generate(uint64(i+1), k)
		res := Run(sc, Options{})
		if !res.Passed {
			b.Fatalf("%s seed %d failed: %+v", e.ID, i+1, res.FirstFailure())
		}
		scs, results = append(scs, sc), append(results, res)
		simS += res.SimSeconds
		events += res.Events
	}
	wall := time.Since(start).Seconds()
	b.ReportMetric(simS/wall, "sim-s/wall-s")
	b.ReportMetric(float64(events)/wall, "events/s")
	return scs, results, wall
}

func mustLookup(b *testing.B, id string) Entry {
	e, err := Lookup(id)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkRegistryScenario runs registry/linearizable (chaos and settle, about 14 simulated
// minutes) and reports the time compression, the event rate, and porcupine's check time as a
// share of the whole run.
func BenchmarkRegistryScenario(b *testing.B) {
	_, results, wall := benchRuns(b, mustLookup(b, "registry/linearizable"), Knobs{})
	var checkS float64
	for _, r := range results {
		checkS += r.CheckSeconds
	}
	b.ReportMetric(100*checkS/wall, "porcupine-%")
}

// BenchmarkProvisionerScenarios runs each provisioner/* scenario (about 11 simulated minutes,
// faults included) and reports its time compression and event rate.
func BenchmarkProvisionerScenarios(b *testing.B) {
	for _, e := range Catalogue() {
		if name, ok := strings.CutPrefix(e.ID, "provisioner/"); ok {
			b.Run(name, func(b *testing.B) { benchRuns(b, e, Knobs{}) })
		}
	}
}

// BenchmarkLoadBalancing runs e2e/load-balancing with 3 hives of 4 workers and 100 clients
// sending rounds of 5 requests each (500 concurrent requests a round, far past the 96 the
// workers can hold: most are retried after ALL_SLOTS_BUSY), and reports simulated
// requests per wall second besides the time compression.
func BenchmarkLoadBalancing(b *testing.B) {
	scs, _, wall := benchRuns(b, mustLookup(b, "e2e/load-balancing"), Knobs{Clients: 100})
	requests := 0
	for _, sc := range scs {
		for _, c := range sc.InferClients {
			requests += len(c.Client.Requests)
		}
	}
	b.ReportMetric(float64(requests)/wall, "requests/s")
}
