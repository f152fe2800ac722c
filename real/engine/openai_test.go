package engine

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

const servedModel = "Qwen/Qwen2.5-0.5B-Instruct"

// fakeOpenAI mimics vLLM's OpenAI-compatible server: /v1/models (empty for the first
// hiddenPolls polls), /v1/completions streaming textgen's tokens as chunks with a role-less
// first chunk, comment lines, a usage chunk and [DONE]; it checks the bearer key.
type fakeOpenAI struct {
	srv     *httptest.Server
	eosMean int
	key     string

	mu          sync.Mutex
	hiddenPolls int
	modelPolls  int
	status      int // not 0: /v1/completions answers this
	retryAfter  string
	bodies      []openAIBody
	stream      func(w http.ResponseWriter, r *http.Request, b openAIBody)
}

type openAIBody struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	MaxTokens int    `json:"max_tokens"`
	Seed      int64  `json:"seed"`
	Stream    bool   `json:"stream"`
}

func newFakeOpenAI(t *testing.T, eosMean int, key string) *fakeOpenAI {
	f := &fakeOpenAI{eosMean: eosMean, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", f.models)
	mux.HandleFunc("POST /v1/completions", f.completions)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.key != "" && r.Header.Get("Authorization") != "Bearer "+f.key {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"Unauthorized"}`)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenAI) set(edit func(f *fakeOpenAI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f)
}

func (f *fakeOpenAI) models(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.modelPolls++
	hidden := f.modelPolls <= f.hiddenPolls
	f.mu.Unlock()
	ids := []string{"other-model"}
	if !hidden {
		ids = append(ids, servedModel)
	}
	var data []map[string]any
	for _, id := range ids {
		data = append(data, map[string]any{"id": id, "object": "model", "owned_by": "vllm", "max_model_len": 4096})
	}
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

func (f *fakeOpenAI) completions(w http.ResponseWriter, r *http.Request) {
	var b openAIBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, b)
	status, retry, stream := f.status, f.retryAfter, f.stream
	f.mu.Unlock()
	if status != 0 {
		refuse(w, status, retry, fmt.Sprintf(`{"object":"error","message":"fake refusal %d","type":"ServiceUnavailableError","code":%d}`, status, status))
		return
	}
	if b.Model != servedModel {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"object":"error","message":"The model %s does not exist.","type":"NotFoundError","code":404}`, b.Model)
		return
	}
	if !b.Stream {
		texts, reason := textgen.Completion(b.Prompt, uint64(b.Seed), b.MaxTokens, f.eosMean)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "cmpl-1", "object": "text_completion",
			"choices": []map[string]any{{"index": 0, "text": strings.Join(texts, ""), "finish_reason": string(reason)}}})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	if stream != nil {
		stream(w, r, b)
		return
	}
	texts, reason := textgen.Completion(b.Prompt, uint64(b.Seed), b.MaxTokens, f.eosMean)
	chunk := func(text string, finish any) string {
		c, _ := json.Marshal(map[string]any{"id": "cmpl-1", "object": "text_completion", "created": 1,
			"model": b.Model, "choices": []map[string]any{{"index": 0, "text": text, "logprobs": nil,
				"finish_reason": finish, "stop_reason": nil}}, "usage": nil})
		return "data: " + string(c) + "\n\n"
	}
	sseWrite(w, ": ping\n\n", chunk("", nil))
	for i, text := range texts {
		var finish any
		if i == len(texts)-1 {
			finish = string(reason)
		}
		sseWrite(w, chunk(text, finish))
		if i%3 == 1 {
			sseWrite(w, "data: not json at all\n\n", ":\n\n")
		}
	}
	sseWrite(w, `data: {"id":"cmpl-1","object":"text_completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}`+"\n\n",
		"data: [DONE]\n\n")
}

func openAIConfig(url string) OpenAIConfig {
	return OpenAIConfig{URL: url, Model: servedModel, APIKey: "sk-test", PollInterval: 2 * time.Millisecond,
		LoadTimeout: waitLimit}
}

