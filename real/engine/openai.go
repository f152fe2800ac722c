package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real"
)

// OpenAIConfig configures the OpenAI-compatible engine (vLLM, Ollama, llama-server's /v1).
type OpenAIConfig struct {
	// URL is the server's base URL, with or without the trailing /v1: vLLM
	// "http://127.0.0.1:8000", Ollama "http://127.0.0.1:11434"; required.
	URL string
	// Model is the model name the server knows ("Qwen/Qwen2.5-0.5B-Instruct", "llama3.2:1b");
	// empty means EngineLoad's Model (the worker's catalog ID, which servers rarely know).
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer KEY" (vLLM --api-key).
	APIKey string
	// LoadTimeout bounds a load: how long GET /v1/models may go without listing Model; 0
	// means DefaultLoadTimeout (5 min).
	LoadTimeout time.Duration
	// PollInterval is the period of the load's polls; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// LoadBytesPerSec is the rate load progress is estimated with; 0 means
	// DefaultLoadBytesPerSec (1 GiB/s).
	LoadBytesPerSec int64
	// Params are extra fields for every POST /v1/completions ("temperature", ...); the
	// engine's own fields (model, prompt, max_tokens, seed, stream) win.
	Params map[string]any
	// HTTPClient is the client; nil means one of the engine's own, without timeouts.
	HTTPClient *http.Client
	// Clock drives polls and timeouts; nil means clock.New().
	Clock clock.Clock
	// Logger receives the engine's logs; nil means discard.
	Logger *slog.Logger
}

// NewOpenAI returns the constructor of an OpenAI-compatible engine port, for
// real.Runtime.AddPort. It fails if cfg is invalid.
func NewOpenAI(cfg OpenAIConfig) (func(real.Send) real.Port, error) {
	u := strings.TrimRight(strings.TrimSpace(cfg.URL), "/")
	u = strings.TrimSuffix(u, "/v1")
	c, err := newHTTPCommon("OpenAI-compatible server", u, cfg.HTTPClient, cfg.APIKey, cfg.Clock, cfg.Logger,
		cfg.PollInterval, cfg.LoadTimeout, cfg.LoadBytesPerSec)
	if err != nil {
		return nil, err
	}
	return func(send real.Send) real.Port {
		return newPort(&openAI{httpCommon: c, cfg: cfg}, send, cfg.Logger, 0)
	}, nil
}

// openAI is the OpenAI-compatible engine's backend.
type openAI struct {
	httpCommon
	cfg   OpenAIConfig
	model atomicString // the model name of the last load
}

// load polls GET /v1/models until the model is listed.
func (o *openAI) load(ctx context.Context, m api.EngineLoad, progress func(float64)) api.Error {
	model := o.cfg.Model
	if model == "" {
		model = m.Model
	}
	o.model.Store(model)
	hint := fmt.Sprintf("check that the server at %s serves %q (vLLM --served-model-name, ollama pull), or raise LoadTimeout",
		o.base, model)
	return o.pollLoad(ctx, m, progress, hint, func(ctx context.Context) probe { return o.listed(ctx, model) }, nil)
}

