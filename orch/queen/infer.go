package queen

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Inference routing: the queen as the hop between clients (rbee-keeper) and workers
// (llm-worker-rbee) on the inference path of orch/api/inference.go.
//
// For each client InferReq the queen picks a worker among the registry's records that serve the
// model, are healthy and are idle or busy (never loading or draining), preferring the one with
// the fewest outstanding attempts (ties broken with env.Rand()), and refuses the request when
// every such worker already has Slots + QueueAllowance attempts (ALL_SLOTS_BUSY). It sends the
// worker an InferReq of its own (an attempt, with the queen's attempt ReqID), relays the
// attempt's tokens and its end to the client under the client's ReqID, and guarantees exactly
// one InferDone per client request and no token after it.
//
// An attempt fails over to another worker (never one already tried for the request) when its
// worker answers WORKER_LOST, ENGINE_ERROR, UNAVAILABLE or ALL_SLOTS_BUSY, when nothing comes
// from it for StallTimeout, or when the registry removes the worker, marks it stale or sees it
// re-registered under a new incarnation. Handle re-checks the attempts on a worker after every
// registry request and heartbeat timer that names it, so every way a record disappears or goes
// bad is seen at once, without the registry knowing about inference. The new attempt uses the
// same Seed, so it regenerates the same tokens: the queen keeps the texts it already relayed,
// checks the regenerated prefix against them and suppresses it, and relays from the first
// index the client does not have. A differing token, no worker left or FailoverMax reached end
// the request with WORKER_LOST; the tokens already delivered stand.
//
// The network may lose, duplicate and reorder messages: duplicated tokens are suppressed like a
// regenerated prefix, a token that overtook an earlier one waits for it, and an end that
// overtook its tokens waits for them; tokens that never come leave the attempt silent, so the
// stall timer fails it over and another worker regenerates them.
//
// All of this state is volatile, unlike the registry: a queen crash loses the requests in
// flight and the memory of finished ones. That is accepted: the clients' streams stop and their
// own deadlines or retries take over, and a worker still streaming for a lost attempt gets an
// InferCancel with its next token. Attempt IDs carry the boot epoch, so a restarted queen never
// reuses one a worker may remember. Routing never writes the registry or its log: the queen
// counts outstanding attempts itself instead of claiming workers.

// Plant names of the inference path (see orch/plant).
const (
	plantRouteToDraining = "queen-route-to-draining"
	plantFailoverDupes   = "failover-duplicate-tokens"
)

// attemptSeqBits is how many low bits of an attempt ReqID count attempts within a boot epoch;
// the bits above hold the epoch (modulo 2^24), so attempt IDs of different queen starts differ.
const attemptSeqBits = 40

// Timer messages of the inference path.
type (
	// inferDeadlineTimer fires when a client's deadline passes. Seq names the request, so a
	// timer of a finished request whose (client, ReqID) came back finds another Seq.
	inferDeadlineTimer struct {
		Client node.Addr
		ReqID  uint64
		Seq    uint64
	}
	// inferStallTimer fires when an attempt went StallTimeout without a token or its end. Gen
	// names the arming, so a timer re-armed by a later token is ignored.
	inferStallTimer struct {
		Attempt uint64
		Gen     uint64
	}
)

// MsgName implements node.Msg.
func (inferDeadlineTimer) MsgName() string { return "queen.infer_deadline" }

// MsgName implements node.Msg.
func (inferStallTimer) MsgName() string { return "queen.infer_stall" }

func (inferDeadlineTimer) timer() {}
func (inferStallTimer) timer()    {}

// inferState is the queen's volatile routing state. Its maps are only looked up, never
// iterated; order lives in slices.
type inferState struct {
	active   map[dedupKey]*inference // client requests in progress, by (client, ReqID)
	attempts map[uint64]*inference   // the current attempt of each active request, by attempt ReqID
	load     map[string][]*inference // worker ID -> requests whose attempt runs there, oldest first; absent when none
	finished doneCache               // answers to finished requests, for repeats

	attemptSeq uint64 // attempts started in this boot epoch
	reqSeq     uint64 // client requests accepted; names their deadline timers
	scratch    []*worker
}

