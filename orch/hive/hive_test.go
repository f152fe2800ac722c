package hive

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

const (
	queenAddr node.Addr = "queen-1"
	hiveAddr  node.Addr = "hive-1"
	client    node.Addr = "keeper-1"

	// Heartbeat and retry ticks first fall due together at 30s; tests that care stay below.
	hbEvery    = 10 * time.Second
	retryEvery = 3 * time.Second
)

func testConfig() Config {
	return Config{
		Queen: queenAddr,
		Workers: []api.WorkerSpec{
			// Deliberately unsorted: the hive sorts its workers by ID.
			{ID: "w-b", Model: "m1", Capability: "cpu", Slots: 1},
			{ID: "w-a", Model: "m1", Capability: "cuda:0", Slots: 2},
		},
		HeartbeatInterval: hbEvery,
		RetryInterval:     retryEvery,
	}
}

// fixture is one hive process driven by hand.
type fixture struct {
	t   *testing.T
	env *nodetest.Env
	h   *Hive
}

func start(t *testing.T, cfg Config, seed uint64, disk node.Disk) *fixture {
	t.Helper()
	f := &fixture{t: t, env: nodetest.New(hiveAddr, seed, disk), h: New(cfg)}
	f.h.Start(f.env)
	return f
}

// startRegistered starts a hive and acknowledges its first registrations at queen epoch 1.
func startRegistered(t *testing.T) *fixture {
	t.Helper()
	f := start(t, testConfig(), 1, nil)
	f.ackAll(f.env.TakeSent(), 1)
	if got := f.h.Registered(); !slices.Equal(got, []string{"w-a", "w-b"}) {
		t.Fatalf("Registered() = %v after acks, want [w-a w-b]", got)
	}
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Fatalf("acks made the hive send %v", s)
	}
	return f
}

func (f *fixture) spec(id string) api.WorkerSpec {
	f.t.Helper()
	for _, s := range f.h.Workers() {
		if s.ID == id {
			return s
		}
	}
	f.t.Fatalf("no worker %q", id)
	return api.WorkerSpec{}
}

// ackAll answers every registry request in sent with success at the given epoch.
func (f *fixture) ackAll(sent []nodetest.Sent, epoch uint64) {
	f.t.Helper()
	for _, s := range sent {
		switch m := s.Msg.(type) {
		case api.RegisterReq:
			f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: m.ReqID, Op: "register",
				Record: api.WorkerRecord{WorkerSpec: m.Spec, State: m.State, Health: api.HealthHealthy}, Epoch: epoch})
		case api.HeartbeatReq:
			f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: m.ReqID, Op: "heartbeat", Epoch: epoch})
		}
	}
}

func of[T node.Msg](sent []nodetest.Sent, to node.Addr) []T {
	var out []T
	for _, s := range sent {
		if m, ok := s.Msg.(T); ok && s.To == to {
			out = append(out, m)
		}
	}
	return out
}

func registerFor(sent []nodetest.Sent) map[string]api.RegisterReq {
	out := map[string]api.RegisterReq{}
	for _, r := range of[api.RegisterReq](sent, queenAddr) {
		out[r.Spec.ID] = r
	}
	return out
}

func heartbeatWorkers(sent []nodetest.Sent) []string {
	var ids []string
	for _, r := range of[api.HeartbeatReq](sent, queenAddr) {
		ids = append(ids, r.Worker)
	}
	return ids
}

func hasMark(obs []node.Observation, mark string) bool {
	for _, o := range obs {
		if m, ok := o.(node.Mark); ok && string(m) == mark {
			return true
		}
	}
	return false
}

