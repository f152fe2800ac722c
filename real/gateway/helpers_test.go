package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
)

const (
	testKey   = "test-key-0123456789abcdef"
	queenAddr = node.Addr("queen-1")
	apiAddr   = node.Addr("api")
)

// The fake queen's models: each makes it answer an InferReq one way.
const (
	modelOK       = "hf:test/ok/m.gguf"       // accepted, MaxTokens tokens " tok0", " tok1", ..., done length
	modelGated    = "hf:test/gated/m.gguf"    // accepted; a token per emit message, done on finish
	modelBusy     = "hf:test/busy/m.gguf"     // refused ALL_SLOTS_BUSY
	modelBusyOnce = "hf:test/busyonce/m.gguf" // refused ALL_SLOTS_BUSY the first busyTimes times, then as modelOK
	modelSilent   = "hf:test/silent/m.gguf"   // never answered
	modelDeadline = "hf:test/deadline/m.gguf" // refused DEADLINE_EXCEEDED
	modelNoWorker = "hf:test/noworker/m.gguf" // refused NO_WORKER_AVAILABLE
	modelLost     = "hf:test/lost/m.gguf"     // accepted, 2 tokens, done WORKER_LOST
	modelGenTime  = "hf:test/gentime/m.gguf"  // accepted, 2 tokens, done timeout GENERATION_TIMEOUT
	busyTimes     = 2
)

// Test messages to the fake queen.
type (
	emit   struct{} // the gated request's next token
	finish struct{} // the gated request's done (stop)
)

func (emit) MsgName() string   { return "test.emit" }
func (finish) MsgName() string { return "test.finish" }

// fakeQueen is the queen's inference and listing protocol in a few lines: what each model
// makes it answer is above. It records what it got.
type fakeQueen struct {
	reqs      []api.InferReq
	cancels   []uint64
	lists     int
	busySeen  int
	gatedFrom node.Addr
	gated     *api.InferReq
	gatedSent int
	records   []api.WorkerRecord
}

func (q *fakeQueen) Start(node.Env) {}

func (q *fakeQueen) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.InferReq:
		q.reqs = append(q.reqs, m)
		q.infer(env, from, m)
	case api.InferCancel:
		q.cancels = append(q.cancels, m.ReqID)
		if q.gated != nil && q.gated.ReqID == m.ReqID && from == q.gatedFrom {
			env.Send(from, api.InferDone{ReqID: m.ReqID, FinishReason: api.FinishCancelled, Tokens: q.gatedSent,
				Err: api.Error{Code: api.CodeCancelled, Message: "cancelled by the client"}})
			q.gated = nil
		}
		env.Send(from, api.InferCancelResp{ReqID: m.ReqID})
	case api.ListReq:
		q.lists++
		var recs []api.WorkerRecord
		for _, r := range q.records {
			if (m.Model == "" || r.Model == m.Model) && (m.Capability == "" || r.Capability == m.Capability) {
				recs = append(recs, r)
			}
		}
		env.Send(from, api.RegistryResp{ReqID: m.ReqID, Op: m.MsgName(), Records: recs, Epoch: 7})
	case emit:
		if q.gated != nil {
			env.Send(q.gatedFrom, api.InferToken{ReqID: q.gated.ReqID, Index: q.gatedSent, Text: fmt.Sprintf(" g%d", q.gatedSent)})
			q.gatedSent++
		}
	case finish:
		if q.gated != nil {
			env.Send(q.gatedFrom, api.InferDone{ReqID: q.gated.ReqID, FinishReason: api.FinishStop, Tokens: q.gatedSent, Worker: "worker-g"})
			q.gated = nil
		}
	}
}

func (q *fakeQueen) infer(env node.Env, from node.Addr, r api.InferReq) {
	refuse := func(code api.Code) {
		env.Send(from, api.InferDone{ReqID: r.ReqID, FinishReason: api.FinishError,
			Err: api.Errorf(code, "fake suggestion", "fake refusal of %s", r.Model)})
	}
	stream := func(n int, done api.InferDone) {
		env.Send(from, api.InferAccepted{ReqID: r.ReqID, Worker: "worker-1"})
		for i := range n {
			env.Send(from, api.InferToken{ReqID: r.ReqID, Index: i, Text: fmt.Sprintf(" tok%d", i)})
		}
		done.ReqID, done.Tokens, done.Worker = r.ReqID, n, "worker-1"
		env.Send(from, done)
	}
	switch r.Model {
	case modelOK:
		stream(r.MaxTokens, api.InferDone{FinishReason: api.FinishLength})
	case modelBusyOnce:
		if q.busySeen < busyTimes {
			q.busySeen++
			refuse(api.CodeAllSlotsBusy)
			return
		}
		stream(r.MaxTokens, api.InferDone{FinishReason: api.FinishLength})
	case modelGated:
		if q.gated != nil && q.gated.ReqID == r.ReqID {
			env.Send(from, api.InferAccepted{ReqID: r.ReqID, Worker: "worker-g"})
			return
		}
		q.gated, q.gatedFrom, q.gatedSent = &r, from, 0
		env.Send(from, api.InferAccepted{ReqID: r.ReqID, Worker: "worker-g"})
	case modelBusy:
		refuse(api.CodeAllSlotsBusy)
	case modelDeadline:
		refuse(api.CodeDeadlineExceeded)
	case modelNoWorker:
		refuse(api.CodeNoWorkerAvailable)
	case modelSilent:
	case modelLost:
		stream(2, api.InferDone{FinishReason: api.FinishError, Err: api.Errorf(api.CodeWorkerLost, "retry", "worker-1 died")})
	case modelGenTime:
		stream(2, api.InferDone{FinishReason: api.FinishTimeout, Err: api.Errorf(api.CodeGenerationTimeout, "raise max_time", "max_time passed")})
	default:
		refuse(api.CodeModelNotServed)
	}
}

