package hive

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

func processConfig() Config {
	cfg := testConfig()
	cfg.WorkerProcesses, cfg.WorkerStatusTimeout = true, 12*time.Second
	return cfg
}

// TestWorkerProcessRegisteredWhenReadyRemovedWhenSilent: a worker process is registered only
// after it reports ready; when its status reports stop, the hive removes it from the registry;
// when it reports ready again (restarted) it is registered with a new incarnation.
func TestWorkerProcessRegisteredWhenReadyRemovedWhenSilent(t *testing.T) {
	f := start(t, processConfig(), 1, nil)
	if s := f.env.TakeSent(); len(of[api.RegisterReq](s, queenAddr)) != 0 {
		t.Fatalf("a hive with worker processes registered before any was ready: %v", s)
	}
	f.h.Handle(f.env, "w-a", api.WorkerReady{Worker: "w-a", Slots: 2})
	sent := f.env.TakeSent()
	regs := registerFor(sent)
	if len(regs) != 1 || regs["w-a"].Spec.ID != "w-a" {
		t.Fatalf("after w-a's ready report the hive sent %v, want one registration of w-a", sent)
	}
	first := regs["w-a"].Spec.Incarnation
	f.ackAll(sent, 1)
	// Status reports keep it alive past the timeout.
	for i := 0; i < 3; i++ {
		f.env.Advance(f.h, 5*time.Second)
		f.h.Handle(f.env, "w-a", api.WorkerStatus{Worker: "w-a", Slots: 2})
		f.ackAll(f.env.TakeSent(), 1)
	}
	if removes := of[api.RemoveReq](f.env.TakeSent(), queenAddr); len(removes) != 0 {
		t.Fatalf("a reporting worker was removed: %v", removes)
	}
	// Silence: removed at the first heartbeat tick past the timeout.
	f.env.Advance(f.h, 25*time.Second)
	removes := of[api.RemoveReq](f.env.TakeSent(), queenAddr)
	if len(removes) == 0 {
		t.Fatal("a silent worker was not removed")
	}
	for _, r := range removes { // resent until answered, always the same request
		if r != removes[0] || r.Worker != "w-a" {
			t.Fatalf("removals %v: want one request for w-a, resent as it is", removes)
		}
	}
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: removes[0].ReqID, Op: "remove", Epoch: 1})
	// It comes back: a new incarnation.
	f.h.Handle(f.env, "w-a", api.WorkerReady{Worker: "w-a", Slots: 2})
	regs = registerFor(f.env.TakeSent())
	if r, ok := regs["w-a"]; !ok || r.Spec.Incarnation <= first {
		t.Fatalf("restarted worker registration %+v, want an incarnation above %d", r, first)
	}
}

// TestWorkerProcessReadyFromElsewhereIgnored: only the worker itself can report its readiness,
// and a failed load registers nothing.
func TestWorkerProcessReadyFromElsewhereIgnored(t *testing.T) {
	f := start(t, processConfig(), 1, nil)
	f.env.TakeSent()
	f.h.Handle(f.env, "keeper-1", api.WorkerReady{Worker: "w-a", Slots: 2})
	f.h.Handle(f.env, "w-b", api.WorkerReady{Worker: "w-b", Err: api.Errorf(api.CodeEngineError, "free GPU memory", "out of memory")})
	if regs := registerFor(f.env.TakeSent()); len(regs) != 0 {
		t.Fatalf("registered %v from a forged or failed ready report", regs)
	}
}

// TestDrainMarksRemovesAndRetires: an operator's drain marks the worker draining in the
// registry on its current version, tells the worker, removes it once drained, and never
// registers it again.
func TestDrainMarksRemovesAndRetires(t *testing.T) {
	f := start(t, processConfig(), 1, nil)
	f.env.TakeSent()
	f.h.Handle(f.env, "w-a", api.WorkerReady{Worker: "w-a", Slots: 2})
	f.ackAll(f.env.TakeSent(), 1)
	f.h.Handle(f.env, "operator", api.WorkerDrain{Worker: "w-a"})
	gets := of[api.GetReq](f.env.TakeSent(), queenAddr)
	if len(gets) != 1 || gets[0].Worker != "w-a" {
		t.Fatalf("drain sent %v, want a Get of w-a", gets)
	}
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: gets[0].ReqID, Op: "get", Epoch: 1,
		Record: api.WorkerRecord{WorkerSpec: f.spec("w-a"), State: api.StateIdle, Version: 7}})
	ups := of[api.UpdateStateReq](f.env.TakeSent(), queenAddr)
	if len(ups) != 1 || ups[0].ExpectVersion != 7 || ups[0].To != api.StateDraining {
		t.Fatalf("after the Get the hive sent %v, want UpdateState to draining on version 7", ups)
	}
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: ups[0].ReqID, Op: "update_state", Epoch: 1})
	if d := of[api.WorkerDrain](f.env.TakeSent(), "w-a"); len(d) != 1 {
		t.Fatalf("the worker was not told to drain: %v", d)
	}
	f.h.Handle(f.env, "w-a", api.WorkerDrained{Worker: "w-a"})
	rms := of[api.RemoveReq](f.env.TakeSent(), queenAddr)
	if len(rms) != 1 || rms[0].Worker != "w-a" {
		t.Fatalf("a drained worker was not removed: %v", rms)
	}
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: rms[0].ReqID, Op: "remove", Epoch: 1})
	for _, s := range f.h.Workers() {
		if s.ID == "w-a" {
			t.Fatal("a retired worker is still listed")
		}
	}
	f.h.Handle(f.env, "w-a", api.WorkerStatus{Worker: "w-a", Slots: 2})
	f.env.Advance(f.h, time.Minute)
	if regs := registerFor(f.env.TakeSent()); len(regs) != 0 {
		t.Fatalf("a retired worker was registered again: %v", regs)
	}
}