func TestStartRegistersEveryWorker(t *testing.T) {
	f := start(t, testConfig(), 1, nil)
	sent := f.env.TakeSent()
	regs := of[api.RegisterReq](sent, queenAddr)
	if len(regs) != 2 || len(sent) != 2 {
		t.Fatalf("Start sent %v, want two RegisterReq to the queen", sent)
	}
	if regs[0].Spec.ID != "w-a" || regs[1].Spec.ID != "w-b" {
		t.Errorf("registered %s, %s; want w-a then w-b (sorted)", regs[0].Spec.ID, regs[1].Spec.ID)
	}
	for _, r := range regs {
		if r.Spec.Hive != hiveAddr {
			t.Errorf("%s: Hive = %q, want %q", r.Spec.ID, r.Spec.Hive, hiveAddr)
		}
		if r.Spec.Incarnation == 0 {
			t.Errorf("%s: incarnation 0", r.Spec.ID)
		}
		if r.State != api.StateIdle {
			t.Errorf("%s: State = %q, want idle", r.Spec.ID, r.State)
		}
		if err := r.Spec.Validate(); err != nil {
			t.Errorf("registered an invalid spec: %v", err)
		}
	}
	if regs[0].Spec.Incarnation == regs[1].Spec.Incarnation {
		t.Errorf("both workers got incarnation %d", regs[0].Spec.Incarnation)
	}
	if regs[0].ReqID == regs[1].ReqID {
		t.Errorf("both registrations use ReqID %d", regs[0].ReqID)
	}
	if got := f.h.Registered(); len(got) != 0 {
		t.Errorf("Registered() = %v before any answer", got)
	}
	if a := f.spec("w-a"); a.Capability != "cuda:0" || a.Slots != 2 || a.Model != "m1" {
		t.Errorf("w-a spec = %+v, want the configured model/capability/slots", a)
	}
}

func TestRegisterAnswers(t *testing.T) {
	f := start(t, testConfig(), 1, nil)
	regs := registerFor(f.env.TakeSent())

	// Answers from anyone but the queen are ignored.
	f.h.Handle(f.env, "impostor", api.RegistryResp{ReqID: regs["w-a"].ReqID,
		Record: api.WorkerRecord{WorkerSpec: regs["w-a"].Spec}, Epoch: 1})
	if got := f.h.Registered(); len(got) != 0 {
		t.Fatalf("Registered() = %v after an answer from a non-queen", got)
	}
	// An OK answer marks only that worker registered.
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: regs["w-a"].ReqID,
		Record: api.WorkerRecord{WorkerSpec: regs["w-a"].Spec}, Epoch: 1})
	if got := f.h.Registered(); !slices.Equal(got, []string{"w-a"}) {
		t.Fatalf("Registered() = %v, want [w-a]", got)
	}
	// A refusal leaves the worker unregistered; the next heartbeat tick registers it again.
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: regs["w-b"].ReqID,
		Err: api.Error{Code: api.CodeRegistryFull}, Epoch: 1})
	if got := f.h.Registered(); !slices.Equal(got, []string{"w-a"}) {
		t.Fatalf("Registered() = %v after REGISTRY_FULL, want [w-a]", got)
	}
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Fatalf("answers made the hive send %v", s)
	}
	f.env.Advance(f.h, hbEvery)
	sent := f.env.TakeSent()
	if hb := heartbeatWorkers(sent); !slices.Equal(hb, []string{"w-a"}) {
		t.Errorf("heartbeats for %v, want only the registered w-a", hb)
	}
	again := registerFor(sent)
	if r, ok := again["w-b"]; !ok || len(again) != 1 {
		t.Errorf("sent %v, want a new RegisterReq for w-b only", sent)
	} else if r.ReqID == regs["w-b"].ReqID || r.Spec.Incarnation != regs["w-b"].Spec.Incarnation {
		t.Errorf("re-registration %+v: want a new ReqID and the same incarnation %d", r, regs["w-b"].Spec.Incarnation)
	}
}

func TestStaleIncarnationMovesPastTheQueensRecord(t *testing.T) {
	f := start(t, testConfig(), 1, nil)
	regs := registerFor(f.env.TakeSent())
	rec := regs["w-a"].Spec
	rec.Incarnation = 50
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: regs["w-a"].ReqID,
		Err: api.Error{Code: api.CodeStaleIncarnation}, Record: api.WorkerRecord{WorkerSpec: rec}, Epoch: 1})
	again := registerFor(f.env.TakeSent())
	if r, ok := again["w-a"]; !ok || r.Spec.Incarnation <= 50 {
		t.Fatalf("after STALE_INCARNATION (queen holds 50) sent %+v, want a RegisterReq above 50", again)
	}
}

