package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real"
)

// Defaults of the llama-server engine.
const (
	// DefaultAdmitWait is how long a completion waits for a free slot when the config says 0.
	DefaultAdmitWait = 2 * time.Second
	// DefaultStopGrace is how long a started server has between SIGTERM and SIGKILL when the
	// config says 0.
	DefaultStopGrace = 10 * time.Second
	// DefaultStopCheck is how long the engine watches /slots for a stopped completion's slot to
	// go idle when the config says 0.
	DefaultStopCheck = 2 * time.Second
	// slotPoll is the period of /slots polls while admitting or after a stop.
	slotPoll = 25 * time.Millisecond
)

// LlamaServerConfig configures the llama.cpp server engine.
type LlamaServerConfig struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8080"; required.
	URL string
	// Command, when not empty, starts the server on the first EngineLoad (and again on a
	// later EngineLoad if it has exited), e.g. {"llama-server", "-m", "/models/tiny.gguf",
	// "--port", "8080", "--parallel", "4"}; its port must be URL's. Close stops it: SIGTERM,
	// then SIGKILL after StopGrace. Empty means attach to a server that runs already (or
	// will: the load waits for it).
	Command []string
	// Dir is the started server's working folder; empty means this process's.
	Dir string
	// Env is extra environment for the started server ("CUDA_VISIBLE_DEVICES=0").
	Env []string
	// Output receives the started server's stdout and stderr; nil means they are dropped
	// (the last 4 KiB are kept for error messages either way).
	Output io.Writer
	// APIKey, when set, is sent as "Authorization: Bearer KEY" (llama-server --api-key).
	APIKey string
	// LoadTimeout bounds a load: how long GET /health may answer anything but 200; 0 means
	// DefaultLoadTimeout (5 min). The worker's own load timeout may be shorter.
	LoadTimeout time.Duration
	// PollInterval is the period of the load's health polls; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// LoadBytesPerSec is the rate load progress is estimated with (the server does not say);
	// 0 means DefaultLoadBytesPerSec (1 GiB/s).
	LoadBytesPerSec int64
	// AdmitWait is how long a completion waits for GET /slots to show a free slot before it is
	// refused with ALL_SLOTS_BUSY; 0 means DefaultAdmitWait (2 s); negative means no check
	// (the server queues what it has no slot for).
	AdmitWait time.Duration
	// StopCheck is how long, after an EngineStop, the engine watches GET /slots for the slot
	// to go idle, logging a warning if it does not; 0 means DefaultStopCheck; negative means
	// no check.
	StopCheck time.Duration
	// StopGrace is how long a started server has to exit after SIGTERM before SIGKILL; 0 means
	// DefaultStopGrace (10 s).
	StopGrace time.Duration
	// Params are extra fields for every POST /completion ("temperature", "top_k", ...); the
	// engine's own fields (prompt, n_predict, seed, stream, cache_prompt) win.
	Params map[string]any
	// HTTPClient is the client; nil means one of the engine's own, without timeouts (a stream
	// lasts as long as the completion; EngineStop and Close cancel it).
	HTTPClient *http.Client
	// Clock drives polls, timeouts and the stop grace; nil means clock.New().
	Clock clock.Clock
	// Logger receives the engine's logs; nil means discard.
	Logger *slog.Logger
}

