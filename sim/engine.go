package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// Defaults of the simulated inference engine.
const (
	// EngineDefaultPrefillTokensPerSec is the prompt processing rate when the config says 0.
	EngineDefaultPrefillTokensPerSec = 2000.0
	// EngineDefaultDecodeTokensPerSec is each completion's token rate when the config says 0.
	EngineDefaultDecodeTokensPerSec = 40.0
	// EngineDefaultLoadBytesPerSec is the model loading rate when the config says 0: 2 GiB/s.
	EngineDefaultLoadBytesPerSec int64 = 2 << 30
	// EngineDefaultEOSMean is DefaultEngineConfig's mean end-of-sequence position.
	EngineDefaultEOSMean = 64
	// engineLoadSteps is how many EngineLoadProgress messages a load sends (every 10%).
	engineLoadSteps = 10
)

// Engine fault kinds, for Engine.FailNext.
const (
	EngineFaultOOM   = "oom"
	EngineFaultCrash = "crash"
)

// EngineConfig configures a simulated inference engine.
type EngineConfig struct {
	// PrefillTokensPerSec is the prompt processing rate: a completion's first token comes
	// PromptTokens/PrefillTokensPerSec seconds after its EngineGenerate; 0 means
	// EngineDefaultPrefillTokensPerSec (2000).
	PrefillTokensPerSec float64 `json:"prefill_tokens_per_sec,omitempty"`
	// DecodeTokensPerSec is each completion's token rate after the first token; 0 means
	// EngineDefaultDecodeTokensPerSec (40). Every running completion gets the full rate
	// (a batched GPU at small batch sizes); the worker's slots bound how many run.
	DecodeTokensPerSec float64 `json:"decode_tokens_per_sec,omitempty"`
	// LoadBytesPerSec is the model loading rate, in bytes per second; 0 means
	// EngineDefaultLoadBytesPerSec (2 GiB/s).
	LoadBytesPerSec int64 `json:"load_bytes_per_sec,omitempty"`
	// EOSMean is the mean position of the end-of-sequence token (geometrically distributed,
	// at least 1); 0 means never: every completion runs to MaxTokens. DefaultEngineConfig sets
	// EngineDefaultEOSMean (64); the zero EngineConfig has 0.
	EOSMean int `json:"eos_mean"`
}

// DefaultEngineConfig returns an engine with every default, EOSMean 64 included.
func DefaultEngineConfig() EngineConfig {
	return EngineConfig{PrefillTokensPerSec: EngineDefaultPrefillTokensPerSec,
		DecodeTokensPerSec: EngineDefaultDecodeTokensPerSec, LoadBytesPerSec: EngineDefaultLoadBytesPerSec,
		EOSMean: EngineDefaultEOSMean}
}

// Validate checks: rates finite and not negative; EOSMean not negative.
func (c EngineConfig) Validate() error {
	for _, r := range []float64{c.PrefillTokensPerSec, c.DecodeTokensPerSec} {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return fmt.Errorf("engine: prefill %v and decode %v tokens/s must be finite and not negative",
				c.PrefillTokensPerSec, c.DecodeTokensPerSec)
		}
	}
	if c.LoadBytesPerSec < 0 || c.EOSMean < 0 {
		return fmt.Errorf("engine: load rate %d B/s and EOS mean %d must not be negative", c.LoadBytesPerSec, c.EOSMean)
	}
	return nil
}

// EngineStats sums up what an engine did, for checkers and reports.
type EngineStats struct {
	// Loads counts EngineLoad messages taken; Loaded those that completed.
	Loads  int `json:"loads"`
	Loaded int `json:"loaded"`
	// Requests counts completions started; Refused the EngineGenerate messages refused (no
	// model, crashed, invalid, out of memory).
	Requests int `json:"requests"`
	Refused  int `json:"refused"`
	// Tokens counts tokens sent.
	Tokens int `json:"tokens"`
	// MaxConcurrent is the most completions that ran at once.
	MaxConcurrent int `json:"max_concurrent"`
	// OOMs and Crashes count the faults that fired.
	OOMs    int `json:"ooms"`
	Crashes int `json:"crashes"`
}

