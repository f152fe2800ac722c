package worker

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// key is a request as its sender knows it.
type key struct {
	from node.Addr
	id   uint64
}

// request is one InferReq the worker has taken: queued, or running in a slot.
type request struct {
	key     key
	id      uint64 // the worker's own ID: the engine's ReqID and the timers' Req
	req     api.InferReq
	running bool // in a slot (it was sent to the engine)
	// keepSlot makes finish leave the slot taken: the planted bug PlantSlotLeakOnCancel.
	keepSlot bool
	tokens   int          // tokens sent to the requester so far
	deadline node.TimerID // the sender's deadline, 0 when none or fired
	due      time.Time    // when the sender's deadline passes, zero when none
	maxTime  node.TimerID // MaxTime from the start of generation, 0 while queued or fired
}

// handleReq takes a request: it starts it, queues it or refuses it. A repeat of a request in
// progress is ignored; a repeat of an ended one gets its InferDone again.
func (w *Worker) handleReq(env node.Env, from node.Addr, m api.InferReq) {
	k := key{from: from, id: m.ReqID}
	if w.live[k] != nil {
		return
	}
	if d, ok := w.done.get(k); ok {
		env.Observe(node.Mark("worker answered a repeated request with its end"))
		env.Send(from, d)
		return
	}
	if err := w.admit(m); !err.OK() {
		w.refuse(env, k, err)
		return
	}
	r := &request{key: k, id: w.nextID, req: m}
	w.nextID++
	switch {
	case w.active < w.cfg.Slots:
		w.add(r)
		w.start(env, r)
	case len(w.queue) < w.cfg.QueueMax:
		w.add(r)
		w.queue = append(w.queue, r)
	default:
		env.Observe(node.Mark("worker refused: all slots busy"))
		w.refuse(env, k, api.Errorf(api.CodeAllSlotsBusy, "retry after 1s or route to another worker",
			"worker %s is full: %d/%d slots active and %d/%d requests queued",
			w.cfg.ID, w.active, w.cfg.Slots, len(w.queue), w.cfg.QueueMax))
		return
	}
	if m.Timeout > 0 {
		r.deadline = env.After(m.Timeout, timerMsg{Kind: kindDeadline, Req: r.id})
		r.due = env.Now().Add(m.Timeout)
	}
}

// admit checks a request at the edge: MaxTokens >= 1, Timeout and MaxTime not negative, the
// model this worker's (or empty), and the worker taking requests.
func (w *Worker) admit(m api.InferReq) api.Error {
	switch {
	case m.MaxTokens < 1:
		return api.Errorf(api.CodeInvalidRequest, "set max_tokens to 1 or more",
			"request %d asks for max_tokens %d; it must be at least 1", m.ReqID, m.MaxTokens)
	case m.Timeout < 0 || m.MaxTime < 0:
		return api.Errorf(api.CodeInvalidRequest, "send a timeout and max_time of 0 (none or default) or more",
			"request %d has timeout %v and max_time %v; neither may be negative", m.ReqID, m.Timeout, m.MaxTime)
	case m.Model != "" && m.Model != w.cfg.Model:
		return api.Errorf(api.CodeModelNotServed, "route the request to a worker that serves "+m.Model,
			"worker %s serves %s, not %s", w.cfg.ID, w.cfg.Model, m.Model)
	}
	switch w.mode {
	case modeLoading:
		return api.Errorf(api.CodeUnavailable, "retry once the worker reports ready, or route to another worker",
			"worker is loading: %s has not finished loading %s", w.cfg.ID, w.cfg.Model)
	case modeFailed:
		return api.Errorf(api.CodeUnavailable, "route to another worker",
			"worker is not serving: %s failed to load %s and is stopping", w.cfg.ID, w.cfg.Model)
	case modeDraining:
		return api.Errorf(api.CodeUnavailable, "route to another worker",
			"worker is draining: %s finishes the requests it has and then stops", w.cfg.ID)
	}
	return api.Error{}
}

// refuse ends a request the worker never took.
func (w *Worker) refuse(env node.Env, k key, err api.Error) {
	w.end(env, k, api.InferDone{ReqID: k.id, FinishReason: api.FinishError, Err: err, Worker: env.Self()})
}

func (w *Worker) add(r *request) {
	w.live[r.key] = r
	w.byID[r.id] = r
}

// start puts a request in a free slot: the engine generates, and MaxTime starts now.
func (w *Worker) start(env node.Env, r *request) {
	if w.active >= w.cfg.Slots || r.running {
		panic(fmt.Sprintf("worker %s: start of request %d with %d/%d slots active (running %v)",
			w.cfg.ID, r.id, w.active, w.cfg.Slots, r.running))
	}
	w.active++
	r.running = true
	env.Send(w.cfg.Engine, api.EngineGenerate{ReqID: r.id, Prompt: r.req.Prompt,
		PromptTokens: promptTokens(r.req.Prompt), MaxTokens: r.req.MaxTokens, Seed: r.req.Seed})
	maxTime := r.req.MaxTime
	if maxTime == 0 {
		maxTime = api.DefaultMaxTime
	}
	r.maxTime = env.After(maxTime, timerMsg{Kind: kindMaxTime, Req: r.id})
}