func newInferState(cfg Config) inferState {
	return inferState{
		active:   map[dedupKey]*inference{},
		attempts: map[uint64]*inference{},
		load:     map[string][]*inference{},
		finished: doneCache{max: cfg.InferDedupEntriesMax, entries: map[dedupKey]api.InferDone{}},
	}
}

// inference is one client request in progress. It always has exactly one attempt running.
type inference struct {
	key       dedupKey
	seq       uint64
	req       api.InferReq // as the client sent it
	deadline  time.Time    // receipt + req.Timeout; zero when the client set none
	deadlineT node.TimerID
	sent      []string  // texts of the tokens relayed to the client, by index
	tried     []string  // workers tried, in order; never tried again for this request
	failovers int       // counted failovers so far (re-routes after ALL_SLOTS_BUSY do not count)
	worker    node.Addr // the worker that produced the last token or last refused
	att       attempt
}

// attempt is the request's current run on one worker.
type attempt struct {
	id          uint64
	worker      string
	incarnation uint64
	stall       node.TimerID
	stallGen    uint64
	heard       bool           // a token of this attempt arrived
	ahead       map[int]string // tokens that overtook a missing one, by index; looked up only
	done        *api.InferDone // an end that overtook some of its tokens
}

// doneCache remembers the InferDone of at most max finished requests, forgetting the oldest
// first. The map is only looked up; order lives in the FIFO slice.
type doneCache struct {
	max     int
	entries map[dedupKey]api.InferDone
	order   []dedupKey // oldest first
}

func (d *doneCache) get(k dedupKey) (api.InferDone, bool) {
	done, ok := d.entries[k]
	return done, ok
}

func (d *doneCache) add(k dedupKey, done api.InferDone) {
	if _, ok := d.entries[k]; ok {
		panic(fmt.Sprintf("queen: inference request %d from %s finished twice", k.ReqID, k.From))
	}
	d.entries[k] = done
	d.order = append(d.order, k)
	for len(d.order) > d.max {
		delete(d.entries, d.order[0])
		d.order = d.order[1:]
	}
}

// Outstanding is the number of inference attempts the queen has running on a worker.
func (q *Queen) Outstanding(worker string) int { return len(q.infer.load[worker]) }

// Inflight is the number of client inference requests in progress.
func (q *Queen) Inflight() int { return len(q.infer.active) }

// handleInferReq accepts a client's request and starts its first attempt, or refuses it. A
// repeat of a request in progress is ignored; a repeat of a finished one gets its InferDone
// again. A refused request changed nothing, so it is not remembered: a retry is judged afresh.
func (q *Queen) handleInferReq(env node.Env, from node.Addr, r api.InferReq) {
	key := dedupKey{From: from, ReqID: r.ReqID}
	if inf, ok := q.infer.active[key]; ok {
		env.Observe(node.Mark("duplicate inference request ignored"))
		// The client resent it: our InferAccepted may have been lost.
		env.Send(from, api.InferAccepted{ReqID: r.ReqID, Worker: node.Addr(inf.att.worker)})
		return
	}
	if done, ok := q.infer.finished.get(key); ok {
		env.Observe(node.Mark("finished inference request answered again"))
		env.Send(from, done)
		return
	}
	if !q.ready {
		q.refuse(env, key, errRecovering("inference request"))
		return
	}
	if err := validInfer(r); !err.OK() {
		q.refuse(env, key, err)
		return
	}
	q.infer.reqSeq++
	inf := &inference{key: key, seq: q.infer.reqSeq, req: r}
	w, st := q.pick(env, inf)
	if w == nil {
		q.refuse(env, key, q.errNotRoutable(r.Model, st))
		return
	}
	if r.Timeout > 0 {
		inf.deadline = env.Now().Add(r.Timeout)
		inf.deadlineT = env.After(r.Timeout, inferDeadlineTimer{Client: from, ReqID: r.ReqID, Seq: inf.seq})
	}
	q.infer.active[key] = inf
	q.startAttempt(env, inf, w, r.Timeout)
	env.Send(from, api.InferAccepted{ReqID: r.ReqID, Worker: node.Addr(w.rec.ID)})
	q.assertInfer()
}

