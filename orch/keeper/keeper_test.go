package keeper

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

const (
	queenAddr node.Addr = "queen-1"
	self      node.Addr = "keeper-1"
	hiveB     node.Addr = "hive-b"

	retryEvery = time.Second
)

func testConfig(casPercent int) Config {
	return Config{
		Queen:         queenAddr,
		Models:        []string{"m1"},
		Capability:    "cpu",
		ThinkTime:     10 * time.Millisecond,
		WorkTime:      100 * time.Millisecond,
		CASPercent:    casPercent,
		RetryInterval: retryEvery,
		UseTimeout:    2500 * time.Millisecond,
	}
}

// fixture is one keeper driven by hand.
type fixture struct {
	t   *testing.T
	env *nodetest.Env
	k   *Keeper
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, env: nodetest.New(self, 1, nil), k: New(cfg)}
	f.k.Start(f.env)
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Fatalf("Start sent %v before thinking", s)
	}
	return f
}

// next advances the clock in small steps until the keeper sends exactly one message, and
// returns it. It fails if nothing is sent within limit.
func (f *fixture) next(limit time.Duration) nodetest.Sent {
	f.t.Helper()
	for d := time.Duration(0); d < limit; d += time.Millisecond {
		f.env.Advance(f.k, time.Millisecond)
		if s := f.env.TakeSent(); len(s) > 0 {
			if len(s) != 1 {
				f.t.Fatalf("sent %v at once, want one message", s)
			}
			return s[0]
		}
	}
	f.t.Fatalf("nothing sent within %v", limit)
	return nodetest.Sent{}
}

// expect checks that the keeper sent exactly one message of type T to to, and returns it.
func expect[T node.Msg](t *testing.T, s nodetest.Sent, to node.Addr) T {
	t.Helper()
	m, ok := s.Msg.(T)
	if !ok || s.To != to {
		var zero T
		t.Fatalf("sent %T %+v to %s, want %T to %s", s.Msg, s.Msg, s.To, zero, to)
	}
	return m
}

func (f *fixture) only() nodetest.Sent {
	f.t.Helper()
	s := f.env.TakeSent()
	if len(s) != 1 {
		f.t.Fatalf("sent %v, want exactly one message", s)
	}
	return s[0]
}

func (f *fixture) none(what string) {
	f.t.Helper()
	if s := f.env.TakeSent(); len(s) != 0 {
		f.t.Fatalf("%s: sent %v, want nothing", what, s)
	}
}

func (f *fixture) fromQueen(r api.RegistryResp) { f.k.Handle(f.env, queenAddr, r) }

func hasMark(obs []node.Observation, mark string) bool {
	for _, o := range obs {
		if m, ok := o.(node.Mark); ok && string(m) == mark {
			return true
		}
	}
	return false
}

func claimed() api.WorkerRecord {
	return api.WorkerRecord{
		WorkerSpec: api.WorkerSpec{ID: "w-1", Hive: hiveB, Incarnation: 7, Model: "m1", Capability: "cpu", Slots: 1},
		State:      api.StateBusy, Health: api.HealthHealthy, Version: 12, ClaimID: "claim-9",
	}
}

func TestClaimUseRelease(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	if claim.Model != "m1" || claim.Capability != "cpu" || claim.ReqID == 0 {
		t.Fatalf("ClaimReq %+v, want model m1 on cpu with a ReqID", claim)
	}
	if !f.k.Busy() {
		t.Errorf("Busy() = false with a claim in flight")
	}

	rec := claimed()
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Op: "claim", Record: rec, Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	if use.Worker != rec.ID || use.Incarnation != rec.Incarnation || use.ClaimID != rec.ClaimID {
		t.Errorf("UseReq %+v, want worker %s incarnation %d claim %s", use, rec.ID, rec.Incarnation, rec.ClaimID)
	}
	if use.Work <= 0 || use.ReqID == claim.ReqID {
		t.Errorf("UseReq %+v: want positive work and a fresh ReqID", use)
	}

	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: rec.ID})
	rel := expect[api.ReleaseReq](t, f.only(), queenAddr)
	if rel.Worker != rec.ID || rel.Incarnation != rec.Incarnation || rel.ClaimID != rec.ClaimID {
		t.Errorf("ReleaseReq %+v, want the claim's worker, incarnation and ClaimID", rel)
	}
	if rel.ReqID == use.ReqID || rel.ReqID == claim.ReqID {
		t.Errorf("ReleaseReq reuses ReqID %d", rel.ReqID)
	}

	f.fromQueen(api.RegistryResp{ReqID: rel.ReqID, Op: "release", Epoch: 1})
	if f.k.Busy() {
		t.Errorf("Busy() after the release was answered")
	}
	if got, want := f.k.Stats(), (Stats{Acquired: 1, Completed: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	// It thinks and claims again.
	again := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	if again.ReqID == claim.ReqID || again.ReqID == rel.ReqID {
		t.Errorf("second claim reuses ReqID %d", again.ReqID)
	}
}

func TestRetriesWithSameReqID(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	for i := 1; i <= 3; i++ {
		f.env.Advance(f.k, retryEvery-time.Millisecond)
		f.none("before the retry interval")
		f.env.Advance(f.k, time.Millisecond)
		if got := expect[api.ClaimReq](t, f.only(), queenAddr); got != claim {
			t.Fatalf("retry %d sent %+v, want %+v", i, got, claim)
		}
	}
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	f.env.Advance(f.k, retryEvery)
	if got := expect[api.UseReq](t, f.only(), hiveB); got != use {
		t.Fatalf("UseReq retry %+v, want %+v", got, use)
	}
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker})
	rel := expect[api.ReleaseReq](t, f.only(), queenAddr)
	f.env.Advance(f.k, retryEvery)
	if got := expect[api.ReleaseReq](t, f.only(), queenAddr); got != rel {
		t.Fatalf("ReleaseReq retry %+v, want %+v", got, rel)
	}
	// Once answered, the old retry chains stop.
	f.fromQueen(api.RegistryResp{ReqID: rel.ReqID, Epoch: 1})
	f.k.Handle(f.env, self, retryTick{ReqID: rel.ReqID})
	f.none("a stale retry tick")
}

