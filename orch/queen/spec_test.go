package queen

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// Tests of every rule of the sequential specification in orch/api/registry.go, in its order.

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("zero Config validated")
	}
	wantContains(t, err.Error(), "max_workers is 0", "heartbeat_timeout is 0s", "stale_grace is 0s",
		"dedup_entries_max is 0", "log_compact_records is 0")
	defer func() {
		if recover() == nil {
			t.Error("New(Config{}) did not panic")
		}
	}()
	New(Config{})
}

func TestRegisterSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	bad := spec("w1", 1, "m", "cpu")
	bad.Slots = 0
	h.expect(hiveA, api.RegisterReq{ReqID: h.next(), Spec: bad, State: api.StateIdle}, api.CodeInvalidRequest)
	h.expect(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 1, "m", "cpu"), State: api.StateBusy}, api.CodeInvalidRequest)
	if h.q.Len() != 0 {
		t.Fatalf("invalid registrations created %d workers", h.q.Len())
	}

	// W absent: created idle or loading, healthy, next version, Created.
	r := h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 2, "m", "cpu"), State: api.StateLoading})
	if !r.Created || r.Record.State != api.StateLoading || r.Record.Health != api.HealthHealthy || r.Record.Version != 1 {
		t.Fatalf("create: %+v", r)
	}
	// Lower incarnation: STALE_INCARNATION, nothing changes.
	e := h.expect(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 1, "m", "cpu"), State: api.StateIdle}, api.CodeStaleIncarnation)
	wantContains(t, e.Err.Message, "incarnation 2", "incarnation 1")
	// Same incarnation: a confirmation; state and version stay, even with another state asked for.
	r = h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 2, "m", "cpu"), State: api.StateIdle})
	if r.Created || r.Record.State != api.StateLoading || r.Record.Version != 1 {
		t.Fatalf("confirmation changed the record: %+v", r.Record)
	}
	// Make it busy under a claim, then a higher incarnation replaces spec and state, voids the claim.
	h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: api.StateIdle})
	c := h.claim("m")
	if !c.Err.OK() || c.Record.ClaimID == "" {
		t.Fatalf("claim: %+v", c)
	}
	r = h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 3, "m2", "cuda:0"), State: api.StateIdle})
	want := api.WorkerRecord{WorkerSpec: spec("w1", 3, "m2", "cuda:0"), State: api.StateIdle, Health: api.HealthHealthy, Version: 4}
	if r.Record != want || r.Created {
		t.Fatalf("re-registration: got %+v, want %+v", r.Record, want)
	}
	if got := h.get("w1"); got != want {
		t.Fatalf("get after re-registration: %+v", got)
	}
	h.wantMark("capability changed by re-registration")
}

func TestHeartbeatSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.expect(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 1}, api.CodeUnknownWorker)
	h.register("w1")
	h.expect(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 2}, api.CodeStaleIncarnation)
	r := h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 1})
	if r.Record.Health != api.HealthHealthy || r.Record.Version != 1 {
		t.Fatalf("heartbeat: %+v", r.Record)
	}
}

func TestGetSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.expect(router, api.GetReq{ReqID: h.next(), Worker: "w1"}, api.CodeUnknownWorker)
	rec := h.register("w1")
	if got := h.get("w1"); got != rec {
		t.Fatalf("get: %+v, want %+v", got, rec)
	}
}

func TestUpdateStateSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w1")
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: "sleeping"}, api.CodeInvalidRequest)
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w9", ExpectVersion: 1, To: api.StateIdle}, api.CodeUnknownWorker)
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 7, To: api.StateBusy}, api.CodeVersionConflict)

	r := h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: api.StateBusy})
	if r.Record.State != api.StateBusy || r.Record.Version != 2 || r.Removed {
		t.Fatalf("idle->busy: %+v", r)
	}
	e := h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: api.StateBusy}, api.CodeWorkerAlreadyBusy)
	wantContains(t, e.Err.Message, "w1", "already busy")
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: api.StateDraining}, api.CodeVersionConflict)
	// busy -> busy on the right version is allowed by the spec: clears the claim, next().
	r = h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 2, To: api.StateBusy})
	if r.Record.Version != 3 {
		t.Fatalf("busy->busy: %+v", r.Record)
	}
	// Success clears a claim.
	h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 3, To: api.StateIdle})
	c := h.claim("m")
	r = h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: c.Record.Version, To: api.StateDraining})
	if r.Record.ClaimID != "" || r.Record.State != api.StateDraining {
		t.Fatalf("update did not clear the claim: %+v", r.Record)
	}
}

func TestUpdateStateOnStaleWorker(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w1")
	busy := h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: 1, To: api.StateBusy}).Record
	h.env.Advance(h.q, h.cfg.HeartbeatTimeout)
	if got := h.get("w1"); got.Health != api.HealthStale {
		t.Fatalf("after the deadline: %+v", got)
	}
	// to busy on a stale worker: WORKER_STALE (versions match).
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: busy.Version, To: api.StateBusy}, api.CodeWorkerStale)
	// Any other state: applied, then the worker is removed.
	r := h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: busy.Version, To: api.StateIdle})
	if !r.Removed || r.Record.State != api.StateIdle || r.Record.Version != busy.Version+1 || r.Record.Health != api.HealthStale {
		t.Fatalf("stale worker leaving busy: %+v", r)
	}
	if h.q.Len() != 0 {
		t.Fatal("stale worker not removed")
	}
	h.wantMark("stale worker removed when its request ended")
}

