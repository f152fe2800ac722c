package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

const keeperAddr = node.Addr("keeper-1")

// keeperSide is rbee-keeper's Runtime: the unchanged keeper node, and the client port at the
// queen's address, pointed at baseURL.
type keeperSide struct {
	t  *testing.T
	rt *real.Runtime
}

func newKeeperSide(t *testing.T, baseURL, key string, cfg keeper.InferConfig, extra ...func(*real.Runtime)) *keeperSide {
	t.Helper()
	mk, err := NewClient(ClientConfig{BaseURL: baseURL, APIKey: key})
	must(t, err)
	rt, err := real.New(real.Config{DataDir: t.TempDir(), Seed: 3})
	must(t, err)
	t.Cleanup(rt.Stop)
	must(t, rt.AddPort(queenAddr, mk))
	cfg.Queen = queenAddr
	must(t, rt.Add(keeperAddr, "laptop", func() node.Node { return keeper.NewInferClient(cfg) }))
	for _, f := range extra {
		f(rt)
	}
	must(t, rt.StartAll())
	return &keeperSide{t: t, rt: rt}
}

// results waits until every request ended and returns the keeper's records.
func (k *keeperSide) results() []keeper.InferResult {
	k.t.Helper()
	var res []keeper.InferResult
	eventually(k.t, "the keeper to end every request", func() bool {
		done := false
		must(k.t, k.rt.Inspect(keeperAddr, func(n node.Node) {
			c := n.(*keeper.InferClient)
			done, res = c.Done(), c.Results()
		}))
		return done
	})
	return res
}

func texts(toks []api.InferToken) string {
	var b strings.Builder
	for i, t := range toks {
		if t.Index != i {
			fmt.Fprintf(&b, "[index %d at %d]", t.Index, i)
		}
		b.WriteString(t.Text)
	}
	return b.String()
}

// A streamed answer arrives whole through HTTP, and the keeper ends with exit code 0.
func TestKeeperStreamsThroughTheGateway(t *testing.T) {
	h := newHarness(t, nil)
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{Sequential: true, Requests: []keeper.InferSpec{
		{Model: modelOK, Prompt: "hello bees", MaxTokens: 5, Seed: 9, Timeout: time.Minute},
		{Model: modelOK, Prompt: "again", MaxTokens: 2},
	}})
	res := k.results()
	for i, want := range []string{" tok0 tok1 tok2 tok3 tok4", " tok0 tok1"} {
		r := res[i]
		if r.ExitCode != keeper.ExitOK || r.Outcome != keeper.OutcomeCompleted || !r.DoneReceived || r.FinishReason != api.FinishLength ||
			r.DoneTokens != len(r.Tokens) || r.Worker != "worker-1" || len(r.Violations) != 0 || r.Sends != 1 || r.Late != 0 {
			t.Fatalf("request %d: %+v", i, r)
		}
		if got := texts(r.Tokens); got != want {
			t.Fatalf("request %d: tokens %q, want %q", i, got, want)
		}
	}
	var reqs []api.InferReq
	h.queen(func(q *fakeQueen) { reqs = q.reqs })
	if len(reqs) != 2 || reqs[0].Prompt != "hello bees" || reqs[0].Seed != 9 || reqs[0].Timeout <= 59*time.Second || reqs[0].Timeout > time.Minute {
		t.Fatalf("the queen got %+v", reqs)
	}
}

// ALL_SLOTS_BUSY comes back as the queen's refusal: the keeper backs off and retries with new
// ReqIDs, then completes; when it stays busy the keeper gives up with exit code 3.
func TestKeeperBacksOffWhenBusy(t *testing.T) {
	h := newHarness(t, nil)
	backoff := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{BusyBackoff: backoff, Requests: []keeper.InferSpec{
		{Model: modelBusyOnce, Prompt: "p", MaxTokens: 3},
	}})
	r := k.results()[0]
	if r.ExitCode != keeper.ExitOK || r.BusyRetries != busyTimes || len(r.ReqIDs) != busyTimes+1 || len(r.Tokens) != 3 {
		t.Fatalf("%+v", r)
	}
	if r.DoneAt.Sub(r.SentAt) < backoff[0]+backoff[1] {
		t.Errorf("done %v after the first send: the backoffs (%v) were not waited", r.DoneAt.Sub(r.SentAt), backoff[:2])
	}
	var ids []uint64
	h.queen(func(q *fakeQueen) {
		for _, r := range q.reqs {
			ids = append(ids, r.ReqID)
		}
	})
	if slices.Sort(ids); len(ids) != 3 || len(slices.Compact(ids)) != 3 {
		t.Fatalf("the queen got ReqIDs %v, want three different ones", ids)
	}

	k = newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{BusyBackoff: backoff[:1], Requests: []keeper.InferSpec{
		{Model: modelBusy, Prompt: "p", MaxTokens: 3},
	}})
	r = k.results()[0]
	if r.ExitCode != keeper.ExitUnavailable || r.Outcome != keeper.OutcomeBusy || r.Err.Code != api.CodeAllSlotsBusy || r.BusyRetries != 1 {
		t.Fatalf("%+v", r)
	}
}