func TestStaleResponsesAreIgnored(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)

	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID + 1000, Record: claimed(), Epoch: 1})
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID - 1, Record: claimed(), Epoch: 1})
	f.k.Handle(f.env, "impostor", api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: claim.ReqID})
	f.none("stale answers to a claim")
	if !f.k.Busy() || f.k.Stats() != (Stats{}) {
		t.Fatalf("stale answers changed the keeper: Busy %v Stats %+v", f.k.Busy(), f.k.Stats())
	}

	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	// A duplicate of the claim answer, and a UseResp for another request, change nothing.
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID + 1})
	f.none("stale answers while using")
	if got := f.k.Stats(); got != (Stats{Acquired: 1}) {
		t.Fatalf("Stats() = %+v, want one acquisition", got)
	}

	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID})
	expect[api.ReleaseReq](t, f.only(), queenAddr)
	// A repeated UseResp after the release started is ignored.
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID})
	f.none("a duplicate UseResp")
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Completed: 1}) {
		t.Errorf("Stats() = %+v, want one completion", got)
	}
}

// A RegistryResp that carries the ReqID of the in-flight UseReq (the request went to the hive,
// not the queen) must not count as its answer.
func TestRegistryRespDoesNotAnswerUseReq(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	f.fromQueen(api.RegistryResp{ReqID: use.ReqID, Epoch: 1})
	f.env.Advance(f.k, retryEvery)
	if got := expect[api.UseReq](t, f.only(), hiveB); got != use {
		t.Fatalf("UseReq retry %+v, want %+v", got, use)
	}
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker})
	expect[api.ReleaseReq](t, f.only(), queenAddr)
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Completed: 1}) {
		t.Errorf("Stats() = %+v, want one completion", got)
	}
}

func TestNoWorkerAvailable(t *testing.T) {
	for _, code := range []api.Code{api.CodeNoWorkerAvailable, api.CodeUnavailable} {
		t.Run(string(code), func(t *testing.T) {
			f := start(t, testConfig(0))
			claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
			f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Err: api.Error{Code: code}, Epoch: 1})
			f.none("right after a refused claim") // it thinks first
			if f.k.Busy() {
				t.Errorf("Busy() after the claim was answered")
			}
			if got := f.k.Stats(); got != (Stats{Unserved: 1}) {
				t.Errorf("Stats() = %+v, want one unserved", got)
			}
			expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
		})
	}
}

func TestUseErrorCountsFailedAndReleases(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker, Err: api.Error{Code: api.CodeIncarnationChanged}})
	expect[api.ReleaseReq](t, f.only(), queenAddr)
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Failed: 1}) {
		t.Errorf("Stats() = %+v, want one failure", got)
	}
	if !hasMark(f.env.Observed, "keeper saw its work stopped by a capability change") {
		t.Errorf("no capability-change mark: %v", f.env.Observed)
	}
}

