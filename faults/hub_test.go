package faults

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// hubRun is a simulation with a real sim.Hub at "hub" serving one file, and a silent client.
func hubRun(t *testing.T) (*sim.Sim, *sim.Hub, *Injector) {
	t.Helper()
	s := sim.New(sim.Options{Seed: 1})
	s.Network().SetDefault(sim.LinkConfig{Latency: linkLatency})
	hub := sim.NewHub(sim.HubConfig{Files: []sim.HubFile{{Repo: "org/m-GGUF", Revision: "main", File: "m.gguf",
		Spec: gguf.Spec{Architecture: "llama", ContextLength: 128, BlockCount: 1, FileType: 15, Name: "m", PayloadBytes: 4096, Seed: 1}}}})
	s.Add("hub", "hub", 0, func() node.Node { return hub })
	s.Add("client-1", "client-1", 0, func() node.Node { return &toy{s: s} })
	return s, hub, NewInjector(s, Topology{Hub: "hub", Clients: []node.Addr{"client-1"}})
}

// TestScheduledHubFaultsEndAfterFor: a scheduled hub fault stops after its For even when its
// count has not run out (a run found a 4-second hang still eating requests a minute later, so
// a rate limit behind it never answered), and a longer fault of the same kind outlives a
// shorter one that began later.
func TestScheduledHubFaultsEndAfterFor(t *testing.T) {
	s, hub, inj := hubRun(t)
	inj.Schedule(Schedule{
		{Kind: "hub-hang", At: time.Second, For: 4 * time.Second, Targets: []node.Addr{"hub"}, Value: 5},
		{Kind: "hub-rate-limit", At: time.Second, For: time.Minute, Targets: []node.Addr{"hub"}, Value: 5},
		{Kind: "hub-rate-limit", At: 2 * time.Second, For: 4 * time.Second, Targets: []node.Addr{"hub"}, Value: 5},
	})
	for i, at := range []time.Duration{3 * time.Second, 10 * time.Second, 30 * time.Second} {
		id := uint64(i + 1)
		s.At(at, "send head", func() {
			s.Inject("client-1", "hub", api.HubHeadReq{ReqID: id, Repo: "org/m-GGUF", Revision: "main", File: "m.gguf"})
		})
	}
	s.Run(2 * time.Minute)
	var faults []string
	for _, r := range hub.Requests() {
		faults = append(faults, r.Fault)
	}
	want := []string{"hang", "rate-limit", "rate-limit"}
	if len(faults) != len(want) {
		t.Fatalf("hub saw %d requests (%v), want %d", len(faults), faults, len(want))
	}
	for i := range want {
		if faults[i] != want[i] {
			t.Fatalf("request faults %v, want %v: the hang must end after 4s and the minute-long rate limit must outlive the 4s one", faults, want)
		}
	}
	if rs := hub.Requests(); rs[1].Status != 429 {
		t.Fatalf("request after the hang answered %d, want 429", rs[1].Status)
	}
}
