package worker

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// TestRandomOperationsKeepInvariants drives a worker with random requests, repeats, cancels,
// engine tokens and ends (stale ones included) and time passing, then drains it. After every
// step: at most one InferDone per request, no token after it, token indexes contiguous from 0,
// InferDone.Tokens equal to the tokens streamed, never more requests in the engine than slots,
// and the slot count equal to the running requests. At the end every request has ended and
// WorkerDrained was sent once.
func TestRandomOperationsKeepInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		runRandom(t, seed)
		if t.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

type randomRun struct {
	t       *testing.T
	r       *rig
	rng     *rand.Rand
	sent    uint64                   // requests 1..sent were sent
	ended   map[uint64]api.InferDone // by the queen's ReqID
	streams map[uint64]int           // tokens received, by the queen's ReqID
	inEng   []uint64                 // engine ReqIDs generating (sent, not stopped or ended)
	next    map[uint64]int           // next token index, by engine ReqID
	gone    []uint64                 // engine ReqIDs stopped or ended: their messages are stale
}

func runRandom(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := &randomRun{t: t, rng: rng, r: newReady(t, 1+rng.IntN(3), rng.IntN(3)),
		ended: map[uint64]api.InferDone{}, streams: map[uint64]int{}, next: map[uint64]int{}}
	for step := 0; step < 300 && !t.Failed(); step++ {
		x.step()
		x.check()
	}
	x.r.deliver(hive, api.WorkerDrain{Worker: string(self)})
	for i := 0; len(x.inEng) > 0 && i < 1000; i++ {
		id := x.inEng[0]
		x.r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishStop})
		x.forget(id)
		x.check()
	}
	x.check()
	for id := uint64(1); id <= x.sent; id++ {
		if _, ok := x.ended[id]; !ok {
			t.Errorf("seed %d: request %d never ended", seed, id)
		}
	}
	if n := len(take[api.WorkerDrained](x.r, hive)); n != 1 {
		t.Errorf("seed %d: %d WorkerDrained, want 1", seed, n)
	}
}

func (x *randomRun) step() {
	r, rng := x.r, x.rng
	switch op := rng.IntN(10); {
	case op < 3:
		x.sent++
		r.req(x.sent, func(m *api.InferReq) {
			m.MaxTokens = 1 + rng.IntN(8)
			if rng.IntN(3) == 0 {
				m.Timeout = time.Duration(1+rng.IntN(8)) * time.Second
			}
			if rng.IntN(3) == 0 {
				m.MaxTime = time.Duration(1+rng.IntN(8)) * time.Second
			}
		})
	case op == 3 && x.sent > 0:
		id := 1 + rng.Uint64N(x.sent)
		if _, ok := x.ended[id]; !ok { // a repeat of a request in progress
			r.req(id)
		}
	case op == 4 && x.sent > 0:
		r.deliver(queen, api.InferCancel{ReqID: 1 + rng.Uint64N(x.sent+2)})
	case op <= 7 && len(x.inEng) > 0:
		id := x.inEng[rng.IntN(len(x.inEng))]
		r.deliver(engine, api.EngineToken{ReqID: id, Index: x.next[id], Text: " w"})
		x.next[id]++
	case op == 8 && len(x.inEng) > 0:
		id := x.inEng[rng.IntN(len(x.inEng))]
		reasons := []api.FinishReason{api.FinishStop, api.FinishLength, api.FinishError}
		r.deliver(engine, api.EngineDone{ReqID: id, Reason: reasons[rng.IntN(3)]})
		x.forget(id)
	case op == 8 && len(x.gone) > 0:
		id := x.gone[rng.IntN(len(x.gone))]
		r.deliver(engine, api.EngineToken{ReqID: id, Index: x.next[id], Text: " stale"})
	default:
		r.advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
	}
}

// forget moves an engine request from generating to gone.
func (x *randomRun) forget(id uint64) {
	if i := slices.Index(x.inEng, id); i >= 0 {
		x.inEng = slices.Delete(x.inEng, i, i+1)
		x.gone = append(x.gone, id)
	}
}

func (x *randomRun) check() {
	t, r := x.t, x.r
	t.Helper()
	for _, g := range take[api.EngineGenerate](r, engine) {
		x.inEng = append(x.inEng, g.ReqID)
	}
	for _, s := range take[api.EngineStop](r, engine) {
		x.forget(s.ReqID)
	}
	if len(x.inEng) > r.cfg.Slots {
		t.Fatalf("%d requests in the engine, %d slots", len(x.inEng), r.cfg.Slots)
	}
	for _, tk := range take[api.InferToken](r, queen) {
		if _, ok := x.ended[tk.ReqID]; ok {
			t.Fatalf("token %+v after the request ended", tk)
		}
		if tk.Index != x.streams[tk.ReqID] {
			t.Fatalf("token %+v, want index %d", tk, x.streams[tk.ReqID])
		}
		x.streams[tk.ReqID]++
	}
	for _, d := range take[api.InferDone](r, queen) {
		if prev, ok := x.ended[d.ReqID]; ok {
			t.Fatalf("second InferDone %+v for request %d, first %+v", d, d.ReqID, prev)
		}
		if d.Tokens != x.streams[d.ReqID] {
			t.Fatalf("InferDone %+v counts %d tokens, %d were streamed", d, d.Tokens, x.streams[d.ReqID])
		}
		x.ended[d.ReqID] = d
	}
	take[api.InferCancelResp](r, queen)
	running := 0
	for _, id := range x.inEng {
		if rq := r.w.byID[id]; rq != nil && rq.running {
			running++
		}
	}
	if r.w.active != running || r.w.active > r.cfg.Slots {
		t.Fatalf("worker counts %d slots active, %d requests run, %d slots", r.w.active, running, r.cfg.Slots)
	}
}
