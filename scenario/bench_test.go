package scenario

import (
	"testing"
	"time"
)

// BenchmarkRegistryScenario runs registry/linearizable (chaos and settle, about 14 simulated
// minutes) and reports the time compression (simulated seconds per wall second), the event
// rate, and porcupine's check time as a share of the whole run.
func BenchmarkRegistryScenario(b *testing.B) {
	e, err := Lookup("registry/linearizable")
	if err != nil {
		b.Fatal(err)
	}
	var simS, checkS float64
	var events uint64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res := Run(e.Generate(uint64(i+1), Knobs{}), Options{})
		if !res.Passed {
			b.Fatalf("seed %d failed: %+v", i+1, res.FirstFailure())
		}
		simS += res.SimSeconds
		checkS += res.CheckSeconds
		events += res.Events
	}
	wall := time.Since(start).Seconds()
	b.ReportMetric(simS/wall, "sim-s/wall-s")
	b.ReportMetric(float64(events)/wall, "events/s")
	b.ReportMetric(100*checkS/wall, "porcupine-%")
}

// BenchmarkProvisionerScenarios runs each provisioner/* scenario (about 11 simulated minutes,
// faults included) and reports its time compression and event rate.
func BenchmarkProvisionerScenarios(b *testing.B) {
	for _, e := range Catalogue() {
		if len(e.ID) < 12 || e.ID[:12] != "provisioner/" {
			continue
		}
		b.Run(e.ID[12:], func(b *testing.B) {
			var simS float64
			var events uint64
			start := time.Now()
			for i := 0; i < b.N; i++ {
				res := Run(e.Generate(uint64(i+1), Knobs{}), Options{})
				if !res.Passed {
					b.Fatalf("seed %d failed: %+v", i+1, res.FirstFailure())
				}
				simS += res.SimSeconds
				events += res.Events
			}
			wall := time.Since(start).Seconds()
			b.ReportMetric(simS/wall, "sim-s/wall-s")
			b.ReportMetric(float64(events)/wall, "events/s")
		})
	}
}

// BenchmarkLoadBalancing runs e2e/load-balancing with 3 hives of 4 workers and 20 clients
// sending rounds of 5 requests each (100 concurrent requests a round), and reports simulated
// requests per wall second and the time compression.
func BenchmarkLoadBalancing(b *testing.B) {
	e, err := Lookup("e2e/load-balancing")
	if err != nil {
		b.Fatal(err)
	}
	var simS float64
	var events uint64
	requests := 0
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sc := e.Generate(uint64(i+1), Knobs{Clients: 20})
		res := Run(sc, Options{})
		if !res.Passed {
			b.Fatalf("seed %d failed: %+v", i+1, res.FirstFailure())
		}
		for _, c := range sc.InferClients {
			requests += len(c.Client.Requests)
		}
		simS += res.SimSeconds
		events += res.Events
	}
	wall := time.Since(start).Seconds()
	b.ReportMetric(float64(requests)/wall, "requests/s")
	b.ReportMetric(simS/wall, "sim-s/wall-s")
	b.ReportMetric(float64(events)/wall, "events/s")
}
