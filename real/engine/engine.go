package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

// backend is what differs between the engines: how a model is loaded and how one completion
// is generated. The port around it (port) keeps the protocol: which messages are answered, in
// which order, and that nothing follows an EngineDone, an EngineStop, a reload or Close.
type backend interface {
	// load loads the model (or waits until the server has), reporting progress (0 to <100)
	// as it can. It returns when done, failed, or ctx is cancelled (the load was superseded or
	// the port closed: what it returns then is dropped).
	load(ctx context.Context, m api.EngineLoad, progress func(percent float64)) api.Error
	// generate runs one completion: it calls g.emit for each token, in order, and returns the
	// finish reason (stop, length, or error with the error). emit returns false once the
	// completion is stopped: generate should then return soon. When ctx is cancelled the
	// completion was stopped and what generate returns is dropped.
	generate(ctx context.Context, g *generation) (api.FinishReason, api.Error)
	// stopped runs after generate returned for a completion that the worker stopped
	// (EngineStop), with live the number of completions still running: the backend may check
	// that the server freed the slot. ctx is cancelled when the port closes.
	stopped(ctx context.Context, g *generation, live int)
	// close releases the backend (a started server process) once every goroutine ended.
	close() error
}

// generation is one completion as a backend sees it.
type generation struct {
	api.EngineGenerate
	// emit sends the next token; false means the completion was stopped.
	emit func(text string) bool
	// slot is the server's slot that runs it, when the backend learns it; -1 when unknown.
	slot int
}

// engineState is what the engine as a whole is doing.
type engineState uint8

const (
	stateEmpty   engineState = iota // no model (or the last load failed): refuses completions
	stateLoading                    // loading: refuses completions
	stateLoaded                     // serves completions
)

// runKey is a completion as its sender knows it.
type runKey struct {
	from node.Addr
	id   uint64
}

// run is one completion in progress.
type run struct {
	key    runKey
	gen    *generation
	cancel context.CancelFunc

	mu      sync.Mutex
	over    bool // EngineDone sent, or silenced: nothing more goes out for it
	stopped bool // silenced by EngineStop (not by a reload or Close)
	next    int  // the next token's index
}

// port is a real.Port that speaks the engine protocol over a backend.
type port struct {
	be      backend
	send    real.Send
	log     *slog.Logger
	maxRuns int // completions at once; 0 means no limit

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the load and completion goroutines

	mu         sync.Mutex
	closed     bool
	state      engineState
	model      string
	loadSeq    uint64 // the current load; a superseded load's goroutine sends nothing
	loadCancel context.CancelFunc
	runs       map[runKey]*run
}

var _ real.Port = (*port)(nil)

func newPort(be backend, send real.Send, log *slog.Logger, maxRuns int) *port {
	ctx, cancel := context.WithCancel(context.Background())
	return &port{be: be, send: send, log: orDiscard(log), maxRuns: maxRuns, ctx: ctx, cancel: cancel,
		runs: map[runKey]*run{}}
}

// orDiscard returns log, or a logger that discards everything when log is nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return log
}

// Deliver implements real.Port: it takes EngineLoad, EngineGenerate and EngineStop and never
// blocks on I/O (the work runs on goroutines of the port's own).
func (p *port) Deliver(from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.EngineLoad:
		p.startLoad(from, m)
	case api.EngineGenerate:
		p.startGenerate(from, m)
	case api.EngineStop:
		p.stop(runKey{from, m.ReqID})
	default:
		name := "<nil>"
		if m != nil {
			name = m.MsgName()
		}
		p.log.Debug("engine: message ignored: not an engine message", "from", from, "msg", name)
	}
}

// startLoad starts loading the model. A load drops every running completion without an end
// (the loader is taken to be a new worker that does not know them) and supersedes a load in
// progress, which then sends nothing more.
func (p *port) startLoad(from node.Addr, m api.EngineLoad) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if m.SizeBytes < 0 {
		p.send(from, api.EngineLoaded{Err: api.Errorf(api.CodeInvalidRequest, "send the model file's size",
			"cannot load %s: size %d bytes is negative", m.Model, m.SizeBytes)})
		return
	}
	for k, r := range p.runs { // order does not matter: every run is silenced
		r.silence(false)
		r.cancel()
		delete(p.runs, k)
	}
	if p.loadCancel != nil {
		p.loadCancel()
	}
	p.loadSeq++
	seq := p.loadSeq
	p.state, p.model = stateLoading, m.Model
	ctx, cancel := context.WithCancel(p.ctx)
	p.loadCancel = cancel
	p.wg.Add(1)
	go p.runLoad(ctx, seq, from, m)
}

// runLoad runs a load on its own goroutine and reports it, unless it was superseded.
func (p *port) runLoad(ctx context.Context, seq uint64, from node.Addr, m api.EngineLoad) {
	defer p.wg.Done()
	sent := 0.0
	progress := func(percent float64) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed || seq != p.loadSeq || !(percent > sent) || percent >= 100 {
			return // superseded, or not forward, or 100 (sent with the end)
		}
		sent = percent
		p.send(from, api.EngineLoadProgress{Percent: percent})
	}
	err := p.be.load(ctx, m, progress)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || seq != p.loadSeq {
		return
	}
	p.loadCancel()
	p.loadCancel = nil
	if !err.OK() {
		p.state = stateEmpty
		p.log.Warn("engine: load failed", "model", m.Model, "error", err.Error())
		p.send(from, api.EngineLoaded{Err: err})
		return
	}
	p.state = stateLoaded
	p.send(from, api.EngineLoadProgress{Percent: 100})
	p.send(from, api.EngineLoaded{})
}