func TestConcurrentUpdateStateOneWins(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	v := h.register("w1").Version
	a := h.do("router-a", api.UpdateStateReq{ReqID: 1, Worker: "w1", ExpectVersion: v, To: api.StateBusy})
	b := h.do("router-b", api.UpdateStateReq{ReqID: 1, Worker: "w1", ExpectVersion: v, To: api.StateBusy})
	if !a.Err.OK() || b.Err.Code != api.CodeWorkerAlreadyBusy {
		t.Fatalf("want the first to win and the second WORKER_ALREADY_BUSY, got %v / %v", a.Err, b.Err)
	}
	if got := h.get("w1"); got.Version != v+1 || got.State != api.StateBusy {
		t.Fatalf("after the race: %+v", got)
	}
}

func TestClaimSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	r := h.claim("m")
	if r.Err.Code != api.CodeNoWorkerAvailable {
		t.Fatalf("empty registry: %v", r.Err)
	}
	wantContains(t, r.Err.Message, "model m", "no registered worker")
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("a", 1, "m", "cpu"), State: api.StateIdle})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("b", 1, "m", "cuda:0"), State: api.StateIdle})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("c", 1, "m", "cuda:0"), State: api.StateLoading})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("d", 1, "other", "cuda:0"), State: api.StateIdle})

	// Capability filter: only b is idle on cuda:0 with model m.
	c := h.must(router, api.ClaimReq{ReqID: h.next(), Model: "m", Capability: "cuda:0"})
	if c.Record.ID != "b" || c.Record.State != api.StateBusy || c.Record.ClaimID == "" || c.Record.Version != 5 {
		t.Fatalf("claim on cuda:0: %+v", c.Record)
	}
	e := h.do(router, api.ClaimReq{ReqID: h.next(), Model: "m", Capability: "cuda:0"})
	if e.Err.Code != api.CodeNoWorkerAvailable {
		t.Fatalf("second claim on cuda:0: %v", e.Err)
	}
	wantContains(t, e.Err.Message, "2 workers serve it", "1 busy", "1 loading or draining")
	c2 := h.must(router, api.ClaimReq{ReqID: h.next(), Model: "m"})
	if c2.Record.ID != "a" || c2.Record.ClaimID == c.Record.ClaimID {
		t.Fatalf("claim without capability: %+v (first claim %s)", c2.Record, c.Record.ClaimID)
	}
}

func TestClaimPicksUniformly(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	ids := []string{"w0", "w1", "w2", "w3"}
	for _, id := range ids {
		h.register(id)
	}
	counts := map[string]int{}
	seen := map[string]bool{}
	const rounds = 400
	for range rounds {
		c := h.must(router, api.ClaimReq{ReqID: h.next(), Model: "m"})
		counts[c.Record.ID]++
		if seen[c.Record.ClaimID] {
			t.Fatalf("claim id %s handed out twice", c.Record.ClaimID)
		}
		seen[c.Record.ClaimID] = true
		h.must(router, api.ReleaseReq{ReqID: h.next(), Worker: c.Record.ID, Incarnation: 1, ClaimID: c.Record.ClaimID})
	}
	for _, id := range ids {
		if counts[id] < rounds/4/2 {
			t.Errorf("worker %s picked %d of %d times; want about %d", id, counts[id], rounds, rounds/4)
		}
	}
}

func TestReleaseSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: "x"}, api.CodeUnknownWorker)
	h.register("w1")
	h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: ""}, api.CodeClaimNotHeld) // idle
	c := h.claim("m").Record
	h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 2, ClaimID: c.ClaimID}, api.CodeIncarnationChanged)
	h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: "c9-9"}, api.CodeClaimNotHeld)
	r := h.must(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: c.ClaimID})
	if r.Record.State != api.StateIdle || r.Record.ClaimID != "" || r.Record.Version != c.Version+1 || r.Removed {
		t.Fatalf("release: %+v", r)
	}
	h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: c.ClaimID}, api.CodeClaimNotHeld)
}

func TestCapabilityChangeVoidsClaim(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w-1", 3, "m", "cuda:0"), State: api.StateIdle})
	c := h.claim("m").Record
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w-1", 4, "m", "cpu"), State: api.StateIdle})
	e := h.expect(router, api.ReleaseReq{ReqID: h.next(), Worker: "w-1", Incarnation: 3, ClaimID: c.ClaimID}, api.CodeIncarnationChanged)
	if e.Err.Message != "the claim was made on incarnation 3; worker w-1 re-registered as incarnation 4 with capability cpu, which voided it" {
		t.Errorf("message: %q", e.Err.Message)
	}
	if e.Err.Suggestion != "route the request again: the worker's capabilities changed" {
		t.Errorf("suggestion: %q", e.Err.Suggestion)
	}
	if got := h.get("w-1"); got.State != api.StateIdle || got.ClaimID != "" {
		t.Fatalf("voided claim still held: %+v", got)
	}
	h.wantMark("capability changed by re-registration")
}