// validInfer checks a client's request at the edge: a model, at least one token, and no
// negative durations.
func validInfer(r api.InferReq) api.Error {
	switch {
	case r.Model == "":
		return api.Errorf(api.CodeInvalidRequest, "name the model to run (its catalog ID, e.g. hf:TheBloke/tinyllama)",
			"inference request %d names no model", r.ReqID)
	case r.MaxTokens < 1:
		return api.Errorf(api.CodeInvalidRequest, "ask for at least 1 token (max_tokens)",
			"inference request %d asks for max_tokens %d", r.ReqID, r.MaxTokens)
	case r.Timeout < 0 || r.MaxTime < 0:
		return api.Errorf(api.CodeInvalidRequest, "use a positive timeout and max_time, or 0 for none and the default",
			"inference request %d has timeout %s and max_time %s; durations cannot be negative", r.ReqID, r.Timeout, r.MaxTime)
	}
	return api.Error{}
}

// refuse answers a request that never reached a worker.
//
// The refusal is remembered like any end: a resend of the same request (the client's
// connection retry, crossing the refusal) gets the refusal again instead of starting work the
// client has already given up on. A client retries a refused request under a new ReqID.
func (q *Queen) refuse(env node.Env, key dedupKey, err api.Error) {
	done := api.InferDone{ReqID: key.ReqID, FinishReason: api.FinishError, Err: err}
	q.infer.finished.add(key, done)
	env.Send(key.From, done)
}

// routeStats counts what pick saw, for the refusal that explains it.
type routeStats struct {
	serving     int // records of the model
	candidates  int // of those: healthy, idle or busy, not tried for this request
	full        int // of those: at Slots + QueueAllowance outstanding attempts
	outstanding int // attempts on the candidates
	capacity    int // their Slots + QueueAllowance, summed
}

// pick chooses the worker for the request's next attempt: among the candidates that are not
// full, one with the fewest outstanding attempts, ties broken with env.Rand(). It draws from
// env.Rand() only when there is a tie. It returns nil when no candidate has room.
// leastLoaded is the routable, untried candidate with the fewest outstanding attempts, full or
// not (ties broken with env.Rand()); nil when there is none.
func (q *Queen) leastLoaded(env node.Env, inf *inference) *worker {
	var best []*worker
	least := 0
	for _, w := range q.sorted {
		if w.rec.Model != inf.req.Model || !q.routable(&w.rec) || slices.Contains(inf.tried, w.rec.ID) {
			continue
		}
		switch n := w.outstanding; {
		case len(best) == 0 || n < least:
			best, least = append(best[:0], w), n
		case n == least:
			best = append(best, w)
		}
	}
	switch len(best) {
	case 0:
		return nil
	case 1:
		return best[0]
	}
	return best[env.Rand().IntN(len(best))]
}

func (q *Queen) pick(env node.Env, inf *inference) (*worker, routeStats) {
	var st routeStats
	best, least := q.infer.scratch[:0], 0
	for _, w := range q.sorted {
		rec := &w.rec
		if rec.Model != inf.req.Model {
			continue
		}
		st.serving++
		if !q.routable(rec) || slices.Contains(inf.tried, rec.ID) {
			continue
		}
		n, c := w.outstanding, q.capacity(rec)
		st.candidates++
		st.outstanding += n
		st.capacity += c
		switch {
		case n >= c:
			st.full++
		case len(best) == 0 || n < least:
			best, least = append(best[:0], w), n
		case n == least:
			best = append(best, w)
		}
	}
	var w *worker
	switch len(best) {
	case 0:
	case 1:
		w = best[0]
	default:
		w = best[env.Rand().IntN(len(best))]
	}
	clear(best) // drop the pointers so removed workers are not kept alive
	q.infer.scratch = best[:0]
	return w, st
}

// routable says whether a record may get new requests: healthy, and idle or busy. Loading and
// draining workers, stale and unconfirmed ones never do.
func (q *Queen) routable(rec *api.WorkerRecord) bool {
	if rec.Health != api.HealthHealthy {
		return false
	}
	switch rec.State {
	case api.StateIdle, api.StateBusy:
		return true
	case api.StateDraining:
		return q.cfg.Plants.Has(plantRouteToDraining)
	}
	return false
}

