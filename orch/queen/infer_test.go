package queen

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

// Inference routing (infer.go): routing, admission, relay, dedup, deadlines, cancels and
// failover, driven by hand. Scenario IDs: e2e/load-balancing, inference/concurrent-slots,
// inference/worker-busy-retry, inference/cancel, e2e/deadlines, e2e/failover,
// e2e/rolling-update, lifecycle/crash-detection.

const (
	client  node.Addr = "keeper-1"
	client2 node.Addr = "keeper-2"
)

// ih drives a queen on the inference path and keeps every message it sent, in order.
type ih struct {
	*harness
	out []nodetest.Sent
}

func newIH(t *testing.T, cfg Config) *ih {
	t.Helper()
	return &ih{harness: newHarness(t, cfg, nil)}
}

// deliver hands the queen one message and returns what it sent in reaction.
func (h *ih) deliver(from node.Addr, m node.Msg) []nodetest.Sent {
	h.t.Helper()
	h.env.TakeSent()
	h.q.Handle(h.env, from, m)
	sent := h.env.TakeSent()
	h.out = append(h.out, sent...)
	return sent
}

// advance moves the clock and returns what the fired timers sent.
func (h *ih) advance(d time.Duration) []nodetest.Sent {
	h.env.TakeSent()
	h.env.Advance(h.q, d)
	sent := h.env.TakeSent()
	h.out = append(h.out, sent...)
	return sent
}

// worker registers an idle worker serving model with slots, through RegisterReq.
func (h *ih) worker(id, model string, slots int) api.WorkerRecord {
	h.t.Helper()
	s := api.WorkerSpec{ID: id, Hive: hiveA, Incarnation: 1, Model: model, Capability: "cpu", Slots: slots}
	return h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: s, State: api.StateIdle}).Record
}

// setState moves a worker's registry state with a compare-and-set from the hive.
func (h *ih) setState(id string, to api.WorkerState) {
	h.t.Helper()
	v := h.get(id).Version
	h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: id, ExpectVersion: v, To: to})
}

// infer sends a client request and returns the attempt the queen forwarded (to its worker).
func (h *ih) infer(from node.Addr, r api.InferReq) (node.Addr, api.InferReq) {
	h.t.Helper()
	sent := h.deliver(from, r)
	if len(sent) != 2 || sent[1] != (nodetest.Sent{To: from, Msg: api.InferAccepted{ReqID: r.ReqID, Worker: sent[0].To}}) {
		h.t.Fatalf("request %d: want one forwarded attempt and the client told it was accepted, got %+v", r.ReqID, sent)
	}
	a, ok := sent[0].Msg.(api.InferReq)
	if !ok {
		h.t.Fatalf("request %d: want an InferReq to a worker, got %T %+v to %s", r.ReqID, sent[0].Msg, sent[0].Msg, sent[0].To)
	}
	return sent[0].To, a
}

// refused sends a client request that must be refused with code, and returns the InferDone.
func (h *ih) refused(from node.Addr, r api.InferReq, code api.Code) api.InferDone {
	h.t.Helper()
	sent := h.deliver(from, r)
	if len(sent) != 1 || sent[0].To != from {
		h.t.Fatalf("request %d: want one answer to %s, got %+v", r.ReqID, from, sent)
	}
	d, ok := sent[0].Msg.(api.InferDone)
	if !ok || d.ReqID != r.ReqID || d.Err.Code != code || d.FinishReason != api.FinishError || d.Tokens != 0 {
		h.t.Fatalf("request %d: want InferDone error %s, got %+v", r.ReqID, code, sent[0].Msg)
	}
	if d.Err.Message == "" || d.Err.Suggestion == "" {
		h.t.Fatalf("error %s needs a message and a suggestion: %+v", code, d.Err)
	}
	return d
}

// tokens sends tokens from..to-1 of an attempt from its worker, with texts text(i).
func (h *ih) tokens(w node.Addr, attempt uint64, from, to int) []nodetest.Sent {
	var sent []nodetest.Sent
	for i := from; i < to; i++ {
		sent = append(sent, h.deliver(w, api.InferToken{ReqID: attempt, Index: i, Text: text(i)})...)
	}
	return sent
}

func text(i int) string { return fmt.Sprintf("t%d ", i) }

// stream checks what one client request received over the whole test: tokens with contiguous
// indices from 0, each once, then exactly one InferDone whose Tokens counts them, nothing
// after it. It returns the token texts and the done.
func (h *ih) stream(to node.Addr, reqID uint64) ([]string, api.InferDone) {
	h.t.Helper()
	var texts []string
	var done *api.InferDone
	for _, s := range h.out {
		if s.To != to {
			continue
		}
		switch m := s.Msg.(type) {
		case api.InferToken:
			if m.ReqID != reqID {
				continue
			}
			if done != nil {
				h.t.Fatalf("request %d: token %d after the InferDone", reqID, m.Index)
			}
			if m.Index != len(texts) {
				h.t.Fatalf("request %d: token index %d, want %d (received %q)", reqID, m.Index, len(texts), texts)
			}
			texts = append(texts, m.Text)
		case api.InferDone:
			if m.ReqID != reqID {
				continue
			}
			if done != nil {
				h.t.Fatalf("request %d: two InferDones: %+v and %+v", reqID, *done, m)
			}
			done = &m
		}
	}
	if done == nil {
		h.t.Fatalf("request %d: no InferDone (tokens %q)", reqID, texts)
	}
	if done.Tokens != len(texts) {
		h.t.Fatalf("request %d: InferDone says %d tokens, the client received %d", reqID, done.Tokens, len(texts))
	}
	return texts, *done
}

