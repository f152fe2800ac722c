package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
)

// ShrinkStats describes a shrink: the sizes before and after, and how many runs it took.
type ShrinkStats struct {
	Checker      string `json:"checker"`
	Runs         int    `json:"runs"`
	FromEvents   uint64 `json:"from_events"`
	ToEvents     uint64 `json:"to_events"`
	FromFaults   int    `json:"from_faults"`
	ToFaults     int    `json:"to_faults"`
	FromClients  int    `json:"from_clients"`
	ToClients    int    `json:"to_clients"`
	FromRequests int    `json:"from_requests"`
	ToRequests   int    `json:"to_requests"`
	// Nodes are the simulated processes: the queen, hives, clients and worker processes.
	FromNodes   int `json:"from_nodes"`
	ToNodes     int `json:"to_nodes"`
	FromWorkers int `json:"from_workers"`
	ToWorkers   int `json:"to_workers"`
	// SimSeconds is the simulated length of the run, chaos and settle phases together.
	FromSimSeconds float64 `json:"from_sim_seconds"`
	ToSimSeconds   float64 `json:"to_sim_seconds"`
}

// String is the sizes before and after, one "what from -> to" a line, events first.
func (s ShrinkStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events       %8d -> %d (%.1fx smaller)\n", s.FromEvents, s.ToEvents, s.Factor())
	fmt.Fprintf(&b, "faults       %8d -> %d\n", s.FromFaults, s.ToFaults)
	fmt.Fprintf(&b, "nodes        %8d -> %d\n", s.FromNodes, s.ToNodes)
	fmt.Fprintf(&b, "workers      %8d -> %d\n", s.FromWorkers, s.ToWorkers)
	fmt.Fprintf(&b, "clients      %8d -> %d\n", s.FromClients, s.ToClients)
	fmt.Fprintf(&b, "requests     %8d -> %d\n", s.FromRequests, s.ToRequests)
	fmt.Fprintf(&b, "simulated s  %8.0f -> %.0f\n", s.FromSimSeconds, s.ToSimSeconds)
	return b.String()
}

// measure sets the sizes of the original (from) or minimal scenario.
func (s *ShrinkStats) measure(sc Scenario, from bool) {
	f, c, r, n, w, sec := len(sc.Faults), clientCount(sc), requestCount(sc), nodeCount(sc), sc.WorkerCount(), (sc.Chaos + sc.Settle).Seconds()
	if from {
		s.FromFaults, s.FromClients, s.FromRequests, s.FromNodes, s.FromWorkers, s.FromSimSeconds = f, c, r, n, w, sec
		return
	}
	s.ToFaults, s.ToClients, s.ToRequests, s.ToNodes, s.ToWorkers, s.ToSimSeconds = f, c, r, n, w, sec
}

// Factor is how many times fewer events the minimal scenario runs than the original.
func (s ShrinkStats) Factor() float64 {
	if s.ToEvents == 0 {
		return 0
	}
	return float64(s.FromEvents) / float64(s.ToEvents)
}

// Shrink minimises a failing scenario outside go test: it removes clients, hives, workers,
// faults and requests, shortens the chaos phase and caps workloads, one change at a time,
// keeping a change only when the run still fails with the same checker (the first failing
// one, at a stage other than assumptions) in no more events. It stops after budget runs. The
// scenario returned replays to that failure; a scenario that does not fail is returned as it
// is, with Checker empty. A candidate that does not validate, or whose run panics (a smaller
// topology the harness cannot assemble), is skipped.
func Shrink(sc Scenario, budget int) (Scenario, ShrinkStats) {
	res := Run(sc, Options{})
	st := ShrinkStats{Runs: 1, FromEvents: res.Events, ToEvents: res.Events}
	st.measure(sc, true)
	first := res.FirstFailure()
	if first == nil || first.Stage == "assumptions" {
		st.measure(sc, false)
		return sc, st
	}
	st.Checker = first.Name
	best := sc
	try := func(cand Scenario) bool {
		if st.Runs >= budget || cand.Validate() != nil {
			return false
		}
		st.Runs++
		r, ok := runRecovered(cand)
		if !ok {
			return false
		}
		c := r.FirstFailure()
		if c == nil || c.Name != st.Checker || r.Events > st.ToEvents {
			return false
		}
		best, st.ToEvents = cand, r.Events
		return true
	}
	for changed := true; changed && st.Runs < budget; {
		changed = false
		for _, cand := range shrinkSteps(best) {
			if try(cand) {
				changed = true
				break
			}
		}
	}
	st.measure(best, false)
	return best, st
}

// runRecovered runs a candidate, reporting false when the run panicked.
func runRecovered(sc Scenario) (res Result, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return Run(sc, Options{}), true
}