// capacity is how many attempts a worker may have outstanding: its slots and the queue
// allowance.
func (q *Queen) capacity(rec *api.WorkerRecord) int {
	if q.cfg.QueueAllowance == QueueAllowanceSlots {
		return 2 * rec.Slots
	}
	return rec.Slots + q.cfg.QueueAllowance
}

// startAttempt sends the request to w as a new attempt with timeout left of the client's
// deadline (0: none), and arms its stall timer.
func (q *Queen) startAttempt(env node.Env, inf *inference, w *worker, timeout time.Duration) {
	if inf.att.id != 0 {
		panic(fmt.Sprintf("queen: request %d from %s starts an attempt on %s while attempt %d runs on %s",
			inf.key.ReqID, inf.key.From, w.rec.ID, inf.att.id, inf.att.worker))
	}
	q.infer.attemptSeq++
	if q.infer.attemptSeq >= 1<<attemptSeqBits {
		panic(fmt.Sprintf("queen: %d inference attempts in boot epoch %d; attempt IDs would repeat", q.infer.attemptSeq, q.epoch))
	}
	id := (q.epoch%(1<<(64-attemptSeqBits)))<<attemptSeqBits | q.infer.attemptSeq
	inf.att = attempt{id: id, worker: w.rec.ID, incarnation: w.rec.Incarnation}
	inf.tried = append(inf.tried, w.rec.ID)
	q.infer.attempts[id] = inf
	q.infer.load[w.rec.ID] = append(q.infer.load[w.rec.ID], inf)
	w.outstanding++
	r := inf.req
	env.Send(node.Addr(w.rec.ID), api.InferReq{ReqID: id, Model: r.Model, Prompt: r.Prompt, MaxTokens: r.MaxTokens,
		Seed: r.Seed, Timeout: timeout, MaxTime: r.MaxTime})
	q.armStall(env, inf)
}

// armStall (re)starts the current attempt's stall timer.
func (q *Queen) armStall(env node.Env, inf *inference) {
	a := &inf.att
	if a.stall != 0 {
		env.Cancel(a.stall)
	}
	a.stallGen++
	a.stall = env.After(q.cfg.StallTimeout, inferStallTimer{Attempt: a.id, Gen: a.stallGen})
}

// endAttempt forgets the request's current attempt and frees its place on the worker; with
// cancel it also tells the worker to stop.
func (q *Queen) endAttempt(env node.Env, inf *inference, cancel bool) {
	a := inf.att
	if a.id == 0 || q.infer.attempts[a.id] != inf {
		panic(fmt.Sprintf("queen: ending attempt %d of request %d from %s, which is not its running attempt", a.id, inf.key.ReqID, inf.key.From))
	}
	delete(q.infer.attempts, a.id)
	list := q.infer.load[a.worker]
	i := slices.Index(list, inf)
	if i < 0 {
		panic(fmt.Sprintf("queen: attempt %d is not counted on worker %s (%d counted)", a.id, a.worker, len(list)))
	}
	if list = slices.Delete(list, i, i+1); len(list) == 0 {
		delete(q.infer.load, a.worker)
	} else {
		q.infer.load[a.worker] = list
	}
	if w := q.workers[a.worker]; w != nil {
		// A removed worker's attempts all fail over before its ID can be registered again
		// (recheckAttempts runs after every registry request), so a record's count is its list.
		if w.outstanding--; w.outstanding != len(list) {
			panic(fmt.Sprintf("queen: worker %s counts %d outstanding attempts but %d are listed", a.worker, w.outstanding, len(list)))
		}
	}
	if a.stall != 0 {
		env.Cancel(a.stall)
	}
	if cancel {
		env.Send(node.Addr(a.worker), api.InferCancel{ReqID: a.id})
	}
	inf.att = attempt{}
}