func TestHeartbeatsEveryInterval(t *testing.T) {
	cfg := testConfig()
	cfg.RetryInterval = 7 * time.Second // no retry tick at 10s, 20s, 30s
	f := start(t, cfg, 1, nil)
	f.ackAll(f.env.TakeSent(), 1)
	for round := 1; round <= 3; round++ {
		f.env.Advance(f.h, hbEvery)
		sent := f.env.TakeSent()
		hbs := of[api.HeartbeatReq](sent, queenAddr)
		if len(hbs) != 2 || len(sent) != 2 {
			t.Fatalf("round %d: sent %v, want one heartbeat per worker", round, sent)
		}
		for _, hb := range hbs {
			if want := f.spec(hb.Worker).Incarnation; hb.Incarnation != want {
				t.Errorf("round %d: heartbeat for %s carries incarnation %d, want %d", round, hb.Worker, hb.Incarnation, want)
			}
		}
		f.ackAll(sent, 1)
	}
	// Nothing in between two ticks.
	f.env.Advance(f.h, hbEvery-time.Millisecond)
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Errorf("sent %v between heartbeat ticks", s)
	}
}

func TestUnansweredRequestIsResentWithSameReqID(t *testing.T) {
	f := start(t, testConfig(), 1, nil)
	first := registerFor(f.env.TakeSent())
	for i := 1; i <= 3; i++ {
		f.env.Advance(f.h, retryEvery)
		again := registerFor(f.env.TakeSent())
		for id, r := range first {
			if again[id] != r {
				t.Fatalf("retry %d of %s: got %+v, want the same request %+v", i, id, again[id], r)
			}
		}
	}
	// Once answered (t = 9s), it is not resent; a late duplicate answer is ignored.
	f.ackAll(sentOfMap(first), 1)
	f.ackAll(sentOfMap(first), 1)
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Fatalf("answers made the hive send %v", s)
	}
	// An unanswered heartbeat (t = 10s) is resent with its ReqID at the retry tick (t = 12s).
	f.env.Advance(f.h, time.Second)
	hbs := of[api.HeartbeatReq](f.env.TakeSent(), queenAddr)
	if len(hbs) != 2 {
		t.Fatalf("got %d heartbeats at t=10s, want 2", len(hbs))
	}
	f.env.Advance(f.h, 2*time.Second)
	if re := of[api.HeartbeatReq](f.env.TakeSent(), queenAddr); !slices.Equal(re, hbs) {
		t.Errorf("resent heartbeats %+v, want %+v", re, hbs)
	}
	for _, hb := range hbs {
		f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: hb.ReqID, Epoch: 1})
	}
	f.env.Advance(f.h, retryEvery)
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Errorf("sent %v after every request was answered", s)
	}
}

func sentOfMap(m map[string]api.RegisterReq) []nodetest.Sent {
	var out []nodetest.Sent
	for _, id := range []string{"w-a", "w-b"} {
		if r, ok := m[id]; ok {
			out = append(out, nodetest.Sent{To: queenAddr, Msg: r})
		}
	}
	return out
}

func TestForgottenWorkerIsReregistered(t *testing.T) {
	for _, code := range []api.Code{api.CodeUnknownWorker, api.CodeStaleIncarnation} {
		t.Run(string(code), func(t *testing.T) {
			f := startRegistered(t)
			incA := f.spec("w-a").Incarnation
			f.env.Advance(f.h, hbEvery)
			var hbA api.HeartbeatReq
			for _, hb := range of[api.HeartbeatReq](f.env.TakeSent(), queenAddr) {
				if hb.Worker == "w-a" {
					hbA = hb
				}
			}
			f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: hbA.ReqID, Err: api.Error{Code: code}, Epoch: 1})
			regs := registerFor(f.env.TakeSent())
			r, ok := regs["w-a"]
			if !ok || len(regs) != 1 {
				t.Fatalf("after %s sent %+v, want a RegisterReq for w-a", code, regs)
			}
			if r.Spec.Incarnation != incA || r.Spec.Hive != hiveAddr {
				t.Errorf("re-registration spec %+v, want incarnation %d of hive %s", r.Spec, incA, hiveAddr)
			}
			if slices.Contains(f.h.Registered(), "w-a") {
				t.Errorf("w-a still counts as registered")
			}
			if !hasMark(f.env.Observed, "hive re-registered a forgotten worker") {
				t.Errorf("no mark observed: %v", f.env.Observed)
			}
		})
	}
}