// engineState is what the engine as a whole is doing.
type engineState uint8

const (
	engineEmpty   engineState = iota // no model: refuses completions
	engineLoading                    // loading a model: refuses completions
	engineLoaded                     // serves completions
	engineCrashed                    // crashed: refuses completions until EngineLoad
)

// Engine is a simulated inference engine (a llama.cpp server on a GPU): it loads a model at
// LoadBytesPerSec and runs completions with a prefill delay and then one token per
// 1/DecodeTokensPerSec, every running completion at the full rate. It answers whoever sends
// it a message (the worker). Completions are keyed by (sender, ReqID); a repeated
// EngineGenerate for a running one is ignored.
//
// The tokens and the end-of-sequence position of a completion are a pure function of (Prompt,
// Seed): two engines give the same stream for the same request, which failover relies on (see
// EngineCompletion). The engine draws nothing from env.Rand.
//
// EngineLoad resets the engine: running completions are dropped without an end (the loader
// is taken to be a new worker that does not know them), a crash is cleared, and the model is
// served once EngineLoaded is sent. A restart of the engine's process (Start) forgets the
// model and every completion but keeps the stats; register it with a factory that returns
// the same *Engine every time.
//
// Faults (Hang, FailNext) are for the harness, between events or in actions.
type Engine struct {
	cfg    EngineConfig
	sim    *Sim      // the simulation, for injecting faults; nil until Start
	self   node.Addr // this engine's address, set at Start
	state  engineState
	model  string
	loader node.Addr // who asked for the load in progress
	load   struct {
		seq, step uint64
		total     time.Duration
	}
	runs    map[engineKey]*engineRun // by sender and ReqID; looked up, never iterated
	byRun   map[uint64]*engineRun    // by run number; iterated sorted
	nextRun uint64
	hangs   int      // hangs in progress; while > 0 no token and no end is sent
	due     []uint64 // runs whose next token fell due during a hang, in order
	oomNext int      // EngineGenerate messages still to fail with out of memory
	stats   EngineStats
}

var _ node.Node = (*Engine)(nil)

type engineKey struct {
	from node.Addr
	id   uint64
}

// engineRun is one running completion.
type engineRun struct {
	run   uint64 // the engine's own number, carried by its timers
	key   engineKey
	req   api.EngineGenerate
	text  *textgen.Tokens // the token stream
	eos   int             // tokens before end-of-sequence; 0 when it comes after MaxTokens
	next  int             // the next token's index
	timer node.TimerID
}

// Timers and injected faults of the engine.
type (
	// engineTick: run Run's next token is due.
	engineTick struct{ Run uint64 }
	// engineLoadTick: the next 10% of load Seq is done.
	engineLoadTick struct{ Seq uint64 }
	// engineHangEnd: one hang is over.
	engineHangEnd struct{}
	// engineFault is a fault the harness injected: Kind "hang" (for For) or "crash".
	engineFault struct {
		Kind string
		For  time.Duration
	}
)

// MsgName implements node.Msg.
func (engineTick) MsgName() string { return "engine.tick" }

// AppendCanonical implements Canonical.
func (t engineTick) AppendCanonical(b []byte) []byte { return strconv.AppendUint(b, t.Run, 10) }

// MsgName implements node.Msg.
func (engineLoadTick) MsgName() string { return "engine.load_tick" }

// MsgName implements node.Msg.
func (engineHangEnd) MsgName() string { return "engine.hang_end" }

// MsgName implements node.Msg.
func (engineFault) MsgName() string { return "engine.fault" }

