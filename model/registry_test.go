package model

import (
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

const (
	Ok      = porcupine.Ok
	Illegal = porcupine.Illegal
)

// registryCase is one hand-built history and the verdict the specification gives it.
type registryCase struct {
	name  string
	build func(s *script)
	want  porcupine.CheckResult
}

// w1 registers worker w1 (incarnation 1, idle, version 1).
func w1(s *script) { s.seq("hive", register("w1", 1), created(idle("w1", 1, 1))) }

// w1Claimed registers w1 and claims it under c1 (busy, version 2).
func w1Claimed(s *script) {
	w1(s)
	s.seq("router", claim(), ok(busy("w1", 1, 2, "c1")))
}

func runCases(t *testing.T, cases []registryCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScript()
			c.build(s)
			s.check(t, c.want)
		})
	}
}

// TestRegistryRegister covers Register's rules (registry/linearizable, registry/overflow,
// registry/capability-change).
func TestRegistryRegister(t *testing.T) {
	runCases(t, []registryCase{
		{"creates idle healthy", w1, Ok},
		{"create without Created flag", func(s *script) {
			s.seq("hive", register("w1", 1), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"create with version 0", func(s *script) {
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 0)))
		}, Illegal},
		{"creates loading", func(s *script) {
			r := register("w1", 1)
			r.State = api.StateLoading
			s.seq("hive", r, created(rec("w1", 1, api.StateLoading, api.HealthHealthy, 4, "")))
		}, Ok},
		{"invalid spec refused", func(s *script) {
			r := register("w1", 1)
			r.Spec.Slots = 0
			s.seq("hive", r, fails(api.CodeInvalidRequest))
			s.seq("hive", get("w1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"invalid spec accepted", func(s *script) {
			r := register("w1", 1)
			r.Spec.Slots = 0
			want := idle("w1", 1, 1)
			want.Slots = 0
			s.seq("hive", r, created(want))
		}, Illegal},
		{"busy as initial state refused", func(s *script) {
			r := register("w1", 1)
			r.State = api.StateBusy
			s.seq("hive", r, fails(api.CodeInvalidRequest))
		}, Ok},
		{"confirmation makes healthy, keeps version", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("hive", register("w1", 1), ok(idle("w1", 1, 1)))
			s.seq("router", claim(), ok(busy("w1", 1, 2, "c1")))
		}, Ok},
		{"confirmation bumps version", func(s *script) {
			w1(s)
			s.seq("hive", register("w1", 1), ok(idle("w1", 1, 2)))
		}, Illegal},
		{"confirmation replaces spec", func(s *script) {
			w1(s)
			r := register("w1", 1)
			r.Spec.Capability = "cuda:0"
			want := idle("w1", 1, 1)
			want.Capability = "cuda:0"
			s.seq("hive", r, ok(want))
		}, Illegal},
		{"higher incarnation replaces and voids claim", func(s *script) {
			w1Claimed(s)
			s.seq("hive", register("w1", 2), ok(idle("w1", 2, 3)))
			s.seq("router", release("w1", 1, "c1"), fails(api.CodeIncarnationChanged))
		}, Ok},
		{"higher incarnation keeps the claim", func(s *script) {
			w1Claimed(s)
			s.seq("hive", register("w1", 2), ok(busy("w1", 2, 3, "c1")))
		}, Illegal},
		{"higher incarnation keeps the version", func(s *script) {
			w1(s)
			s.seq("hive", register("w1", 2), ok(idle("w1", 2, 1)))
		}, Illegal},
		{"lower incarnation refused", func(s *script) {
			s.seq("hive", register("w1", 2), created(idle("w1", 2, 1)))
			s.seq("hive", register("w1", 1), fails(api.CodeStaleIncarnation))
		}, Ok},
		{"lower incarnation accepted", func(s *script) {
			s.seq("hive", register("w1", 2), created(idle("w1", 2, 1)))
			s.seq("hive", register("w1", 1), ok(idle("w1", 1, 2)))
		}, Illegal},
		{"full while absent", func(s *script) {
			s.seq("hive", register("w1", 1), fails(api.CodeRegistryFull))
			s.seq("hive", get("w1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"full while present", func(s *script) {
			w1(s)
			s.seq("hive", register("w1", 1), fails(api.CodeRegistryFull))
		}, Illegal},
	})
}

// TestRegistryHeartbeatGet covers Heartbeat and Get (registry/heartbeat-timeout-busy).
func TestRegistryHeartbeatGet(t *testing.T) {
	runCases(t, []registryCase{
		{"heartbeat of absent worker", func(s *script) {
			s.seq("hive", heartbeat("w1", 1), fails(api.CodeUnknownWorker))
		}, Ok},
		{"heartbeat of absent worker accepted", func(s *script) {
			s.seq("hive", heartbeat("w1", 1), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"heartbeat with other incarnation", func(s *script) {
			w1(s)
			s.seq("hive", heartbeat("w1", 2), fails(api.CodeStaleIncarnation))
		}, Ok},
		{"heartbeat with other incarnation accepted", func(s *script) {
			w1(s)
			s.seq("hive", heartbeat("w1", 2), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"heartbeat revives stale-but-busy", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("router", get("w1"), ok(rec("w1", 1, api.StateBusy, api.HealthStale, 2, "c1")))
			s.seq("hive", heartbeat("w1", 1), ok(busy("w1", 1, 2, "c1")))
		}, Ok},
		{"heartbeat leaves it stale", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("hive", heartbeat("w1", 1), ok(rec("w1", 1, api.StateBusy, api.HealthStale, 2, "c1")))
		}, Illegal},
		{"get shows wrong health", func(s *script) {
			w1(s)
			s.seq("router", get("w1"), ok(rec("w1", 1, api.StateIdle, api.HealthStale, 1, "")))
		}, Illegal},
		{"get shows wrong claim", func(s *script) {
			w1Claimed(s)
			s.seq("router", get("w1"), ok(busy("w1", 1, 2, "c2")))
		}, Illegal},
	})
}

// TestRegistryUpdateState covers UpdateState (registry/concurrent-state-update).
func TestRegistryUpdateState(t *testing.T) {
	runCases(t, []registryCase{
		{"lost update: both CAS idle->busy succeed", func(s *script) {
			w1(s)
			s.over("r1", 100, 200, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 2, "")))
			s.over("r2", 101, 201, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 3, "")))
		}, Illegal},
		{"one CAS wins, other already busy", func(s *script) {
			w1(s)
			s.over("r1", 100, 200, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 2, "")))
			s.over("r2", 101, 201, cas("w1", 1, api.StateBusy), fails(api.CodeWorkerAlreadyBusy))
		}, Ok},
		{"loser told version conflict instead of already busy", func(s *script) {
			w1(s)
			s.over("r1", 100, 200, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 2, "")))
			s.over("r2", 101, 201, cas("w1", 1, api.StateBusy), fails(api.CodeVersionConflict))
		}, Illegal},
		{"version conflict", func(s *script) {
			w1(s)
			s.seq("hive", cas("w1", 7, api.StateDraining), fails(api.CodeVersionConflict))
		}, Ok},
		{"version conflict told already busy", func(s *script) {
			w1(s)
			s.seq("hive", cas("w1", 7, api.StateDraining), fails(api.CodeWorkerAlreadyBusy))
		}, Illegal},
		{"matching version refused", func(s *script) {
			w1(s)
			s.seq("hive", cas("w1", 1, api.StateDraining), fails(api.CodeVersionConflict))
		}, Illegal},
		{"unconfirmed worker cannot become busy", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("r1", cas("w1", 1, api.StateBusy), fails(api.CodeWorkerStale))
		}, Ok},
		{"unconfirmed worker made busy", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("r1", cas("w1", 1, api.StateBusy), ok(rec("w1", 1, api.StateBusy, api.HealthUnconfirmed, 2, "")))
		}, Illegal},
		{"success clears the claim", func(s *script) {
			w1Claimed(s)
			s.seq("r1", cas("w1", 2, api.StateIdle), ok(idle("w1", 1, 3)))
		}, Ok},
		{"success keeps the claim", func(s *script) {
			w1Claimed(s)
			s.seq("r1", cas("w1", 2, api.StateIdle), ok(rec("w1", 1, api.StateIdle, api.HealthHealthy, 3, "c1")))
		}, Illegal},
		{"stale worker leaving busy is removed", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("r1", cas("w1", 2, api.StateIdle), removed(rec("w1", 1, api.StateIdle, api.HealthStale, 3, "")))
			s.seq("r1", get("w1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"stale worker leaving busy is kept", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("r1", cas("w1", 2, api.StateIdle), ok(rec("w1", 1, api.StateIdle, api.HealthStale, 3, "")))
		}, Illegal},
		{"invalid target state", func(s *script) {
			w1(s)
			s.seq("r1", cas("w1", 1, "asleep"), fails(api.CodeInvalidRequest))
		}, Ok},
		{"absent worker", func(s *script) {
			s.seq("r1", cas("w1", 1, api.StateIdle), fails(api.CodeUnknownWorker))
		}, Ok},
	})
}