// wantLoad checks the queen's outstanding attempts per worker and requests in flight.
func (h *ih) wantLoad(inflight int, perWorker map[string]int) {
	h.t.Helper()
	for _, w := range h.q.Records() {
		if got := h.q.Outstanding(w.ID); got != perWorker[w.ID] {
			h.t.Errorf("worker %s: %d outstanding, want %d", w.ID, got, perWorker[w.ID])
		}
	}
	for id, n := range perWorker { //det:sorted (test assertions only)
		if h.q.workers[id] == nil && h.q.Outstanding(id) != n {
			h.t.Errorf("removed worker %s: %d outstanding, want %d", id, h.q.Outstanding(id), n)
		}
	}
	if got := h.q.Inflight(); got != inflight {
		h.t.Errorf("%d requests in flight, want %d", got, inflight)
	}
	if len(h.q.infer.attempts) != inflight {
		h.t.Errorf("%d attempts running, want %d", len(h.q.infer.attempts), inflight)
	}
}

// cancels returns the attempt IDs the queen cancelled at worker w in sent.
func cancels(sent []nodetest.Sent, w node.Addr) []uint64 {
	var ids []uint64
	for _, s := range sent {
		if c, ok := s.Msg.(api.InferCancel); ok && s.To == w {
			ids = append(ids, c.ReqID)
		}
	}
	return ids
}

// attemptIn returns the one InferReq sent to a worker in sent.
func attemptIn(t *testing.T, sent []nodetest.Sent) (node.Addr, api.InferReq) {
	t.Helper()
	var to node.Addr
	var got []api.InferReq
	for _, s := range sent {
		if r, ok := s.Msg.(api.InferReq); ok {
			to = s.To
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want one new attempt, got %+v", sent)
	}
	return to, got[0]
}

func req(id uint64) api.InferReq {
	return api.InferReq{ReqID: id, Model: "m", Prompt: "hello", MaxTokens: 10, Seed: 42}
}

func TestInferConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if c.StallTimeout != 10*time.Second || c.FailoverMax != 2 || c.QueueAllowance != QueueAllowanceSlots || c.InferDedupEntriesMax != 4096 {
		t.Fatalf("defaults: %+v", c)
	}
	c.StallTimeout, c.FailoverMax, c.QueueAllowance, c.InferDedupEntriesMax = 0, -1, -2, 0
	err := c.Validate()
	if err == nil {
		t.Fatal("bad inference fields validated")
	}
	wantContains(t, err.Error(), "stall_timeout is 0s", "failover_max is -1", "queue_allowance is -2", "infer_dedup_entries_max is 0")
	c = DefaultConfig()
	c.FailoverMax, c.QueueAllowance = 0, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("zero failover_max and queue_allowance are valid: %v", err)
	}
}

// e2e/load-balancing: the worker with the fewest outstanding attempts gets the next request.
func TestInferRoutesLeastOutstanding(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 4)
	h.worker("w2", "m", 4)
	h.worker("w3", "m", 4)
	h.worker("other", "m2", 4)
	attempts := map[node.Addr][]api.InferReq{}
	for i := uint64(1); i <= 6; i++ {
		to, a := h.infer(client, req(i))
		attempts[to] = append(attempts[to], a)
		// Never more than one apart: each pick is a least-loaded worker.
		lo, hi := 99, 0
		for _, w := range []string{"w1", "w2", "w3"} {
			lo, hi = min(lo, h.q.Outstanding(w)), max(hi, h.q.Outstanding(w))
		}
		if hi-lo > 1 {
			t.Fatalf("after %d requests: outstanding spread %d..%d", i, lo, hi)
		}
	}
	h.wantLoad(6, map[string]int{"w1": 2, "w2": 2, "w3": 2})
	// w2 finishes one: it alone is least loaded and gets the next request.
	a := attempts["w2"][0]
	h.deliver("w2", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop})
	h.wantLoad(5, map[string]int{"w1": 2, "w2": 1, "w3": 2})
	if to, _ := h.infer(client, req(7)); to != "w2" {
		t.Fatalf("request 7 went to %s, want the least loaded w2", to)
	}
	h.wantLoad(6, map[string]int{"w1": 2, "w2": 2, "w3": 2})
}