// The load waits until the model is listed; completions come out exactly as streamed, with
// both finish reasons, the key sent and the seed kept in int64.
func TestOpenAILoadAndComplete(t *testing.T) {
	const eosMean = 8
	f := newFakeOpenAI(t, eosMean, "sk-test")
	f.set(func(f *fakeOpenAI) { f.hiddenPolls = 2 })
	cfg := openAIConfig(f.srv.URL + "/v1/")
	p, rec := mkPort(t)(NewOpenAI(cfg))
	load(t, p, rec, 0)
	f.set(func(f *fakeOpenAI) {
		if f.modelPolls != 3 {
			t.Errorf("%d model list polls, want 3", f.modelPolls)
		}
	})
	type want struct {
		texts  []string
		reason api.FinishReason
	}
	wants := map[uint64]want{}
	for i, prompt := range prompts {
		for j := range 3 {
			id := uint64(10*i + j)
			seed := uint64(j)<<63 | uint64(i)
			maxTokens := 1 + 2*i + j
			texts, reason := textgen.Completion(prompt, uint64(openAISeed(seed)), maxTokens, eosMean)
			wants[id] = want{texts, reason}
			p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: prompt, PromptTokens: 2, MaxTokens: maxTokens, Seed: seed})
		}
	}
	var got []sent
	for id := range wants {
		got = rec.waitDone(t, id)
	}
	checkProtocol(t, got, workerAddr)
	reasons := map[api.FinishReason]int{}
	for id, w := range wants {
		toks, done := completion(got, id)
		if !slices.Equal(toks, w.texts) || done.Reason != w.reason || !done.Err.OK() {
			t.Errorf("request %d: got %q then %+v, want %q then %s", id, toks, *done, w.texts, w.reason)
		}
		reasons[done.Reason]++
	}
	if reasons[api.FinishStop] == 0 || reasons[api.FinishLength] == 0 {
		t.Errorf("finish reasons %v: want both", reasons)
	}
	for _, b := range f.bodies {
		if b.Seed < 0 || !b.Stream || b.Model != servedModel {
			t.Errorf("posted %+v: want a non-negative seed, stream on, model %s", b, servedModel)
		}
	}
}

// 429 (with Retry-After) and 503 are ALL_SLOTS_BUSY; 404 and 401 say what to check.
func TestOpenAIRefusals(t *testing.T) {
	f := newFakeOpenAI(t, 0, "sk-test")
	p, rec := mkPort(t)(NewOpenAI(openAIConfig(f.srv.URL)))
	load(t, p, rec, 0)
	gen := func(id uint64) *api.EngineDone {
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: "p", PromptTokens: 1, MaxTokens: 4})
		_, done := completion(rec.waitDone(t, id), id)
		return done
	}
	f.set(func(f *fakeOpenAI) { f.status, f.retryAfter = http.StatusTooManyRequests, "7" })
	done := gen(1)
	wantError(t, done, api.CodeAllSlotsBusy, "429", "fake refusal 429")
	if !strings.Contains(done.Err.Suggestion, "retry after 7s") {
		t.Errorf("suggestion %q does not pass on Retry-After: 7", done.Err.Suggestion)
	}
	f.set(func(f *fakeOpenAI) {
		f.status, f.retryAfter = http.StatusTooManyRequests, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	})
	if done := gen(2); done.Err.Code != api.CodeAllSlotsBusy || !strings.Contains(done.Err.Suggestion, "retry after") {
		t.Errorf("429 with an HTTP-date Retry-After: %+v", done.Err)
	}
	f.set(func(f *fakeOpenAI) { f.status, f.retryAfter = http.StatusServiceUnavailable, "" })
	wantError(t, gen(3), api.CodeAllSlotsBusy, "503")
	f.set(func(f *fakeOpenAI) { f.status = http.StatusBadRequest })
	wantError(t, gen(4), api.CodeEngineError, "400", "fake refusal 400")

	f.set(func(f *fakeOpenAI) { f.status = 0 })
	cfg := openAIConfig(f.srv.URL)
	cfg.Model, cfg.LoadTimeout = "", time.Hour // EngineLoad's Model, which the server lists
	p2, rec2 := mkPort(t)(NewOpenAI(cfg))
	p2.Deliver(workerAddr, api.EngineLoad{Model: "other-model"})
	rec2.waitLoaded(t)
	p2.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "p", PromptTokens: 1, MaxTokens: 4})
	_, done = completion(rec2.waitDone(t, 1), 1)
	wantError(t, done, api.CodeEngineError, "does not serve model \"other-model\"", "does not exist")

	f.set(func(f *fakeOpenAI) { f.key = "sk-rotated" })
	wantError(t, gen(5), api.CodeEngineError, "refused request 5", "401")
	p3, rec3 := mkPort(t)(NewOpenAI(cfg))
	p3.Deliver(workerAddr, api.EngineLoad{Model: servedModel})
	l, _ := rec3.waitLoaded(t)
	if l.Err.Code != api.CodeEngineError || !strings.Contains(l.Err.Suggestion, "APIKey") {
		t.Errorf("load with a wrong key: %+v, want ENGINE_ERROR at once suggesting APIKey", l.Err)
	}
	checkProtocol(t, rec.all(), workerAddr)
}

