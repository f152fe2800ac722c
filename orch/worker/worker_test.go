package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

func TestConfigValidate(t *testing.T) {
	good := testConfig(2, 4)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Config){
		"no id":          func(c *Config) { c.ID = "" },
		"no engine":      func(c *Config) { c.Engine = "" },
		"no model":       func(c *Config) { c.Model = "" },
		"zero slots":     func(c *Config) { c.Slots = 0 },
		"too many slots": func(c *Config) { c.Slots = SlotsLimit + 1 },
		"queue negative": func(c *Config) { c.QueueMax = -1 },
		"queue too long": func(c *Config) { c.QueueMax = QueueLimit + 1 },
		"no status":      func(c *Config) { c.StatusInterval = 0 },
		"no load time":   func(c *Config) { c.LoadTimeout = 0 },
		"negative bytes": func(c *Config) { c.ModelBytes = -1 },
		"other plant":    func(c *Config) { c.Plants = plant.NewSet("registry-lost-update") },
	}
	for name, edit := range bad { //det:sorted (each case is independent)
		c := good
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestLoadProgressReadyThenStatus(t *testing.T) {
	r := newRig(t, testConfig(2, 1))
	r.req(1)
	wantEnd(t, r.done(), 1, api.FinishError, api.CodeUnavailable, 0)
	r.deliver(engine, api.EngineLoadProgress{Percent: 40})
	if l := one[api.WorkerLoading](r, hive); l.Percent != 40 || l.Worker != string(self) {
		t.Fatalf("WorkerLoading %+v", l)
	}
	r.deliver(queen, api.EngineLoaded{}) // not from the engine: ignored
	none[api.WorkerReady](r, hive)
	r.deliver(engine, api.EngineLoaded{})
	if rd := one[api.WorkerReady](r, hive); !rd.Err.OK() || rd.Slots != 2 {
		t.Fatalf("WorkerReady %+v", rd)
	}
	r.advance(r.cfg.StatusInterval - time.Millisecond)
	none[api.WorkerStatus](r, hive)
	r.advance(time.Millisecond)
	if s := one[api.WorkerStatus](r, hive); s != (api.WorkerStatus{Worker: string(self), Slots: 2}) {
		t.Fatalf("WorkerStatus %+v", s)
	}
	r.advance(r.cfg.StatusInterval)
	one[api.WorkerStatus](r, hive)
	r.advance(r.cfg.LoadTimeout) // the load timer was cancelled
	none[api.WorkerReady](r, hive)
}

func TestLoadErrorIsReported(t *testing.T) {
	r := newRig(t, testConfig(1, 0))
	r.deliver(engine, api.EngineLoaded{Err: api.Errorf(api.CodeEngineError, "", "CUDA out of memory")})
	rd := one[api.WorkerReady](r, hive)
	if rd.Err.Code != api.CodeEngineError || !strings.Contains(rd.Err.Message, "CUDA out of memory") {
		t.Fatalf("WorkerReady %+v", rd)
	}
	r.req(1)
	wantEnd(t, r.done(), 1, api.FinishError, api.CodeUnavailable, 0)
	none[api.EngineGenerate](r, engine)
}

func TestLoadTimeout(t *testing.T) {
	r := newRig(t, testConfig(1, 0))
	r.advance(r.cfg.LoadTimeout)
	if rd := one[api.WorkerReady](r, hive); rd.Err.Code != api.CodeLoadingTimeout {
		t.Fatalf("WorkerReady %+v", rd)
	}
	r.deliver(engine, api.EngineLoaded{}) // too late
	none[api.WorkerReady](r, hive)
	r.req(1)
	wantEnd(t, r.done(), 1, api.FinishError, api.CodeUnavailable, 0)
}

func TestSlotsFIFOQueueAndAllSlotsBusy(t *testing.T) {
	r := newReady(t, 2, 2)
	for id := uint64(1); id <= 4; id++ {
		r.req(id)
	}
	gens := take[api.EngineGenerate](r, engine)
	if len(gens) != 2 {
		t.Fatalf("want 2 generating, got %+v", gens)
	}
	if s := r.status(); s.Active != 2 || s.Queued != 2 {
		t.Fatalf("status %+v", s)
	}
	r.req(5)
	d := r.done()
	wantEnd(t, d, 5, api.FinishError, api.CodeAllSlotsBusy, 0)
	for _, part := range []string{"2/2 slots", "2/2 requests queued"} {
		if !strings.Contains(d.Err.Message, part) {
			t.Errorf("ALL_SLOTS_BUSY message %q does not name %q", d.Err.Message, part)
		}
	}
	if d.Err.Suggestion != "retry after 1s or route to another worker" {
		t.Errorf("suggestion %q", d.Err.Suggestion)
	}
	// The second running request ends first; the oldest queued one (3) takes its slot.
	r.deliver(engine, api.EngineDone{ReqID: gens[1].ReqID, Reason: api.FinishStop})
	wantEnd(t, r.done(), 2, api.FinishStop, api.CodeOK, 0)
	g3 := one[api.EngineGenerate](r, engine)
	r.deliver(engine, api.EngineDone{ReqID: gens[0].ReqID, Reason: api.FinishStop})
	wantEnd(t, r.done(), 1, api.FinishStop, api.CodeOK, 0)
	g4 := one[api.EngineGenerate](r, engine)
	r.tokens(g3.ReqID, 0, 1)
	r.tokens(g4.ReqID, 0, 1)
	if ts := take[api.InferToken](r, queen); len(ts) != 2 || ts[0].ReqID != 3 || ts[1].ReqID != 4 {
		t.Fatalf("queued requests started out of order: %+v", ts)
	}
	if s := r.status(); s.Active != 2 || s.Queued != 0 {
		t.Fatalf("status %+v", s)
	}
}

func TestQueueMaxZeroRefusesAtOnce(t *testing.T) {
	r := newReady(t, 1, 0)
	r.req(1)
	r.started()
	r.req(2)
	wantEnd(t, r.done(), 2, api.FinishError, api.CodeAllSlotsBusy, 0)
}

func TestGenerateArguments(t *testing.T) {
	r := newReady(t, 2, 0)
	r.req(1, func(m *api.InferReq) { m.Prompt, m.MaxTokens, m.Seed = "  one two\tthree\nfour ", 33, 99 })
	g := one[api.EngineGenerate](r, engine)
	if g.PromptTokens != 4 || g.MaxTokens != 33 || g.Seed != 99 || g.Prompt != "  one two\tthree\nfour " {
		t.Fatalf("EngineGenerate %+v", g)
	}
	r.req(2, func(m *api.InferReq) { m.Prompt = "" })
	if g := one[api.EngineGenerate](r, engine); g.PromptTokens != 1 {
		t.Fatalf("an empty prompt must count as 1 token, got %+v", g)
	}
}

func TestInvalidRequests(t *testing.T) {
	r := newReady(t, 1, 0)
	r.req(1, func(m *api.InferReq) { m.MaxTokens = 0 })
	wantEnd(t, r.done(), 1, api.FinishError, api.CodeInvalidRequest, 0)
	r.req(2, func(m *api.InferReq) { m.Timeout = -time.Second })
	wantEnd(t, r.done(), 2, api.FinishError, api.CodeInvalidRequest, 0)
	r.req(3, func(m *api.InferReq) { m.Model = "hf:other/model.gguf" })
	wantEnd(t, r.done(), 3, api.FinishError, api.CodeModelNotServed, 0)
	none[api.EngineGenerate](r, engine)
}

func TestTokensThenStopOrLength(t *testing.T) {
	for _, reason := range []api.FinishReason{api.FinishStop, api.FinishLength} {
		r := newReady(t, 1, 0)
		r.req(42, func(m *api.InferReq) { m.MaxTokens = 3 })
		id := r.started()
		n := 2
		if reason == api.FinishLength {
			n = 3
		}
		r.tokens(id, 0, n)
		ts := take[api.InferToken](r, queen)
		for i, tk := range ts {
			if tk.ReqID != 42 || tk.Index != i || tk.Text != " t" {
				t.Fatalf("%s: token %d is %+v", reason, i, tk)
			}
		}
		if len(ts) != n {
			t.Fatalf("%s: %d tokens forwarded, want %d", reason, len(ts), n)
		}
		r.deliver(engine, api.EngineDone{ReqID: id, Reason: reason})
		wantEnd(t, r.done(), 42, reason, api.CodeOK, n)
		r.tokens(id, n, 1) // after the end: dropped
		none[api.InferToken](r, queen)
		if s := r.status(); s.Active != 0 {
			t.Fatalf("%s: slot not freed: %+v", reason, s)
		}
	}
}

func TestEngineErrorNamesTheEngineError(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id := r.started()
	r.req(2)
	r.tokens(id, 0, 2)
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishError,
		Err: api.Errorf(api.CodeEngineError, "", "CUDA out of memory (tried to allocate 2 GiB)")})
	d := r.done()
	wantEnd(t, d, 1, api.FinishError, api.CodeEngineError, 2)
	if !strings.Contains(d.Err.Message, "CUDA out of memory") {
		t.Fatalf("message %q does not name the engine's error", d.Err.Message)
	}
	r.started() // the queued request took the slot
}