// Ties are broken with env.Rand(): deterministic for a seed, and every tied worker is chosen
// under some seed.
func TestInferTieBreakUsesRand(t *testing.T) {
	pick := func(seed uint64) node.Addr {
		env := nodetest.New(queenAddr, seed, nil)
		q := New(DefaultConfig())
		q.Start(env)
		for i, id := range []string{"w1", "w2", "w3"} {
			q.Handle(env, hiveA, api.RegisterReq{ReqID: uint64(i + 1), Spec: spec(id, 1, "m", "cpu"), State: api.StateIdle})
		}
		env.TakeSent()
		q.Handle(env, client, req(1))
		return env.TakeSent()[0].To
	}
	seen := map[node.Addr]int{}
	for seed := uint64(1); seed <= 30; seed++ {
		w := pick(seed)
		if again := pick(seed); again != w {
			t.Fatalf("seed %d picked %s, then %s", seed, w, again)
		}
		seen[w]++
	}
	if len(seen) != 3 {
		t.Fatalf("30 seeds chose only %v among 3 tied workers", seen)
	}
}

func TestInferValidation(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	r := req(1)
	r.MaxTokens = 0
	wantContains(t, h.refused(client, r, api.CodeInvalidRequest).Err.Message, "max_tokens 0")
	r = req(2)
	r.Model = ""
	h.refused(client, r, api.CodeInvalidRequest)
	r = req(3)
	r.Timeout = -time.Second
	h.refused(client, r, api.CodeInvalidRequest)
	h.wantLoad(0, nil)
}

func TestInferModelNotServed(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	r := req(1)
	r.Model = "m2"
	d := h.refused(client, r, api.CodeModelNotServed)
	wantContains(t, d.Err.Message, "m2")
	wantContains(t, d.Err.Suggestion, "rbee-keeper worker start --model m2")
	// Workers of the model that take no requests: loading and draining ones.
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w2", 1, "m2", "cpu"), State: api.StateLoading})
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w3", 1, "m2", "cpu"), State: api.StateIdle})
	h.setState("w3", api.StateDraining)
	r.ReqID = 2
	d = h.refused(client, r, api.CodeNoWorkerAvailable)
	wantContains(t, d.Err.Message, "2 workers serving model m2", "1 loading", "1 draining", "0 not healthy")
	// A refusal is remembered: a resend of the same request (crossing the refusal) gets it
	// again and starts no work; the client retries under a new ReqID, which runs once a
	// worker is ready.
	h.setState("w2", api.StateIdle)
	if sent := h.deliver(client, r); len(sent) != 1 || sent[0].Msg.(api.InferDone).Err.Code != api.CodeNoWorkerAvailable {
		t.Fatalf("a resend of a refused request answered %+v, want the refusal again", sent)
	}
	h.wantLoad(0, nil)
	r.ReqID = 3
	if to, _ := h.infer(client, r); to != "w2" {
		t.Fatalf("retry went to %s", to)
	}
	h.wantLoad(1, map[string]int{"w2": 1})
}

// inference/concurrent-slots, inference/worker-busy-retry: each worker takes Slots +
// QueueAllowance attempts; beyond that on every worker, ALL_SLOTS_BUSY with counts.
func TestInferAdmission(t *testing.T) {
	for _, tc := range []struct {
		allowance, capacity int
	}{{QueueAllowanceSlots, 4}, {0, 2}, {3, 5}} {
		cfg := DefaultConfig()
		cfg.QueueAllowance = tc.allowance
		h := newIH(t, cfg)
		h.worker("w1", "m", 2)
		h.worker("w2", "m", 1)
		h.setState("w2", api.StateDraining) // not a candidate: its capacity does not count
		for i := 1; i <= tc.capacity; i++ {
			h.infer(client, req(uint64(i)))
		}
		d := h.refused(client, req(99), api.CodeAllSlotsBusy)
		wantContains(t, d.Err.Message, "all 1 workers", fmt.Sprintf("%d requests outstanding for a capacity of %d", tc.capacity, tc.capacity))
		wantContains(t, d.Err.Suggestion, "retry after 1s")
		h.wantLoad(tc.capacity, map[string]int{"w1": tc.capacity})
		// Once a request ends, the client's retry (a new ReqID) is admitted.
		a := h.q.infer.load["w1"][0].att
		h.deliver("w1", api.InferDone{ReqID: a.id, FinishReason: api.FinishStop})
		h.infer(client, req(100))
		h.wantLoad(tc.capacity, map[string]int{"w1": tc.capacity})
	}
}

