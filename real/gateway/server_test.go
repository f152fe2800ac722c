package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real/auth"
)

// The stream is framed and flushed token by token: the fake queen sends each token only when
// the test asks, and the test reads it before asking for the next (an unflushed event would
// never arrive).
func TestInferenceStreamsEachTokenAsItComes(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": modelGated, "prompt": "one two three", "max_tokens": 8, "seed": 42,
		"timeout_ms": 60000, "max_time_ms": 30000}, "")
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ev := readEvents(t, resp.Body)
	var acc AcceptedEvent
	ev.expect("accepted", &acc)
	if acc.Worker != "worker-g" || acc.RequestID == "" {
		t.Fatalf("accepted %+v", acc)
	}
	var got api.InferReq
	h.queen(func(q *fakeQueen) { got = q.reqs[0] })
	if strconv.FormatUint(got.ReqID, 10) != acc.RequestID || got.Model != modelGated || got.Prompt != "one two three" ||
		got.MaxTokens != 8 || got.Seed != 42 || got.Timeout != time.Minute || got.MaxTime != 30*time.Second {
		t.Fatalf("the queen got %+v; the accepted event names %s", got, acc.RequestID)
	}
	for i := range 3 {
		h.rt.Inject("test", queenAddr, emit{})
		var tok TokenEvent
		ev.expect("token", &tok)
		if want := (TokenEvent{Index: i, Text: " g" + strconv.Itoa(i)}); tok != want {
			t.Fatalf("token %+v, want %+v", tok, want)
		}
	}
	h.rt.Inject("test", queenAddr, finish{})
	var done DoneEvent
	ev.expect("done", &done)
	want := DoneEvent{RequestID: acc.RequestID, FinishReason: api.FinishStop, Worker: "worker-g",
		Usage: Usage{PromptTokens: 3, CompletionTokens: 3, TotalTokens: 6}}
	if done.Error != nil || done != want {
		t.Fatalf("done %+v, want %+v", done, want)
	}
	if x, ok := <-ev.ch; !ok || x.err != io.EOF {
		t.Fatalf("after done: %+v, want the end of the stream", x)
	}
}

// The raw framing of a whole stream, byte for byte where it is fixed.
func TestInferenceEventFraming(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": "tiny", "prompt": "hi", "max_tokens": 2}, "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var id string
	h.queen(func(q *fakeQueen) { id = strconv.FormatUint(q.reqs[0].ReqID, 10) })
	want := "event: accepted\ndata: {\"request_id\":\"" + id + "\",\"worker\":\"worker-1\"}\n\n" +
		"event: token\ndata: {\"index\":0,\"text\":\" tok0\"}\n\n" +
		"event: token\ndata: {\"index\":1,\"text\":\" tok1\"}\n\n" +
		"event: done\ndata: {\"request_id\":\"" + id + "\",\"finish_reason\":\"length\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3},\"worker\":\"worker-1\"}\n\n"
	if string(b) != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", b, want)
	}
	var model string
	h.queen(func(q *fakeQueen) { model = q.reqs[0].Model })
	if model != modelOK {
		t.Errorf("the alias tiny reached the queen as %q, want %q", model, modelOK)
	}
}

// A failure after acceptance is the done event's error; the tokens already sent stand.
func TestInferenceFailureAfterAcceptance(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": modelLost, "prompt": "hi", "max_tokens": 5}, "")
	defer resp.Body.Close()
	ev := readEvents(t, resp.Body)
	ev.expect("accepted", nil)
	ev.expect("token", nil)
	ev.expect("token", nil)
	var done DoneEvent
	ev.expect("done", &done)
	if done.FinishReason != api.FinishError || done.Error == nil || done.Error.Code != api.CodeWorkerLost || done.Usage.CompletionTokens != 2 {
		t.Fatalf("done %+v", done)
	}
}

