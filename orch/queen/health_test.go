package queen

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Heartbeat deadlines, stale-but-busy workers and their grace period.

func TestHeartbeatTimeoutIdleExpires(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("idle")
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("loading", 1, "m", "cpu"), State: api.StateLoading})
	h.env.Advance(h.q, time.Minute)
	h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "idle", Incarnation: 1}) // re-arms idle's deadline
	h.env.Advance(h.q, time.Minute)                                                  // loading: 120s without a heartbeat
	if h.q.Len() != 1 || h.q.Records()[0].ID != "idle" {
		t.Fatalf("after 2m: %+v", h.q.Records())
	}
	h.env.Advance(h.q, time.Minute)
	if h.q.Len() != 0 {
		t.Fatalf("after 3m: %+v", h.q.Records())
	}
	want := []node.Observation{
		api.QueenStarted{Epoch: 1},
		api.WorkerExpired{Worker: "loading", Reason: "no heartbeat for 2m0s"},
		api.WorkerExpired{Worker: "idle", Reason: "no heartbeat for 2m0s"},
	}
	if got := h.observed(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	if h.marks("worker expired idle") != 2 {
		t.Errorf("want 2 idle-expiry marks, got %d", h.marks("worker expired idle"))
	}
	h.expect(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "idle", Incarnation: 1}, api.CodeUnknownWorker)
}

// staleBusy registers w-busy and claims it, registers w-idle, and lets the deadline pass.
func staleBusy(t *testing.T) (*harness, api.WorkerRecord) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w-busy")
	c := h.claim("m").Record
	h.register("w-idle")
	h.env.Advance(h.q, h.cfg.HeartbeatTimeout)
	if got := h.get("w-busy"); got.Health != api.HealthStale || got.State != api.StateBusy {
		t.Fatalf("busy worker after the deadline: %+v", got)
	}
	if h.q.Len() != 1 {
		t.Fatalf("idle worker not expired: %+v", h.q.Records())
	}
	h.wantMark("worker stale-but-busy")
	if got := h.observed(); got[1] != (api.WorkerHealthChanged{Worker: "w-busy", Health: api.HealthStale}) {
		t.Fatalf("observed %+v", got)
	}
	return h, c
}

func TestStaleButBusyNeverClaimedRemovedOnRelease(t *testing.T) {
	h, c := staleBusy(t)
	// Even made idle by nobody, it is busy and stale: never handed out.
	h.expect(router, api.ClaimReq{ReqID: h.next(), Model: "m"}, api.CodeNoWorkerAvailable)
	r := h.must(router, api.ReleaseReq{ReqID: h.next(), Worker: "w-busy", Incarnation: 1, ClaimID: c.ClaimID})
	if !r.Removed || r.Record.State != api.StateIdle {
		t.Fatalf("release of a stale worker: %+v", r)
	}
	if h.q.Len() != 0 {
		t.Fatalf("stale worker kept: %+v", h.q.Records())
	}
	h.wantMark("stale worker removed when its request ended")
}

func TestStaleButBusyExpiresAfterGrace(t *testing.T) {
	h, _ := staleBusy(t)
	h.env.Advance(h.q, h.cfg.StaleGrace-time.Second)
	if h.q.Len() != 1 {
		t.Fatal("stale worker removed before its grace ended")
	}
	h.env.Advance(h.q, time.Second)
	if h.q.Len() != 0 {
		t.Fatal("stale worker kept after its grace")
	}
	got := h.observed()
	exp, ok := got[len(got)-1].(api.WorkerExpired)
	if !ok || exp.Worker != "w-busy" {
		t.Fatalf("last observation %+v", got[len(got)-1])
	}
	wantContains(t, exp.Reason, "2m0s", "stale grace of 5m0s")
	h.wantMark("worker expired after grace")
}

func TestStaleWorkerRevivedByHeartbeat(t *testing.T) {
	h, c := staleBusy(t)
	h.env.Advance(h.q, time.Minute)
	r := h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w-busy", Incarnation: 1})
	if r.Record.Health != api.HealthHealthy {
		t.Fatalf("heartbeat did not revive: %+v", r.Record)
	}
	h.wantMark("stale worker revived")
	// The grace is cancelled: well past it the worker is still there, busy under its claim.
	h.env.Advance(h.q, h.cfg.StaleGrace)
	if got := h.get("w-busy"); got.ClaimID != c.ClaimID || got.Health != api.HealthStale {
		t.Fatalf("after a new deadline: %+v", got)
	}
	// The new deadline made it stale again; a same-incarnation registration revives it too.
	r = h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w-busy", 1, "m", "cpu"), State: api.StateIdle})
	if r.Record.Health != api.HealthHealthy || r.Record.State != api.StateBusy {
		t.Fatalf("confirmation: %+v", r.Record)
	}
	r = h.must(router, api.ReleaseReq{ReqID: h.next(), Worker: "w-busy", Incarnation: 1, ClaimID: c.ClaimID})
	if r.Removed || r.Record.State != api.StateIdle {
		t.Fatalf("release of a revived worker: %+v", r)
	}
}

func TestTimerOfOlderRegistrationIgnored(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w1")
	oldGen := h.q.workers["w1"].gen
	h.must(router, api.RemoveReq{ReqID: h.next(), Worker: "w1"})
	h.register("w1")
	if h.env.PendingTimers() != 1 {
		t.Fatalf("%d timers pending, want 1: removal must cancel the old deadline", h.env.PendingTimers())
	}
	h.q.Handle(h.env, queenAddr, deadlineTimer{Worker: "w1", Gen: oldGen})
	h.q.Handle(h.env, queenAddr, graceTimer{Worker: "w1", Gen: oldGen})
	if h.q.Len() != 1 || h.get("w1").Health != api.HealthHealthy {
		t.Fatalf("an old timer acted: %+v", h.q.Records())
	}
}