// NewLlamaServer returns the constructor of a llama.cpp server engine port, for
// real.Runtime.AddPort. It fails if cfg is invalid.
func NewLlamaServer(cfg LlamaServerConfig) (func(real.Send) real.Port, error) {
	c, err := newHTTPCommon("llama-server", cfg.URL, cfg.HTTPClient, cfg.APIKey, cfg.Clock, cfg.Logger,
		cfg.PollInterval, cfg.LoadTimeout, cfg.LoadBytesPerSec)
	if err != nil {
		return nil, err
	}
	if len(cfg.Command) > 0 && cfg.Command[0] == "" {
		return nil, fmt.Errorf("llama-server engine: Command %q has no program; give e.g. {\"llama-server\", \"-m\", PATH, \"--port\", N}",
			cfg.Command)
	}
	if cfg.StopGrace < 0 {
		return nil, fmt.Errorf("llama-server engine: StopGrace %v must not be negative", cfg.StopGrace)
	}
	if cfg.AdmitWait == 0 {
		cfg.AdmitWait = DefaultAdmitWait
	}
	if cfg.StopCheck == 0 {
		cfg.StopCheck = DefaultStopCheck
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	cfg.Command = append([]string(nil), cfg.Command...)
	return func(send real.Send) real.Port {
		return newPort(&llama{httpCommon: c, cfg: cfg}, send, cfg.Logger, 0)
	}, nil
}

// llama is the llama.cpp server engine's backend.
type llama struct {
	httpCommon
	cfg     LlamaServerConfig
	noSlots atomic.Bool // GET /slots is not available: admit without checking

	mu   sync.Mutex
	proc *process // the started server, nil when attached
}

// load starts the server if configured and not running, then polls GET /health.
func (l *llama) load(ctx context.Context, m api.EngineLoad, progress func(float64)) api.Error {
	var exited func() api.Error
	if len(l.cfg.Command) > 0 {
		p, err := l.ensureProcess()
		if !err.OK() {
			return err
		}
		exited = func() api.Error {
			if !p.exited() {
				return api.Error{}
			}
			return api.Errorf(api.CodeEngineError,
				"read the server's output above, fix the command (model path, port, flags) and start the worker again",
				"%s (started as %q) exited before it became healthy: %s", l.what, strings.Join(p.argv, " "), p.describeExit())
		}
	}
	hint := "check the model path and the server's log, or raise LoadTimeout"
	if len(l.cfg.Command) == 0 {
		hint = "check that llama-server runs at " + l.base + " (it is not started by the engine: Command is empty), or raise LoadTimeout"
	}
	return l.pollLoad(ctx, m, progress, hint, l.health, exited)
}

// ensureProcess starts the server unless it runs.
func (l *llama) ensureProcess() (*process, api.Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc != nil && !l.proc.exited() {
		return l.proc, api.Error{}
	}
	if l.proc != nil {
		l.log.Warn("engine: llama-server had exited; starting it again", "exit", l.proc.describeExit())
	}
	p, err := startProcess(l.cfg.Command, l.cfg.Env, l.cfg.Dir, l.cfg.Output)
	if err != nil {
		return nil, api.Errorf(api.CodeEngineError,
			"install llama.cpp's llama-server or give its full path as the first word of the command",
			"could not start llama-server with %q: %v", strings.Join(l.cfg.Command, " "), err)
	}
	l.log.Info("engine: started llama-server", "pid", p.cmd.Process.Pid, "command", strings.Join(l.cfg.Command, " "))
	l.proc = p
	return p, api.Error{}
}

// health is one GET /health: 200 (with status "ok" or none) is ready; 503 is loading; a
// connection error is a server that is not up yet.
func (l *llama) health(ctx context.Context) probe {
	status, body, err := l.get(ctx, "/health")
	if err != nil {
		return probe{last: describeErr(err)}
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return probe{fatal: api.Errorf(api.CodeEngineError, "set APIKey to the server's --api-key",
			"%s refused the engine's key: %s", l.what, describeAnswer(status, body))}
	}
	if status != http.StatusOK {
		return probe{last: describeAnswer(status, body)}
	}
	var h struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &h) == nil && h.Status != "" && h.Status != "ok" {
		return probe{last: fmt.Sprintf("200 with status %q", h.Status)}
	}
	return probe{ready: true}
}

// llamaChunk is one event of a /completion stream; unknown fields are ignored.
type llamaChunk struct {
	Content      string          `json:"content"`
	Stop         bool            `json:"stop"`
	StopType     string          `json:"stop_type"`
	StoppedEOS   bool            `json:"stopped_eos"`
	StoppedWord  bool            `json:"stopped_word"`
	StoppedLimit bool            `json:"stopped_limit"`
	IDSlot       *int            `json:"id_slot"`
	Error        json.RawMessage `json:"error"`
}