// finish ends a request whose attempt has ended: the one InferDone goes to the client and is
// remembered for repeats. Tokens is what the client received; Worker defaults to the last one
// that produced a token.
func (q *Queen) finish(env node.Env, inf *inference, done api.InferDone) {
	if inf.att.id != 0 {
		panic(fmt.Sprintf("queen: finishing request %d from %s while attempt %d runs", inf.key.ReqID, inf.key.From, inf.att.id))
	}
	if inf.deadlineT != 0 {
		env.Cancel(inf.deadlineT)
	}
	delete(q.infer.active, inf.key)
	done.ReqID, done.Tokens = inf.key.ReqID, len(inf.sent)
	if done.Worker == "" {
		done.Worker = inf.worker
	}
	q.infer.finished.add(inf.key, done)
	env.Send(inf.key.From, done)
}

// finishLost ends a request that no worker can continue: WORKER_LOST, the partial output
// standing.
func (q *Queen) finishLost(env node.Env, inf *inference, why string) {
	env.Observe(node.Mark("inference ended with worker lost"))
	env.Log().Warn("queen: inference request lost its worker", "client", inf.key.From, "req_id", inf.key.ReqID,
		"tokens", len(inf.sent), "why", why)
	q.finish(env, inf, api.InferDone{FinishReason: api.FinishError, Err: errWorkerLost(inf, why)})
}

// attemptFrom finds the request whose running attempt a worker's message belongs to. A message
// of an attempt the queen abandoned (or never made) is dropped; with cancelLate the sender is
// told to stop that attempt, since it is still generating.
func (q *Queen) attemptFrom(env node.Env, from node.Addr, id uint64, cancelLate bool) *inference {
	inf := q.infer.attempts[id]
	if inf == nil {
		if cancelLate {
			env.Observe(node.Mark("late inference attempt cancelled"))
			env.Send(from, api.InferCancel{ReqID: id})
		}
		return nil
	}
	if from != node.Addr(inf.att.worker) {
		env.Log().Warn("queen: dropping an inference message from a node that does not run the attempt",
			"from", from, "attempt", id, "worker", inf.att.worker)
		return nil
	}
	return inf
}

// handleInferToken relays a token of a running attempt, suppresses one the client already has,
// or holds one that overtook a missing token.
func (q *Queen) handleInferToken(env node.Env, from node.Addr, t api.InferToken) {
	inf := q.attemptFrom(env, from, t.ReqID, true)
	if inf == nil {
		return
	}
	inf.att.heard = true
	q.armStall(env, inf)
	switch i := t.Index; {
	case i < 0 || i >= inf.req.MaxTokens:
		env.Log().Warn("queen: dropping a token outside the request's range", "worker", from, "attempt", t.ReqID,
			"index", i, "max_tokens", inf.req.MaxTokens)
	case i < len(inf.sent):
		q.regenerated(env, inf, i, t.Text)
	case i > len(inf.sent):
		if inf.att.ahead == nil {
			inf.att.ahead = map[int]string{}
		}
		inf.att.ahead[i] = t.Text
	default:
		q.relay(env, inf, t.Text)
		for {
			text, ok := inf.att.ahead[len(inf.sent)]
			if !ok {
				break
			}
			delete(inf.att.ahead, len(inf.sent))
			q.relay(env, inf, text)
		}
		if d := inf.att.done; d != nil && len(inf.sent) >= d.Tokens {
			q.complete(env, inf, *d)
		}
	}
	q.assertInfer()
}

// relay sends the client the next token of its stream.
func (q *Queen) relay(env node.Env, inf *inference, text string) {
	i := len(inf.sent)
	inf.sent = append(inf.sent, text)
	inf.worker = node.Addr(inf.att.worker)
	env.Send(inf.key.From, api.InferToken{ReqID: inf.key.ReqID, Index: i, Text: text})
}