// startGenerate starts a completion on its own goroutine, or refuses it with an EngineDone at
// once. A repeat of a running completion is ignored.
func (p *port) startGenerate(from node.Addr, m api.EngineGenerate) {
	k := runKey{from, m.ReqID}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.runs[k] != nil {
		return
	}
	if err := p.refusal(m); !err.OK() {
		p.send(from, api.EngineDone{ReqID: m.ReqID, Reason: api.FinishError, Err: err})
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	r := &run{key: k, cancel: cancel}
	r.gen = &generation{EngineGenerate: m, slot: -1, emit: func(text string) bool { return p.emit(r, text) }}
	p.runs[k] = r
	p.wg.Add(1)
	go p.runGenerate(ctx, r)
}

// refusal says why a completion cannot start, or is the zero Error. p.mu is held.
func (p *port) refusal(m api.EngineGenerate) api.Error {
	switch p.state {
	case stateEmpty:
		return api.Errorf(api.CodeEngineError, "load a model first (EngineLoad)", "no model is loaded")
	case stateLoading:
		return api.Errorf(api.CodeEngineError, "wait for EngineLoaded", "the engine is still loading %s", p.model)
	}
	if m.MaxTokens < 1 || m.PromptTokens < 0 {
		return api.Errorf(api.CodeInvalidRequest, "send max_tokens >= 1 and prompt_tokens >= 0",
			"request %d has max_tokens %d and prompt_tokens %d", m.ReqID, m.MaxTokens, m.PromptTokens)
	}
	if p.maxRuns > 0 && len(p.runs) >= p.maxRuns {
		return api.Errorf(api.CodeAllSlotsBusy, "retry when a completion has ended, or raise the engine's MaxConcurrent",
			"the engine runs %d completions, its limit; request %d was not started", len(p.runs), m.ReqID)
	}
	return api.Error{}
}

// runGenerate runs a completion and sends its EngineDone, unless it was silenced.
func (p *port) runGenerate(ctx context.Context, r *run) {
	defer p.wg.Done()
	defer r.cancel()
	reason, err := p.be.generate(ctx, r.gen)
	switch {
	case !err.OK():
		reason = api.FinishError
	case reason == api.FinishStop || reason == api.FinishLength:
	case reason == api.FinishError:
		err = api.Errorf(api.CodeEngineError, "retry the request; see the engine's log",
			"the engine failed request %d and gave no reason", r.gen.ReqID)
	default:
		err = api.Errorf(api.CodeEngineError, "retry the request; see the engine's log",
			"the engine ended request %d with the unexpected reason %q", r.gen.ReqID, reason)
		reason = api.FinishError
	}
	if !err.OK() && err.Code == "" {
		err.Code = api.CodeEngineError
	}
	r.mu.Lock()
	sent, stopped := !r.over, r.stopped
	if sent {
		r.over = true
		p.send(r.key.from, api.EngineDone{ReqID: r.gen.ReqID, Reason: reason, Err: err})
	}
	r.mu.Unlock()
	p.mu.Lock()
	if p.runs[r.key] == r {
		delete(p.runs, r.key)
	}
	live, closed := len(p.runs), p.closed
	p.mu.Unlock()
	if sent && !err.OK() {
		p.log.Info("engine: completion failed", "req", r.gen.ReqID, "tokens", r.tokens(), "error", err.Error())
	}
	if stopped && !closed {
		p.be.stopped(p.ctx, r.gen, live)
	}
}

// emit sends a completion's next token unless it is over. Tokens past MaxTokens are dropped:
// the worker asked for no more.
func (p *port) emit(r *run, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return false
	}
	if r.next >= r.gen.MaxTokens {
		p.log.Warn("engine: token past max_tokens dropped", "req", r.gen.ReqID, "max_tokens", r.gen.MaxTokens)
		return true
	}
	p.send(r.key.from, api.EngineToken{ReqID: r.gen.ReqID, Index: r.next, Text: text})
	r.next++
	return true
}

// stop ends a completion without a word (EngineStop): once it returns nothing more is sent for
// it, and its slot is free.
func (p *port) stop(k runKey) {
	p.mu.Lock()
	r := p.runs[k]
	if r != nil {
		delete(p.runs, k)
	}
	p.mu.Unlock()
	if r != nil {
		r.silence(true)
		r.cancel()
	}
}

// silence makes sure nothing more is sent for the completion.
func (r *run) silence(byStop bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.over {
		r.over, r.stopped = true, byStop
	}
}

func (r *run) tokens() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// LocalOnly implements real.LocalOnly: only the worker node of the engine's own process may
// load models and generate through it; a message from another process would use the device
// outside the worker's slots and the queen's admission.
func (p *port) LocalOnly() bool { return true }

// Close implements real.Port: it sends nothing more, stops every completion and load, waits
// for their goroutines, and then releases the backend (stopping a server it started).
func (p *port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, r := range p.runs { // order does not matter: every run is silenced
		r.silence(false)
	}
	p.runs = map[runKey]*run{}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if err := p.be.close(); err != nil {
		return fmt.Errorf("engine: close: %w", err)
	}
	return nil
}