// TestRegistryClaim covers Claim (registry/heartbeat-timeout-busy, registry/persistence).
func TestRegistryClaim(t *testing.T) {
	runCases(t, []registryCase{
		{"claim takes an idle healthy worker", w1Claimed, Ok},
		{"claim takes a busy worker", func(s *script) {
			w1Claimed(s)
			s.seq("router", claim(), ok(busy("w1", 1, 3, "c2")))
		}, Illegal},
		{"claim after the worker went stale", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("router", claim(), ok(rec("w1", 1, api.StateBusy, api.HealthStale, 3, "c2")))
		}, Illegal},
		{"claim after stale, revival and release", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("hive", heartbeat("w1", 1), ok(busy("w1", 1, 2, "c1")))
			s.seq("router", release("w1", 1, "c1"), ok(idle("w1", 1, 3)))
			s.seq("router", claim(), ok(busy("w1", 1, 4, "c2")))
		}, Ok},
		{"claim after queen restart without confirmation", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("router", claim(), ok(busy("w1", 1, 2, "c1")))
		}, Illegal},
		{"claim after queen restart and heartbeat", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("hive", heartbeat("w1", 1), ok(idle("w1", 1, 1)))
			s.seq("router", claim(), ok(busy("w1", 1, 2, "c1")))
		}, Ok},
		{"no worker while one is eligible", func(s *script) {
			w1(s)
			s.seq("router", claim(), fails(api.CodeNoWorkerAvailable))
		}, Illegal},
		{"no worker while the only one is busy", func(s *script) {
			w1Claimed(s)
			s.seq("router", claim(), fails(api.CodeNoWorkerAvailable))
		}, Ok},
		{"no worker while only another model's worker is idle", func(s *script) {
			w1(s)
			s.seq("router", api.ClaimReq{Model: "m2"}, fails(api.CodeNoWorkerAvailable))
		}, Ok},
		{"no worker while a re-registered worker serves the model", func(s *script) {
			w1(s)
			r := register("w1", 2)
			r.Spec.Model = "m2"
			want := idle("w1", 2, 2)
			want.Model = "m2"
			s.seq("hive", r, ok(want))
			s.seq("router", api.ClaimReq{Model: "m2"}, fails(api.CodeNoWorkerAvailable))
		}, Illegal},
		{"no worker and no workers", func(s *script) {
			s.seq("router", claim(), fails(api.CodeNoWorkerAvailable))
		}, Ok},
		{"claim answers a code the spec never gives", func(s *script) {
			s.seq("router", claim(), fails(api.CodeUnknownWorker))
		}, Illegal},
		{"claim ignores the capability", func(s *script) {
			w1(s)
			s.seq("router", api.ClaimReq{Model: "m1", Capability: "cuda:0"}, ok(busy("w1", 1, 2, "c1")))
		}, Illegal},
		{"claim ignores the model", func(s *script) {
			w1(s)
			s.seq("router", api.ClaimReq{Model: "m2"}, ok(busy("w1", 1, 2, "c1")))
		}, Illegal},
		{"claim without a claim ID", func(s *script) {
			w1(s)
			s.seq("router", claim(), ok(busy("w1", 1, 2, "")))
		}, Illegal},
		{"unknown claim took the worker", func(s *script) {
			w1(s)
			s.lost("router", 100, claim())
			s.seq("router", claim(), fails(api.CodeNoWorkerAvailable))
			s.seq("router", get("w1"), ok(busy("w1", 1, 5, "cX")))
			s.seq("router", release("w1", 1, "cX"), ok(idle("w1", 1, 6)))
		}, Ok},
		{"unknown claim took nothing", func(s *script) {
			s.seq("hive", register("w2", 1), created(idle("w2", 1, 1)))
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 2)))
			s.lost("router", 100, claim())
			s.seq("router", get("w1"), ok(idle("w1", 1, 2)))
			s.seq("router", get("w2"), ok(idle("w2", 1, 1)))
		}, Ok},
		{"unknown claim cannot explain a version going back", func(s *script) {
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 5)))
			s.lost("router", 100, claim())
			s.seq("router", get("w1"), ok(busy("w1", 1, 4, "cX")))
		}, Illegal},
	})
}