// An engine server that is busy before the first token refuses with ALL_SLOTS_BUSY, and the
// worker passes that on as a refusal (not an engine error) so the queen can route elsewhere;
// after tokens were sent it is an engine error like any other.
func TestEngineBusyIsARefusal(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id := r.started()
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishError,
		Err: api.Errorf(api.CodeAllSlotsBusy, "", "llama-server: no free slot")})
	wantEnd(t, r.done(), 1, api.FinishError, api.CodeAllSlotsBusy, 0)

	r.req(2)
	id = r.started()
	r.tokens(id, 0, 1)
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishError,
		Err: api.Errorf(api.CodeAllSlotsBusy, "", "llama-server: no free slot")})
	wantEnd(t, r.done(), 2, api.FinishError, api.CodeEngineError, 1)
}

func TestCancelRunningFreesSlot(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id := r.started()
	r.req(2)
	r.tokens(id, 0, 3)
	take[api.InferToken](r, queen)
	r.deliver(queen, api.InferCancel{ReqID: 1})
	if s := one[api.EngineStop](r, engine); s.ReqID != id {
		t.Fatalf("EngineStop %+v, want %d", s, id)
	}
	wantEnd(t, r.done(), 1, api.FinishCancelled, api.CodeCancelled, 3)
	if cr := one[api.InferCancelResp](r, queen); cr.ReqID != 1 || !cr.Err.OK() {
		t.Fatalf("InferCancelResp %+v", cr)
	}
	r.started() // the slot was freed: the queued request runs
	r.req(3)    // and the queue has room again
	none[api.InferDone](r, queen)
	// The engine's tokens and end for the stopped request, still in flight, are stale.
	r.tokens(id, 3, 2)
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishLength})
	none[api.InferToken](r, queen)
	none[api.InferDone](r, queen)
}