// regenerated handles a token the client already has (a failover attempt regenerating the
// prefix, or a duplicate): the same text is suppressed; another text means the stream cannot
// continue, and the request ends with WORKER_LOST.
func (q *Queen) regenerated(env node.Env, inf *inference, i int, text string) {
	if inf.sent[i] != text {
		env.Observe(node.Mark("regenerated token differs"))
		why := fmt.Sprintf("worker %s regenerated token %d as %q but the client already has %q there, so the stream cannot continue",
			inf.att.worker, i, text, inf.sent[i])
		q.endAttempt(env, inf, true)
		q.finishLost(env, inf, why)
		return
	}
	if len(inf.tried) < 2 {
		return // a duplicate of the first attempt's token
	}
	if q.cfg.Plants.Has(plantFailoverDupes) {
		env.Send(inf.key.From, api.InferToken{ReqID: inf.key.ReqID, Index: i, Text: text})
		return
	}
	env.Observe(node.Mark("regenerated token suppressed"))
}

// handleInferDone ends a running attempt: a failure that another worker can make good fails
// over; an end that overtook its tokens waits for them; any other end is relayed.
func (q *Queen) handleInferDone(env node.Env, from node.Addr, d api.InferDone) {
	inf := q.attemptFrom(env, from, d.ReqID, false)
	if inf == nil {
		return
	}
	switch {
	case d.Err.Code == api.CodeAllSlotsBusy && !inf.att.heard:
		inf.worker = from
		q.failover(env, inf, fmt.Sprintf("worker %s had no free slot (%s)", from, d.Err.Message), false, false)
	case failoverCode(d.Err.Code):
		inf.worker = from
		q.failover(env, inf, fmt.Sprintf("worker %s failed the request: %v", from, d.Err), true, false)
	case d.Tokens > len(inf.sent):
		held := d
		inf.att.done = &held
		q.armStall(env, inf)
	case d.Tokens < len(inf.sent) && d.Err.OK():
		env.Observe(node.Mark("regenerated token differs"))
		why := fmt.Sprintf("worker %s ended the regenerated stream after %d tokens but the client already has %d, so the outputs differ",
			from, d.Tokens, len(inf.sent))
		q.endAttempt(env, inf, false)
		q.finishLost(env, inf, why)
	default:
		q.complete(env, inf, d)
	}
	q.assertInfer()
}

// failoverCode says whether a worker's error lets another worker take the request over.
func failoverCode(c api.Code) bool {
	switch c {
	case api.CodeWorkerLost, api.CodeEngineError, api.CodeUnavailable, api.CodeAllSlotsBusy:
		return true
	}
	return false
}

// complete ends the request with the worker's own end, once the client has every token.
func (q *Queen) complete(env node.Env, inf *inference, d api.InferDone) {
	worker := node.Addr(inf.att.worker)
	q.endAttempt(env, inf, false)
	q.finish(env, inf, api.InferDone{FinishReason: d.FinishReason, Err: d.Err, Worker: worker})
}

// failover abandons the request's attempt (with cancel, telling its worker to stop) and starts
// another on a worker not yet tried. A counted failover uses up one of FailoverMax; a re-route
// after ALL_SLOTS_BUSY before any token does not. why says what happened to the attempt.
func (q *Queen) failover(env node.Env, inf *inference, why string, counted, cancel bool) {
	q.endAttempt(env, inf, cancel)
	if counted && inf.failovers >= q.cfg.FailoverMax {
		q.finishLost(env, inf, fmt.Sprintf("%s, and the request already moved to another worker %d times (failover_max)", why, inf.failovers))
		return
	}
	w, st := q.pick(env, inf)
	if w == nil && counted {
		// A request already under way is not turned away for want of room: it goes to the
		// least loaded candidate beyond the admission allowance, whose own queue bounds it.
		w = q.leastLoaded(env, inf)
	}
	if w == nil {
		if !counted && len(inf.sent) == 0 {
			env.Observe(node.Mark("inference refused: every worker's slots busy"))
			q.finish(env, inf, api.InferDone{FinishReason: api.FinishError, Err: api.Errorf(api.CodeAllSlotsBusy,
				fmt.Sprintf("retry after 1s, or start more workers for the model (rbee-keeper worker start --model %s)", inf.req.Model),
				"%s; every worker serving model %s that could take the request is full or refused it (%d tried, %d serve it)",
				why, inf.req.Model, len(inf.tried), st.serving)})
			return
		}
		q.finishLost(env, inf, fmt.Sprintf("%s, and no other healthy worker serving model %s has room (%d tried, %d serve it)",
			why, inf.req.Model, len(inf.tried), st.serving))
		return
	}
	var timeout time.Duration
	if !inf.deadline.IsZero() {
		if timeout = min(inf.deadline.Sub(env.Now()), inf.req.Timeout); timeout <= 0 {
			q.finish(env, inf, api.InferDone{FinishReason: api.FinishTimeout, Err: errDeadline(inf)})
			return
		}
	}
	if counted {
		inf.failovers++
		env.Observe(node.Mark("inference failed over"))
	} else {
		env.Observe(node.Mark("inference re-routed after ALL_SLOTS_BUSY"))
	}
	env.Log().Info("queen: inference moves to another worker", "client", inf.key.From, "req_id", inf.key.ReqID,
		"to", w.rec.ID, "tokens_delivered", len(inf.sent), "failovers", inf.failovers, "why", why)
	q.startAttempt(env, inf, w, timeout)
}