// TestRegistryReleaseRemove covers Release and Remove (registry/linearizable).
func TestRegistryReleaseRemove(t *testing.T) {
	runCases(t, []registryCase{
		{"release of absent worker", func(s *script) {
			s.seq("router", release("w1", 1, "c1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"release of an idle worker", func(s *script) {
			w1(s)
			s.seq("router", release("w1", 1, "c1"), fails(api.CodeClaimNotHeld))
		}, Ok},
		{"release with another claim", func(s *script) {
			w1Claimed(s)
			s.seq("router", release("w1", 1, "c9"), fails(api.CodeClaimNotHeld))
		}, Ok},
		{"release with another claim accepted", func(s *script) {
			w1Claimed(s)
			s.seq("router", release("w1", 1, "c9"), ok(idle("w1", 1, 3)))
		}, Illegal},
		{"release with the claim refused", func(s *script) {
			w1Claimed(s)
			s.seq("router", release("w1", 1, "c1"), fails(api.CodeClaimNotHeld))
		}, Illegal},
		{"release with another incarnation", func(s *script) {
			w1Claimed(s)
			s.seq("router", release("w1", 2, "c1"), fails(api.CodeIncarnationChanged))
		}, Ok},
		{"release of a stale worker removes it", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("router", release("w1", 1, "c1"), removed(rec("w1", 1, api.StateIdle, api.HealthStale, 3, "")))
			s.seq("hive", heartbeat("w1", 1), fails(api.CodeUnknownWorker))
		}, Ok},
		{"release of a stale worker keeps it", func(s *script) {
			w1Claimed(s)
			s.internal(stale("w1"))
			s.seq("router", release("w1", 1, "c1"), ok(rec("w1", 1, api.StateIdle, api.HealthStale, 3, "")))
		}, Illegal},
		{"remove", func(s *script) {
			w1(s)
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 1)))
			s.seq("admin", remove("w1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"remove with the zero record", func(s *script) {
			w1(s)
			s.seq("admin", remove("w1"), api.RegistryResp{Removed: true})
		}, Ok},
		{"remove without the Removed flag", func(s *script) {
			w1(s)
			s.seq("admin", remove("w1"), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"worker still there after remove", func(s *script) {
			w1(s)
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 1)))
			s.seq("admin", get("w1"), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"version goes back after remove and re-register", func(s *script) {
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 5)))
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 5)))
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 3)))
		}, Illegal},
		{"version grows after remove and re-register", func(s *script) {
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 5)))
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 5)))
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 9)))
		}, Ok},
	})
}