// listed is one GET /v1/models: ready when model is among the ids.
func (o *openAI) listed(ctx context.Context, model string) probe {
	status, body, err := o.get(ctx, "/v1/models")
	if err != nil {
		return probe{last: describeErr(err)}
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return probe{fatal: api.Errorf(api.CodeEngineError, "set APIKey to the server's key",
			"%s refused the engine's key: %s", o.what, describeAnswer(status, body))}
	case status != http.StatusOK:
		return probe{last: describeAnswer(status, body)}
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return probe{last: "200 with a body that is not a model list: " + clip(string(body), 200)}
	}
	ids := make([]string, 0, len(list.Data))
	for _, d := range list.Data {
		if d.ID == model {
			return probe{ready: true}
		}
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return probe{last: fmt.Sprintf("200 listing %d models without %q: %s", len(ids), model, clip(strings.Join(ids, ", "), 300))}
}

// openAIChunk is one event of a /v1/completions stream (or the whole answer when the server
// did not stream); unknown fields are ignored.
type openAIChunk struct {
	Object  string `json:"object"`
	Message string `json:"message"` // vLLM's {"object": "error", "message": ...}
	Choices []struct {
		Index        int     `json:"index"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Error json.RawMessage `json:"error"`
}

// failure is the chunk's error text, or "".
func (c openAIChunk) failure() string {
	if t := errorText(c.Error); t != "" {
		return t
	}
	if c.Object == "error" {
		if c.Message == "" {
			return "(an error without a message)"
		}
		return c.Message
	}
	return ""
}

// openAISeed maps a request's seed to a non-negative int64 (vLLM rejects seeds past int64).
func openAISeed(seed uint64) int64 { return int64(seed & math.MaxInt64) }

// generate streams POST /v1/completions.
func (o *openAI) generate(ctx context.Context, g *generation) (api.FinishReason, api.Error) {
	body := mergeParams(o.cfg.Params, map[string]any{"model": o.model.Load(), "prompt": g.Prompt,
		"max_tokens": g.MaxTokens, "seed": openAISeed(g.Seed), "stream": true})
	req, err := o.request(ctx, http.MethodPost, "/v1/completions", body)
	if err != nil {
		return api.FinishError, streamError(o.what, g.ReqID, 0, "cannot build the request: %v", err)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return api.FinishError, cancelled(ctx)
		}
		return api.FinishError, streamError(o.what, g.ReqID, 0, "POST /v1/completions: %s", describeErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyMax))
		answer := "POST /v1/completions answered " + describeAnswer(resp.StatusCode, b)
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return api.FinishError, busyError(o.what, g.ReqID, answer, retryAfter(resp.Header.Get("Retry-After"), o.clock.Now()))
		case http.StatusUnauthorized, http.StatusForbidden:
			return api.FinishError, api.Errorf(api.CodeEngineError, "set the engine's APIKey to the server's key",
				"%s refused request %d: %s", o.what, g.ReqID, answer)
		case http.StatusNotFound:
			return api.FinishError, api.Errorf(api.CodeEngineError,
				"check the engine's Model against GET /v1/models, and that the URL is the server's base URL",
				"%s does not serve model %q or has no /v1/completions: %s", o.what, o.model.Load(), answer)
		}
		return api.FinishError, streamError(o.what, g.ReqID, 0, "%s", answer)
	}
	tokens := 0
	var reason api.FinishReason
	var failure api.Error
	// chunk handles one event; true means the completion is over (or stopped).
	chunk := func(data string, isError bool) bool {
		var c openAIChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			if isError {
				failure = streamError(o.what, g.ReqID, tokens, "the stream sent an error: %s", clip(data, 300))
				return true
			}
			o.log.Warn("engine: malformed line in the OpenAI stream ignored", "req", g.ReqID, "data", clip(data, 200))
			return false
		}
		if t := c.failure(); t != "" || isError {
			if t == "" {
				t = clip(data, 300)
			}
			failure = streamError(o.what, g.ReqID, tokens, "the stream sent an error: %s", t)
			return true
		}
		for _, ch := range c.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.Text != "" {
				if !g.emit(ch.Text) {
					return true
				}
				tokens++
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				reason, failure = o.finish(*ch.FinishReason, g, tokens)
				return true
			}
		}
		return false
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		// The server answered the whole completion at once: one token with all the text.
		b, err := io.ReadAll(io.LimitReader(resp.Body, sseMaxLine))
		if err != nil && ctx.Err() == nil {
			return api.FinishError, streamError(o.what, g.ReqID, 0, "reading the answer: %s", describeErr(err))
		}
		chunk(string(b), false)
	} else {
		done := false
		readErr := readSSE(resp.Body, func(ev sseEvent) bool {
			data := strings.TrimSpace(ev.data)
			if data == "[DONE]" {
				done = true
				return true
			}
			return chunk(data, ev.typ == "error")
		})
		switch {
		case ctx.Err() != nil:
			return api.FinishError, cancelled(ctx)
		case !failure.OK() || reason != "":
		case done:
			// [DONE] without a finish reason: judge by the count.
			reason = api.FinishStop
			if tokens >= g.MaxTokens {
				reason = api.FinishLength
			}
			o.log.Warn("engine: the stream ended with [DONE] but no finish_reason", "req", g.ReqID, "reason", reason)
		case readErr != nil:
			return api.FinishError, streamError(o.what, g.ReqID, tokens, "the stream broke: %s", describeErr(readErr))
		default:
			return api.FinishError, streamError(o.what, g.ReqID, tokens,
				"the stream ended without a finish_reason or [DONE]; the server may have crashed")
		}
	}
	switch {
	case ctx.Err() != nil:
		return api.FinishError, cancelled(ctx)
	case !failure.OK():
		return api.FinishError, failure
	case reason == "":
		return api.FinishError, streamError(o.what, g.ReqID, tokens, "the answer had no finish_reason")
	}
	return reason, api.Error{}
}

// finish maps a finish_reason: "stop" (and "eos") is stop, "length" is length, "abort" (vLLM
// aborted the request) is an error; another reason ends the text, so it counts as stop.
func (o *openAI) finish(r string, g *generation, tokens int) (api.FinishReason, api.Error) {
	switch r {
	case "stop", "eos":
		return api.FinishStop, api.Error{}
	case "length":
		return api.FinishLength, api.Error{}
	case "abort":
		return api.FinishError, streamError(o.what, g.ReqID, tokens, "the server aborted the request (finish_reason \"abort\")")
	}
	o.log.Warn("engine: unknown finish_reason taken as stop", "req", g.ReqID, "finish_reason", r)
	return api.FinishStop, api.Error{}
}

func (o *openAI) stopped(context.Context, *generation, int) {}

func (o *openAI) close() error {
	o.closeIdle()
	return nil
}

// atomicString is a string read and written from many goroutines.
type atomicString struct{ v atomic.Value }

func (a *atomicString) Store(s string) { a.v.Store(s) }

func (a *atomicString) Load() string {
	s, _ := a.v.Load().(string)
	return s
}