// The forwarded attempt carries the queen's own ReqID and the client's parameters; tokens and
// the end come back to the client under the client's ReqID.
func TestInferRelayRewritesIDs(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	r := api.InferReq{ReqID: 7, Model: "m", Prompt: "p", MaxTokens: 3, Seed: 9, Timeout: 20 * time.Second, MaxTime: 5 * time.Second}
	to, a := h.infer(client, r)
	if to != "w1" || a.ReqID == r.ReqID || a.Model != "m" || a.Prompt != "p" || a.MaxTokens != 3 || a.Seed != 9 ||
		a.Timeout != 20*time.Second || a.MaxTime != 5*time.Second {
		t.Fatalf("forwarded %+v to %s", a, to)
	}
	// The same client ReqID from another client is another request with another attempt ID.
	_, a2 := h.infer(client2, r)
	if a2.ReqID == a.ReqID {
		t.Fatalf("two requests share attempt ID %d", a.ReqID)
	}
	h.advance(2 * time.Second)
	sent := h.tokens("w1", a.ReqID, 0, 3)
	if len(sent) != 3 || sent[0].To != client || sent[0].Msg != (api.InferToken{ReqID: 7, Index: 0, Text: text(0)}) {
		t.Fatalf("relayed %+v", sent)
	}
	h.deliver("w1", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishLength, Tokens: 3})
	texts, d := h.stream(client, 7)
	if len(texts) != 3 || d.FinishReason != api.FinishLength || !d.Err.OK() || d.Worker != "w1" {
		t.Fatalf("client got %q then %+v", texts, d)
	}
	h.wantLoad(1, map[string]int{"w1": 1})
	// A token of the finished attempt is dropped, and the worker is told to stop it.
	if sent := h.deliver("w1", api.InferToken{ReqID: a.ReqID, Index: 3, Text: "x"}); !slices.Equal(cancels(sent, "w1"), []uint64{a.ReqID}) || len(sent) != 1 {
		t.Fatalf("late token answered with %+v", sent)
	}
	h.wantMark("late inference attempt cancelled")
	// A message about an attempt from a node that does not run it is dropped.
	if sent := h.deliver("w9", api.InferToken{ReqID: a2.ReqID, Index: 0, Text: "x"}); len(sent) != 0 {
		t.Fatalf("spoofed token answered with %+v", sent)
	}
	h.stream(client, 7)
}

// A repeat of a request in progress is ignored; a repeat of a finished one gets the same
// InferDone; the memory of finished requests is bounded.
func TestInferDedup(t *testing.T) {
	cfg := DefaultConfig()
	cfg.InferDedupEntriesMax = 2
	h := newIH(t, cfg)
	h.worker("w1", "m", 4)
	_, a := h.infer(client, req(1))
	if sent := h.deliver(client, req(1)); len(sent) != 1 || sent[0] != (nodetest.Sent{To: client, Msg: api.InferAccepted{ReqID: 1, Worker: "w1"}}) {
		t.Fatalf("repeat in progress answered %+v, want only InferAccepted again (not a second attempt)", sent)
	}
	h.wantMark("duplicate inference request ignored")
	h.tokens("w1", a.ReqID, 0, 2)
	h.deliver("w1", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop, Tokens: 2})
	_, first := h.stream(client, 1)
	sent := h.deliver(client, req(1))
	if len(sent) != 1 || sent[0].Msg != first {
		t.Fatalf("repeat of a finished request answered %+v, want %+v", sent, first)
	}
	h.wantLoad(0, nil)
	// Two more finish; the first is forgotten and its repeat runs again.
	for id := uint64(2); id <= 3; id++ {
		_, a := h.infer(client, req(id))
		h.deliver("w1", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop})
	}
	if to, _ := h.infer(client, req(1)); to != "w1" {
		t.Fatal("forgotten request not run again")
	}
	sent = h.deliver(client, req(3))
	if d, ok := sent[0].Msg.(api.InferDone); len(sent) != 1 || !ok || d.ReqID != 3 {
		t.Fatalf("remembered request 3 answered %+v", sent)
	}
}

// e2e/deadlines: the worker gets what is left of the client's deadline, never more; when it
// passes the attempt is cancelled and the request ends with DEADLINE_EXCEEDED.
func TestInferDeadline(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	r := req(1)
	r.Timeout = 25 * time.Second
	_, a := h.infer(client, r)
	if a.Timeout != 25*time.Second {
		t.Fatalf("forwarded timeout %s", a.Timeout)
	}
	h.advance(9 * time.Second)
	h.tokens("w1", a.ReqID, 0, 2)
	h.advance(9 * time.Second)
	h.tokens("w1", a.ReqID, 2, 3)
	h.advance(7*time.Second - time.Nanosecond)
	h.wantLoad(1, map[string]int{"w1": 1})
	sent := h.advance(time.Nanosecond)
	if !slices.Equal(cancels(sent, "w1"), []uint64{a.ReqID}) {
		t.Fatalf("deadline: attempt not cancelled: %+v", sent)
	}
	texts, d := h.stream(client, 1)
	if len(texts) != 3 || d.FinishReason != api.FinishTimeout || d.Err.Code != api.CodeDeadlineExceeded {
		t.Fatalf("deadline ended with %q %+v", texts, d)
	}
	wantContains(t, d.Err.Message, "25s", "3 tokens were delivered")
	h.wantLoad(0, nil)
	if h.env.PendingTimers() != 1 { // only w1's heartbeat deadline
		t.Fatalf("%d timers pending after the request ended", h.env.PendingTimers())
	}
	// The worker's own end, arriving late, is dropped.
	if sent := h.deliver("w1", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishTimeout, Err: api.Error{Code: api.CodeDeadlineExceeded}}); len(sent) != 0 {
		t.Fatalf("late done answered %+v", sent)
	}
	h.stream(client, 1)
}