// TestRegistryList covers List's projection into each worker's partition.
func TestRegistryList(t *testing.T) {
	other := api.WorkerRecord{WorkerSpec: api.WorkerSpec{ID: "w2", Hive: "hive-a", Incarnation: 1, Model: "m2", Capability: "cpu", Slots: 1},
		State: api.StateIdle, Health: api.HealthHealthy, Version: 2}
	withOther := func(s *script) {
		w1(s)
		s.seq("hive", api.RegisterReq{Spec: other.WorkerSpec, State: api.StateIdle}, created(other))
	}
	runCases(t, []registryCase{
		{"list shows the matching worker", func(s *script) {
			withOther(s)
			s.seq("router", list(), listed(idle("w1", 1, 1)))
		}, Ok},
		{"list misses a present matching worker", func(s *script) {
			withOther(s)
			s.seq("router", list(), listed())
		}, Illegal},
		{"list shows a worker not matching the filter", func(s *script) {
			withOther(s)
			s.seq("router", list(), listed(idle("w1", 1, 1), other))
		}, Illegal},
		{"list without filter shows both", func(s *script) {
			withOther(s)
			s.seq("router", api.ListReq{}, listed(idle("w1", 1, 1), other))
		}, Ok},
		{"list not sorted by ID", func(s *script) {
			withOther(s)
			s.seq("router", api.ListReq{}, listed(other, idle("w1", 1, 1)))
		}, Illegal},
		{"list misses a worker re-registered into the filter", func(s *script) {
			s.seq("hive", api.RegisterReq{Spec: other.WorkerSpec, State: api.StateIdle}, created(other))
			r := api.RegisterReq{Spec: other.WorkerSpec, State: api.StateIdle}
			r.Spec.Incarnation, r.Spec.Model = 2, "m1"
			moved := other
			moved.Incarnation, moved.Model, moved.Version = 2, "m1", 3
			s.seq("hive", r, ok(moved))
			s.seq("router", list(), listed())
		}, Illegal},
		{"list shows an old version", func(s *script) {
			w1Claimed(s)
			s.seq("router", list(), listed(busy("w1", 1, 1, "c1")))
		}, Illegal},
		{"list shows a removed worker", func(s *script) {
			w1(s)
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 1)))
			s.seq("router", list(), listed(idle("w1", 1, 1)))
		}, Illegal},
		{"list shows a worker never registered", func(s *script) {
			s.seq("router", list(), listed(idle("w1", 1, 1)))
		}, Illegal},
		{"list answers an error", func(s *script) {
			s.seq("router", list(), fails(api.CodeUnknownWorker))
		}, Illegal},
	})
}