// Refusals keep their meaning end to end: a model nobody serves is exit code 3, a wrong key
// exit code 1 with a message that names the queen.
func TestKeeperRefusals(t *testing.T) {
	h := newHarness(t, nil)
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{Requests: []keeper.InferSpec{
		{Model: "hf:nobody/serves/this.gguf", Prompt: "p", MaxTokens: 3},
	}})
	if r := k.results()[0]; r.ExitCode != keeper.ExitUnavailable || r.Err.Code != api.CodeModelNotServed {
		t.Fatalf("%+v", r)
	}
	k = newKeeperSide(t, h.ts.URL, "wrong-key-0123456789abcdef", keeper.InferConfig{Requests: []keeper.InferSpec{
		{Model: modelOK, Prompt: "p", MaxTokens: 3},
	}})
	r := k.results()[0]
	if r.ExitCode != keeper.ExitFailed || r.Err.Code != "UNAUTHORIZED" || !strings.Contains(r.Err.Message, h.ts.URL) || r.Err.Suggestion == "" {
		t.Fatalf("%+v", r)
	}
}

// No queen at the URL: nothing comes back, as in the simulator when the queen is down; the
// keeper resends (each resend a new connection attempt) and gives up with exit code 3.
func TestKeeperQueenDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	url := "http://" + l.Addr().String()
	l.Close()
	k := newKeeperSide(t, url, testKey, keeper.InferConfig{ConnectTimeout: 30 * time.Millisecond, Requests: []keeper.InferSpec{
		{Model: modelOK, Prompt: "p", MaxTokens: 3},
	}})
	r := k.results()[0]
	if r.ExitCode != keeper.ExitUnavailable || r.Outcome != keeper.OutcomeUnavailable || r.Sends != 3 || r.DoneReceived {
		t.Fatalf("%+v", r)
	}
}

// Ctrl+C: the keeper's InferCancel becomes a DELETE; the stream brings the queen's cancelled
// done, and the keeper ends interrupted (130) with the tokens so far.
func TestKeeperCancelThroughDelete(t *testing.T) {
	h := newHarness(t, nil)
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{Requests: []keeper.InferSpec{
		{Model: modelGated, Prompt: "p", MaxTokens: 50},
	}})
	eventually(t, "the request to reach the queen", func() bool {
		n := 0
		h.queen(func(q *fakeQueen) { n = len(q.reqs) })
		return n == 1
	})
	h.rt.Inject("test", queenAddr, emit{})
	h.rt.Inject("test", queenAddr, emit{})
	eventually(t, "two tokens at the keeper", func() bool {
		var res []keeper.InferResult
		must(t, k.rt.Inspect(keeperAddr, func(n node.Node) { res = n.(*keeper.InferClient).Results() }))
		return len(res[0].Tokens) == 2
	})
	k.rt.Inject("operator", keeperAddr, keeper.Interrupt{})
	r := k.results()[0]
	if r.ExitCode != keeper.ExitInterrupted || !r.DoneReceived || r.FinishReason != api.FinishCancelled || texts(r.Tokens) != " g0 g1" {
		t.Fatalf("%+v", r)
	}
	var cancels []uint64
	var id uint64
	h.queen(func(q *fakeQueen) { cancels, id = q.cancels, q.reqs[0].ReqID })
	if !slices.Contains(cancels, id) {
		t.Fatalf("the queen got cancels %v, not one for %d", cancels, id)
	}
}

