package engine

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// llamaConfig is a config for a fake at url that polls often.
func llamaConfig(url string) LlamaServerConfig {
	return LlamaServerConfig{URL: url, PollInterval: 2 * time.Millisecond, LoadTimeout: waitLimit,
		AdmitWait: waitLimit}
}

// The load waits out "503 Loading model", reports rising progress and 100 last; then many
// completions at once come out token for token as the server streamed them, with stop and
// length told apart by stop_type, by the older stopped_* fields, and without blank lines.
func TestLlamaLoadAndComplete(t *testing.T) {
	const eosMean = 10
	f := newFakeLlama(t, 4, eosMean)
	f.set(func(f *fakeLlama) { f.loadingPolls = 3 })
	cfg := llamaConfig(f.srv.URL)
	cfg.LoadBytesPerSec = 1 << 20 // a 100 MiB model "takes" 100 s: progress stays low
	cfg.Params = map[string]any{"temperature": 0.5, "n_predict": 999999, "stream": false}
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	pct := load(t, p, rec, 100<<20)
	if health, _, _ := f.counts(); health != 4 {
		t.Errorf("%d health polls, want 3 answered 503 and one 200", health)
	}
	if len(pct) == 0 || pct[len(pct)-1] != 100 || !slices.IsSorted(pct) || slices.Contains(pct[:len(pct)-1], 100) {
		t.Errorf("progress %v: want rising, 100 last and only last", pct)
	}

	id := uint64(1)
	reasons := map[api.FinishReason]int{}
	for _, mode := range []string{"stop_type", "stopped_*", "no blank lines"} {
		f.set(func(f *fakeLlama) { f.oldFields, f.noBlankLines = mode == "stopped_*", mode == "no blank lines" })
		type want struct {
			texts  []string
			reason api.FinishReason
		}
		wants := map[uint64]want{}
		for i, prompt := range prompts {
			seed := uint64(i)<<33 | 0xFFFFFFFF // high bits and llama.cpp's "random" seed both
			maxTokens := 5 + 6*i
			texts, reason := textgen.Completion(prompt, uint64(llamaSeed(seed)), maxTokens, eosMean)
			wants[id] = want{texts, reason}
			p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: prompt, PromptTokens: 2, MaxTokens: maxTokens, Seed: seed})
			id++
		}
		var got []sent
		for id := range wants {
			got = rec.waitDone(t, id)
		}
		checkProtocol(t, got, workerAddr)
		for id, w := range wants {
			toks, done := completion(got, id)
			if !slices.Equal(toks, w.texts) || done.Reason != w.reason || !done.Err.OK() {
				t.Errorf("%s: request %d: got %q then %+v, want %q then %s", mode, id, toks, *done, w.texts, w.reason)
			}
			reasons[done.Reason]++
		}
	}
	if reasons[api.FinishStop] == 0 || reasons[api.FinishLength] == 0 {
		t.Errorf("finish reasons %v: want both", reasons)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.posts {
		if !b.Stream || !b.CachePrompt || b.Temperature != 0.5 || b.Seed == 0xFFFFFFFF || b.NPredict > 50 {
			t.Errorf("posted %+v: want stream and cache_prompt on, temperature 0.5 from Params, the engine's n_predict, a seed other than -1",
				b)
		}
	}
}

// EngineStop mid-stream: nothing more is sent for the request, the server sees its
// connection closed, and the engine checks /slots that the slot went idle.
func TestLlamaStopClosesConnection(t *testing.T) {
	f := newFakeLlama(t, 2, 0)
	closed := make(chan struct{})
	f.set(func(f *fakeLlama) {
		f.stream = func(w http.ResponseWriter, r *http.Request, b llamaBody) {
			for i := range 3 {
				sseWrite(w, fmt.Sprintf("data: {\"content\":\" t%d\",\"stop\":false,\"id_slot\":0}\n\n", i))
			}
			<-r.Context().Done()
			close(closed)
		}
	})
	logs := &logBuffer{}
	cfg := llamaConfig(f.srv.URL)
	cfg.Logger = logs.logger()
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 5, Prompt: "p", PromptTokens: 1, MaxTokens: 100, Seed: 1})
	rec.waitTokens(t, 5, 3)
	p.Deliver(workerAddr, api.EngineStop{ReqID: 5})
	n := len(rec.all())
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("the server did not see the connection close after EngineStop")
	}
	_, before, _ := f.counts()
	waitUntil(t, "a GET /slots after the stop", func() bool { _, after, _ := f.counts(); return after > before })
	waitUntil(t, "the engine's log that the slot is idle", func() bool { return strings.Contains(logs.String(), "slot is idle") })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != n {
		t.Errorf("sent after EngineStop:%s", dump(got[n:]))
	}
	if toks, done := completion(got, 5); len(toks) != 3 || done != nil {
		t.Errorf("got %q and end %+v, want 3 tokens and no end", toks, done)
	}
	if strings.Contains(logs.String(), "still busy") {
		t.Errorf("warned about a busy slot that went idle:\n%s", logs)
	}
}