func TestCancelQueued(t *testing.T) {
	r := newReady(t, 1, 2)
	r.req(1)
	id := r.started()
	r.req(2)
	r.req(3)
	r.deliver(queen, api.InferCancel{ReqID: 2})
	wantEnd(t, r.done(), 2, api.FinishCancelled, api.CodeCancelled, 0)
	one[api.InferCancelResp](r, queen)
	none[api.EngineStop](r, engine)
	if s := r.status(); s.Active != 1 || s.Queued != 1 {
		t.Fatalf("status %+v", s)
	}
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishStop})
	r.done()
	r.tokens(r.started(), 0, 1)
	if tk := one[api.InferToken](r, queen); tk.ReqID != 3 {
		t.Fatalf("token for %d, want 3 (2 was cancelled)", tk.ReqID)
	}
}

func TestCancelUnknownTwiceAndBeforeRequest(t *testing.T) {
	r := newReady(t, 1, 0)
	r.deliver(queen, api.InferCancel{ReqID: 9}) // unknown: a no-op success
	if cr := one[api.InferCancelResp](r, queen); cr.ReqID != 9 || !cr.Err.OK() {
		t.Fatalf("InferCancelResp %+v", cr)
	}
	none[api.InferDone](r, queen)
	r.req(9) // overtaken by its own cancel: ends as cancelled, never runs
	wantEnd(t, r.done(), 9, api.FinishCancelled, api.CodeCancelled, 0)
	none[api.EngineGenerate](r, engine)

	r.req(1)
	r.started()
	for range 2 {
		r.deliver(queen, api.InferCancel{ReqID: 1})
		if cr := one[api.InferCancelResp](r, queen); !cr.Err.OK() {
			t.Fatalf("InferCancelResp %+v", cr)
		}
	}
	wantEnd(t, r.done(), 1, api.FinishCancelled, api.CodeCancelled, 0) // one end for two cancels
	one[api.EngineStop](r, engine)
	// Another sender's cancel with the same ReqID is another request.
	r.req(2)
	r.started()
	r.deliver("queen-2", api.InferCancel{ReqID: 2})
	none[api.InferDone](r, queen)
	none[api.EngineStop](r, engine)
}

