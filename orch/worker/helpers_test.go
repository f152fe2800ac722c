package worker

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// A rig is one worker on a hand-driven Env; the test plays the engine, the hive and the queen
// by reading what the worker sent them and delivering their answers.

const (
	self   node.Addr = "worker-1"
	hive   node.Addr = "hive-1"
	engine node.Addr = "engine-1"
	queen  node.Addr = "queen-1"
	model            = "hf:org/tiny-GGUF/tiny.gguf"
)

type rig struct {
	t    *testing.T
	env  *nodetest.Env
	w    *Worker
	cfg  Config
	sent []nodetest.Sent // sent by the worker and not yet taken
}

func testConfig(slots, queueMax int) Config {
	cfg := DefaultConfig()
	cfg.ID, cfg.Hive, cfg.Engine, cfg.Model, cfg.ModelBytes = string(self), hive, engine, model, 1<<30
	cfg.Slots, cfg.QueueMax = slots, queueMax
	return cfg
}

// newRig starts a worker with cfg; it is still loading.
func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, env: nodetest.New(self, 1, nil), w: New(cfg), cfg: cfg}
	r.w.Start(r.env)
	if l := one[api.EngineLoad](r, engine); l.Model != model || l.SizeBytes != cfg.ModelBytes {
		t.Fatalf("EngineLoad %+v, want model %s of %d bytes", l, model, cfg.ModelBytes)
	}
	return r
}

// newReady starts a worker and loads its model.
func newReady(t *testing.T, slots, queueMax int) *rig {
	t.Helper()
	return newReadyConfig(t, testConfig(slots, queueMax))
}

// newReadyConfig starts a worker with cfg and loads its model.
func newReadyConfig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := newRig(t, cfg)
	r.deliver(engine, api.EngineLoaded{})
	if rd := one[api.WorkerReady](r, hive); !rd.Err.OK() || rd.Slots != cfg.Slots || rd.Worker != string(self) {
		t.Fatalf("WorkerReady %+v", rd)
	}
	return r
}

func (r *rig) deliver(from node.Addr, m node.Msg) { r.w.Handle(r.env, from, m) }

func (r *rig) advance(d time.Duration) { r.env.Advance(r.w, d) }

// collect moves what the worker sent into r.sent.
func (r *rig) collect() { r.sent = append(r.sent, r.env.TakeSent()...) }

// take returns and forgets every message of type T sent to to.
func take[T node.Msg](r *rig, to node.Addr) []T {
	r.collect()
	var got []T
	keep := r.sent[:0]
	for _, s := range r.sent {
		if m, ok := s.Msg.(T); ok && s.To == to {
			got = append(got, m)
		} else {
			keep = append(keep, s)
		}
	}
	r.sent = keep
	return got
}

// one returns the one message of type T sent to to; it fails unless exactly one was.
func one[T node.Msg](r *rig, to node.Addr) T {
	r.t.Helper()
	got := take[T](r, to)
	if len(got) != 1 {
		var zero T
		r.t.Fatalf("want one %s to %s, got %d: %+v (also sent: %+v)", zero.MsgName(), to, len(got), got, r.sent)
	}
	return got[0]
}

// none fails if a message of type T was sent to to.
func none[T node.Msg](r *rig, to node.Addr) {
	r.t.Helper()
	if got := take[T](r, to); len(got) != 0 {
		r.t.Fatalf("want no %s to %s, got %+v", got[0].MsgName(), to, got)
	}
}

// req sends an InferReq from the queen with MaxTokens 10 unless edit changes it.
func (r *rig) req(id uint64, edit ...func(*api.InferReq)) {
	m := api.InferReq{ReqID: id, Model: model, Prompt: "tell me a story", MaxTokens: 10, Seed: 7}
	for _, e := range edit {
		e(&m)
	}
	r.deliver(queen, m)
}

// started expects exactly one EngineGenerate and returns the engine's ReqID.
func (r *rig) started() uint64 {
	r.t.Helper()
	return one[api.EngineGenerate](r, engine).ReqID
}

// done returns the one InferDone sent to the queen.
func (r *rig) done() api.InferDone {
	r.t.Helper()
	return one[api.InferDone](r, queen)
}

// tokens has the engine stream n tokens for engine request id, from index from.
func (r *rig) tokens(id uint64, from, n int) {
	for i := from; i < from+n; i++ {
		r.deliver(engine, api.EngineToken{ReqID: id, Index: i, Text: " t"})
	}
}

// status has the worker report its status now and returns it (earlier reports are dropped).
func (r *rig) status() api.WorkerStatus {
	r.t.Helper()
	r.deliver(self, timerMsg{Kind: kindStatus})
	got := take[api.WorkerStatus](r, hive)
	return got[len(got)-1]
}

func withMaxTime(d time.Duration) func(*api.InferReq) { return func(m *api.InferReq) { m.MaxTime = d } }
func withTimeout(d time.Duration) func(*api.InferReq) { return func(m *api.InferReq) { m.Timeout = d } }

// wantEnd fails unless d ended with reason and code.
func wantEnd(t *testing.T, d api.InferDone, id uint64, reason api.FinishReason, code api.Code, tokens int) {
	t.Helper()
	if d.ReqID != id || d.FinishReason != reason || d.Err.Code != code || d.Tokens != tokens || d.Worker != self {
		t.Fatalf("InferDone %+v, want req %d %s %q with %d tokens from %s", d, id, reason, code, tokens, self)
	}
	if code != api.CodeOK && (d.Err.Message == "" || d.Err.Suggestion == "") {
		t.Fatalf("error %+v must say what happened and what to do", d.Err)
	}
}