func TestUseTimeoutGivesUp(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	rec := claimed()
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: rec, Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)

	f.env.Advance(f.k, 2500*time.Millisecond) // UseReq retried at 1s and 2s, timeout at 2.5s
	sent := f.env.TakeSent()
	if len(sent) != 3 {
		t.Fatalf("sent %v, want two UseReq retries and a ReleaseReq", sent)
	}
	for _, s := range sent[:2] {
		if got := expect[api.UseReq](t, s, hiveB); got != use {
			t.Errorf("retry %+v, want %+v", got, use)
		}
	}
	rel := expect[api.ReleaseReq](t, sent[2], queenAddr)
	if rel.Worker != rec.ID || rel.ClaimID != rec.ClaimID || rel.Incarnation != rec.Incarnation {
		t.Errorf("ReleaseReq %+v, want the held claim", rel)
	}
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Failed: 1}) {
		t.Errorf("Stats() = %+v, want one failure", got)
	}
	if !hasMark(f.env.Observed, "keeper gave up waiting for work") {
		t.Errorf("no give-up mark: %v", f.env.Observed)
	}
	// The late UseResp is ignored; the UseReq is no longer retried.
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker})
	f.none("a late UseResp")
	f.env.Advance(f.k, retryEvery)
	if got := expect[api.ReleaseReq](t, f.only(), queenAddr); got != rel {
		t.Errorf("after the timeout resent %+v, want only the release %+v", got, rel)
	}
	if got := f.k.Stats(); got.Completed != 0 {
		t.Errorf("Stats() = %+v, the timed-out work counted as completed", got)
	}
}

func TestUseTimeoutAfterCompletionIsIgnored(t *testing.T) {
	f := start(t, testConfig(0))
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker})
	rel := expect[api.ReleaseReq](t, f.only(), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: rel.ReqID, Epoch: 1})
	f.k.Handle(f.env, self, useTimeout{ReqID: use.ReqID})
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Completed: 1}) {
		t.Errorf("a stale use timeout changed Stats() to %+v", got)
	}
}

func TestCASAcquireAndRelease(t *testing.T) {
	f := start(t, testConfig(100))
	list := expect[api.ListReq](t, f.next(time.Second), queenAddr)
	if list.Model != "m1" || list.Capability != "cpu" {
		t.Fatalf("ListReq %+v, want model m1 on cpu", list)
	}
	spec := func(id string) api.WorkerSpec {
		return api.WorkerSpec{ID: id, Hive: hiveB, Incarnation: 3, Model: "m1", Capability: "cpu", Slots: 1}
	}
	records := []api.WorkerRecord{
		{WorkerSpec: spec("w-busy"), State: api.StateBusy, Health: api.HealthHealthy, Version: 4},
		{WorkerSpec: spec("w-stale"), State: api.StateIdle, Health: api.HealthStale, Version: 5},
		{WorkerSpec: spec("w-unconf"), State: api.StateIdle, Health: api.HealthUnconfirmed, Version: 6},
		{WorkerSpec: spec("w-loading"), State: api.StateLoading, Health: api.HealthHealthy, Version: 7},
		{WorkerSpec: spec("w-idle"), State: api.StateIdle, Health: api.HealthHealthy, Version: 9},
	}
	f.fromQueen(api.RegistryResp{ReqID: list.ReqID, Op: "list", Records: records, Epoch: 1})
	cas := expect[api.UpdateStateReq](t, f.only(), queenAddr)
	want := api.UpdateStateReq{ReqID: cas.ReqID, Worker: "w-idle", ExpectVersion: 9, To: api.StateBusy}
	if cas != want || cas.ReqID == list.ReqID {
		t.Fatalf("CAS %+v, want %+v with a fresh ReqID", cas, want)
	}

	after := records[4]
	after.State, after.Version = api.StateBusy, 23
	f.fromQueen(api.RegistryResp{ReqID: cas.ReqID, Op: "update_state", Record: after, Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	if use.Worker != "w-idle" || use.Incarnation != 3 || use.ClaimID != "" {
		t.Errorf("UseReq %+v, want w-idle incarnation 3 without a claim", use)
	}
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID, Worker: use.Worker})
	back := expect[api.UpdateStateReq](t, f.only(), queenAddr)
	want = api.UpdateStateReq{ReqID: back.ReqID, Worker: "w-idle", ExpectVersion: 23, To: api.StateIdle}
	if back != want {
		t.Errorf("release CAS %+v, want %+v (the version its own CAS returned)", back, want)
	}
	f.fromQueen(api.RegistryResp{ReqID: back.ReqID, Epoch: 1})
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Completed: 1}) {
		t.Errorf("Stats() = %+v", got)
	}
	expect[api.ListReq](t, f.next(time.Second), queenAddr)
}