func TestQueenRestartReregistersAll(t *testing.T) {
	f := startRegistered(t)
	f.env.Advance(f.h, hbEvery)
	hbs := of[api.HeartbeatReq](f.env.TakeSent(), queenAddr)
	// The same epoch again changes nothing.
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: hbs[0].ReqID, Epoch: 1})
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Fatalf("an answer at the same epoch made the hive send %v", s)
	}
	// A higher epoch: the queen restarted.
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: hbs[1].ReqID, Epoch: 2})
	regs := registerFor(f.env.TakeSent())
	if len(regs) != 2 {
		t.Fatalf("after a queen restart re-registered %v, want both workers", regs)
	}
	for id, r := range regs {
		if r.Spec.Incarnation != f.spec(id).Incarnation {
			t.Errorf("%s re-registered with incarnation %d, want its current %d", id, r.Spec.Incarnation, f.spec(id).Incarnation)
		}
	}
	if got := f.h.Registered(); len(got) != 0 {
		t.Errorf("Registered() = %v right after the queen restart, want none", got)
	}
	if !hasMark(f.env.Observed, "hive re-registered after queen restart") {
		t.Errorf("no restart mark observed: %v", f.env.Observed)
	}
	f.ackAll(sentOfMap(regs), 2)
	if got := f.h.Registered(); len(got) != 2 {
		t.Errorf("Registered() = %v after re-registration, want both", got)
	}
	// An older epoch (a delayed answer from the old queen) triggers nothing.
	f.env.Advance(f.h, hbEvery)
	hbs = of[api.HeartbeatReq](f.env.TakeSent(), queenAddr)
	f.h.Handle(f.env, queenAddr, api.RegistryResp{ReqID: hbs[0].ReqID, Epoch: 1})
	if s := f.env.TakeSent(); len(s) != 0 {
		t.Errorf("an answer at an older epoch made the hive send %v", s)
	}
}

func TestRestartedHiveUsesHigherIncarnations(t *testing.T) {
	disk := nodetest.NewMemDisk()
	f1 := start(t, testConfig(), 1, disk)
	var maxOld uint64
	for _, s := range f1.h.Workers() {
		maxOld = max(maxOld, s.Incarnation)
	}
	// A device fault also consumes an incarnation, which must survive the restart too.
	f1.h.Handle(f1.env, hiveAddr, api.DeviceFault{Device: "cuda:0", Fallback: "cpu"})
	maxOld = max(maxOld, f1.spec("w-a").Incarnation)

	// Same seed on purpose: incarnations must come from the disk, not the random stream.
	f2 := start(t, testConfig(), 1, disk)
	regs := registerFor(f2.env.TakeSent())
	if len(regs) != 2 {
		t.Fatalf("restarted hive registered %v", regs)
	}
	for id, r := range regs {
		if r.Spec.Incarnation <= maxOld {
			t.Errorf("restarted %s has incarnation %d, want above %d", id, r.Spec.Incarnation, maxOld)
		}
	}
	// The restarted hive starts from the configured capability again.
	if c := f2.spec("w-a").Capability; c != "cuda:0" {
		t.Errorf("restarted w-a on %q, want cuda:0", c)
	}
}