// NewEngine returns an engine; zero rates take their defaults (EOSMean 0 stays "never"). It
// panics if cfg is invalid: check configs that come from files with Validate first.
func NewEngine(cfg EngineConfig) *Engine {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.PrefillTokensPerSec == 0 {
		cfg.PrefillTokensPerSec = EngineDefaultPrefillTokensPerSec
	}
	if cfg.DecodeTokensPerSec == 0 {
		cfg.DecodeTokensPerSec = EngineDefaultDecodeTokensPerSec
	}
	if cfg.LoadBytesPerSec == 0 {
		cfg.LoadBytesPerSec = EngineDefaultLoadBytesPerSec
	}
	return &Engine{cfg: cfg, runs: map[engineKey]*engineRun{}, byRun: map[uint64]*engineRun{}}
}

// Stats returns what the engine did so far.
func (e *Engine) Stats() EngineStats { return e.stats }

// Hang makes the engine send no token and no end for any completion for d (a stuck GPU
// kernel); then what fell due comes at once and the completions go on at their rate.
// Refusals are still answered at once. Overlapping hangs last until the last one ends. It
// does nothing before the engine's first Start or while its process is down.
func (e *Engine) Hang(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("sim: engine Hang(%v): negative duration", d))
	}
	if d > 0 {
		e.inject(engineFault{Kind: "hang", For: d})
	}
}

// FailNext injects a fault: EngineFaultOOM makes the next EngineGenerate end at once with
// ENGINE_ERROR (CUDA out of memory); EngineFaultCrash crashes the engine now: every running
// completion ends with ENGINE_ERROR "engine crashed", and every EngineGenerate is refused the
// same way until an EngineLoad has loaded the model again. It panics on another kind.
func (e *Engine) FailNext(kind string) {
	switch kind {
	case EngineFaultOOM:
		e.oomNext++
	case EngineFaultCrash:
		e.inject(engineFault{Kind: kind})
	default:
		panic(fmt.Sprintf("sim: engine FailNext(%q): want %q or %q", kind, EngineFaultOOM, EngineFaultCrash))
	}
}

// inject delivers a fault to the engine as a message to itself, now, so that it acts with
// an Env of its own (and shows in the trace). It is dropped while the process is down.
func (e *Engine) inject(m engineFault) {
	if e.sim != nil {
		e.sim.Inject(e.self, e.self, m)
	}
}

// Start boots the engine, or restarts it: no model, no completion, no hang, no pending fault.
func (e *Engine) Start(ev node.Env) {
	if se, ok := ev.(*env); ok {
		e.sim = se.s
	}
	e.self = ev.Self()
	e.state, e.model, e.loader = engineEmpty, "", ""
	e.load.seq++
	clear(e.runs)
	clear(e.byRun)
	e.hangs, e.due, e.oomNext = 0, nil, 0
}

// Handle reacts to the worker's EngineLoad, EngineGenerate and EngineStop, and to the
// engine's own timers and injected faults.
func (e *Engine) Handle(env node.Env, from node.Addr, m node.Msg) {
	self := from == env.Self()
	switch m := m.(type) {
	case engineTick:
		if r := e.byRun[m.Run]; self && r != nil {
			e.tick(env, r)
		}
	case engineLoadTick:
		if self && m.Seq == e.load.seq && e.state == engineLoading {
			e.loadStep(env)
		}
	case engineHangEnd:
		if self {
			e.endHang(env)
		}
	case engineFault:
		if self {
			e.handleFault(env, m)
		}
	case api.EngineLoad:
		e.handleLoad(env, from, m)
	case api.EngineGenerate:
		e.handleGenerate(env, from, m)
	case api.EngineStop:
		if r := e.runs[engineKey{from, m.ReqID}]; r != nil {
			e.drop(env, r)
		}
	}
}