// Error chunks (OpenAI's and vLLM's spelling), a broken stream and one without an end fail
// the completion; [DONE] without a finish reason is judged by the count; a finish reason of
// "abort" is an error.
func TestOpenAIStreamErrors(t *testing.T) {
	f := newFakeOpenAI(t, 0, "")
	tok := `data: {"choices":[{"index":0,"text":" a","finish_reason":null}]}` + "\n\n"
	f.set(func(f *fakeOpenAI) {
		f.stream = func(w http.ResponseWriter, r *http.Request, b openAIBody) {
			switch b.Prompt {
			case "openai error":
				sseWrite(w, tok, `data: {"error":{"message":"out of memory","type":"server_error","code":500}}`+"\n\n")
			case "vllm error":
				sseWrite(w, tok, tok, `data: {"object":"error","message":"engine dead","type":"InternalServerError","code":500}`+"\n\n")
			case "no end":
				sseWrite(w, tok)
			case "done without reason":
				sseWrite(w, tok, tok, "data: [DONE]\n\n")
			case "abort":
				sseWrite(w, tok, `data: {"choices":[{"index":0,"text":"","finish_reason":"abort"}]}`+"\n\n", "data: [DONE]\n\n")
			case "other choice":
				sseWrite(w, `data: {"choices":[{"index":1,"text":" zz","finish_reason":"stop"}]}`+"\n\n", tok,
					`data: {"choices":[{"index":0,"text":" b","finish_reason":"length"}]}`+"\n\n")
			}
		}
	})
	cfg := openAIConfig(f.srv.URL)
	cfg.APIKey = ""
	p, rec := mkPort(t)(NewOpenAI(cfg))
	load(t, p, rec, 0)
	cases := []struct {
		prompt string
		tokens int
		reason api.FinishReason
		parts  []string
	}{
		{"openai error", 1, api.FinishError, []string{"out of memory", "after 1 tokens"}},
		{"vllm error", 2, api.FinishError, []string{"engine dead"}},
		{"no end", 1, api.FinishError, []string{"without a finish_reason or [DONE]"}},
		{"done without reason", 2, api.FinishStop, nil},
		{"abort", 1, api.FinishError, []string{"aborted"}},
		{"other choice", 2, api.FinishLength, nil},
	}
	for i, c := range cases {
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: uint64(i), Prompt: c.prompt, PromptTokens: 1, MaxTokens: 10})
	}
	for i, c := range cases {
		toks, done := completion(rec.waitDone(t, uint64(i)), uint64(i))
		if len(toks) != c.tokens || done.Reason != c.reason {
			t.Errorf("%s: %d tokens then %+v, want %d then %s", c.prompt, len(toks), *done, c.tokens, c.reason)
		}
		if c.reason == api.FinishError {
			wantError(t, done, api.CodeEngineError, c.parts...)
		}
	}
	checkProtocol(t, rec.all(), workerAddr)
}