func TestInferenceRefusals(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		name, model string
		status      int
		code        api.Code
		retryAfter  string
	}{
		{"busy", modelBusy, 503, api.CodeAllSlotsBusy, "1"},
		{"not served", "hf:nobody/serves/this.gguf", 404, api.CodeModelNotServed, ""},
		{"alias of nothing served", "ghost", 404, api.CodeModelNotServed, ""},
		{"deadline", modelDeadline, 408, api.CodeDeadlineExceeded, ""},
		{"no worker", modelNoWorker, 503, api.CodeNoWorkerAvailable, "5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": c.model, "prompt": "hi", "max_tokens": 4}, "")
			e := errorOf(t, resp, c.status)
			if e["code"] != string(c.code) {
				t.Errorf("code %v, want %s", e["code"], c.code)
			}
			if got := resp.Header.Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
		})
	}
}

// Bad input is refused with 400 (or 413/415) before anything reaches the queen, and the
// message names the problem.
func TestInferenceValidation(t *testing.T) {
	h := newHarness(t, func(c *ServerConfig) { c.MaxBodyBytes = 4096 })
	for _, c := range []struct {
		name   string
		body   any
		status int
		says   []string
	}{
		{"empty body", "", 400, []string{"empty"}},
		{"not JSON", "{model", 400, []string{"not valid"}},
		{"unknown field", `{"model":"x","prompt":"p","max_tokens":1,"max_token":2}`, 400, []string{"max_token"}},
		{"everything wrong", map[string]any{"model": "", "prompt": " ", "timeout_ms": -1, "max_time_ms": -5}, 400,
			[]string{"no model", "prompt is empty", "max_tokens is missing", "timeout_ms is -1", "max_time_ms is -5"}},
		{"zero tokens", map[string]any{"model": "m", "prompt": "p", "max_tokens": 0}, 400, []string{"max_tokens is 0"}},
		{"model with a space", map[string]any{"model": "a b", "prompt": "p", "max_tokens": 1}, 400, []string{"whitespace"}},
		{"negative seed", `{"model":"m","prompt":"p","max_tokens":1,"seed":-1}`, 400, []string{"field seed must be a whole number, 0 or more, not a JSON number"}},
		{"prompt not a string", `{"model":"m","prompt":["p"],"max_tokens":1}`, 400, []string{"field prompt must be a string, not a JSON array"}},
		{"two values", `{"model":"m","prompt":"p","max_tokens":1} {}`, 400, []string{"more than one"}},
		{"too big", map[string]any{"model": "m", "prompt": strings.Repeat("x", 5000), "max_tokens": 1}, 413, []string{"larger than 4096"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := errorOf(t, h.do(nil, "POST", "/v1/inference", c.body, ""), c.status)
			if e["code"] != string(api.CodeInvalidRequest) {
				t.Errorf("code %v", e["code"])
			}
			for _, s := range c.says {
				if msg := e["message"].(string); !strings.Contains(msg, s) {
					t.Errorf("message %q does not say %q", msg, s)
				}
			}
		})
	}
	req, _ := http.NewRequest("POST", h.ts.URL+"/v1/inference", strings.NewReader("model=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	auth.SetBearer(req, testKey)
	resp, err := h.ts.Client().Do(req)
	must(t, err)
	errorOf(t, resp, 415)
	var n int
	h.queen(func(q *fakeQueen) { n = len(q.reqs) })
	if n != 0 {
		t.Fatalf("invalid requests reached the queen: %d", n)
	}
}

// A queen that does not answer: the request is resent under the same ReqID, then refused 503
// QUEEN_UNAVAILABLE with Retry-After, and cancelled at the queen in case it shows up.
func TestQueenUnavailable(t *testing.T) {
	h := newHarness(t, func(c *ServerConfig) { c.QueenTimeout, c.ResendInterval = 300*time.Millisecond, 50*time.Millisecond })
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": modelSilent, "prompt": "p", "max_tokens": 1}, "")
	e := errorOf(t, resp, 503)
	if e["code"] != string(CodeQueenUnavailable) || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("error %v, Retry-After %q", e, resp.Header.Get("Retry-After"))
	}
	var reqs []api.InferReq
	var cancels []uint64
	eventually(t, "the cancel", func() bool {
		h.queen(func(q *fakeQueen) { reqs, cancels = slices.Clone(q.reqs), slices.Clone(q.cancels) })
		return len(cancels) == 1
	})
	if len(reqs) < 3 {
		t.Fatalf("the request was sent %d times in 300ms with a 50ms resend interval", len(reqs))
	}
	for _, r := range reqs {
		if r.ReqID != reqs[0].ReqID {
			t.Fatalf("resends with different ReqIDs: %v", reqs)
		}
	}
	if cancels[0] != reqs[0].ReqID {
		t.Fatalf("cancelled %d, sent %d", cancels[0], reqs[0].ReqID)
	}
}

// The client closing its connection cancels the request at the queen.
func TestClientDisconnectCancelsAtQueen(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.do(ctx, "POST", "/v1/inference", map[string]any{"model": modelGated, "prompt": "p", "max_tokens": 100}, "")
	ev := readEvents(t, resp.Body)
	var acc AcceptedEvent
	ev.expect("accepted", &acc)
	h.rt.Inject("test", queenAddr, emit{})
	ev.expect("token", nil)
	cancel()
	resp.Body.Close()
	eventually(t, "the queen to get InferCancel", func() bool {
		var c []uint64
		h.queen(func(q *fakeQueen) { c = slices.Clone(q.cancels) })
		return len(c) == 1 && strconv.FormatUint(c[0], 10) == acc.RequestID
	})
}

func TestDeleteCancels(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": modelGated, "prompt": "p", "max_tokens": 100}, "")
	defer resp.Body.Close()
	ev := readEvents(t, resp.Body)
	var acc AcceptedEvent
	ev.expect("accepted", &acc)
	h.rt.Inject("test", queenAddr, emit{})
	ev.expect("token", nil)
	del := h.do(nil, "DELETE", "/v1/inference/"+acc.RequestID, nil, "")
	del.Body.Close()
	if del.StatusCode != 204 {
		t.Fatalf("DELETE: %d", del.StatusCode)
	}
	var done DoneEvent
	ev.expect("done", &done)
	if done.FinishReason != api.FinishCancelled || done.Error == nil || done.Error.Code != api.CodeCancelled || done.Usage.CompletionTokens != 1 {
		t.Fatalf("done %+v", done)
	}
	for _, id := range []string{"12345", "cmpl-12345", "chatcmpl-999"} { // unknown: 204 all the same
		if r := h.do(nil, "DELETE", "/v1/inference/"+id, nil, ""); r.StatusCode != 204 {
			t.Errorf("DELETE %s: %d", id, r.StatusCode)
		}
	}
	errorOf(t, h.do(nil, "DELETE", "/v1/inference/abc", nil, ""), 400)
	errorOf(t, h.do(nil, "DELETE", "/v1/inference/0", nil, ""), 400)
}

func TestWorkersAndModels(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do(nil, "GET", "/v1/workers", nil, "")
	var wr WorkersResponse
	must(t, json.NewDecoder(resp.Body).Decode(&wr))
	resp.Body.Close()
	if resp.StatusCode != 200 || wr.Epoch != 7 || len(wr.Workers) != 3 || wr.Workers[1].ID != "worker-2" || wr.Workers[1].State != api.StateBusy ||
		wr.Workers[1].Capability != "cpu" || wr.Workers[1].Version != 4 {
		t.Fatalf("GET /v1/workers: %d %+v", resp.StatusCode, wr)
	}
	resp = h.do(nil, "GET", "/v1/workers?model=tiny&capability=cpu", nil, "")
	wr = WorkersResponse{}
	must(t, json.NewDecoder(resp.Body).Decode(&wr))
	resp.Body.Close()
	if len(wr.Workers) != 1 || wr.Workers[0].ID != "worker-3" {
		t.Fatalf("filtered by the alias tiny and cpu: %+v", wr)
	}

	resp = h.do(nil, "GET", "/v1/models", nil, "")
	var raw map[string]any
	must(t, json.NewDecoder(resp.Body).Decode(&raw))
	resp.Body.Close()
	b, _ := json.Marshal(raw)
	want := `{"data":[{"created":0,"id":"hf:test/gated/m.gguf","object":"model","owned_by":"rbee"},` +
		`{"created":0,"id":"hf:test/ok/m.gguf","object":"model","owned_by":"rbee"},` +
		`{"created":0,"id":"tiny","object":"model","owned_by":"rbee","root":"hf:test/ok/m.gguf"}],"object":"list"}`
	if string(b) != want {
		t.Fatalf("GET /v1/models:\n%s\nwant\n%s", b, want)
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, func(c *ServerConfig) { c.HealthTimeout, c.QueenTimeout = 100*time.Millisecond, 200*time.Millisecond })
	check := func(status int, want Health) {
		t.Helper()
		resp := h.do(nil, "GET", "/health", nil, "")
		var got Health
		must(t, json.NewDecoder(resp.Body).Decode(&got))
		resp.Body.Close()
		if resp.StatusCode != status || got != want {
			t.Fatalf("GET /health: %d %+v, want %d %+v", resp.StatusCode, got, status, want)
		}
	}
	check(200, Health{Status: "ok", Queen: "reachable"})
	must(t, h.rt.Crash(queenAddr))
	check(503, Health{Status: "degraded", Queen: "unreachable"})
	errorOf(t, h.do(nil, "GET", "/v1/workers", nil, ""), 503)
}

func TestAuth(t *testing.T) {
	h := newHarness(t, nil)
	for _, path := range []string{"/v1/inference", "/v1/completions", "/v1/chat/completions"} {
		for _, key := range []string{"-", "wrong-key-0123456789abcdef"} {
			resp := h.do(nil, "POST", path, map[string]any{"model": modelOK, "prompt": "p", "max_tokens": 1}, key)
			e := errorOf(t, resp, 401)
			if e["code"] != string(auth.CodeUnauthorized) || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with key %q: %v", path, key, e)
			}
			if openAI := strings.Contains(path, "completions"); openAI != (e["type"] == "authentication_error") {
				t.Errorf("%s: type %v", path, e["type"])
			}
		}
	}
	for _, path := range []string{"/v1/workers", "/v1/models", "/health"} {
		errorOf(t, h.do(nil, "GET", path, nil, "-"), 401)
	}
	errorOf(t, h.do(nil, "DELETE", "/v1/inference/1", nil, "-"), 401)
	var n int
	h.queen(func(q *fakeQueen) { n = len(q.reqs) + q.lists + len(q.cancels) })
	if n != 0 {
		t.Fatalf("unauthenticated requests reached the queen: %d messages", n)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	h := newHarness(t, nil)
	e := errorOf(t, h.do(nil, "GET", "/v2/nothing", nil, ""), 404)
	if e["code"] != string(CodeNotFound) {
		t.Errorf("code %v", e["code"])
	}
	resp := h.do(nil, "GET", "/v1/inference", nil, "")
	e = errorOf(t, resp, 405)
	if e["code"] != string(CodeMethodNotAllowed) || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /v1/inference: %v, Allow %q", e, resp.Header.Get("Allow"))
	}
	resp = h.do(nil, "GET", "/v1/chat/completions", nil, "")
	if e = errorOf(t, resp, 405); e["type"] != "invalid_request_error" {
		t.Errorf("GET /v1/chat/completions: %v", e)
	}
}