func TestMaxTimeCountsFromStartNotReceipt(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1, withMaxTime(10*time.Second))
	id1 := r.started()
	r.req(2, withMaxTime(10*time.Second))
	r.advance(5 * time.Second)
	r.deliver(engine, api.EngineDone{ReqID: id1, Reason: api.FinishStop})
	r.done()
	id2 := r.started() // at 5s
	r.tokens(id2, 0, 4)
	r.advance(10*time.Second - time.Millisecond)
	none[api.InferDone](r, queen)
	r.advance(time.Millisecond)
	if s := one[api.EngineStop](r, engine); s.ReqID != id2 {
		t.Fatalf("EngineStop %+v", s)
	}
	d := r.done()
	wantEnd(t, d, 2, api.FinishTimeout, api.CodeGenerationTimeout, 4)
	if !strings.Contains(d.Err.Message, "after 4 of at most 10 tokens") {
		t.Fatalf("message %q does not say how many tokens were produced", d.Err.Message)
	}
	if len(take[api.InferToken](r, queen)) != 4 {
		t.Fatal("partial output not streamed")
	}
}

func TestDefaultMaxTime(t *testing.T) {
	r := newReady(t, 1, 0)
	r.req(1)
	r.started()
	r.advance(api.DefaultMaxTime - time.Millisecond)
	none[api.InferDone](r, queen)
	r.advance(time.Millisecond)
	wantEnd(t, r.done(), 1, api.FinishTimeout, api.CodeGenerationTimeout, 0)
}

func TestDeadlineWhileQueued(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id := r.started()
	r.req(2, withTimeout(3*time.Second))
	r.advance(3 * time.Second)
	wantEnd(t, r.done(), 2, api.FinishTimeout, api.CodeDeadlineExceeded, 0)
	none[api.EngineStop](r, engine)
	r.req(3) // the queue place is free again
	none[api.InferDone](r, queen)
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishStop})
	r.done()
	r.started() // request 3: request 2 never runs
	none[api.EngineGenerate](r, engine)
}

func TestDeadlineWhileRunningCountsQueuedTime(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id1 := r.started()
	r.req(2, withTimeout(5*time.Second))
	r.advance(2 * time.Second)
	r.deliver(engine, api.EngineDone{ReqID: id1, Reason: api.FinishStop})
	r.done()
	id2 := r.started()
	r.tokens(id2, 0, 1)
	r.advance(3*time.Second - time.Millisecond)
	none[api.InferDone](r, queen)
	r.req(2, withTimeout(5*time.Second)) // a repeat never extends the deadline
	r.advance(time.Millisecond)
	if s := one[api.EngineStop](r, engine); s.ReqID != id2 {
		t.Fatalf("EngineStop %+v", s)
	}
	wantEnd(t, r.done(), 2, api.FinishTimeout, api.CodeDeadlineExceeded, 1)
	if s := r.status(); s.Active != 0 {
		t.Fatalf("slot not freed: %+v", s)
	}
}

func TestDrain(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id1 := r.started()
	r.req(2)
	r.deliver(queen, api.WorkerDrain{Worker: string(self)}) // not from the hive: ignored
	r.req(3)
	wantEnd(t, r.done(), 3, api.FinishError, api.CodeAllSlotsBusy, 0)
	r.deliver(hive, api.WorkerDrain{Worker: string(self)})
	r.req(4)
	d := r.done()
	wantEnd(t, d, 4, api.FinishError, api.CodeUnavailable, 0)
	if !strings.Contains(d.Err.Message, "worker is draining") || d.Err.Suggestion != "route to another worker" {
		t.Fatalf("refusal while draining: %+v", d.Err)
	}
	r.deliver(engine, api.EngineDone{ReqID: id1, Reason: api.FinishStop})
	r.done()
	none[api.WorkerDrained](r, hive)
	id2 := r.started() // queued work is finished too
	r.deliver(engine, api.EngineDone{ReqID: id2, Reason: api.FinishLength})
	wantEnd(t, r.done(), 2, api.FinishLength, api.CodeOK, 0)
	if dr := one[api.WorkerDrained](r, hive); dr.Worker != string(self) {
		t.Fatalf("WorkerDrained %+v", dr)
	}
	r.deliver(hive, api.WorkerDrain{Worker: string(self)}) // a repeat is answered again
	one[api.WorkerDrained](r, hive)
}

func TestDrainIdleAndWhileLoading(t *testing.T) {
	r := newReady(t, 1, 0)
	r.deliver(hive, api.WorkerDrain{Worker: string(self)})
	one[api.WorkerDrained](r, hive)

	r = newRig(t, testConfig(1, 0))
	r.deliver(hive, api.WorkerDrain{})
	one[api.WorkerDrained](r, hive)
	r.deliver(engine, api.EngineLoaded{})
	none[api.WorkerReady](r, hive)
	r.advance(r.cfg.LoadTimeout)
	none[api.WorkerReady](r, hive)
}