func TestCASLost(t *testing.T) {
	for _, code := range []api.Code{api.CodeWorkerAlreadyBusy, api.CodeVersionConflict} {
		t.Run(string(code), func(t *testing.T) {
			f := start(t, testConfig(100))
			list := expect[api.ListReq](t, f.next(time.Second), queenAddr)
			rec := api.WorkerRecord{WorkerSpec: api.WorkerSpec{ID: "w-1", Hive: hiveB, Incarnation: 1, Model: "m1", Capability: "cpu", Slots: 1},
				State: api.StateIdle, Health: api.HealthHealthy, Version: 2}
			f.fromQueen(api.RegistryResp{ReqID: list.ReqID, Records: []api.WorkerRecord{rec}, Epoch: 1})
			cas := expect[api.UpdateStateReq](t, f.only(), queenAddr)
			f.fromQueen(api.RegistryResp{ReqID: cas.ReqID, Err: api.Error{Code: code}, Epoch: 1})
			f.none("after a lost CAS") // no use, no release: it holds nothing
			if got := f.k.Stats(); got != (Stats{CASLost: 1}) {
				t.Errorf("Stats() = %+v, want one CAS lost", got)
			}
			if !hasMark(f.env.Observed, "keeper lost a compare-and-set") {
				t.Errorf("no CAS-lost mark: %v", f.env.Observed)
			}
			expect[api.ListReq](t, f.next(time.Second), queenAddr)
		})
	}
}

func TestCASNothingIdle(t *testing.T) {
	cases := []struct {
		name string
		resp api.RegistryResp
	}{
		{"empty list", api.RegistryResp{}},
		{"only busy", api.RegistryResp{Records: []api.WorkerRecord{{State: api.StateBusy, Health: api.HealthHealthy}}}},
		{"list refused", api.RegistryResp{Err: api.Error{Code: api.CodeUnavailable},
			Records: []api.WorkerRecord{{State: api.StateIdle, Health: api.HealthHealthy}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, testConfig(100))
			list := expect[api.ListReq](t, f.next(time.Second), queenAddr)
			r := tc.resp
			r.ReqID = list.ReqID
			f.fromQueen(r)
			f.none("after an empty list")
			if got := f.k.Stats(); got != (Stats{Unserved: 1}) {
				t.Errorf("Stats() = %+v, want one unserved", got)
			}
			expect[api.ListReq](t, f.next(time.Second), queenAddr)
		})
	}
}

func TestAcquisitionsLimit(t *testing.T) {
	cfg := testConfig(0)
	cfg.Acquisitions = 2
	f := start(t, cfg)
	// One unserved and one served acquisition use up the limit.
	claim := expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Err: api.Error{Code: api.CodeNoWorkerAvailable}, Epoch: 1})
	claim = expect[api.ClaimReq](t, f.next(time.Second), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: claim.ReqID, Record: claimed(), Epoch: 1})
	use := expect[api.UseReq](t, f.only(), hiveB)
	f.k.Handle(f.env, hiveB, api.UseResp{ReqID: use.ReqID})
	rel := expect[api.ReleaseReq](t, f.only(), queenAddr)
	f.fromQueen(api.RegistryResp{ReqID: rel.ReqID, Epoch: 1})

	f.env.Advance(f.k, time.Hour)
	f.none("after the acquisition limit")
	if f.k.Busy() {
		t.Errorf("Busy() after the limit")
	}
	if got := f.k.Stats(); got != (Stats{Acquired: 1, Completed: 1, Unserved: 1}) {
		t.Errorf("Stats() = %+v", got)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []nodetest.Sent {
		cfg := testConfig(50)
		cfg.Models = []string{"m1", "m2", "m3"}
		env := nodetest.New(self, 42, nil)
		k := New(cfg)
		k.Start(env)
		env.Advance(k, 10*time.Second) // nothing answers: think, then retry
		return env.TakeSent()
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("runs sent %d and %d messages", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("message %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig(0).Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if err := (Config{Queen: queenAddr, Models: []string{"m"}}).Validate(); err != nil {
		t.Fatalf("minimal config rejected: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty queen", func(c *Config) { c.Queen = "" }, "queen"},
		{"no models", func(c *Config) { c.Models = nil }, "models"},
		{"cas below 0", func(c *Config) { c.CASPercent = -1 }, "cas_percent"},
		{"cas above 100", func(c *Config) { c.CASPercent = 101 }, "cas_percent"},
		{"negative think", func(c *Config) { c.ThinkTime = -1 }, "negative"},
		{"negative work", func(c *Config) { c.WorkTime = -1 }, "negative"},
		{"negative retry", func(c *Config) { c.RetryInterval = -1 }, "negative"},
		{"negative timeout", func(c *Config) { c.UseTimeout = -1 }, "negative"},
		{"negative acquisitions", func(c *Config) { c.Acquisitions = -1 }, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(0)
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			defer func() {
				if recover() == nil {
					t.Errorf("New accepted an invalid config")
				}
			}()
			New(c)
		})
	}
}