// A slot that stays busy after a stop is logged as a warning.
func TestLlamaStopWarnsIfSlotStaysBusy(t *testing.T) {
	f := newFakeLlama(t, 1, 0)
	f.set(func(f *fakeLlama) {
		f.allBusy = true
		f.stream = func(w http.ResponseWriter, r *http.Request, b llamaBody) {
			sseWrite(w, "data: {\"content\":\" t\",\"stop\":false,\"id_slot\":0}\n\n")
			<-r.Context().Done()
		}
	})
	logs := &logBuffer{}
	cfg := llamaConfig(f.srv.URL)
	cfg.Logger, cfg.AdmitWait, cfg.StopCheck = logs.logger(), -1, 100*time.Millisecond
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 5, Prompt: "p", PromptTokens: 1, MaxTokens: 100, Seed: 1})
	rec.waitTokens(t, 5, 1)
	p.Deliver(workerAddr, api.EngineStop{ReqID: 5})
	waitUntil(t, "a warning that the slot is still busy", func() bool { return strings.Contains(logs.String(), "still busy") })
}

// Stream failures end the completion with ENGINE_ERROR, keeping the tokens already sent: an
// error event (three spellings), a stream without its final chunk, a broken connection, an
// error status.
func TestLlamaStreamErrors(t *testing.T) {
	f := newFakeLlama(t, 8, 0)
	tok := "data: {\"content\":\" a\",\"stop\":false}\n\n"
	f.set(func(f *fakeLlama) {
		f.stream = func(w http.ResponseWriter, r *http.Request, b llamaBody) {
			switch b.Prompt {
			case "error object":
				sseWrite(w, tok, ": comment\n\n", tok,
					`data: {"error":{"code":500,"message":"KV cache is full","type":"server_error"}}`+"\n\n", tok)
			case "error line":
				sseWrite(w, tok, `error: {"code":500,"message":"slot crashed","type":"server_error"}`+"\n\n", tok)
			case "error event":
				sseWrite(w, tok, "event: error\ndata: {\"message\":\"decode failed\"}\n\n", tok)
			case "no final chunk":
				sseWrite(w, tok, tok)
			case "broken":
				sseWrite(w, tok)
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					panic(err)
				}
				// The response was already started, chunked: write half a chunk (half an
				// event) and hang up.
				fmt.Fprintf(buf, "%x\r\n%s", 100, tok[:20])
				buf.Flush()
				conn.Close()
			}
		}
	})
	p, rec := mkPort(t)(NewLlamaServer(llamaConfig(f.srv.URL)))
	load(t, p, rec, 0)
	cases := []struct {
		prompt string
		tokens int
		parts  []string
	}{
		{"error object", 2, []string{"KV cache is full", "after 2 tokens"}},
		{"error line", 1, []string{"slot crashed"}},
		{"error event", 1, []string{"decode failed"}},
		{"no final chunk", 2, []string{"ended without its final chunk"}},
		{"broken", 1, []string{"stream broke"}},
	}
	for i, c := range cases {
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: uint64(i), Prompt: c.prompt, PromptTokens: 1, MaxTokens: 10})
	}
	for i, c := range cases {
		got := rec.waitDone(t, uint64(i))
		toks, done := completion(got, uint64(i))
		if len(toks) != c.tokens {
			t.Errorf("%s: %d tokens, want %d", c.prompt, len(toks), c.tokens)
		}
		t.Run(strings.ReplaceAll(c.prompt, " ", "_"), func(t *testing.T) { wantError(t, done, api.CodeEngineError, c.parts...) })
	}
	f.set(func(f *fakeLlama) { f.postStatus = http.StatusInternalServerError })
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 100, Prompt: "p", PromptTokens: 1, MaxTokens: 10})
	_, done := completion(rec.waitDone(t, 100), 100)
	wantError(t, done, api.CodeEngineError, "500", "fake refusal 500")
	checkProtocol(t, rec.all(), workerAddr)
}