// shrinkSteps are the smaller neighbours of sc, the boldest first: a client fewer, a hive
// fewer, a chaos phase half as long, a fault fewer, a worker fewer, half an inference client's
// requests, a workload capped lower.
func shrinkSteps(sc Scenario) []Scenario {
	var out []Scenario
	for i := range sc.Clients {
		c := sc
		c.Clients = slices.Delete(slices.Clone(sc.Clients), i, i+1)
		out = append(out, fitFaults(c))
	}
	for i := range sc.CatalogClients {
		c := sc
		c.CatalogClients = slices.Delete(slices.Clone(sc.CatalogClients), i, i+1)
		out = append(out, fitFaults(c))
	}
	for i := range sc.InferClients {
		c := sc
		c.InferClients = slices.Delete(slices.Clone(sc.InferClients), i, i+1)
		out = append(out, fitFaults(c))
	}
	for i := range sc.Hives {
		if c, ok := withoutHive(sc, i); ok {
			out = append(out, c)
		}
	}
	if half := (sc.Chaos / 2).Truncate(time.Second); half >= 10*time.Second {
		c := sc
		c.Chaos = half
		c.Faults = nil
		for _, f := range sc.Faults {
			if f.At < half {
				c.Faults = append(c.Faults, f)
			}
		}
		out = append(out, c)
	}
	for i := len(sc.Faults) - 1; i >= 0; i-- {
		c := sc
		c.Faults = slices.Delete(slices.Clone(sc.Faults), i, i+1)
		out = append(out, c)
	}
	for h := range sc.Hives {
		for w := range sc.Hives[h].Workers {
			if c, ok := withoutWorker(sc, h, w); ok {
				out = append(out, c)
			}
		}
	}
	for i, ic := range sc.InferClients {
		if n := len(ic.Client.Requests); n > 1 {
			for _, half := range [][2]int{{0, n / 2}, {n / 2, n}} {
				c := sc
				c.InferClients = slices.Clone(sc.InferClients)
				c.InferClients[i].Client.Requests = slices.Clone(ic.Client.Requests[half[0]:half[1]])
				out = append(out, c)
			}
		}
	}
	for i, k := range sc.Clients {
		if n := k.Keeper.Acquisitions; n == 0 || n > 4 {
			c := sc
			c.Clients = slices.Clone(sc.Clients)
			c.Clients[i].Keeper.Acquisitions = capHalf(n, 64)
			out = append(out, c)
		}
	}
	for i, k := range sc.CatalogClients {
		if n := k.Client.Operations; n == 0 || n > 4 {
			c := sc
			c.CatalogClients = slices.Clone(sc.CatalogClients)
			c.CatalogClients[i].Client.Operations = capHalf(n, 64)
			out = append(out, c)
		}
	}
	return out
}

// capHalf halves a limit, or sets first when there is none (0).
func capHalf(n, first int) int {
	if n == 0 {
		return first
	}
	return n / 2
}

// withoutHive is sc without its hive i, its workers, and the faults, drains and delayed starts
// that name them. A hive that an inference client asks to start workers is kept (false).
func withoutHive(sc Scenario, i int) (Scenario, bool) {
	h := sc.Hives[i]
	for _, ic := range sc.InferClients {
		for _, s := range ic.Client.StartWorkers {
			if s.Hive == h.Addr {
				return sc, false
			}
		}
	}
	workers := map[string]bool{}
	for _, w := range append(append([]api.WorkerSpec(nil), h.Workers...), h.Started...) {
		workers[w.ID] = true
	}
	c := sc
	c.Hives = slices.Delete(slices.Clone(sc.Hives), i, i+1)
	c.Drains = slices.DeleteFunc(slices.Clone(sc.Drains), func(d DrainSpec) bool { return d.Hive == h.Addr })
	c.WorkerStarts = startsWithout(sc.WorkerStarts, workers)
	return fitFaults(c), true
}

// withoutWorker is sc without worker w of hive h, and the faults, drains and delayed starts
// that name it. A hive's last worker is kept (false): withoutHive removes it.
func withoutWorker(sc Scenario, h, w int) (Scenario, bool) {
	hs := sc.Hives[h]
	if len(hs.Workers) < 2 {
		return sc, false
	}
	id := hs.Workers[w].ID
	c := sc
	c.Hives = slices.Clone(sc.Hives)
	c.Hives[h].Workers = slices.Delete(slices.Clone(hs.Workers), w, w+1)
	c.Hives[h].IgnoreTerm = slices.DeleteFunc(slices.Clone(hs.IgnoreTerm), func(s string) bool { return s == id })
	c.Drains = slices.DeleteFunc(slices.Clone(sc.Drains), func(d DrainSpec) bool { return d.Worker == id })
	c.WorkerStarts = startsWithout(sc.WorkerStarts, map[string]bool{id: true})
	return fitFaults(c), true
}

// fitFaults keeps the faults of sc that are valid in its topology: those that named a client,
// hive, worker or device a step removed go with it.
func fitFaults(sc Scenario) Scenario {
	topo := sc.Topology()
	var kept faults.Schedule
	for _, f := range sc.Faults {
		if (faults.Schedule{f}).Validate(topo) == nil {
			kept = append(kept, f)
		}
	}
	sc.Faults = kept
	return sc
}

func startsWithout(m map[string]time.Duration, workers map[string]bool) map[string]time.Duration {
	if m == nil {
		return nil
	}
	out := map[string]time.Duration{}
	for _, id := range sortedKeys(m) {
		if !workers[id] {
			out[id] = m[id]
		}
	}
	return out
}

// nodeCount is the simulated processes: the queen, hives, clients and worker processes.
func nodeCount(sc Scenario) int {
	n := 1 + len(sc.Hives) + clientCount(sc)
	for _, h := range sc.Hives {
		n += len(h.processes())
	}
	return n
}

func clientCount(sc Scenario) int {
	return len(sc.Clients) + len(sc.CatalogClients) + len(sc.InferClients)
}

func requestCount(sc Scenario) int {
	n := 0
	for _, c := range sc.InferClients {
		n += len(c.Client.Requests)
	}
	return n
}
