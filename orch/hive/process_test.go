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