// No free slot for AdmitWait, or a 503/429 answer, is ALL_SLOTS_BUSY; a server without
// /slots is not asked again and its completions run.
func TestLlamaBusy(t *testing.T) {
	f := newFakeLlama(t, 4, 0)
	cfg := llamaConfig(f.srv.URL)
	cfg.AdmitWait = 50 * time.Millisecond
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)

	f.set(func(f *fakeLlama) { f.allBusy = true })
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "p", PromptTokens: 1, MaxTokens: 3})
	_, done := completion(rec.waitDone(t, 1), 1)
	wantError(t, done, api.CodeAllSlotsBusy, "all 4 slots")
	if _, _, posts := f.counts(); posts != 0 {
		t.Errorf("%d completions posted while every slot was busy", posts)
	}

	f.set(func(f *fakeLlama) { f.allBusy, f.postStatus, f.retryAfter = false, http.StatusServiceUnavailable, "3" })
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 2, Prompt: "p", PromptTokens: 1, MaxTokens: 3})
	_, done = completion(rec.waitDone(t, 2), 2)
	wantError(t, done, api.CodeAllSlotsBusy, "503", "fake refusal 503")
	if !strings.Contains(done.Err.Suggestion, "3s") {
		t.Errorf("suggestion %q does not pass on Retry-After: 3", done.Err.Suggestion)
	}

	f.set(func(f *fakeLlama) { f.postStatus, f.slotsStatus = 0, http.StatusNotImplemented })
	for id := uint64(3); id < 5; id++ {
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: "p", PromptTokens: 1, MaxTokens: 3})
		if _, done := completion(rec.waitDone(t, id), id); done.Reason != api.FinishLength {
			t.Errorf("request %d without /slots: %+v, want length", id, *done)
		}
	}
	_, gets, _ := f.counts()
	f.set(func(f *fakeLlama) { f.slotsStatus = 0 })
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 5, Prompt: "p", PromptTokens: 1, MaxTokens: 3})
	rec.waitDone(t, 5)
	if _, after, _ := f.counts(); after != gets {
		t.Errorf("GET /slots asked again after it answered 501")
	}
	checkProtocol(t, rec.all(), workerAddr)
}

// A server that stays "Loading model" past LoadTimeout: EngineLoaded with LOADING_TIMEOUT and
// the last answer; a URL where nothing listens says so.
func TestLlamaLoadTimeout(t *testing.T) {
	f := newFakeLlama(t, 1, 0)
	f.set(func(f *fakeLlama) { f.loadingPolls = 1 << 30 })
	cfg := llamaConfig(f.srv.URL)
	cfg.LoadTimeout = 150 * time.Millisecond
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m", SizeBytes: 1})
	l, _ := rec.waitLoaded(t)
	if l.Err.Code != api.CodeLoadingTimeout {
		t.Fatalf("EngineLoaded %+v, want LOADING_TIMEOUT", l)
	}
	checkMessage(t, l.Err, "did not become ready within 150ms", `503 "Loading model`, f.srv.URL)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "p", PromptTokens: 1, MaxTokens: 3})
	_, done := completion(rec.waitDone(t, 1), 1)
	wantError(t, done, api.CodeEngineError, "no model is loaded")

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	cfg = llamaConfig(dead.URL)
	cfg.LoadTimeout = 50 * time.Millisecond
	p, rec = mkPort(t)(NewLlamaServer(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m"})
	l, _ = rec.waitLoaded(t)
	if l.Err.Code != api.CodeLoadingTimeout {
		t.Fatalf("EngineLoaded %+v, want LOADING_TIMEOUT", l)
	}
	checkMessage(t, l.Err, "connection refused")
	if !strings.Contains(l.Err.Suggestion, "Command is empty") {
		t.Errorf("suggestion %q should say the engine did not start the server", l.Err.Suggestion)
	}
}

// A server that refuses the key fails the load at once.
func TestLlamaLoadUnauthorized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}`)
			return
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	t.Cleanup(srv.Close)
	cfg := llamaConfig(srv.URL)
	cfg.APIKey = "wrong"
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m"})
	l, _ := rec.waitLoaded(t)
	if l.Err.Code != api.CodeEngineError || !strings.Contains(l.Err.Suggestion, "APIKey") {
		t.Fatalf("EngineLoaded %+v, want ENGINE_ERROR suggesting APIKey", l)
	}
	checkMessage(t, l.Err, "Invalid API Key")
	cfg.APIKey = "right"
	p, rec = mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)
}

func TestLlamaConfig(t *testing.T) {
	for _, c := range []LlamaServerConfig{{}, {URL: "localhost:8080"}, {URL: "ftp://x"}, {URL: "http://x", Command: []string{""}},
		{URL: "http://x", StopGrace: -1}, {URL: "http://x", LoadTimeout: -1}} {
		if _, err := NewLlamaServer(c); err == nil {
			t.Errorf("NewLlamaServer(%+v) took an invalid config", c)
		}
	}
	if s := llamaSeed(0xFFFFFFFF); s == 0xFFFFFFFF {
		t.Errorf("llamaSeed gives llama.cpp's random seed")
	}
}

// waitUntil polls cond (a guard against hangs, not a timing assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