// TestRegistryInternal covers the queen's internal transitions (registry/heartbeat-timeout-busy,
// registry/persistence).
func TestRegistryInternal(t *testing.T) {
	runCases(t, []registryCase{
		{"idle worker goes stale", func(s *script) {
			w1(s)
			s.internal(stale("w1"))
		}, Illegal},
		{"worker goes healthy on its own", func(s *script) {
			w1Claimed(s)
			s.internal(api.WorkerHealthChanged{Worker: "w1", Health: api.HealthHealthy})
		}, Illegal},
		{"expiry removes", func(s *script) {
			w1(s)
			s.internal(expired("w1"))
			s.seq("router", get("w1"), fails(api.CodeUnknownWorker))
		}, Ok},
		{"expiry of an absent worker", func(s *script) {
			s.internal(expired("w1"))
		}, Illegal},
		{"restart makes unconfirmed", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("router", get("w1"), ok(rec("w1", 1, api.StateIdle, api.HealthUnconfirmed, 1, "")))
		}, Ok},
		{"restart forgets a worker", func(s *script) {
			w1(s)
			s.internal(started(2))
			s.seq("router", get("w1"), fails(api.CodeUnknownWorker))
		}, Illegal},
	})
}

// TestRegistryConcurrencyAndUnknowns covers overlapping operations, UNAVAILABLE and unknown
// outcomes (registry/linearizable).
func TestRegistryConcurrencyAndUnknowns(t *testing.T) {
	runCases(t, []registryCase{
		{"overlapping CAS chain, Ok in one order only", func(s *script) {
			w1(s)
			s.over("r1", 100, 200, cas("w1", 1, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
			s.over("r2", 110, 190, cas("w1", 2, api.StateIdle), ok(idle("w1", 1, 3)))
		}, Ok},
		{"CAS chain against real-time order", func(s *script) {
			w1(s)
			s.over("r2", 100, 105, cas("w1", 2, api.StateIdle), ok(idle("w1", 1, 3)))
			s.over("r1", 110, 200, cas("w1", 1, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
		}, Illegal},
		{"get overlapping a write sees the old record", func(s *script) {
			w1(s)
			s.over("r1", 100, 200, cas("w1", 1, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
			s.over("r2", 150, 160, get("w1"), ok(idle("w1", 1, 1)))
		}, Ok},
		{"get after a write sees the old record", func(s *script) {
			w1(s)
			s.over("r1", 100, 140, cas("w1", 1, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
			s.over("r2", 150, 160, get("w1"), ok(idle("w1", 1, 1)))
		}, Illegal},
		{"unavailable changed nothing", func(s *script) {
			w1(s)
			s.seq("r1", cas("w1", 1, api.StateDraining), fails(api.CodeUnavailable))
			s.seq("r1", get("w1"), ok(idle("w1", 1, 1)))
		}, Ok},
		{"unavailable changed something", func(s *script) {
			w1(s)
			s.seq("r1", cas("w1", 1, api.StateDraining), fails(api.CodeUnavailable))
			s.seq("r1", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
		}, Illegal},
		{"unknown CAS shown applied", func(s *script) {
			w1(s)
			s.lost("r1", 100, cas("w1", 1, api.StateDraining))
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 7, "")))
			s.seq("r2", cas("w1", 7, api.StateIdle), ok(idle("w1", 1, 8)))
		}, Ok},
		{"unknown CAS shown not applied", func(s *script) {
			w1(s)
			s.lost("r1", 100, cas("w1", 1, api.StateDraining))
			s.seq("r2", get("w1"), ok(idle("w1", 1, 1)))
			s.seq("r2", cas("w1", 1, api.StateLoading), ok(rec("w1", 1, api.StateLoading, api.HealthHealthy, 2, "")))
		}, Ok},
		{"unknown CAS applied without a new version", func(s *script) {
			w1(s)
			s.lost("r1", 100, cas("w1", 1, api.StateDraining))
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 1, "")))
		}, Illegal},
		{"unknown CAS cannot explain another state", func(s *script) {
			w1(s)
			s.lost("r1", 100, cas("w1", 1, api.StateDraining))
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateLoading, api.HealthHealthy, 2, "")))
		}, Illegal},
		{"unknown CAS version resolved once", func(s *script) {
			w1(s)
			s.lost("r1", 100, cas("w1", 1, api.StateDraining))
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 7, "")))
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 8, "")))
		}, Illegal},
		{"unknown register shown by a later CAS", func(s *script) {
			s.lost("hive", 100, register("w1", 1))
			s.seq("r1", cas("w1", 4, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 5, "")))
		}, Ok},
		{"unknown register, CAS with a version it cannot have", func(s *script) {
			s.seq("hive", register("w1", 1), created(idle("w1", 1, 4)))
			s.seq("admin", remove("w1"), removed(idle("w1", 1, 4)))
			s.lost("hive", 100, register("w1", 1))
			s.seq("r1", cas("w1", 4, api.StateDraining), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 5, "")))
		}, Illegal},
		{"retried request with one reply", func(s *script) {
			w1(s)
			s.h.Invoke("r1", withReqID(cas("w1", 1, api.StateDraining), 99), 100)
			s.h.Invoke("r1", withReqID(cas("w1", 1, api.StateDraining), 99), 150)
			resp := ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, ""))
			resp.ReqID = 99
			s.h.Return("r1", resp, 200)
			s.h.Return("r1", resp, 250)
			s.now = 300
			s.seq("r2", get("w1"), ok(rec("w1", 1, api.StateDraining, api.HealthHealthy, 2, "")))
		}, Ok},
	})
}