// llamaSeed maps a request's seed to llama.cpp's: 32 bits (the high half folded in), never
// 0xFFFFFFFF, which llama.cpp takes for "a random seed".
func llamaSeed(seed uint64) uint32 {
	s := uint32(seed ^ seed>>32)
	if s == 0xFFFFFFFF {
		s--
	}
	return s
}

// generate admits the completion (a free slot), then streams POST /completion.
func (l *llama) generate(ctx context.Context, g *generation) (api.FinishReason, api.Error) {
	if err := l.admit(ctx, g); !err.OK() {
		return api.FinishError, err
	}
	body := mergeParams(l.cfg.Params, map[string]any{"prompt": g.Prompt, "n_predict": g.MaxTokens,
		"seed": llamaSeed(g.Seed), "stream": true, "cache_prompt": true})
	req, err := l.request(ctx, http.MethodPost, "/completion", body)
	if err != nil {
		return api.FinishError, streamError(l.what, g.ReqID, 0, "cannot build the request: %v", err)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return api.FinishError, cancelled(ctx)
		}
		return api.FinishError, streamError(l.what, g.ReqID, 0, "POST /completion: %s", describeErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyMax))
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return api.FinishError, busyError(l.what, g.ReqID, "POST /completion answered "+describeAnswer(resp.StatusCode, b),
				retryAfter(resp.Header.Get("Retry-After"), l.clock.Now()))
		}
		return api.FinishError, streamError(l.what, g.ReqID, 0, "POST /completion answered %s",
			describeAnswer(resp.StatusCode, b))
	}
	tokens := 0
	var reason api.FinishReason
	var failure api.Error
	readErr := readSSE(resp.Body, func(ev sseEvent) bool {
		data := strings.TrimSpace(ev.data)
		if data == "[DONE]" {
			return false // not llama.cpp's, but harmless: its final chunk ends the stream
		}
		var c llamaChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			if ev.typ == "error" {
				failure = streamError(l.what, g.ReqID, tokens, "the stream sent an error: %s", clip(data, 300))
				return true
			}
			l.log.Warn("engine: malformed line in the llama-server stream ignored", "req", g.ReqID, "data", clip(data, 200))
			return false
		}
		if t := errorText(c.Error); t != "" || ev.typ == "error" {
			if t == "" {
				t = clip(data, 300)
			}
			failure = streamError(l.what, g.ReqID, tokens, "the stream sent an error: %s", t)
			return true
		}
		if c.IDSlot != nil {
			g.slot = *c.IDSlot
		}
		if c.Content != "" {
			if !g.emit(c.Content) {
				return true
			}
			tokens++
		}
		if c.Stop {
			reason = llamaReason(c, tokens, g.MaxTokens)
			return true
		}
		return false
	})
	switch {
	case ctx.Err() != nil:
		return api.FinishError, cancelled(ctx)
	case !failure.OK():
		return api.FinishError, failure
	case reason != "":
		return reason, api.Error{}
	case readErr != nil:
		return api.FinishError, streamError(l.what, g.ReqID, tokens, "the stream broke: %s", describeErr(readErr))
	}
	return api.FinishError, streamError(l.what, g.ReqID, tokens,
		"the stream ended without its final chunk (\"stop\": true); the server may have crashed")
}

// llamaReason maps a final chunk to a finish reason: end-of-sequence or a stop word is stop,
// the n_predict limit (or the context) is length. A server that says neither is judged by
// the count.
func llamaReason(c llamaChunk, tokens, maxTokens int) api.FinishReason {
	switch {
	case c.StopType == "eos" || c.StopType == "word" || c.StoppedEOS || c.StoppedWord:
		return api.FinishStop
	case c.StopType == "limit" || c.StoppedLimit:
		return api.FinishLength
	case tokens >= maxTokens:
		return api.FinishLength
	}
	return api.FinishStop
}

// llamaSlot is one entry of GET /slots: newer servers say is_processing, older ones state
// (0 idle).
type llamaSlot struct {
	ID           int   `json:"id"`
	IsProcessing *bool `json:"is_processing"`
	State        *int  `json:"state"`
}