func TestDeviceFaultFallsBack(t *testing.T) {
	f := startRegistered(t)
	oldA, oldB := f.spec("w-a"), f.spec("w-b")
	f.h.Handle(f.env, client, api.UseReq{ReqID: 7, Worker: "w-a", Incarnation: oldA.Incarnation, Work: 5 * time.Second})
	f.h.Handle(f.env, "keeper-2", api.UseReq{ReqID: 7, Worker: "w-a", Incarnation: oldA.Incarnation, Work: 5 * time.Second})
	if f.h.Active("w-a") != 2 {
		t.Fatalf("Active(w-a) = %d, want 2", f.h.Active("w-a"))
	}

	// A fault on another device, or without a real fallback, changes nothing.
	f.h.Handle(f.env, hiveAddr, api.DeviceFault{Device: "cuda:1", Fallback: "cpu"})
	f.h.Handle(f.env, hiveAddr, api.DeviceFault{Device: "cuda:0", Fallback: ""})
	f.h.Handle(f.env, hiveAddr, api.DeviceFault{Device: "cuda:0", Fallback: "cuda:0"})
	if s := f.env.TakeSent(); len(s) != 0 || f.spec("w-a") != oldA {
		t.Fatalf("irrelevant faults sent %v / changed w-a to %+v", s, f.spec("w-a"))
	}

	f.h.Handle(f.env, hiveAddr, api.DeviceFault{Device: "cuda:0", Fallback: "cpu"})
	newA := f.spec("w-a")
	if newA.Capability != "cpu" || newA.Incarnation <= oldA.Incarnation {
		t.Fatalf("after the fault w-a = %+v, want cpu with an incarnation above %d", newA, oldA.Incarnation)
	}
	if f.spec("w-b") != oldB {
		t.Errorf("w-b changed: %+v -> %+v", oldB, f.spec("w-b"))
	}
	sent := f.env.TakeSent()
	regs := registerFor(sent)
	if r, ok := regs["w-a"]; !ok || len(regs) != 1 || r.Spec != newA {
		t.Errorf("registrations %+v, want one for w-a with spec %+v", regs, newA)
	}
	for _, to := range []node.Addr{client, "keeper-2"} {
		resps := of[api.UseResp](sent, to)
		if len(resps) != 1 {
			t.Fatalf("%s got %v, want one UseResp", to, resps)
		}
		r := resps[0]
		if r.ReqID != 7 || r.Worker != "w-a" || r.Err.Code != api.CodeIncarnationChanged {
			t.Errorf("%s got %+v, want WORKER_INCARNATION_CHANGED for ReqID 7", to, r)
		}
		if !strings.Contains(r.Err.Message, "cpu") || !strings.Contains(r.Err.Message, fmt.Sprint(newA.Incarnation)) {
			t.Errorf("message %q does not name the new capability and incarnation", r.Err.Message)
		}
		if r.Err.Suggestion == "" {
			t.Errorf("no suggestion in %+v", r.Err)
		}
	}
	if f.h.Active("w-a") != 0 {
		t.Errorf("Active(w-a) = %d after the fault, want 0", f.h.Active("w-a"))
	}
	if slices.Contains(f.h.Registered(), "w-a") {
		t.Errorf("w-a still counts as registered before the queen acknowledged the new incarnation")
	}
	if !hasMark(f.env.Observed, "worker fell back after device fault") {
		t.Errorf("no fallback mark")
	}
	// The stopped work never completes later.
	f.env.Advance(f.h, 6*time.Second)
	if r := of[api.UseResp](f.env.TakeSent(), client); len(r) != 0 {
		t.Errorf("stopped work answered again: %+v", r)
	}
	// A retry of the stopped request gets the same answer.
	f.h.Handle(f.env, client, api.UseReq{ReqID: 7, Worker: "w-a", Incarnation: oldA.Incarnation, Work: 5 * time.Second})
	if r := of[api.UseResp](f.env.TakeSent(), client); len(r) != 1 || r[0].Err.Code != api.CodeIncarnationChanged {
		t.Errorf("retry answered %+v", r)
	}
}

func TestWorkerHang(t *testing.T) {
	cases := []struct {
		name  string
		hangs []struct{ at, dur time.Duration } // at: offset from the previous hang
		// heartbeats for w-a expected at ticks 10s, 20s, 30s, 40s
		want []bool
	}{
		{"single", []struct{ at, dur time.Duration }{{0, 15 * time.Second}}, []bool{false, true, true, true}},
		{"longer first", []struct{ at, dur time.Duration }{{0, 25 * time.Second}, {5 * time.Second, 5 * time.Second}}, []bool{false, false, true, true}},
		{"longer second", []struct{ at, dur time.Duration }{{0, 12 * time.Second}, {5 * time.Second, 22 * time.Second}}, []bool{false, false, true, true}},
		{"ignored zero", []struct{ at, dur time.Duration }{{0, 0}}, []bool{true, true, true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startRegistered(t)
			var elapsed time.Duration
			for _, h := range tc.hangs {
				f.env.Advance(f.h, h.at)
				elapsed += h.at
				f.h.Handle(f.env, hiveAddr, api.WorkerHang{Worker: "w-a", For: h.dur})
			}
			f.h.Handle(f.env, hiveAddr, api.WorkerHang{Worker: "nope", For: time.Hour}) // unknown: ignored
			f.ackAll(f.env.TakeSent(), 1)
			for i, want := range tc.want {
				f.env.Advance(f.h, time.Duration(i+1)*hbEvery-elapsed)
				elapsed = time.Duration(i+1) * hbEvery
				sent := f.env.TakeSent()
				hb := heartbeatWorkers(sent)
				if got := slices.Contains(hb, "w-a"); got != want {
					t.Errorf("tick %d: heartbeat for w-a = %v, want %v (sent %v)", i+1, got, want, hb)
				}
				if !slices.Contains(hb, "w-b") {
					t.Errorf("tick %d: no heartbeat for w-b, which never hung", i+1)
				}
				f.ackAll(sent, 1)
			}
		})
	}
}