// A stream that breaks after it began delivers nothing more: the keeper's stall timer ends the
// request as stalled (exit code 4) and keeps the tokens.
func TestKeeperStreamBreaks(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := startSSE(w)
		out.event("accepted", AcceptedEvent{RequestID: "77", Worker: "worker-x"})
		out.event("token", TokenEvent{Index: 0, Text: " first"})
		// and the connection ends without a done
	}))
	t.Cleanup(broken.Close)
	k := newKeeperSide(t, broken.URL, testKey, keeper.InferConfig{StallTimeout: 200 * time.Millisecond, Requests: []keeper.InferSpec{
		{Model: modelOK, Prompt: "p", MaxTokens: 3},
	}})
	r := k.results()[0]
	if r.ExitCode != keeper.ExitTimeout || r.Outcome != keeper.OutcomeStalled || texts(r.Tokens) != " first" || r.DoneReceived {
		t.Fatalf("%+v", r)
	}
}

// recorder is a node that keeps what it gets.
type recorder struct {
	mu  *sync.Mutex
	got *[]node.Msg
}

func (r recorder) Start(node.Env) {}
func (r recorder) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	r.mu.Lock()
	*r.got = append(*r.got, m)
	r.mu.Unlock()
}

// The port's own rules, seen from a bare node: a resend of a request under way is not a second
// call, a resend of an ended one gets its done again, and a ListReq is GET /v1/workers.
func TestClientPortResendsAndListing(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	var got []node.Msg
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{Requests: []keeper.InferSpec{{Model: modelOK, Prompt: "p", MaxTokens: 1}}},
		func(rt *real.Runtime) {
			must(t, rt.Add("rec", "laptop", func() node.Node { return recorder{&mu, &got} }))
		})
	k.results()
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range got {
			if m.MsgName() == name {
				n++
			}
		}
		return n
	}
	h.rt.Inject("test", queenAddr, emit{}) // nothing gated yet: a no-op
	req := api.InferReq{ReqID: 5, Model: modelGated, Prompt: "p", MaxTokens: 9}
	k.rt.Inject("rec", queenAddr, req)
	eventually(t, "the acceptance", func() bool { return count("infer.accepted") == 1 })
	k.rt.Inject("rec", queenAddr, req) // a resend while it runs
	h.rt.Inject("test", queenAddr, emit{})
	h.rt.Inject("test", queenAddr, finish{})
	eventually(t, "the done", func() bool { return count("infer.done") == 1 })
	k.rt.Inject("rec", queenAddr, req) // a resend after the end
	eventually(t, "the done again", func() bool { return count("infer.done") == 2 })
	k.rt.Inject("rec", queenAddr, api.InferCancel{ReqID: 5})
	eventually(t, "the cancel's answer", func() bool { return count("infer.cancel_resp") == 1 })
	var n int
	h.queen(func(q *fakeQueen) { n = len(q.reqs) })
	if n != 2 { // the keeper's request and rec's one
		t.Fatalf("the queen got %d requests, want 2: a resend made a second call", n)
	}
	mu.Lock()
	var dones []api.InferDone
	for _, m := range got {
		if d, ok := m.(api.InferDone); ok {
			dones = append(dones, d)
		}
	}
	mu.Unlock()
	if dones[0] != dones[1] || dones[0].ReqID != 5 || dones[0].Tokens != 1 || dones[0].FinishReason != api.FinishStop {
		t.Fatalf("dones %+v", dones)
	}

	k.rt.Inject("rec", queenAddr, api.ListReq{ReqID: 8, Capability: "cpu"})
	eventually(t, "the listing", func() bool { return count("registry.resp") == 1 })
	mu.Lock()
	resp := got[len(got)-1].(api.RegistryResp)
	mu.Unlock()
	if resp.ReqID != 8 || !resp.Err.OK() || resp.Epoch != 7 || len(resp.Records) != 2 || resp.Records[0].ID != "worker-2" {
		t.Fatalf("listing %+v", resp)
	}
}

func TestClientConfigValidate(t *testing.T) {
	for _, u := range []string{"", "queen:7833", "ftp://queen", "http://"} {
		if _, err := NewClient(ClientConfig{BaseURL: u}); err == nil {
			t.Errorf("base URL %q accepted", u)
		}
	}
}