// handleLoad starts loading a model, dropping whatever ran before.
func (e *Engine) handleLoad(env node.Env, from node.Addr, m api.EngineLoad) {
	if m.SizeBytes < 0 {
		env.Send(from, api.EngineLoaded{Err: api.Errorf(api.CodeInvalidRequest, "send the model file's size",
			"cannot load %s: size %d bytes is negative", m.Model, m.SizeBytes)})
		return
	}
	for _, r := range e.sortedRuns() {
		e.drop(env, r)
	}
	e.stats.Loads++
	e.state, e.model, e.loader = engineLoading, m.Model, from
	e.load.seq++
	e.load.step = 0
	e.load.total = time.Duration(float64(m.SizeBytes) / float64(e.cfg.LoadBytesPerSec) * float64(time.Second))
	env.After(e.loadAt(1), engineLoadTick{Seq: e.load.seq})
}

// loadAt is when step k (of engineLoadSteps) of the load in progress is done, from its start.
func (e *Engine) loadAt(k uint64) time.Duration {
	return time.Duration(int64(e.load.total) / engineLoadSteps * int64(k))
}

// loadStep reports the next 10% of the load, and ends it after the last.
func (e *Engine) loadStep(env node.Env) {
	e.load.step++
	env.Send(e.loader, api.EngineLoadProgress{Percent: float64(100 * e.load.step / engineLoadSteps)})
	if e.load.step < engineLoadSteps {
		env.After(e.loadAt(e.load.step+1)-e.loadAt(e.load.step), engineLoadTick{Seq: e.load.seq})
		return
	}
	e.state = engineLoaded
	e.stats.Loaded++
	env.Send(e.loader, api.EngineLoaded{})
}

// handleGenerate starts a completion, or refuses it with an EngineDone at once.
func (e *Engine) handleGenerate(env node.Env, from node.Addr, m api.EngineGenerate) {
	k := engineKey{from, m.ReqID}
	if e.runs[k] != nil {
		return // a repeat of a running completion
	}
	if err := e.refusal(m); !err.OK() {
		e.stats.Refused++
		env.Send(from, api.EngineDone{ReqID: m.ReqID, Reason: api.FinishError, Err: err})
		return
	}
	e.nextRun++
	r := &engineRun{run: e.nextRun, key: k, req: m, text: textgen.NewTokens(m.Prompt, m.Seed),
		eos: eosPosition(m.Prompt, m.Seed, e.cfg.EOSMean, m.MaxTokens)}
	e.runs[k], e.byRun[r.run] = r, r
	e.stats.Requests++
	e.stats.MaxConcurrent = max(e.stats.MaxConcurrent, len(e.runs))
	prefill := time.Duration(float64(m.PromptTokens) / e.cfg.PrefillTokensPerSec * float64(time.Second))
	r.timer = env.After(prefill, engineTick{Run: r.run})
}

// refusal says why a completion cannot start, or is the zero Error.
func (e *Engine) refusal(m api.EngineGenerate) api.Error {
	switch e.state {
	case engineEmpty:
		return api.Errorf(api.CodeEngineError, "load a model first (EngineLoad)", "no model is loaded")
	case engineLoading:
		return api.Errorf(api.CodeEngineError, "wait for EngineLoaded", "the engine is still loading %s", e.model)
	case engineCrashed:
		return api.Errorf(api.CodeEngineError, "restart the worker so that it loads the model again",
			"engine crashed; it serves nothing until the model is loaded again")
	}
	if m.MaxTokens < 1 || m.PromptTokens < 0 {
		return api.Errorf(api.CodeInvalidRequest, "send max_tokens >= 1 and prompt_tokens >= 0",
			"request %d has max_tokens %d and prompt_tokens %d", m.ReqID, m.MaxTokens, m.PromptTokens)
	}
	if e.oomNext > 0 {
		e.oomNext--
		e.stats.OOMs++
		return api.Errorf(api.CodeEngineError, "retry with a shorter prompt or fewer max_tokens, or free GPU memory",
			"CUDA out of memory: cannot allocate the KV cache for request %d (%d prompt tokens + %d max tokens)",
			m.ReqID, m.PromptTokens, m.MaxTokens)
	}
	return api.Error{}
}