func TestStaleAndForeignEngineMessagesIgnored(t *testing.T) {
	r := newReady(t, 1, 0)
	r.req(1)
	id := r.started()
	r.deliver(queen, api.EngineToken{ReqID: id, Index: 0, Text: "forged"}) // not the engine
	r.deliver(queen, api.EngineDone{ReqID: id, Reason: api.FinishStop})
	r.deliver(engine, api.InferCancel{ReqID: 1}) // the engine sends engine messages only
	none[api.InferCancelResp](r, engine)
	r.deliver(engine, api.EngineToken{ReqID: id + 1000, Index: 0}) // unknown request
	r.deliver(engine, api.EngineDone{ReqID: id + 1000, Reason: api.FinishStop})
	none[api.InferToken](r, queen)
	none[api.InferDone](r, queen)
	r.tokens(id, 0, 1)
	r.deliver(engine, api.EngineToken{ReqID: id, Index: 0, Text: " again"}) // a repeat
	if ts := take[api.InferToken](r, queen); len(ts) != 1 || ts[0].Text != " t" {
		t.Fatalf("tokens %+v", ts)
	}
	// A token past MaxTokens is never forwarded.
	r.tokens(id, 1, 12)
	if ts := take[api.InferToken](r, queen); len(ts) != 9 {
		t.Fatalf("%d tokens forwarded after the first, want 9 (MaxTokens 10)", len(ts))
	}
}

func TestDuplicateInferReq(t *testing.T) {
	r := newReady(t, 2, 0)
	r.req(1)
	id := r.started()
	r.req(1) // while running: ignored
	none[api.EngineGenerate](r, engine)
	none[api.InferDone](r, queen)
	r.tokens(id, 0, 2)
	r.deliver(engine, api.EngineDone{ReqID: id, Reason: api.FinishStop})
	first := r.done()
	r.req(1) // after its end: the same end again, not a second run
	if again := r.done(); again != first {
		t.Fatalf("repeat answered %+v, want %+v", again, first)
	}
	none[api.EngineGenerate](r, engine)
	r.deliver("queen-2", api.InferReq{ReqID: 1, Prompt: "x", MaxTokens: 1}) // another sender's 1
	r.started()
}

// TestCancelledSlotIsReused is the always-on twin of the plant test: in a normal build a
// cancelled running request gives its slot back, so the worker keeps serving.
func TestCancelledSlotIsReused(t *testing.T) {
	r := newReady(t, 1, 0)
	for id := uint64(1); id <= 5; id++ {
		r.req(id)
		r.started()
		r.deliver(queen, api.InferCancel{ReqID: id})
		wantEnd(t, r.done(), id, api.FinishCancelled, api.CodeCancelled, 0)
	}
	if s := r.status(); s.Active != 0 {
		t.Fatalf("status %+v", s)
	}
}

// TestTermStopsGracefully: SIGTERM from the process table stops new work, finishes the
// running request, then exits through the table.
func TestTermStopsGracefully(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id1 := r.started()
	r.deliver("procs@m1", api.ProcTerm{})
	r.req(2)
	wantEnd(t, r.done(), 2, api.FinishError, api.CodeUnavailable, 0)
	none[api.ProcExit](r, "procs@m1")
	r.deliver(engine, api.EngineDone{ReqID: id1, Reason: api.FinishStop})
	wantEnd(t, r.done(), 1, api.FinishStop, api.CodeOK, 0)
	if e := one[api.ProcExit](r, "procs@m1"); e.Code != 0 {
		t.Fatalf("graceful exit code %d, want 0", e.Code)
	}
}

// TestRequesterGoneCancelsItsRequests: when the queen's stream breaks (node.PeerGone), its
// requests stop and their slots are freed; the engine's own PeerGone means nothing here.
func TestRequesterGoneCancelsItsRequests(t *testing.T) {
	r := newReady(t, 1, 1)
	r.req(1)
	id1 := r.started()
	r.req(2) // queued
	r.deliver(queen, node.PeerGone{Peer: queen})
	if s := one[api.EngineStop](r, engine); s.ReqID != id1 {
		t.Fatalf("stopped %d, want the running %d", s.ReqID, id1)
	}
	ends := take[api.InferDone](r, queen)
	if len(ends) != 2 {
		t.Fatalf("ends %+v, want both requests ended", ends)
	}
	wantEnd(t, ends[0], 2, api.FinishCancelled, api.CodeCancelled, 0) // the queued one first
	wantEnd(t, ends[1], 1, api.FinishCancelled, api.CodeCancelled, 0)
	r.req(3) // the slot is free again
	r.started()
}
