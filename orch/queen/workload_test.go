package queen

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// runWorkload drives a queen with a random mix of requests, duplicates, time passing and
// restarts, checks at every restart that the durable state came back, and returns a hash of
// everything the queen sent and observed.
func runWorkload(t *testing.T, seed uint64, steps int) uint64 {
	t.Helper()
	return runWorkloadHarness(t, seed, steps).traceHash
}

func runWorkloadHarness(t *testing.T, seed uint64, steps int) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxWorkers, cfg.LogCompactRecords, cfg.DedupEntriesMax = 6, 25, 64
	h := newHarness(t, cfg, nodetest.NewMemDisk())
	h.seed = seed * 1000
	h.boot()
	rng := rand.New(rand.NewPCG(seed, 99))
	trace := fnv.New64a()
	var last []api.RegistryRequest
	inc := map[string]uint64{}
	for step := range steps {
		id := fmt.Sprintf("w%d", rng.IntN(8))
		if inc[id] == 0 {
			inc[id] = 1
		}
		var req api.RegistryRequest
		switch k := rng.IntN(12); {
		case k == 0 && len(last) > 0:
			req = last[rng.IntN(len(last))] // a duplicate or a retry
		case k <= 2:
			if rng.IntN(4) == 0 {
				inc[id]++
			}
			req = api.RegisterReq{ReqID: h.next(), Spec: spec(id, inc[id], "m", []string{"cpu", "cuda:0"}[rng.IntN(2)]), State: api.StateIdle}
		case k <= 4:
			req = api.HeartbeatReq{ReqID: h.next(), Worker: id, Incarnation: inc[id]}
		case k <= 6:
			req = api.ClaimReq{ReqID: h.next(), Model: "m"}
		case k == 7:
			rec, ok := h.q.workers[id]
			if !ok {
				continue
			}
			req = api.ReleaseReq{ReqID: h.next(), Worker: id, Incarnation: rec.rec.Incarnation, ClaimID: rec.rec.ClaimID}
		case k == 8:
			req = api.UpdateStateReq{ReqID: h.next(), Worker: id, ExpectVersion: uint64(rng.IntN(int(h.q.version) + 1)), To: api.StateBusy}
		case k == 9:
			req = api.RemoveReq{ReqID: h.next(), Worker: id}
		case k == 10:
			h.env.Advance(h.q, time.Duration(rng.IntN(180))*time.Second)
			continue
		default:
			before := h.q.Records()
			fmt.Fprintf(trace, "%d %+v %+v\n", step, h.env.Sent, h.env.Observed)
			h.boot()
			sameBut(t, h.q.Records(), before)
			continue
		}
		last = append(last, req)
		h.q.Handle(h.env, router, req)
		if h.q.Len() > cfg.MaxWorkers {
			t.Fatalf("step %d: %d workers, max %d", step, h.q.Len(), cfg.MaxWorkers)
		}
	}
	fmt.Fprintf(trace, "%+v %+v\n", h.env.Sent, h.env.Observed)
	h.traceHash = trace.Sum64()
	return h
}

func TestRandomWorkloadDeterministic(t *testing.T) {
	a, b := runWorkload(t, 1, 3000), runWorkload(t, 1, 3000)
	if a != b {
		t.Fatalf("same seed, different traces: %x vs %x", a, b)
	}
	if c := runWorkload(t, 2, 3000); c == a {
		t.Fatalf("seeds 1 and 2 gave the same trace %x", a)
	}
}

// The random workload reaches the registry's rare paths, so the restart checks above are
// not vacuous.
func TestRandomWorkloadReachesMarks(t *testing.T) {
	h := runWorkloadHarness(t, 3, 3000)
	for _, m := range []string{
		"registry full", "worker stale-but-busy", "worker expired idle", "capability changed by re-registration",
		"registry restored from log", "duplicate request answered from cache", "log compacted",
	} {
		h.wantMark(m)
	}
}