// handleInferDeadline: the client's deadline passed. The attempt is cancelled and the request
// ends with DEADLINE_EXCEEDED; the tokens delivered stand.
func (q *Queen) handleInferDeadline(env node.Env, t inferDeadlineTimer) {
	inf := q.infer.active[dedupKey{From: t.Client, ReqID: t.ReqID}]
	if inf == nil || inf.seq != t.Seq {
		return
	}
	inf.deadlineT = 0
	env.Observe(node.Mark("inference deadline exceeded"))
	q.endAttempt(env, inf, true)
	q.finish(env, inf, api.InferDone{FinishReason: api.FinishTimeout, Err: errDeadline(inf)})
	q.assertInfer()
}

// handleInferStall: the attempt's worker sent nothing for StallTimeout. The attempt is
// cancelled and the request fails over.
func (q *Queen) handleInferStall(env node.Env, t inferStallTimer) {
	inf := q.infer.attempts[t.Attempt]
	if inf == nil || inf.att.stallGen != t.Gen {
		return
	}
	inf.att.stall = 0
	env.Observe(node.Mark("inference attempt stalled"))
	why := fmt.Sprintf("worker %s sent nothing for %s", inf.att.worker, q.cfg.StallTimeout)
	if d := inf.att.done; d != nil {
		why = fmt.Sprintf("worker %s ended after %d tokens but only %d arrived within %s", inf.att.worker, d.Tokens, len(inf.sent), q.cfg.StallTimeout)
	}
	q.failover(env, inf, why, true, true)
	q.assertInfer()
}

// handleInferCancel: the client cancels a request. A running one is cancelled at its worker and
// ends with CANCELLED; an unknown or finished one is a no-op. Either way the answer is an
// InferCancelResp without error.
func (q *Queen) handleInferCancel(env node.Env, from node.Addr, c api.InferCancel) {
	if inf := q.infer.active[dedupKey{From: from, ReqID: c.ReqID}]; inf != nil {
		env.Observe(node.Mark("inference cancelled by client"))
		q.endAttempt(env, inf, true)
		q.finish(env, inf, api.InferDone{FinishReason: api.FinishCancelled, Err: api.Errorf(api.CodeCancelled,
			"nothing to do; send the request again (with a new request id) to run it",
			"the client cancelled the request after %d tokens were delivered", len(inf.sent))})
	}
	env.Send(from, api.InferCancelResp{ReqID: c.ReqID})
	q.assertInfer()
}

// recheckAttempts fails over every attempt on a worker that the registry no longer holds as
// the healthy incarnation the attempt was sent to. Handle calls it after each registry request
// and heartbeat timer that names a worker, which are every way a record is removed, goes stale
// or is replaced.
func (q *Queen) recheckAttempts(env node.Env, id string) {
	list := q.infer.load[id]
	if id == "" || len(list) == 0 {
		return
	}
	w := q.workers[id]
	for _, inf := range slices.Clone(list) {
		a := inf.att
		var why string
		switch {
		case w == nil:
			why = fmt.Sprintf("worker %s was removed from the registry", id)
		case w.rec.Incarnation != a.incarnation:
			why = fmt.Sprintf("worker %s restarted (incarnation %d; the attempt ran on %d)", id, w.rec.Incarnation, a.incarnation)
		case w.rec.Health != api.HealthHealthy:
			why = fmt.Sprintf("worker %s is %s (no heartbeat within %s)", id, w.rec.Health, q.cfg.HeartbeatTimeout)
		default:
			continue
		}
		env.Observe(node.Mark("inference worker lost from the registry"))
		q.failover(env, inf, why, true, true)
	}
	q.assertInfer()
}

