package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// loadShape is a concurrent workload against the reference registry.
type loadShape struct {
	ops, clients, workers int
	lostPerMille          int // replies lost (the request applied or not, even odds)
	seed                  uint64
}

// Timing of generated concurrent histories: operation k takes effect at k*loadStepNs and spans
// up to loadSpanNs either side; a client's operations are clients*loadStepNs apart, so with
// clients*loadStepNs > 2*loadSpanNs no client overlaps itself.
const (
	loadStepNs = 100
	loadSpanNs = 1500
)

// genLoad builds a linearizable concurrent history: each operation is applied to the
// reference registry at its linearization point, in order, and recorded over an interval
// around it. A few replies are lost (applied or not) and a few are UNAVAILABLE.
func genLoad(l loadShape) []porcupine.Operation {
	rng := rand.New(rand.NewPCG(l.seed, 1))
	ref := newRefRegistry(l.workers)
	incs := make(map[string]uint64)
	h := NewHistory()
	for k := range l.ops {
		point := int64(k+1) * loadStepNs
		client := node.Addr(fmt.Sprintf("c%d", k%l.clients))
		if k >= l.workers && rng.IntN(100) < 2 {
			if o := genLoadInternal(rng, ref, l.workers); o != nil {
				h.Internal(o, point)
				continue
			}
		}
		req := genLoadRequest(rng, ref, incs, k, l.workers)
		h.Invoke(client, req, point-int64(rng.IntN(loadSpanNs)))
		switch n := rng.IntN(1000); {
		case n < l.lostPerMille:
			if rng.IntN(2) == 0 {
				ref.apply(req, rng.IntN)
			}
		case n < l.lostPerMille+10:
			h.Return(client, api.RegistryResp{ReqID: req.RequestID(), Err: api.Error{Code: api.CodeUnavailable}}, point+int64(rng.IntN(loadSpanNs)))
		default:
			h.Return(client, ref.apply(req, rng.IntN), point+int64(rng.IntN(loadSpanNs)))
		}
	}
	return h.Operations()
}

// loadWorker names worker i.
func loadWorker(i int) string { return fmt.Sprintf("w%03d", i) }

// genLoadRequest draws the k-th request: first every worker registers, then a mix of claims,
// releases, heartbeats, reads, compare-and-sets, lists, re-registrations and removals.
func genLoadRequest(rng *rand.Rand, ref *refRegistry, incs map[string]uint64, k, workers int) api.RegistryRequest {
	id := loadWorker(rng.IntN(workers))
	if k < workers {
		id = loadWorker(k)
	}
	cur, present := ref.workers[id]
	reqID := uint64(k + 1)
	model := fmt.Sprintf("m%d", rng.IntN(4))
	switch n := rng.IntN(100); {
	case k < workers || !present && (n < 50 || n >= 92):
		incs[id]++
		sp := api.WorkerSpec{ID: id, Hive: "hive-a", Incarnation: incs[id], Model: fmt.Sprintf("m%d", rng.IntN(4)), Capability: "cpu", Slots: 1}
		return api.RegisterReq{ReqID: reqID, Spec: sp, State: api.StateIdle}
	case n < 30:
		return api.ClaimReq{ReqID: reqID, Model: model}
	case n < 50:
		if busy := ref.busy(); len(busy) > 0 {
			id = busy[rng.IntN(len(busy))]
			cur = ref.workers[id]
		}
		return api.ReleaseReq{ReqID: reqID, Worker: id, Incarnation: cur.Incarnation, ClaimID: cur.ClaimID}
	case n < 70:
		return api.HeartbeatReq{ReqID: reqID, Worker: id, Incarnation: cur.Incarnation}
	case n < 80:
		return api.GetReq{ReqID: reqID, Worker: id}
	case n < 90:
		to := []api.WorkerState{api.StateIdle, api.StateBusy, api.StateDraining}[rng.IntN(3)]
		return api.UpdateStateReq{ReqID: reqID, Worker: id, ExpectVersion: cur.Version - uint64(rng.IntN(2)), To: to}
	case n < 92:
		return api.ListReq{ReqID: reqID, Model: model}
	case n < 99:
		return api.RegisterReq{ReqID: reqID, Spec: cur.WorkerSpec, State: api.StateIdle}
	default:
		return api.RemoveReq{ReqID: reqID, Worker: id}
	}
}

// genLoadInternal draws an internal transition that applies, or nil.
func genLoadInternal(rng *rand.Rand, ref *refRegistry, workers int) node.Observation {
	id := loadWorker(rng.IntN(workers))
	switch n := rng.IntN(100); {
	case n < 1:
		ref.restart()
		return started(uint64(rng.IntN(1000)))
	case n < 60:
		if ref.stale(id) {
			return stale(id)
		}
	default:
		if ref.expire(id) {
			return expired(id)
		}
	}
	return nil
}

// load10k is the benchmark's workload: 10k operations from 32 clients over 100 workers,
// 0.3% of replies lost and 1% UNAVAILABLE.
var load10k = loadShape{ops: 10_000, clients: 32, workers: 100, lostPerMille: 3, seed: 1}

// TestRegistryLargeHistory: large concurrent histories with lost and UNAVAILABLE replies are
// linearizable (registry/linearizable). BenchmarkCheckRegistry10k measures how fast.
func TestRegistryLargeHistory(t *testing.T) {
	lossy := load10k
	lossy.lostPerMille, lossy.seed = 50, 2
	for _, l := range []loadShape{load10k, lossy} {
		res := CheckRegistry(genLoad(l), time.Minute)
		if res.Verdict != porcupine.Ok {
			t.Fatalf("%+v: verdict %s, want Ok", l, res.Verdict)
		}
		t.Logf("%+v: %d ops in %d partitions checked in %v", l, res.Ops, res.Partitions, res.Elapsed)
	}
}

// TestRegistryLargeHistoryCorrupted: one wrong Get in the middle of a large history makes
// it illegal.
func TestRegistryLargeHistoryCorrupted(t *testing.T) {
	ops := genLoad(load10k)
	victim := -1
	for i := len(ops) / 2; i < len(ops) && victim < 0; i++ {
		call, ret := unpack(ops[i])
		if _, isGet := call.Req.(api.GetReq); isGet && ret.Known && ret.Resp.Err.OK() {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("no successful Get in the second half")
	}
	ret := ops[victim].Output.(RegistryReturn)
	ret.Resp.Record.Model = "never-registered"
	ops[victim].Output = ret
	if res := CheckRegistry(ops, time.Minute); res.Verdict != porcupine.Illegal {
		t.Fatalf("verdict %s, want Illegal", res.Verdict)
	}
}

// BenchmarkCheckRegistry10k checks a 10k-operation history from 32 clients over 100 workers.
func BenchmarkCheckRegistry10k(b *testing.B) {
	ops := genLoad(load10k)
	runs := 0
	for b.Loop() {
		if res := CheckRegistry(ops, time.Minute); res.Verdict != porcupine.Ok {
			b.Fatalf("verdict %s, want Ok", res.Verdict)
		}
		runs++
	}
	b.ReportMetric(float64(len(ops)*runs)/b.Elapsed().Seconds(), "ops/s")
}