// inference/cancel: a client cancel stops the attempt, ends the request with CANCELLED and is
// answered; repeated and unknown cancels are answered too, with no error.
func TestInferCancel(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	_, a := h.infer(client, req(1))
	h.tokens("w1", a.ReqID, 0, 2)
	sent := h.deliver(client, api.InferCancel{ReqID: 1})
	if !slices.Equal(cancels(sent, "w1"), []uint64{a.ReqID}) || sent[len(sent)-1].Msg != (api.InferCancelResp{ReqID: 1}) {
		t.Fatalf("cancel sent %+v", sent)
	}
	texts, d := h.stream(client, 1)
	if len(texts) != 2 || d.FinishReason != api.FinishCancelled || d.Err.Code != api.CodeCancelled {
		t.Fatalf("cancel ended with %q %+v", texts, d)
	}
	h.wantLoad(0, nil)
	for _, id := range []uint64{1, 55} { // finished, unknown
		if sent := h.deliver(client, api.InferCancel{ReqID: id}); len(sent) != 1 || sent[0].Msg != (api.InferCancelResp{ReqID: id}) {
			t.Fatalf("cancel of %d answered %+v", id, sent)
		}
	}
	// Tokens still streaming from the cancelled attempt are dropped (and cancelled again).
	if sent := h.tokens("w1", a.ReqID, 2, 3); len(cancels(sent, "w1")) != 1 || len(sent) != 1 {
		t.Fatalf("late token answered %+v", sent)
	}
	h.deliver("w1", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishCancelled, Err: api.Error{Code: api.CodeCancelled}})
	h.stream(client, 1)
	h.wantLoad(0, nil)
	// The freed slot takes a new request.
	h.infer(client, req(2))
}

// failoverSetup routes request 1 to w1 (the only worker then), registers w2 and w3, and
// streams tokens 0 and 1 to the client.
func failoverSetup(t *testing.T, cfg Config) (*ih, api.InferReq) {
	h := newIH(t, cfg)
	h.worker("w1", "m", 1)
	if to, _ := h.infer(client, req(1)); to != "w1" {
		t.Fatalf("routed to %s", to)
	}
	a := h.q.infer.active[dedupKey{From: client, ReqID: 1}].att
	h.worker("w2", "m", 1)
	h.worker("w3", "m2", 1) // another model: never a failover target
	h.tokens("w1", a.id, 0, 2)
	return h, api.InferReq{ReqID: a.id}
}

// continueOn plays the new attempt on worker w: it regenerates the prefix (suppressed), then
// the rest, then ends. The client must see every index exactly once.
func continueOn(t *testing.T, h *ih, w node.Addr, a api.InferReq) {
	t.Helper()
	if a.Seed != 42 || a.Prompt != "hello" || a.MaxTokens != 10 {
		t.Fatalf("failover attempt %+v does not repeat the request", a)
	}
	if sent := h.tokens(w, a.ReqID, 0, 2); len(sent) != 0 {
		t.Fatalf("regenerated prefix relayed: %+v", sent)
	}
	h.wantMark("regenerated token suppressed")
	h.tokens(w, a.ReqID, 2, 4)
	h.deliver(w, api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop, Tokens: 4})
	texts, d := h.stream(client, 1)
	if !slices.Equal(texts, []string{text(0), text(1), text(2), text(3)}) || d.FinishReason != api.FinishStop || !d.Err.OK() || d.Worker != w {
		t.Fatalf("client got %q %+v", texts, d)
	}
	h.wantMark("inference failed over")
}

// e2e/failover: an attempt that sends nothing for StallTimeout is cancelled and moves on.
func TestInferFailoverOnStall(t *testing.T) {
	h, old := failoverSetup(t, DefaultConfig())
	if sent := h.advance(h.cfg.StallTimeout - time.Nanosecond); len(sent) != 0 {
		t.Fatalf("acted before the stall timeout: %+v", sent)
	}
	sent := h.advance(time.Nanosecond)
	if !slices.Equal(cancels(sent, "w1"), []uint64{old.ReqID}) {
		t.Fatalf("stalled attempt not cancelled first: %+v", sent)
	}
	to, a := attemptIn(t, sent)
	if to != "w2" || a.ReqID == old.ReqID {
		t.Fatalf("failover attempt %+v to %s", a, to)
	}
	h.wantMark("inference attempt stalled")
	h.wantLoad(1, map[string]int{"w2": 1})
	// The stalled worker wakes up: its tokens are dropped, the attempt cancelled again.
	if sent := h.tokens("w1", old.ReqID, 2, 3); len(sent) != 1 || len(cancels(sent, "w1")) != 1 {
		t.Fatalf("late token of the stalled attempt: %+v", sent)
	}
	continueOn(t, h, "w2", a)
	h.wantLoad(0, nil)
}

