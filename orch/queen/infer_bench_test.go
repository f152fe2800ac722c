package queen

import (
	"fmt"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// benchEnv is a nodetest.Env whose timers and sends cost nothing, so that the benchmark times
// the router and not the test double (nodetest cancels timers by a linear scan).
type benchEnv struct {
	*nodetest.Env
	timers node.TimerID
	last   nodetest.Sent
}

func (e *benchEnv) After(time.Duration, node.Msg) node.TimerID { e.timers++; return e.timers }
func (e *benchEnv) Cancel(node.TimerID)                        {}

// Send keeps the last attempt forwarded to a worker (the client's InferAccepted follows it).
func (e *benchEnv) Send(to node.Addr, m node.Msg) {
	if _, ok := m.(api.InferReq); ok {
		e.last = nodetest.Sent{To: to, Msg: m}
	}
}

// BenchmarkInferRouting measures routing decisions in a registry of 1000 healthy workers that
// all serve the model. Each iteration ends the oldest of 500 attempts in flight (an InferDone
// from its worker) and routes one new client request: a scan of the registry for the least
// loaded candidates, a tie-break draw among them, and the forwarded attempt.
func BenchmarkInferRouting(b *testing.B) {
	cfg := DefaultConfig()
	env := &benchEnv{Env: nodetest.New(queenAddr, 1, nodetest.NewMemDisk())}
	q := New(cfg)
	q.Start(env)
	var req uint64
	for i := range cfg.MaxWorkers {
		req++
		q.Handle(env, hiveA, api.RegisterReq{ReqID: req, Spec: spec(fmt.Sprintf("w%04d", i), 1, "m", "cpu"), State: api.StateIdle})
	}
	window := make([]nodetest.Sent, cfg.MaxWorkers/2) // the attempts in flight, as forwarded
	decisions := 0
	for b.Loop() {
		slot := decisions % len(window)
		if old := window[slot]; old.Msg != nil {
			q.Handle(env, old.To, api.InferDone{ReqID: old.Msg.(api.InferReq).ReqID, FinishReason: api.FinishStop})
		}
		req++
		q.Handle(env, client, api.InferReq{ReqID: req, Model: "m", Prompt: "p", MaxTokens: 1})
		if _, ok := env.last.Msg.(api.InferReq); !ok {
			b.Fatalf("request %d not routed: %+v", req, env.last)
		}
		window[slot] = env.last
		decisions++
	}
	if q.Inflight() != min(decisions, len(window)) {
		b.Fatalf("%d requests in flight, want %d", q.Inflight(), min(decisions, len(window)))
	}
	b.ReportMetric(float64(decisions)/b.Elapsed().Seconds(), "decisions/s")
}