// A server that ignores "stream" and answers the whole completion as JSON: one token with
// all the text and its finish reason.
func TestOpenAINotStreamed(t *testing.T) {
	f := newFakeOpenAI(t, 0, "")
	cfg := openAIConfig(f.srv.URL)
	cfg.Params = map[string]any{"stream": false, "temperature": 0} // Params cannot turn streaming off...
	p, rec := mkPort(t)(NewOpenAI(cfg))
	load(t, p, rec, 0)
	f.set(func(f *fakeOpenAI) {
		f.stream = func(w http.ResponseWriter, r *http.Request, b openAIBody) {
			// ...so this fake plays a server that ignores it.
			w.Header().Set("Content-Type", "application/json")
			texts, _ := textgen.Completion(b.Prompt, uint64(b.Seed), b.MaxTokens, 0)
			json.NewEncoder(w).Encode(map[string]any{"choices": []map[string]any{{"index": 0,
				"text": strings.Join(texts, ""), "finish_reason": "length"}}})
		}
	})
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "p", PromptTokens: 1, MaxTokens: 4, Seed: 2})
	texts, _ := textgen.Completion("p", 2, 4, 0)
	if toks, done := completion(rec.waitDone(t, 1), 1); !slices.Equal(toks, []string{strings.Join(texts, "")}) ||
		done.Reason != api.FinishLength {
		t.Errorf("got %q then %+v, want one token %q then length", toks, *done, strings.Join(texts, ""))
	}
}

// EngineStop mid-stream: nothing more is sent and the server sees the connection close.
func TestOpenAIStop(t *testing.T) {
	f := newFakeOpenAI(t, 0, "")
	closed := make(chan struct{})
	f.set(func(f *fakeOpenAI) {
		f.stream = func(w http.ResponseWriter, r *http.Request, b openAIBody) {
			for range 2 {
				sseWrite(w, `data: {"choices":[{"index":0,"text":" a","finish_reason":null}]}`+"\n\n")
			}
			<-r.Context().Done()
			close(closed)
		}
	})
	p, rec := mkPort(t)(NewOpenAI(openAIConfig(f.srv.URL)))
	load(t, p, rec, 0)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 3, Prompt: "p", PromptTokens: 1, MaxTokens: 50})
	rec.waitTokens(t, 3, 2)
	p.Deliver(workerAddr, api.EngineStop{ReqID: 3})
	n := len(rec.all())
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("the server did not see the connection close after EngineStop")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != n {
		t.Errorf("sent after EngineStop:%s", dump(got[n:]))
	}
}

// A model that never shows up: LOADING_TIMEOUT naming the models the server does list.
func TestOpenAILoadTimeout(t *testing.T) {
	f := newFakeOpenAI(t, 0, "")
	f.set(func(f *fakeOpenAI) { f.hiddenPolls = 1 << 30 })
	cfg := openAIConfig(f.srv.URL)
	cfg.LoadTimeout = 100 * time.Millisecond
	p, rec := mkPort(t)(NewOpenAI(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m", SizeBytes: 1 << 40})
	l, pct := rec.waitLoaded(t)
	if l.Err.Code != api.CodeLoadingTimeout {
		t.Fatalf("EngineLoaded %+v, want LOADING_TIMEOUT", l)
	}
	checkMessage(t, l.Err, "did not become ready within 100ms", "other-model", servedModel)
	if slices.Contains(pct, 100) {
		t.Errorf("progress %v reached 100 for a failed load", pct)
	}
}

func TestOpenAIConfig(t *testing.T) {
	for _, c := range []OpenAIConfig{{}, {URL: "/v1"}, {URL: "http://x", PollInterval: -1}} {
		if _, err := NewOpenAI(c); err == nil {
			t.Errorf("NewOpenAI(%+v) took an invalid config", c)
		}
	}
}