func TestHungWorkerRetriesAreHeldBack(t *testing.T) {
	f := startRegistered(t)
	f.env.Advance(f.h, hbEvery)
	f.env.TakeSent() // heartbeats for both, left unanswered
	f.h.Handle(f.env, hiveAddr, api.WorkerHang{Worker: "w-a", For: 5 * time.Second})
	f.env.Advance(f.h, 2*time.Second) // retry tick at 12s
	if hb := heartbeatWorkers(f.env.TakeSent()); !slices.Equal(hb, []string{"w-b"}) {
		t.Errorf("retried heartbeats for %v while w-a hangs, want [w-b]", hb)
	}
	f.env.Advance(f.h, 6*time.Second) // hang ends at 15s, retry at 15s and 18s
	if hb := heartbeatWorkers(f.env.TakeSent()); !slices.Contains(hb, "w-a") {
		t.Errorf("w-a's heartbeat not retried after the hang: %v", hb)
	}
}

func TestUse(t *testing.T) {
	f := startRegistered(t)
	a, b := f.spec("w-a"), f.spec("w-b")
	use := func(from node.Addr, id uint64, w api.WorkerSpec, work time.Duration) api.UseReq {
		r := api.UseReq{ReqID: id, Worker: w.ID, Incarnation: w.Incarnation, ClaimID: "c", Work: work}
		f.h.Handle(f.env, from, r)
		return r
	}
	resps := func(to node.Addr) []api.UseResp { return of[api.UseResp](f.env.TakeSent(), to) }

	// Work runs for Work, then is answered OK.
	use(client, 1, b, 2*time.Second)
	if r := resps(client); len(r) != 0 || f.h.Active("w-b") != 1 {
		t.Fatalf("answered %v at once / Active %d; want work running", r, f.h.Active("w-b"))
	}
	// A repeat while running is neither run twice nor answered yet.
	use(client, 1, b, 2*time.Second)
	if r := resps(client); len(r) != 0 || f.h.Active("w-b") != 1 {
		t.Fatalf("a repeat while running answered %v / Active %d", r, f.h.Active("w-b"))
	}
	// More work than slots.
	use(client, 2, b, time.Second)
	if r := resps(client); len(r) != 1 || r[0].ReqID != 2 || r[0].Err.Code != api.CodeAllSlotsBusy {
		t.Errorf("second piece of work on a 1-slot worker answered %+v, want ALL_SLOTS_BUSY", r)
	}
	f.env.Advance(f.h, 2*time.Second-time.Millisecond)
	if r := resps(client); len(r) != 0 {
		t.Fatalf("answered %+v before the work was done", r)
	}
	f.env.Advance(f.h, time.Millisecond)
	r := resps(client)
	if len(r) != 1 || r[0] != (api.UseResp{ReqID: 1, Worker: "w-b"}) {
		t.Fatalf("after the work answered %+v, want one OK UseResp for ReqID 1", r)
	}
	if f.h.Active("w-b") != 0 {
		t.Errorf("Active(w-b) = %d after the work, want 0", f.h.Active("w-b"))
	}
	// A repeat after the work is answered from memory, without running again.
	use(client, 1, b, 2*time.Second)
	if r := resps(client); len(r) != 1 || r[0] != (api.UseResp{ReqID: 1, Worker: "w-b"}) || f.h.Active("w-b") != 0 {
		t.Errorf("repeat answered %+v / Active %d, want the remembered OK and nothing running", r, f.h.Active("w-b"))
	}
	f.env.Advance(f.h, 3*time.Second)
	if r := resps(client); len(r) != 0 {
		t.Errorf("the repeat ran again: %+v", r)
	}
	// The same ReqID from another sender is another request.
	use("keeper-2", 1, b, time.Second)
	if f.h.Active("w-b") != 1 {
		t.Errorf("same ReqID from another sender did not run: Active %d", f.h.Active("w-b"))
	}

	// Refusals.
	cases := []struct {
		name string
		req  api.UseReq
		code api.Code
	}{
		{"unknown worker", api.UseReq{ReqID: 10, Worker: "w-x", Incarnation: 1, Work: time.Second}, api.CodeUnknownWorker},
		{"older incarnation", api.UseReq{ReqID: 11, Worker: "w-a", Incarnation: a.Incarnation - 1, Work: time.Second}, api.CodeIncarnationChanged},
		{"newer incarnation", api.UseReq{ReqID: 12, Worker: "w-a", Incarnation: a.Incarnation + 100, Work: time.Second}, api.CodeIncarnationChanged},
		{"slots busy", api.UseReq{ReqID: 13, Worker: "w-b", Incarnation: b.Incarnation, Work: time.Second}, api.CodeAllSlotsBusy},
	}
	for _, tc := range cases {
		f.h.Handle(f.env, client, tc.req)
		r := resps(client)
		if len(r) != 1 || r[0].ReqID != tc.req.ReqID || r[0].Worker != tc.req.Worker || r[0].Err.Code != tc.code {
			t.Errorf("%s: answered %+v, want %s", tc.name, r, tc.code)
			continue
		}
		if r[0].Err.Message == "" || r[0].Err.Suggestion == "" {
			t.Errorf("%s: error %+v lacks a message or suggestion", tc.name, r[0].Err)
		}
	}
	if f.h.Active("w-a") != 0 {
		t.Errorf("refused work runs on w-a: Active %d", f.h.Active("w-a"))
	}
	// A 2-slot worker takes two pieces of work, not three.
	use(client, 20, a, time.Second)
	use(client, 21, a, time.Second)
	use(client, 22, a, time.Second)
	if r := resps(client); len(r) != 1 || r[0].ReqID != 22 || r[0].Err.Code != api.CodeAllSlotsBusy || f.h.Active("w-a") != 2 {
		t.Errorf("third piece on a 2-slot worker answered %+v, Active %d", r, f.h.Active("w-a"))
	}
}

func TestUseDedupIsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.UseDedupMax = 2
	f := start(t, cfg, 1, nil)
	f.ackAll(f.env.TakeSent(), 1)
	b := f.spec("w-b")
	for id := uint64(1); id <= 3; id++ {
		f.h.Handle(f.env, client, api.UseReq{ReqID: id, Worker: "w-b", Incarnation: b.Incarnation, Work: time.Second})
		f.env.Advance(f.h, time.Second)
	}
	f.env.TakeSent()
	// ReqID 1 is forgotten, so its repeat runs again; ReqID 3 is remembered.
	f.h.Handle(f.env, client, api.UseReq{ReqID: 3, Worker: "w-b", Incarnation: b.Incarnation, Work: time.Second})
	if r := of[api.UseResp](f.env.TakeSent(), client); len(r) != 1 || f.h.Active("w-b") != 0 {
		t.Errorf("remembered repeat answered %+v, Active %d", r, f.h.Active("w-b"))
	}
	f.h.Handle(f.env, client, api.UseReq{ReqID: 1, Worker: "w-b", Incarnation: b.Incarnation, Work: time.Second})
	if f.h.Active("w-b") != 1 {
		t.Errorf("a forgotten request did not run again: Active %d", f.h.Active("w-b"))
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if err := DefaultConfig(queenAddr).Validate(); err != nil {
		t.Fatalf("default config rejected: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty queen", func(c *Config) { c.Queen = "" }, "queen"},
		{"duplicate id", func(c *Config) { c.Workers[1].ID = c.Workers[0].ID }, "duplicate"},
		{"negative heartbeat", func(c *Config) { c.HeartbeatInterval = -1 }, "negative"},
		{"negative retry", func(c *Config) { c.RetryInterval = -1 }, "negative"},
		{"negative dedup", func(c *Config) { c.UseDedupMax = -1 }, "negative"},
		{"empty id", func(c *Config) { c.Workers[0].ID = "" }, "id is empty"},
		{"no model", func(c *Config) { c.Workers[0].Model = "" }, "model"},
		{"no capability", func(c *Config) { c.Workers[0].Capability = "" }, "capability"},
		{"zero slots", func(c *Config) { c.Workers[0].Slots = 0 }, "slots"},
		{"too many slots", func(c *Config) { c.Workers[0].Slots = 1025 }, "slots"},
		{"status timeout within the status interval", func(c *Config) {
			c.WorkerProcesses, c.WorkerStatusTimeout = true, 3*time.Second
		}, "WorkerStatusTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
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