func TestRemoveAndListSpec(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.expect(router, api.RemoveReq{ReqID: h.next(), Worker: "w1"}, api.CodeUnknownWorker)
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w3", 1, "m", "cpu"), State: api.StateIdle})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 1, "m", "cuda:0"), State: api.StateIdle})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w2", 1, "n", "cpu"), State: api.StateIdle})
	for _, tc := range []struct {
		model, capability string
		want              []string
	}{
		{"", "", []string{"w1", "w2", "w3"}},
		{"m", "", []string{"w1", "w3"}},
		{"", "cpu", []string{"w2", "w3"}},
		{"m", "cuda:0", []string{"w1"}},
		{"x", "", nil},
	} {
		r := h.must(router, api.ListReq{ReqID: h.next(), Model: tc.model, Capability: tc.capability})
		var got []string
		for _, rec := range r.Records {
			got = append(got, rec.ID)
		}
		if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) || (len(got) > 1 && got[len(got)-1] != tc.want[len(tc.want)-1]) {
			t.Errorf("list(%q, %q) = %v, want %v", tc.model, tc.capability, got, tc.want)
		}
	}
	rec := h.get("w3")
	r := h.must(router, api.RemoveReq{ReqID: h.next(), Worker: "w3"})
	if !r.Removed || r.Record != rec {
		t.Fatalf("remove: %+v, want record %+v", r, rec)
	}
	h.expect(router, api.GetReq{ReqID: h.next(), Worker: "w3"}, api.CodeUnknownWorker)
	// Version keeps growing across removal and re-registration.
	again := h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w3", 1, "m", "cpu"), State: api.StateIdle}).Record
	if again.Version <= rec.Version {
		t.Fatalf("version after re-registration %d, not above %d", again.Version, rec.Version)
	}
}

func TestRegistryFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxWorkers = 2
	h := newHarness(t, cfg, nil)
	h.register("w-1")
	h.register("w-2")
	before := h.q.Records()
	logBefore := h.q.wal.size
	e := h.expect(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w-17", 1, "m", "cpu"), State: api.StateIdle}, api.CodeRegistryFull)
	if e.Err.Message != "registry holds its maximum of 2 workers; worker w-17 was not registered" {
		t.Errorf("message: %q", e.Err.Message)
	}
	wantContains(t, e.Err.Suggestion, "remove stale workers", "max_workers")
	after := h.q.Records()
	if len(after) != len(before) || after[0] != before[0] || after[1] != before[1] || h.q.wal.size != logBefore {
		t.Fatalf("REGISTRY_FULL changed the registry: %+v -> %+v (log %d -> %d bytes)", before, after, logBefore, h.q.wal.size)
	}
	// Existing workers still re-register, and a free slot lets the new one in.
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w-1", 2, "m", "cpu"), State: api.StateIdle})
	h.must(router, api.RemoveReq{ReqID: h.next(), Worker: "w-2"})
	h.register("w-17")
	h.wantMark("registry full")
}

func TestDuplicateRequestAppliedOnce(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w1")
	req := api.ClaimReq{ReqID: 77, Model: "m"}
	first := h.must(router, req)
	again := h.must(router, req)
	if again.Record != first.Record {
		t.Fatalf("duplicate answered %+v, first %+v", again.Record, first.Record)
	}
	if got := h.get("w1"); got.Version != first.Record.Version {
		t.Fatalf("duplicate applied twice: version %d, want %d", got.Version, first.Record.Version)
	}
	// The same ReqID from another sender is another request.
	h.expect("router-2", req, api.CodeNoWorkerAvailable)
	// A ReqID reused for another operation is refused, not answered with the claim.
	h.expect(router, api.GetReq{ReqID: 77, Worker: "w1"}, api.CodeInvalidRequest)
	h.wantMark("duplicate request answered from cache")
}

func TestDedupCacheBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DedupEntriesMax = 3
	h := newHarness(t, cfg, nil)
	h.register("w1")
	for range 5 {
		h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 1})
	}
	if n := h.q.dedup.len(); n != 3 {
		t.Fatalf("dedup cache holds %d entries, want 3", n)
	}
	// The registration (ReqID 1) was forgotten first: a retry is applied again, as a confirmation.
	r := h.must(hiveA, api.RegisterReq{ReqID: 1, Spec: spec("w1", 1, "m", "cpu"), State: api.StateIdle})
	if r.Created {
		t.Fatalf("forgotten registration answered from cache: %+v", r)
	}
}

func TestUnknownMessageIgnored(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.q.Handle(h.env, router, api.RegistryResp{ReqID: 1})
	h.q.Handle(h.env, router, deadlineTimer{Worker: "w1", Gen: 1}) // a timer from a peer
	if sent := h.env.TakeSent(); len(sent) != 0 {
		t.Fatalf("unknown messages answered: %+v", sent)
	}
}
