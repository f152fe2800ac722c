package queen

import (
	"fmt"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// BenchmarkRegistryClaimRelease measures a claim and its release (two logged, synced
// mutations on an in-memory disk, compaction included) in a registry of 1000 idle workers.
func BenchmarkRegistryClaimRelease(b *testing.B) {
	cfg := DefaultConfig()
	env := nodetest.New(queenAddr, 1, nodetest.NewMemDisk())
	q := New(cfg)
	q.Start(env)
	var req uint64
	for i := range cfg.MaxWorkers {
		req++
		q.Handle(env, hiveA, api.RegisterReq{ReqID: req, Spec: spec(fmt.Sprintf("w%04d", i), 1, "m", "cpu"), State: api.StateIdle})
	}
	env.TakeSent()
	ops := 0
	for b.Loop() {
		req++
		q.Handle(env, router, api.ClaimReq{ReqID: req, Model: "m"})
		c := env.TakeSent()[0].Msg.(api.RegistryResp)
		if !c.Err.OK() {
			b.Fatal(c.Err)
		}
		req++
		q.Handle(env, router, api.ReleaseReq{ReqID: req, Worker: c.Record.ID, Incarnation: 1, ClaimID: c.Record.ClaimID})
		env.TakeSent()
		ops += 2
	}
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}