func (s llamaSlot) busy() bool {
	switch {
	case s.IsProcessing != nil:
		return *s.IsProcessing
	case s.State != nil:
		return *s.State != 0
	}
	return false
}

// slots reads GET /slots; ok is false when it could not be read (and noSlots is set when the
// server does not have the endpoint).
func (l *llama) slots(ctx context.Context) ([]llamaSlot, bool) {
	if l.noSlots.Load() {
		return nil, false
	}
	status, body, err := l.get(ctx, "/slots")
	switch {
	case err != nil:
		if ctx.Err() == nil {
			l.log.Debug("engine: GET /slots failed", "server", l.what, "error", describeErr(err))
		}
		return nil, false
	case status == http.StatusNotFound || status == http.StatusNotImplemented:
		if !l.noSlots.Swap(true) {
			l.log.Info("engine: the server has no /slots endpoint; completions are sent without a slot check",
				"server", l.what, "answer", describeAnswer(status, body))
		}
		return nil, false
	case status != http.StatusOK:
		l.log.Debug("engine: GET /slots failed", "server", l.what, "answer", describeAnswer(status, body))
		return nil, false
	}
	var s []llamaSlot
	if err := json.Unmarshal(body, &s); err != nil {
		l.log.Debug("engine: GET /slots is not a list of slots", "server", l.what, "body", clip(string(body), 200))
		return nil, false
	}
	return s, true
}

// admit waits up to AdmitWait for a free slot; it refuses with ALL_SLOTS_BUSY if none came.
// A server whose slots cannot be read is not refused. (Between the check and the POST another
// request may take the slot; the server then queues this one.)
func (l *llama) admit(ctx context.Context, g *generation) api.Error {
	if l.cfg.AdmitWait < 0 {
		return api.Error{}
	}
	deadline := l.clock.Now().Add(l.cfg.AdmitWait)
	for {
		s, ok := l.slots(ctx)
		if !ok {
			return api.Error{}
		}
		free := 0
		for _, x := range s {
			if !x.busy() {
				free++
			}
		}
		if free > 0 || len(s) == 0 {
			return api.Error{}
		}
		if !l.clock.Now().Before(deadline) {
			return busyError(l.what, g.ReqID, fmt.Sprintf("GET /slots showed all %d slots processing for %v", len(s),
				l.cfg.AdmitWait), 0)
		}
		if !sleep(ctx, l.clock, slotPoll) {
			return cancelled(ctx)
		}
	}
}

// stopped checks that a stopped completion's slot went idle: its slot (if the stream named it)
// is idle, or no more slots are busy than completions still run. llama-server notices a
// closed connection only when it next writes to it, so this can take a token's time.
func (l *llama) stopped(ctx context.Context, g *generation, live int) {
	if l.cfg.StopCheck < 0 {
		return
	}
	deadline := l.clock.Now().Add(l.cfg.StopCheck)
	for {
		s, ok := l.slots(ctx)
		if !ok {
			return
		}
		slotIdle, busy := g.slot >= 0, 0
		for _, x := range s {
			if x.busy() {
				busy++
				if x.ID == g.slot {
					slotIdle = false
				}
			}
		}
		if slotIdle || busy <= live {
			l.log.Debug("engine: stopped completion's slot is idle", "req", g.ReqID, "slot", g.slot)
			return
		}
		if !l.clock.Now().Before(deadline) {
			l.log.Warn("engine: a stopped completion's slot is still busy; the server may not have noticed the closed connection",
				"server", l.what, "req", g.ReqID, "slot", g.slot, "busy_slots", busy, "running", live,
				"waited", l.cfg.StopCheck, "what_to_do", "if slots stay busy, restart the worker (and its llama-server)")
			return
		}
		if !sleep(ctx, l.clock, slotPoll) {
			return
		}
	}
}

// close stops a started server and drops idle connections.
func (l *llama) close() error {
	l.closeIdle()
	l.mu.Lock()
	p := l.proc
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.stop(l.clock, l.cfg.StopGrace); err != nil {
		l.log.Warn("engine: llama-server stop", "error", err)
		return err
	}
	return nil
}