// assertInfer panics if the routing state breaks its invariant: every active request has
// exactly one running attempt, and nothing else does.
func (q *Queen) assertInfer() {
	if len(q.infer.attempts) != len(q.infer.active) {
		panic(fmt.Sprintf("queen: %d inference requests in progress but %d attempts running", len(q.infer.active), len(q.infer.attempts)))
	}
}

// The errors of the inference path a person may see.

func (q *Queen) errNotRoutable(model string, st routeStats) api.Error {
	start := fmt.Sprintf("start a worker for it (rbee-keeper worker start --model %s)", model)
	switch {
	case st.serving == 0:
		return api.Errorf(api.CodeModelNotServed, start, "no registered worker serves model %s", model)
	case st.candidates == 0:
		var loading, draining, unhealthy int
		for _, w := range q.sorted {
			switch rec := w.rec; {
			case rec.Model != model:
			case rec.Health != api.HealthHealthy:
				unhealthy++
			case rec.State == api.StateLoading:
				loading++
			case rec.State == api.StateDraining:
				draining++
			}
		}
		return api.Errorf(api.CodeNoWorkerAvailable, "retry in a few seconds if a worker is loading; otherwise "+start,
			"none of the %d workers serving model %s takes requests: %d loading, %d draining, %d not healthy",
			st.serving, model, loading, draining, unhealthy)
	}
	return errAllSlotsBusy(model, st)
}

func errAllSlotsBusy(model string, st routeStats) api.Error {
	return api.Errorf(api.CodeAllSlotsBusy,
		fmt.Sprintf("retry after 1s, or start more workers for the model (rbee-keeper worker start --model %s)", model),
		"all %d workers serving model %s that could take the request are full: %d requests outstanding for a capacity of %d (slots plus queue allowance)",
		st.candidates, model, st.outstanding, st.capacity)
}

func errDeadline(inf *inference) api.Error {
	return api.Errorf(api.CodeDeadlineExceeded,
		"raise the request's timeout or lower max_tokens, or retry when the cluster is less loaded",
		"the client's deadline of %s passed after %d tokens were delivered; they stand as partial output", inf.req.Timeout, len(inf.sent))
}

func errWorkerLost(inf *inference, why string) api.Error {
	return api.Errorf(api.CodeWorkerLost,
		fmt.Sprintf("retry the request; if it keeps failing, check the workers serving model %s (rbee-keeper workers list)", inf.req.Model),
		"%s; %d tokens were delivered and stand as partial output", why, len(inf.sent))
}

// PlantIgnoreClientGone keeps generating for a client whose connection broke.
const PlantIgnoreClientGone = "queen-ignore-client-gone"

// handlePeerGone cancels the requests of a client whose stream broke (it died or went away):
// nobody will read their tokens, so their workers stop generating them. A worker's stream
// breaking is left to the registry and the stall timer.
func (q *Queen) handlePeerGone(env node.Env, g node.PeerGone) {
	if q.cfg.Plants.Has(PlantIgnoreClientGone) {
		return
	}
	var gone []*inference
	for k, inf := range q.infer.active { //det:sorted (sorted next)
		if k.From == g.Peer {
			gone = append(gone, inf)
		}
	}
	slices.SortFunc(gone, func(a, b *inference) int { return cmp.Compare(a.seq, b.seq) })
	for _, inf := range gone {
		env.Observe(node.Mark("inference cancelled: client went away"))
		q.endAttempt(env, inf, true)
		q.finish(env, inf, api.InferDone{FinishReason: api.FinishCancelled, Err: api.Errorf(api.CodeCancelled,
			"nothing to do: the client is gone", "the client's connection broke after %d tokens were delivered", len(inf.sent))})
	}
	q.assertInfer()
}