// e2e/failover: the worker's own failure codes fail over; the failed attempt is not cancelled
// (it already ended).
func TestInferFailoverOnWorkerError(t *testing.T) {
	for _, code := range []api.Code{api.CodeWorkerLost, api.CodeEngineError, api.CodeUnavailable, api.CodeAllSlotsBusy} {
		t.Run(string(code), func(t *testing.T) {
			h, old := failoverSetup(t, DefaultConfig())
			sent := h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishError, Tokens: 2, Err: api.Errorf(code, "s", "boom")})
			if len(cancels(sent, "w1")) != 0 {
				t.Fatalf("ended attempt cancelled: %+v", sent)
			}
			to, a := attemptIn(t, sent)
			if to != "w2" {
				t.Fatalf("failover to %s", to)
			}
			if got := h.q.infer.active[dedupKey{From: client, ReqID: 1}].failovers; got != 1 {
				t.Fatalf("%d failovers counted, want 1 (ALL_SLOTS_BUSY after tokens counts)", got)
			}
			h.wantLoad(1, map[string]int{"w2": 1})
			continueOn(t, h, "w2", a)
			h.wantLoad(0, nil)
		})
	}
	// Other errors end the request with the worker's answer.
	h, old := failoverSetup(t, DefaultConfig())
	h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishTimeout, Tokens: 2, Err: api.Errorf(api.CodeGenerationTimeout, "s", "max_time")})
	if _, d := h.stream(client, 1); d.Err.Code != api.CodeGenerationTimeout || d.FinishReason != api.FinishTimeout {
		t.Fatalf("generation timeout relayed as %+v", d)
	}
	h.wantLoad(0, nil)
}

// e2e/failover, lifecycle/crash-detection: every way the registry loses the worker fails its
// attempts over at once, and the lost attempt is cancelled.
func TestInferFailoverOnWorkerRemoval(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(h *ih) []nodetest.Sent
		why  string
	}{
		{"removed", func(h *ih) []nodetest.Sent {
			return h.deliver(hiveA, api.RemoveReq{ReqID: h.next(), Worker: "w1"})
		}, "removed from the registry"},
		{"restarted", func(h *ih) []nodetest.Sent {
			return h.deliver(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 2, "m", "cpu"), State: api.StateLoading})
		}, "restarted"},
		{"stale", func(h *ih) []nodetest.Sent {
			h.setState("w1", api.StateBusy)
			h.advance(time.Minute)
			h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w2", Incarnation: 1})
			return h.advance(time.Minute) // w1's heartbeat deadline: busy, so stale
		}, "stale"},
		{"expired idle", func(h *ih) []nodetest.Sent {
			h.advance(time.Minute)
			h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w2", Incarnation: 1})
			return h.advance(time.Minute) // w1's heartbeat deadline: idle, so removed
		}, "removed from the registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.StallTimeout = time.Hour
			cfg.FailoverMax = 0 // the next failure must be fatal, to read its reason
			h, old := failoverSetup(t, cfg)
			sent := tc.lose(h)
			if !slices.Equal(cancels(sent, "w1"), []uint64{old.ReqID}) {
				t.Fatalf("lost attempt not cancelled: %+v", sent)
			}
			// FailoverMax 0: no failover, WORKER_LOST naming the cause and the partial output.
			texts, d := h.stream(client, 1)
			if len(texts) != 2 || d.Err.Code != api.CodeWorkerLost || d.FinishReason != api.FinishError {
				t.Fatalf("got %q %+v", texts, d)
			}
			wantContains(t, d.Err.Message, tc.why, "2 tokens were delivered", "failover_max")
			h.wantLoad(0, map[string]int{"w1": 0})

			cfg.FailoverMax = 2
			h, old = failoverSetup(t, cfg)
			sent = tc.lose(h)
			to, a := attemptIn(t, sent)
			if to != "w2" || !slices.Equal(cancels(sent, "w1"), []uint64{old.ReqID}) {
				t.Fatalf("failover: %+v", sent)
			}
			h.wantMark("inference worker lost from the registry")
			h.wantLoad(1, map[string]int{"w1": 0, "w2": 1})
			continueOn(t, h, "w2", a)
			h.wantLoad(0, map[string]int{"w1": 0})
		})
	}
}

// A worker that answers ALL_SLOTS_BUSY before any token only re-routes the request: it does
// not count as a failover; when every worker refused, the client gets ALL_SLOTS_BUSY.
func TestInferAllSlotsBusyReroutes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FailoverMax = 0
	h := newIH(t, cfg)
	h.worker("w1", "m", 1)
	h.worker("w2", "m", 1)
	busy := api.Errorf(api.CodeAllSlotsBusy, "retry", "all 1 slots busy")
	to, a := h.infer(client, req(1))
	sent := h.deliver(to, api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishError, Err: busy})
	to2, a2 := attemptIn(t, sent)
	if to2 == to {
		t.Fatalf("re-routed to the worker that refused")
	}
	h.wantMark("inference re-routed after ALL_SLOTS_BUSY")
	h.wantLoad(1, map[string]int{string(to2): 1})
	h.deliver(to2, api.InferDone{ReqID: a2.ReqID, FinishReason: api.FinishError, Err: busy})
	texts, d := h.stream(client, 1)
	if len(texts) != 0 || d.Err.Code != api.CodeAllSlotsBusy {
		t.Fatalf("every worker refused: %q %+v", texts, d)
	}
	wantContains(t, d.Err.Suggestion, "retry after 1s")
	h.wantLoad(0, nil)
}