// A queen that goes silent in the middle of a stream: keepalive comments, then a done with
// QUEEN_UNAVAILABLE, and a cancel to the queen.
func TestStreamStall(t *testing.T) {
	h := newHarness(t, func(c *ServerConfig) { c.KeepAlive, c.StreamStallTimeout = 50*time.Millisecond, 300*time.Millisecond })
	resp := h.do(nil, "POST", "/v1/inference", map[string]any{"model": modelGated, "prompt": "p", "max_tokens": 100}, "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := string(b)
	if !strings.Contains(s, ": keepalive\n\n") {
		t.Errorf("no keepalive comment in %q", s)
	}
	evs := readEvents(t, strings.NewReader(s))
	evs.expect("accepted", nil)
	var done DoneEvent
	evs.expect("done", &done)
	if done.Error == nil || done.Error.Code != CodeQueenUnavailable {
		t.Fatalf("done %+v", done)
	}
	var c []uint64
	h.queen(func(q *fakeQueen) { c = q.cancels })
	if len(c) != 1 {
		t.Fatalf("cancels at the queen: %v", c)
	}
}

func TestServerConfigValidate(t *testing.T) {
	_, err := NewServer(ServerConfig{Policy: auth.Policy{Keys: []string{"short"}}, QueenTimeout: -1,
		Aliases: map[string]string{"a b": "x"}})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, s := range []string{"Queen is empty", "at least 16", "QueenTimeout", `alias "a b"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%v does not say %q", err, s)
		}
	}
}