// harness is a queen-side Runtime with the fake queen and the gateway, served over HTTP.
type harness struct {
	t   *testing.T
	rt  *real.Runtime
	srv *Server
	ts  *httptest.Server
}

var testRecords = []api.WorkerRecord{
	{WorkerSpec: api.WorkerSpec{ID: "worker-1", Hive: "hive-a", Incarnation: 1, Model: modelOK, Capability: "cuda:0", Slots: 2},
		State: api.StateIdle, Health: api.HealthHealthy, Version: 3},
	{WorkerSpec: api.WorkerSpec{ID: "worker-2", Hive: "hive-a", Incarnation: 1, Model: modelGated, Capability: "cpu", Slots: 1},
		State: api.StateBusy, Health: api.HealthHealthy, Version: 4},
	{WorkerSpec: api.WorkerSpec{ID: "worker-3", Hive: "hive-b", Incarnation: 2, Model: modelOK, Capability: "cpu", Slots: 1},
		State: api.StateLoading, Health: api.HealthHealthy, Version: 5},
}

func newHarness(t *testing.T, tune func(*ServerConfig)) *harness {
	t.Helper()
	cfg := ServerConfig{Queen: queenAddr, Policy: auth.Policy{Keys: []string{testKey}},
		Aliases: map[string]string{"tiny": modelOK, "ghost": "hf:test/none/m.gguf"}}
	if tune != nil {
		tune(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := real.New(real.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Stop)
	must(t, rt.Add(queenAddr, "queen", func() node.Node { return &fakeQueen{records: testRecords} }))
	must(t, rt.AddPort(apiAddr, srv.Port))
	must(t, rt.StartAll())
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &harness{t: t, rt: rt, srv: srv, ts: ts}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// queen runs f on the fake queen between two messages.
func (h *harness) queen(f func(q *fakeQueen)) {
	h.t.Helper()
	must(h.t, h.rt.Inspect(queenAddr, func(n node.Node) { f(n.(*fakeQueen)) }))
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do sends a request with the test key (unless key is "-") and a JSON body (unless nil).
func (h *harness) do(ctx context.Context, method, path string, body any, key string) *http.Response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		rd = bytes.NewReader(mustJSON(b))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, method, h.ts.URL+path, rd)
	must(h.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch key {
	case "-":
	case "":
		auth.SetBearer(req, testKey)
	default:
		auth.SetBearer(req, key)
	}
	resp, err := h.ts.Client().Do(req)
	must(h.t, err)
	return resp
}

// errorOf reads an error answer: its status must be want.
func errorOf(t *testing.T, resp *http.Response, want int) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, want, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error == nil {
		t.Fatalf("not the error body: %s (%v)", b, err)
	}
	for _, f := range []string{"code", "message", "suggestion"} {
		if s, _ := body.Error[f].(string); s == "" {
			t.Errorf("error body without %s: %s", f, b)
		}
	}
	return body.Error
}

// events reads a stream's events, each with a 5 s limit, so that an event the server did not
// flush fails the test instead of arriving with the end.
type events struct {
	t  *testing.T
	ch chan evOrErr
}

type evOrErr struct {
	ev  sseEvent
	err error
}

func readEvents(t *testing.T, body io.Reader) *events {
	ch := make(chan evOrErr, 64)
	go func() {
		r := newSSEReader(body)
		for {
			ev, err := r.next()
			ch <- evOrErr{ev, err}
			if err != nil {
				close(ch)
				return
			}
		}
	}()
	return &events{t: t, ch: ch}
}

func (e *events) next() sseEvent {
	e.t.Helper()
	select {
	case x, ok := <-e.ch:
		if !ok || x.err != nil {
			e.t.Fatalf("the stream ended: %v", x.err)
		}
		return x.ev
	case <-time.After(5 * time.Second):
		e.t.Fatal("no event within 5s: the server did not flush it")
	}
	return sseEvent{}
}

// expect reads the next event: its type must be name; its data is decoded into v.
func (e *events) expect(name string, v any) {
	e.t.Helper()
	ev := e.next()
	if ev.Event != name {
		e.t.Fatalf("event %q (%s), want %q", ev.Event, ev.Data, name)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
			e.t.Fatalf("event %s data %q: %v", name, ev.Data, err)
		}
	}
}

// openAIStream reads an OpenAI stream as the SDKs do: "data:" lines, each a JSON object,
// until "data: [DONE]"; other lines (event:, comments, blanks) are skipped. A line after
// [DONE] fails.
func openAIStream(t *testing.T, body io.Reader) []map[string]any {
	t.Helper()
	sc := bufio.NewScanner(body)
	var chunks []map[string]any
	done := false
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			if strings.HasPrefix(line, "event:") {
				t.Errorf("an OpenAI stream with an event line: %q", line)
			}
			continue
		}
		if done {
			t.Fatalf("data after [DONE]: %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		chunks = append(chunks, m)
	}
	if !done {
		t.Fatalf("the stream ended without [DONE] after %d chunks", len(chunks))
	}
	return chunks
}

func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}
