package scenario

import (
	"slices"
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
}

// Factor is how many times fewer events the minimal scenario runs than the original.
func (s ShrinkStats) Factor() float64 {
	if s.ToEvents == 0 {
		return 0
	}
	return float64(s.FromEvents) / float64(s.ToEvents)
}

// Shrink minimises a failing scenario outside go test: it removes clients, faults and requests
// and caps workloads, one change at a time, keeping a change only when the run still fails
// with the same checker (the first failing one, at a stage other than assumptions). It stops
// after budget runs. The scenario returned replays to that failure; a scenario that does not
// fail is returned as it is, with Checker empty.
func Shrink(sc Scenario, budget int) (Scenario, ShrinkStats) {
	res := Run(sc, Options{})
	st := ShrinkStats{Runs: 1, FromEvents: res.Events, ToEvents: res.Events, FromFaults: len(sc.Faults),
		FromClients: clientCount(sc), FromRequests: requestCount(sc)}
	first := res.FirstFailure()
	if first == nil || first.Stage == "assumptions" {
		st.ToFaults, st.ToClients, st.ToRequests = st.FromFaults, st.FromClients, st.FromRequests
		return sc, st
	}
	st.Checker = first.Name
	best := sc
	try := func(cand Scenario) bool {
		if st.Runs >= budget || cand.Validate() != nil {
			return false
		}
		st.Runs++
		r := Run(cand, Options{})
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
	st.ToFaults, st.ToClients, st.ToRequests = len(best.Faults), clientCount(best), requestCount(best)
	return best, st
}

// shrinkSteps are the smaller neighbours of sc, the boldest first: a client fewer, a fault
// fewer, half an inference client's requests, a workload capped lower.
func shrinkSteps(sc Scenario) []Scenario {
	var out []Scenario
	for i := range sc.Clients {
		c := sc
		c.Clients = slices.Delete(slices.Clone(sc.Clients), i, i+1)
		out = append(out, c)
	}
	for i := range sc.CatalogClients {
		c := sc
		c.CatalogClients = slices.Delete(slices.Clone(sc.CatalogClients), i, i+1)
		out = append(out, c)
	}
	for i := range sc.InferClients {
		c := sc
		c.InferClients = slices.Delete(slices.Clone(sc.InferClients), i, i+1)
		out = append(out, c)
	}
	for i := len(sc.Faults) - 1; i >= 0; i-- {
		c := sc
		c.Faults = slices.Delete(slices.Clone(sc.Faults), i, i+1)
		out = append(out, c)
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