// promptTokens is the prompt's length in tokens as the engine is told it: its
// whitespace-separated words, at least 1.
func promptTokens(prompt string) int { return max(1, len(strings.Fields(prompt))) }

// finish ends a taken request: it frees its slot (or takes it off the queue), cancels its
// timers, sends its one InferDone, then starts queued requests in the free slots. The caller
// has already stopped the engine where needed.
func (w *Worker) finish(env node.Env, r *request, reason api.FinishReason, err api.Error) {
	if r.running {
		if !r.keepSlot {
			w.active--
		}
	} else {
		w.unqueue(r)
	}
	if w.active < 0 {
		panic(fmt.Sprintf("worker %s: %d slots active after request %d ended", w.cfg.ID, w.active, r.id))
	}
	for _, t := range []node.TimerID{r.deadline, r.maxTime} {
		if t != 0 {
			env.Cancel(t)
		}
	}
	delete(w.live, r.key)
	delete(w.byID, r.id)
	w.end(env, r.key, api.InferDone{ReqID: r.key.id, FinishReason: reason, Tokens: r.tokens, Err: err,
		Worker: env.Self()})
	w.fill(env)
	w.maybeDrained(env)
}

// end sends a request's InferDone and remembers it for repeats.
func (w *Worker) end(env node.Env, k key, d api.InferDone) {
	w.done.put(k, d)
	env.Send(k.from, d)
}

// unqueue takes a queued request off the queue.
func (w *Worker) unqueue(r *request) {
	for i, q := range w.queue {
		if q == r {
			w.queue = append(w.queue[:i], w.queue[i+1:]...)
			return
		}
	}
	panic(fmt.Sprintf("worker %s: request %d is neither running nor queued", w.cfg.ID, r.id))
}

// fill starts queued requests, oldest first, while slots are free.
func (w *Worker) fill(env node.Env) {
	for w.active < w.cfg.Slots && len(w.queue) > 0 {
		r := w.queue[0]
		w.queue = w.queue[1:]
		w.start(env, r)
	}
}

// handleCancel stops a request of the sender's: running (the engine is told to stop) or
// queued. It always answers InferCancelResp without error. A cancel for a request the worker
// has not seen is remembered as that request's end, so that an InferReq overtaken by its own
// cancel is not run.
func (w *Worker) handleCancel(env node.Env, from node.Addr, m api.InferCancel) {
	k := key{from: from, id: m.ReqID}
	if r := w.live[k]; r != nil {
		if r.running {
			env.Send(w.cfg.Engine, api.EngineStop{ReqID: r.id})
			r.keepSlot = w.cfg.Plants.Has(PlantSlotLeakOnCancel)
		}
		w.finish(env, r, api.FinishCancelled, api.Errorf(api.CodeCancelled, "send the request again to run it",
			"request %d was cancelled by its sender after %d tokens", m.ReqID, r.tokens))
	} else if _, ok := w.done.get(k); !ok {
		env.Observe(node.Mark("worker cancel before its request"))
		w.done.put(k, api.InferDone{ReqID: m.ReqID, FinishReason: api.FinishCancelled, Worker: env.Self(),
			Err: api.Errorf(api.CodeCancelled, "send the request again with a new ReqID to run it",
				"request %d was cancelled before it reached worker %s", m.ReqID, w.cfg.ID)})
	}
	env.Send(from, api.InferCancelResp{ReqID: m.ReqID})
}

// expireMaxTime ends a running request that reached its MaxTime; the tokens sent stand.
func (w *Worker) expireMaxTime(env node.Env, r *request) {
	env.Observe(node.Mark("worker generation timeout"))
	env.Send(w.cfg.Engine, api.EngineStop{ReqID: r.id})
	maxTime := r.req.MaxTime
	if maxTime == 0 {
		maxTime = api.DefaultMaxTime
	}
	w.finish(env, r, api.FinishTimeout, api.Errorf(api.CodeGenerationTimeout,
		"raise max_time or lower max_tokens; the output so far was kept",
		"request %d reached its max_time of %v after %d of at most %d tokens; the partial output was sent",
		r.key.id, maxTime, r.tokens, r.req.MaxTokens))
}

// expireDeadline ends a request whose sender's deadline passed, queued or running.
func (w *Worker) expireDeadline(env node.Env, r *request) {
	where := "while queued"
	if r.running {
		where = "while generating"
		env.Send(w.cfg.Engine, api.EngineStop{ReqID: r.id})
	}
	env.Observe(node.Mark("worker deadline exceeded " + where))
	w.finish(env, r, api.FinishTimeout, api.Errorf(api.CodeDeadlineExceeded,
		"raise the timeout, or retry when the cluster is less busy",
		"request %d passed its deadline (timeout %v from its arrival) %s, after %d tokens",
		r.key.id, r.req.Timeout, where, r.tokens))
}