// No worker left to fail over to, or FailoverMax reached: WORKER_LOST with the partial count.
func TestInferFailoverExhausted(t *testing.T) {
	h, old := failoverSetup(t, DefaultConfig())
	h.setState("w2", api.StateDraining)
	sent := h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishError, Tokens: 2, Err: api.Errorf(api.CodeEngineError, "s", "out of memory")})
	if len(sent) != 1 {
		t.Fatalf("sent %+v", sent)
	}
	texts, d := h.stream(client, 1)
	if len(texts) != 2 || d.Err.Code != api.CodeWorkerLost {
		t.Fatalf("got %q %+v", texts, d)
	}
	wantContains(t, d.Err.Message, "out of memory", "no other healthy worker", "2 tokens were delivered")
	wantContains(t, d.Err.Suggestion, "retry")
	h.wantLoad(0, nil)

	// FailoverMax 1 with three workers: the second failure ends the request.
	cfg := DefaultConfig()
	cfg.FailoverMax = 1
	h = newIH(t, cfg)
	for _, w := range []string{"w1", "w2", "w3"} {
		h.worker(w, "m", 1)
	}
	to, a := h.infer(client, req(1))
	fail := api.Errorf(api.CodeWorkerLost, "s", "crashed")
	to, a = attemptIn(t, h.deliver(to, api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishError, Err: fail}))
	if sent := h.deliver(to, api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishError, Err: fail}); len(sent) != 1 {
		t.Fatalf("second failure sent %+v", sent)
	}
	_, d = h.stream(client, 1)
	wantContains(t, d.Err.Message, "1 times (failover_max)", "0 tokens were delivered")
	h.wantLoad(0, nil)
}

// A regenerated token that differs from what the client has ends the request: WORKER_LOST
// with the partial output, the attempt cancelled.
func TestInferPrefixMismatch(t *testing.T) {
	h, old := failoverSetup(t, DefaultConfig())
	_, a := attemptIn(t, h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishError, Err: api.Errorf(api.CodeWorkerLost, "s", "gone")}))
	h.tokens("w2", a.ReqID, 0, 1)
	sent := h.deliver("w2", api.InferToken{ReqID: a.ReqID, Index: 1, Text: "different"})
	if !slices.Equal(cancels(sent, "w2"), []uint64{a.ReqID}) {
		t.Fatalf("mismatching attempt not cancelled: %+v", sent)
	}
	texts, d := h.stream(client, 1)
	if len(texts) != 2 || d.Err.Code != api.CodeWorkerLost {
		t.Fatalf("got %q %+v", texts, d)
	}
	wantContains(t, d.Err.Message, "token 1", "2 tokens were delivered")
	h.wantMark("regenerated token differs")
	h.wantLoad(0, nil)

	// A regenerated stream that ends before the client's prefix differs too.
	h, old = failoverSetup(t, DefaultConfig())
	_, a = attemptIn(t, h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishError, Err: api.Errorf(api.CodeWorkerLost, "s", "gone")}))
	h.tokens("w2", a.ReqID, 0, 1)
	h.deliver("w2", api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop, Tokens: 1})
	if texts, d := h.stream(client, 1); len(texts) != 2 || d.Err.Code != api.CodeWorkerLost {
		t.Fatalf("short regeneration: %q %+v", texts, d)
	}
	h.wantLoad(0, nil)
}

// e2e/rolling-update: a draining worker never gets a new request, and the ones it runs finish
// normally.
func TestInferDrainingNeverChosen(t *testing.T) {
	cfg := DefaultConfig()
	cfg.QueueAllowance = 0
	h := newIH(t, cfg)
	h.worker("old", "m", 8)
	_, running := h.infer(client, req(1))
	h.worker("new", "m", 8)
	h.setState("old", api.StateDraining)
	for i := uint64(2); i <= 9; i++ {
		if to, _ := h.infer(client, req(i)); to != "new" {
			t.Fatalf("request %d routed to %s", i, to)
		}
	}
	h.wantLoad(9, map[string]int{"old": 1, "new": 8})
	h.tokens("old", running.ReqID, 0, 3)
	h.deliver("old", api.InferDone{ReqID: running.ReqID, FinishReason: api.FinishStop, Tokens: 3})
	if texts, d := h.stream(client, 1); len(texts) != 3 || !d.Err.OK() || d.Worker != "old" {
		t.Fatalf("request on the draining worker: %q %+v", texts, d)
	}
	h.wantLoad(8, map[string]int{"new": 8})
	// Only the draining worker has room: refused, never routed to it.
	h.refused(client, req(10), api.CodeAllSlotsBusy)
}

// The network may duplicate and reorder: duplicates are suppressed, a token that overtook
// another waits for it, an end that overtook its tokens waits for them.
func TestInferReorderAndDuplicates(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 1)
	_, a := h.infer(client, req(1))
	tok := func(i int) api.InferToken { return api.InferToken{ReqID: a.ReqID, Index: i, Text: text(i)} }
	for _, m := range []node.Msg{tok(1), tok(0), tok(0), tok(3),
		api.InferDone{ReqID: a.ReqID, FinishReason: api.FinishStop, Tokens: 5}, tok(2), tok(1)} {
		h.deliver("w1", m)
	}
	h.wantLoad(1, map[string]int{"w1": 1}) // token 4 is still missing: the end waits
	h.deliver("w1", tok(4))
	texts, d := h.stream(client, 1)
	if len(texts) != 5 || d.FinishReason != api.FinishStop {
		t.Fatalf("got %q %+v", texts, d)
	}
	h.wantLoad(0, nil)
}