// tick sends a completion's next token, unless a hang holds it back.
func (e *Engine) tick(env node.Env, r *engineRun) {
	r.timer = 0
	if e.hangs > 0 {
		e.due = append(e.due, r.run)
		return
	}
	env.Send(r.key.from, api.EngineToken{ReqID: r.req.ReqID, Index: r.next, Text: r.text.Next()})
	r.next++
	e.stats.Tokens++
	switch {
	case r.eos > 0 && r.next == r.eos:
		e.end(env, r, api.FinishStop, api.Error{})
	case r.next == r.req.MaxTokens:
		e.end(env, r, api.FinishLength, api.Error{})
	default:
		r.timer = env.After(time.Duration(float64(time.Second)/e.cfg.DecodeTokensPerSec), engineTick{Run: r.run})
	}
}

// end ends a completion with an EngineDone.
func (e *Engine) end(env node.Env, r *engineRun, reason api.FinishReason, err api.Error) {
	e.drop(env, r)
	env.Send(r.key.from, api.EngineDone{ReqID: r.req.ReqID, Reason: reason, Err: err})
}

// drop forgets a completion without a word (EngineStop, a reload).
func (e *Engine) drop(env node.Env, r *engineRun) {
	if r.timer != 0 {
		env.Cancel(r.timer)
	}
	delete(e.runs, r.key)
	delete(e.byRun, r.run)
}

// sortedRuns returns the running completions in the order they started.
func (e *Engine) sortedRuns() []*engineRun {
	rs := make([]*engineRun, 0, len(e.byRun))
	for _, r := range e.byRun { //det:sorted (sorted below)
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *engineRun) int { return cmp.Compare(a.run, b.run) })
	return rs
}

// handleFault applies an injected fault.
func (e *Engine) handleFault(env node.Env, m engineFault) {
	switch m.Kind {
	case "hang":
		e.hangs++
		env.Observe(node.Mark("engine hang"))
		env.After(m.For, engineHangEnd{})
	case EngineFaultCrash:
		e.stats.Crashes++
		env.Observe(node.Mark("engine crash"))
		if e.state == engineLoading {
			env.Send(e.loader, api.EngineLoaded{Err: api.Errorf(api.CodeEngineError,
				"restart the worker so that it loads the model again", "engine crashed while loading %s", e.model)})
		}
		e.state = engineCrashed
		e.load.seq++
		for _, r := range e.sortedRuns() {
			e.end(env, r, api.FinishError, api.Errorf(api.CodeEngineError,
				"retry the request on another worker; restart this one so that it loads the model again",
				"engine crashed after %d tokens of request %d", r.next, r.req.ReqID))
		}
	}
}

// endHang ends one hang; after the last, what fell due is sent in the order it fell due.
func (e *Engine) endHang(env node.Env) {
	e.hangs--
	if e.hangs > 0 {
		return
	}
	due := e.due
	e.due = nil
	for _, run := range due {
		if r := e.byRun[run]; r != nil && r.timer == 0 {
			e.tick(env, r)
		}
	}
}

// EngineCompletion is the completion every engine with this eosMean gives for (prompt, seed,
// maxTokens) when nothing stops it: its token texts and its finish reason (stop at
// end-of-sequence, or length at maxTokens). For checkers and tests; an EOS exactly at
// maxTokens is a stop.
func EngineCompletion(prompt string, seed uint64, maxTokens, eosMean int) ([]string, api.FinishReason) {
	return textgen.Completion(prompt, seed, maxTokens, eosMean)
}

// eosPosition is textgen.EOSPosition.
func eosPosition(prompt string, seed uint64, eosMean, maxTokens int) int {
	return textgen.EOSPosition(prompt, seed, eosMean, maxTokens)
}