// handleToken forwards a running request's token to its sender. Tokens of ended or unknown
// requests (stale: the engine had not yet seen the stop) are dropped, and so are repeats and
// tokens past MaxTokens. Indexes sent are the worker's own count, so they stay contiguous.
func (w *Worker) handleToken(env node.Env, m api.EngineToken) {
	r := w.byID[m.ReqID]
	if r == nil || !r.running {
		env.Observe(node.Mark("worker dropped a stale engine token"))
		return
	}
	if m.Index < r.tokens || r.tokens >= r.req.MaxTokens {
		env.Log().Warn("worker: engine token repeated or past max_tokens, dropped",
			"req", r.key.id, "index", m.Index, "sent", r.tokens, "max_tokens", r.req.MaxTokens)
		return
	}
	if m.Index > r.tokens {
		env.Log().Warn("worker: engine skipped token indexes", "req", r.key.id, "index", m.Index, "want", r.tokens)
	}
	if !r.due.IsZero() && !env.Now().Before(r.due) {
		// The deadline passed before its timer could fire (this process was stopped, and
		// tokens came first when it resumed): no token after the deadline.
		env.Cancel(r.deadline)
		r.deadline = 0
		w.expireDeadline(env, r)
		return
	}
	env.Send(r.key.from, api.InferToken{ReqID: r.key.id, Index: r.tokens, Text: m.Text})
	r.tokens++
}

// handleEngineDone ends a running request as the engine says: stop, length, or an error.
func (w *Worker) handleEngineDone(env node.Env, m api.EngineDone) {
	r := w.byID[m.ReqID]
	if r == nil || !r.running {
		return
	}
	switch m.Reason {
	case api.FinishStop, api.FinishLength:
		w.finish(env, r, m.Reason, api.Error{})
	case api.FinishError:
		if m.Err.Code == api.CodeAllSlotsBusy && r.tokens == 0 {
			// An engine that is a server of its own (llama.cpp, vLLM) was busy with other
			// clients' work: the request never started, so it is a refusal the queen can send
			// elsewhere, not an engine failure.
			env.Observe(node.Mark("worker engine refused: busy"))
			w.finish(env, r, api.FinishError, api.Errorf(api.CodeAllSlotsBusy,
				"retry after a moment, or on another worker",
				"the inference engine of worker %s is busy with other work: %s", w.cfg.ID, engineReason(m)))
			return
		}
		fallthrough
	default:
		env.Observe(node.Mark("worker engine error"))
		w.finish(env, r, api.FinishError, api.Errorf(api.CodeEngineError,
			"retry the request; if it keeps failing, restart the worker or free GPU memory",
			"the inference engine of worker %s failed request %d after %d tokens: %s",
			w.cfg.ID, r.key.id, r.tokens, engineReason(m)))
	}
}

// engineReason is the engine's own account of a failed completion, for messages.
func engineReason(m api.EngineDone) string {
	switch {
	case m.Err.Message != "":
		return m.Err.Message
	case m.Reason != api.FinishError:
		return fmt.Sprintf("it ended with the unexpected reason %q", m.Reason)
	}
	return "it gave no reason"
}

// doneCache remembers the InferDone of the last max ended requests, for repeats.
type doneCache struct {
	max   int
	ends  map[key]api.InferDone // looked up, never iterated
	order []key                 // oldest first
}

func newDoneCache(limit int) doneCache { return doneCache{max: limit, ends: map[key]api.InferDone{}} }

func (c *doneCache) get(k key) (api.InferDone, bool) {
	d, ok := c.ends[k]
	return d, ok
}

func (c *doneCache) put(k key, d api.InferDone) {
	if _, ok := c.ends[k]; !ok {
		if len(c.order) == c.max {
			delete(c.ends, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, k)
	}
	c.ends[k] = d
}

// handlePeerGone cancels every request of a sender whose stream broke (the queen died): nobody
// will read their tokens, and their slots are wanted.
func (w *Worker) handlePeerGone(env node.Env, g node.PeerGone) {
	var gone []*request
	for k, r := range w.live { //det:sorted (sorted next)
		if k.from == g.Peer {
			gone = append(gone, r)
		}
	}
	// Queued ones first, so that a freed slot does not start one of them.
	sort.Slice(gone, func(i, j int) bool {
		if gone[i].running != gone[j].running {
			return !gone[i].running
		}
		return gone[i].id < gone[j].id
	})
	for _, r := range gone {
		env.Observe(node.Mark("worker cancelled: requester went away"))
		if r.running {
			env.Send(w.cfg.Engine, api.EngineStop{ReqID: r.id})
			r.keepSlot = w.cfg.Plants.Has(PlantSlotLeakOnCancel)
		}
		w.finish(env, r, api.FinishCancelled, api.Errorf(api.CodeCancelled, "send the request again to run it",
			"request %d was cancelled: its sender went away after %d tokens", r.key.id, r.tokens))
	}
}