// A token lost on the way: the end waits, the stall timer fails the attempt over, and the new
// worker regenerates what was missing.
func TestInferLostTokenRegenerated(t *testing.T) {
	h, old := failoverSetup(t, DefaultConfig())
	h.tokens("w1", old.ReqID, 3, 4) // token 2 was lost
	h.deliver("w1", api.InferDone{ReqID: old.ReqID, FinishReason: api.FinishStop, Tokens: 4})
	sent := h.advance(h.cfg.StallTimeout)
	to, a := attemptIn(t, sent)
	if to != "w2" {
		t.Fatalf("failover to %s", to)
	}
	continueOn(t, h, "w2", a)
	h.wantLoad(0, nil)
}

// A queen crash loses routing state: the new queen knows none of the old attempts (it cancels
// them when they speak) and its attempt IDs differ from the old queen's.
func TestInferStateIsVolatile(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 4)
	_, old := h.infer(client, req(1))
	h.boot()
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 1, "m", "cpu"), State: api.StateIdle}) // confirm
	if sent := h.tokens("w1", old.ReqID, 0, 1); len(sent) != 1 || len(cancels(sent, "w1")) != 1 {
		t.Fatalf("token of the old queen's attempt: %+v", sent)
	}
	_, a := h.infer(client, req(1)) // the client retries: the new queen runs it
	if a.ReqID == old.ReqID {
		t.Fatalf("the restarted queen reused attempt ID %d", a.ReqID)
	}
	h.wantLoad(1, map[string]int{"w1": 1})
	// While recovering from an unreadable disk the queen refuses with UNAVAILABLE.
	q := New(DefaultConfig())
	q.ready = false
	q.started = true
	env := nodetest.New(queenAddr, 1, nil)
	q.Handle(env, client, req(5))
	if d, ok := env.TakeSent()[0].Msg.(api.InferDone); !ok || d.Err.Code != api.CodeUnavailable {
		t.Fatalf("recovering queen answered %+v", d)
	}
}

// Timer messages of the inference path from a peer are ignored.
func TestInferTimerFromPeerIgnored(t *testing.T) {
	h, old := failoverSetup(t, DefaultConfig())
	gen := h.q.infer.attempts[old.ReqID].att.stallGen
	if sent := h.deliver(client, inferStallTimer{Attempt: old.ReqID, Gen: gen}); len(sent) != 0 {
		t.Fatalf("a peer's stall timer acted: %+v", sent)
	}
	if sent := h.deliver(client, inferDeadlineTimer{Client: client, ReqID: 1, Seq: 1}); len(sent) != 0 {
		t.Fatalf("a peer's deadline timer acted: %+v", sent)
	}
	h.wantLoad(1, map[string]int{"w1": 1})
	if !strings.HasPrefix(inferStallTimer{}.MsgName(), "queen.") {
		t.Fatal("timer names live under queen.")
	}
}

// e2e/graceful-shutdown: a request already under way fails over to a full worker rather than
// ending with WORKER_LOST for want of room: the worker's own queue bounds it.
func TestInferFailoverOvercommitsAFullWorker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.QueueAllowance = 0 // a worker is full at its slots
	h, old := failoverSetup(t, cfg)
	to, a2 := h.infer(client, req(2))
	if to != "w2" {
		t.Fatalf("second request went to %s, want w2", to)
	}
	h.wantLoad(2, map[string]int{"w1": 1, "w2": 1})
	h.advance(h.cfg.StallTimeout / 2)
	h.tokens("w2", a2.ReqID, 0, 1) // the second request streams on
	sent := h.advance(h.cfg.StallTimeout / 2)
	if !slices.Equal(cancels(sent, "w1"), []uint64{old.ReqID}) {
		t.Fatalf("stalled attempt not cancelled: %+v", sent)
	}
	if to, _ := attemptIn(t, sent); to != "w2" {
		t.Fatalf("failover went to %s, want the full w2", to)
	}
	h.wantLoad(2, map[string]int{"w2": 2})
}

// inference/cancel: a client whose connection broke (node.PeerGone) has its requests cancelled
// at their workers; other clients' requests run on.
func TestInferClientGoneCancelsItsRequests(t *testing.T) {
	h := newIH(t, DefaultConfig())
	h.worker("w1", "m", 4)
	_, a := h.infer(client, req(1))
	_, b := h.infer("keeper-2", req(1))
	sent := h.deliver(client, node.PeerGone{Peer: client})
	if !slices.Equal(cancels(sent, "w1"), []uint64{a.ReqID}) {
		t.Fatalf("client gone: sent %+v, want the cancel of its attempt %d only", sent, a.ReqID)
	}
	h.wantMark("inference cancelled: client went away")
	h.wantLoad(1, map[string]int{"w1": 1})
	if h.q.infer.active[dedupKey{From: "keeper-2", ReqID: 1}] == nil || b.ReqID == 0 {
		t.Fatal("another client's request was cancelled too")
	}
}
