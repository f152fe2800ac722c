package keeper

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// PlantNoBackoff makes the inference client retry a request refused with ALL_SLOTS_BUSY at
// once instead of after its backoff (see orch/plant).
const PlantNoBackoff = "keeper-no-backoff"

// InferConfig configures an inference client: `rbee-keeper infer` as a node, sending a fixed
// list of requests to the queen and recording how each ended.
type InferConfig struct {
	// Queen is the address of queen-rbee. Required.
	Queen node.Addr `json:"queen"`
	// Requests are sent in order of their At (see Sequential). Required, non-empty. A request
	// that ValidateRequest refuses is recorded as refused and never sent: that is behaviour
	// under test, not a config error.
	Requests []InferSpec `json:"requests"`
	// Models is what the client knows of the models it asks for (context length, slots), for
	// validation; a model missing here is validated without those checks.
	Models []ModelInfo `json:"models,omitempty"`
	// Sequential sends one request at a time, as a person at a terminal does: each is sent
	// once its At has passed and ThinkTime after the previous request ended. Otherwise every
	// request is sent at its At, whatever else is in flight.
	Sequential bool `json:"sequential,omitempty"`
	// ThinkTime is the pause after a request ends before the next one, with Sequential only.
	// Default 0: no pause.
	ThinkTime time.Duration `json:"think_time,omitempty"`
	// StallTimeout is how long a running stream may go without a token before the client
	// cancels it, keeps the partial output and ends it as stalled. Default 60s.
	StallTimeout time.Duration `json:"stall_timeout,omitempty"`
	// ConnectTimeout is how long a sent request may go without any answer (no token, no
	// done) before it is sent again with the same ReqID; the wait doubles on each resend, and
	// after connectResendsMax resends and one more wait the client gives up (unavailable).
	// Default 200ms: resends at 200ms and 600ms, gives up at 1.4s.
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty"`
	// BusyBackoff are the waits before each new attempt (a new ReqID) of a request refused
	// with ALL_SLOTS_BUSY; when they are used up the client gives up. Default 1s, 2s, 4s; nil
	// or empty means the default. At most busyRetriesMax entries.
	BusyBackoff []time.Duration `json:"busy_backoff,omitempty"`
	// DoneWait is how long the client waits for the queen's InferDone after it cancelled a
	// request (CancelAfter) or after the request's deadline passed, before it ends the request
	// locally. Default 5s.
	DoneWait time.Duration `json:"done_wait,omitempty"`
	// BatchSize, when above 1, groups consecutive Requests into batches of that many prompts
	// (rbee-keeper infer --batch): a batch larger than the slots of the workers serving its
	// model is refused whole before any work, with a suggestion to split it, unless
	// QueueBatches lets its prompts wait for free slots.
	BatchSize    int  `json:"batch_size,omitempty"`
	QueueBatches bool `json:"queue_batches,omitempty"`
	// StartWorkers are workers the client has hives start first (rbee-keeper worker start,
	// then infer): at start it sends each hive its api.WorkerStartReq, again every
	// startResendInterval with the same ReqID until answered, and holds every request until
	// each start was answered OK. A start that fails ends every request not yet ended with the
	// start's error (failed, exit code 1).
	StartWorkers []StartSpec `json:"start_workers,omitempty"`
	// Plants enables planted bugs (builds with -tags plant only); the zero Set enables none.
	Plants plant.Set `json:"-"`
}

// StartSpec is one worker the client asks a hive to start (see InferConfig.StartWorkers):
// the model file on the hub, the device and the slots.
type StartSpec struct {
	Hive     node.Addr `json:"hive"`
	Provider string    `json:"provider,omitempty"`
	Repo     string    `json:"repo"`
	Revision string    `json:"revision,omitempty"`
	File     string    `json:"file"`
	Device   string    `json:"device"`
	Slots    int       `json:"slots"`
}

// Limits of the inference client.
const (
	// startResendInterval is how often an unanswered worker start is sent again.
	startResendInterval = time.Second
	// connectResendsMax is how many times an unanswered InferReq is sent again.
	connectResendsMax = 2
	// busyRetriesMax bounds InferConfig.BusyBackoff.
	busyRetriesMax = 16
)

// Validate lists every problem with the config.
func (c InferConfig) Validate() error {
	var errs []string
	if c.Queen == "" {
		errs = append(errs, "queen address is empty")
	}
	if len(c.Requests) == 0 {
		errs = append(errs, "no requests")
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Sprintf("batch size %d is negative (0 or 1: no batches)", c.BatchSize))
	}
	for i, s := range c.StartWorkers {
		if s.Hive == "" || s.Repo == "" || s.File == "" || s.Device == "" || s.Slots < 1 {
			errs = append(errs, fmt.Sprintf("start_workers[%d]: want a hive, a repo, a file, a device and at least 1 slot, got %+v", i, s))
		}
	}
	for i, r := range c.Requests {
		if r.At < 0 {
			errs = append(errs, fmt.Sprintf("requests[%d]: at %v is negative", i, r.At))
		}
	}
	if c.ThinkTime != 0 && !c.Sequential {
		errs = append(errs, "think_time needs sequential: concurrent requests are sent at their at")
	}
	if c.ThinkTime < 0 || c.StallTimeout < 0 || c.ConnectTimeout < 0 || c.DoneWait < 0 {
		errs = append(errs, "durations must not be negative")
	}
	if len(c.BusyBackoff) > busyRetriesMax {
		errs = append(errs, fmt.Sprintf("busy_backoff has %d entries, at most %d", len(c.BusyBackoff), busyRetriesMax))
	}
	for i, d := range c.BusyBackoff {
		if d < 0 {
			errs = append(errs, fmt.Sprintf("busy_backoff[%d] %v is negative", i, d))
		}
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		if m.ID == "" || seen[m.ID] || m.ContextLength < 0 || m.Slots < 0 {
			errs = append(errs, fmt.Sprintf("models[%d]: want a unique non-empty id and no negative counts, got %+v", i, m))
		}
		seen[m.ID] = true
	}
	if err := plant.Validate(c.Plants.Names()); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid inference client config: %v", errs)
	}
	return nil
}

func (c InferConfig) withDefaults() InferConfig {
	if c.StallTimeout == 0 {
		c.StallTimeout = time.Minute
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 200 * time.Millisecond
	}
	if len(c.BusyBackoff) == 0 {
		c.BusyBackoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	}
	if c.DoneWait == 0 {
		c.DoneWait = 5 * time.Second
	}
	return c
}

// Outcome is how a request ended, as the client saw it.
type Outcome string

// Outcomes. Each has one exit code, except OutcomeFailed (1, or another code the server's
// error maps to that is not listed here).
const (
	OutcomeOpen        Outcome = ""            // not ended: not sent yet, in flight, or backing off
	OutcomeCompleted   Outcome = "completed"   // finished with stop or length (0)
	OutcomeFailed      Outcome = "failed"      // the server ended it with an error (1)
	OutcomeRefused     Outcome = "refused"     // invalid: refused locally and never sent, or by the server (2)
	OutcomeUnavailable Outcome = "unavailable" // no answer after the resends, or no worker (3)
	OutcomeBusy        Outcome = "busy"        // ALL_SLOTS_BUSY after the last backoff (3)
	OutcomeTimeout     Outcome = "timeout"     // the deadline or the generation's time cap passed (4)
	OutcomeStalled     Outcome = "stalled"     // no token for StallTimeout: cancelled, partial output kept (4)
	OutcomeInterrupted Outcome = "interrupted" // cancelled (CancelAfter, like Ctrl+C) (130)
)

// Kinds of protocol violation the client detects in a stream.
const (
	ViolationDuplicate  = "duplicate"        // a token index already received
	ViolationGap        = "gap"              // a token index past the next expected one
	ViolationAfterDone  = "token after done" // a token for an attempt whose InferDone came
	ViolationSecondDone = "second done"      // another InferDone for an attempt that had one
	ViolationCount      = "count mismatch"   // InferDone.Tokens is not the tokens received
)

// Violation is a breach of the streaming protocol, recorded as it came and never repaired.
type Violation struct {
	ReqID uint64 `json:"req_id"`
	Kind  string `json:"kind"`
	// Index is the token index received (for "count mismatch", InferDone.Tokens), Want the
	// index expected next (the tokens received so far).
	Index int `json:"index"`
	Want  int `json:"want"`
}

// Interrupt is Ctrl+C: the rbee-keeper binary injects it when the person presses it. Every
// request not yet ended is cancelled as InferSpec.CancelAfter does (InferCancel to the queen,
// then a wait of up to DoneWait for its InferDone) and ends interrupted (exit code 130).
type Interrupt struct{}

// MsgName implements node.Msg.
func (Interrupt) MsgName() string { return "keeper.interrupt" }

// Done reports whether every request has ended.
func (c *InferClient) Done() bool {
	for i := range c.reqs {
		if c.reqs[i].res.Outcome == OutcomeOpen {
			return false
		}
	}
	return c.reqs != nil
}

// InferResult is the client's record of one request.
type InferResult struct {
	// Index is the request's position in InferConfig.Requests; Model its model.
	Index int    `json:"index"`
	Model string `json:"model"`
	// ReqIDs are the ReqIDs of every attempt, in order: a new one per ALL_SLOTS_BUSY retry.
	ReqIDs []uint64 `json:"req_ids,omitempty"`
	// Sends counts the InferReq messages sent, resends with the same ReqID included.
	Sends int `json:"sends"`
	// BusyRetries counts the new attempts after ALL_SLOTS_BUSY.
	BusyRetries int `json:"busy_retries,omitempty"`
	// Outcome and ExitCode say how it ended; OutcomeOpen while it has not.
	Outcome  Outcome  `json:"outcome"`
	ExitCode ExitCode `json:"exit_code"`
	// DoneReceived says an InferDone ended the last attempt; FinishReason, DoneTokens and
	// Worker are that InferDone's. Err is its error, or what the client itself ended the
	// request with (refused, unavailable, stalled, deadline, interrupted).
	DoneReceived bool             `json:"done_received"`
	FinishReason api.FinishReason `json:"finish_reason,omitempty"`
	DoneTokens   int              `json:"done_tokens,omitempty"`
	Worker       node.Addr        `json:"worker,omitempty"`
	Err          api.Error        `json:"error"`
	// Tokens are the last attempt's tokens exactly as received, in order, duplicates and gaps
	// included (see Violations). An attempt is only retried before any token, so no token of an
	// earlier attempt is lost.
	Tokens     []api.InferToken `json:"tokens,omitempty"`
	Violations []Violation      `json:"violations,omitempty"`
	// Findings are the system-instruction patterns ScanPrompt found in the prompt.
	Findings []Finding `json:"findings,omitempty"`
	// Late counts tokens and dones that came for the request after the client ended it itself
	// (unavailable, stalled, deadline, interrupted without a done).
	Late int `json:"late,omitempty"`
	// SentAt is the first send, FirstTokenAt the first token, DoneAt the end (the local clock;
	// zero when it did not happen).
	SentAt       time.Time `json:"sent_at"`
	FirstTokenAt time.Time `json:"first_token_at"`
	DoneAt       time.Time `json:"done_at"`
}

// Timer messages of the inference client.
type (
	inferDue          struct{ Index int }
	inferThought      struct{ Index int }
	inferConnect      struct{ Index int }
	inferBusyRetry    struct{ Index int }
	inferStall        struct{ Index int }
	inferCancelDue    struct{ Index int }
	inferCancelResend struct{ Index int }
	inferDoneWait     struct{ Index int }
	inferDeadline     struct{ Index int }
	startResend       struct{ Index int }
)

func (inferDue) MsgName() string          { return "keeper.infer_due" }
func (inferThought) MsgName() string      { return "keeper.infer_thought" }
func (inferConnect) MsgName() string      { return "keeper.infer_connect" }
func (inferBusyRetry) MsgName() string    { return "keeper.infer_busy_retry" }
func (inferStall) MsgName() string        { return "keeper.infer_stall" }
func (inferCancelDue) MsgName() string    { return "keeper.infer_cancel_due" }
func (inferCancelResend) MsgName() string { return "keeper.infer_cancel_resend" }
func (inferDoneWait) MsgName() string     { return "keeper.infer_done_wait" }
func (inferDeadline) MsgName() string     { return "keeper.infer_deadline" }
func (startResend) MsgName() string       { return "keeper.start_resend" }

// inferState is one request's volatile state.
type inferState struct {
	spec InferSpec
	res  InferResult
	// batchErr refuses the request with the rest of its batch (InferConfig.BatchSize).
	batchErr api.Error
	// reqID is the current attempt's ReqID (0 before the first send).
	reqID uint64
	// inFlight: the attempt was sent and has not ended; attemptDone: its InferDone came.
	inFlight, attemptDone bool
	// answered: a token or done came for the attempt, so the connection works.
	answered bool
	// next is the token index expected next.
	next int
	// resends of the attempt, and the wait of the connect timer running.
	resends     int
	connectWait time.Duration
	backingOff  bool
	cancelling  bool
	cancelAcked bool
	// waited is a lower bound on the time since the first send: the timer waits that passed.
	waited time.Duration
	// due: At passed; thought: with Sequential, the previous request ended ThinkTime ago.
	due, thought bool
	stall        node.TimerID
	connect      node.TimerID
	timers       []node.TimerID // the others, cancelled when the request ends
}

// InferClient is an inference client node. Results and Pending are for the simulator's
// checkers.
type InferClient struct {
	cfg    InferConfig
	models map[string]ModelInfo
	reqs   []inferState
	byID   map[uint64]int // every ReqID drawn, to its request
	// dones are the InferDone that ended each attempt: an identical one again is a replay.
	dones map[uint64]api.InferDone
	// starts are the worker starts (InferConfig.StartWorkers), by index.
	starts []workerStart
}

// workerStart is one worker start the client asked a hive for.
type workerStart struct {
	req      api.WorkerStartReq
	hive     node.Addr
	answered bool
	resp     api.WorkerStartResp
}

// NewInferClient returns an inference client. It panics on an invalid config: validate at the
// edge.
func NewInferClient(cfg InferConfig) *InferClient {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	c := &InferClient{cfg: cfg.withDefaults(), models: map[string]ModelInfo{}}
	for _, m := range cfg.Models {
		c.models[m.ID] = m
	}
	return c
}

// Start implements node.Node. A restarted client starts its list of requests over, with new
// ReqIDs drawn from env.Rand, so no ReqID of the earlier incarnation is reused.
func (c *InferClient) Start(env node.Env) {
	c.reqs = make([]inferState, len(c.cfg.Requests))
	c.byID = map[uint64]int{}
	c.dones = map[uint64]api.InferDone{}
	for i, s := range c.cfg.Requests {
		c.reqs[i] = inferState{spec: s, res: InferResult{Index: i, Model: s.Model}}
		env.After(s.At, inferDue{Index: i})
	}
	if n := c.cfg.BatchSize; n > 1 {
		for lo := 0; lo < len(c.cfg.Requests); lo += n {
			batch := c.cfg.Requests[lo:min(lo+n, len(c.cfg.Requests))]
			if err := ValidateBatch(batch, c.models[batch[0].Model], c.cfg.QueueBatches); err != nil {
				for i := lo; i < lo+len(batch); i++ {
					c.reqs[i].batchErr = err.(*RequestError).APIError()
				}
			}
		}
	}
	c.reqs[0].thought = true
	c.starts = nil
	for i, s := range c.cfg.StartWorkers {
		req := api.WorkerStartReq{ReqID: c.newReqID(env), Provider: s.Provider, Repo: s.Repo, Revision: s.Revision,
			File: s.File, Device: s.Device, Slots: s.Slots}
		c.starts = append(c.starts, workerStart{req: req, hive: s.Hive})
		env.Send(s.Hive, req)
		env.After(startResendInterval, startResend{Index: i})
	}
}

// StartResults are the hives' answers to the worker starts, by index of
// InferConfig.StartWorkers; the zero answer for a start not answered yet.
func (c *InferClient) StartResults() []api.WorkerStartResp {
	out := make([]api.WorkerStartResp, len(c.starts))
	for i, s := range c.starts {
		out[i] = s.resp
	}
	return out
}

// startsReady reports whether every worker start was answered OK.
func (c *InferClient) startsReady() bool {
	for _, s := range c.starts {
		if !s.answered || !s.resp.Err.OK() {
			return false
		}
	}
	return true
}

// handleStartResp follows a hive's answer to a worker start: once every start succeeded the
// requests that are due go out; a failed start ends every request with its error.
func (c *InferClient) handleStartResp(env node.Env, from node.Addr, r api.WorkerStartResp) {
	i := slices.IndexFunc(c.starts, func(s workerStart) bool { return s.hive == from && s.req.ReqID == r.ReqID })
	if i < 0 || c.starts[i].answered {
		return // a stranger's, or a repeat
	}
	st := &c.starts[i]
	st.answered, st.resp = true, r
	if !r.Err.OK() {
		env.Observe(node.Mark("keeper: a worker start failed"))
		e := r.Err
		e.Message = fmt.Sprintf("the worker for %s on %s could not be started on hive %s, so the request was not sent: %s",
			st.req.ModelID(), st.req.Device, from, e.Message)
		for j := range c.reqs {
			if c.reqs[j].res.Outcome == OutcomeOpen {
				c.end(env, j, OutcomeFailed, ExitFailed, e)
			}
		}
		return
	}
	env.Log().Info("worker started", "hive", from, "worker", r.Worker, "model", r.Model)
	if !c.startsReady() {
		return
	}
	env.Observe(node.Mark("keeper: every worker start answered, sending requests"))
	for j := range c.reqs {
		c.maybeBegin(env, j)
	}
}

// Results returns the record of every request, by request index. The slices are copies.
func (c *InferClient) Results() []InferResult {
	out := make([]InferResult, len(c.reqs))
	for i, st := range c.reqs {
		r := st.res
		r.ReqIDs = append([]uint64(nil), r.ReqIDs...)
		r.Tokens = append([]api.InferToken(nil), r.Tokens...)
		r.Violations = append([]Violation(nil), r.Violations...)
		r.Findings = append([]Finding(nil), r.Findings...)
		out[i] = r
	}
	return out
}

// Pending returns the ReqIDs of the attempts in flight (sent, not ended), sorted.
func (c *InferClient) Pending() []uint64 {
	var ids []uint64
	for _, st := range c.reqs {
		if st.inFlight {
			ids = append(ids, st.reqID)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Handle implements node.Node: its own timers, and the queen's answers. Anything else is
// logged and dropped.
func (c *InferClient) Handle(env node.Env, from node.Addr, m node.Msg) {
	if _, ok := m.(Interrupt); ok { // from the binary itself, whatever address it uses
		for i := range c.reqs {
			c.onCancelDue(env, i)
		}
		return
	}
	if from == env.Self() {
		c.handleTimer(env, m)
		return
	}
	if r, ok := m.(api.WorkerStartResp); ok {
		c.handleStartResp(env, from, r)
		return
	}
	if _, ok := m.(api.WorkerLoading); ok {
		return // a started worker's loading progress, forwarded by its hive: nothing to do
	}
	if from != c.cfg.Queen {
		env.Log().Warn("inference client ignores a message from a stranger", "from", from, "msg", m.MsgName())
		return
	}
	switch m := m.(type) {
	case api.InferAccepted:
		if i, ok := c.byID[m.ReqID]; ok && c.reqs[i].reqID == m.ReqID && c.reqs[i].res.Outcome == OutcomeOpen {
			st := &c.reqs[i]
			c.answered(env, st) // the queen has it: no resend
			if len(st.res.Tokens) == 0 && !st.cancelling {
				// From here the stall rule applies: a queen that crashed after accepting
				// never sends another word, and the client must not wait for ever.
				env.Cancel(st.stall)
				st.stall = env.After(c.cfg.StallTimeout, inferStall{Index: i})
			}
		}
	case api.InferToken:
		c.handleToken(env, m)
	case api.InferDone:
		c.handleDone(env, m)
	case api.InferCancelResp:
		if i, ok := c.byID[m.ReqID]; ok && c.reqs[i].reqID == m.ReqID && c.reqs[i].cancelling {
			c.reqs[i].cancelAcked = true
		}
	default:
		env.Log().Warn("inference client ignores an unknown message", "from", from, "msg", m.MsgName())
	}
}

func (c *InferClient) handleTimer(env node.Env, m node.Msg) {
	switch m := m.(type) {
	case inferDue:
		c.reqs[m.Index].due = true
		c.maybeBegin(env, m.Index)
	case inferThought:
		c.reqs[m.Index].thought = true
		c.maybeBegin(env, m.Index)
	case inferConnect:
		c.onConnectTimeout(env, m.Index)
	case inferBusyRetry:
		if st := &c.reqs[m.Index]; st.backingOff && st.res.Outcome == OutcomeOpen {
			st.backingOff = false
			st.waited += c.cfg.BusyBackoff[st.res.BusyRetries-1]
			c.attempt(env, m.Index)
		}
	case inferStall:
		c.onStall(env, m.Index)
	case inferCancelDue:
		c.onCancelDue(env, m.Index)
	case inferCancelResend:
		if st := &c.reqs[m.Index]; st.cancelling && !st.cancelAcked && st.res.Outcome == OutcomeOpen {
			env.Send(c.cfg.Queen, api.InferCancel{ReqID: st.reqID})
			st.timers = append(st.timers, env.After(c.cfg.ConnectTimeout, m))
		}
	case inferDoneWait:
		if st := &c.reqs[m.Index]; st.cancelling && st.res.Outcome == OutcomeOpen {
			c.end(env, m.Index, OutcomeInterrupted, ExitInterrupted, api.Errorf(api.CodeCancelled,
				"the request may still be running on a worker; it stops at its max_tokens or max_time",
				"request cancelled; the queen did not confirm within %v", c.cfg.DoneWait))
		}
	case inferDeadline:
		c.onDeadline(env, m.Index)
	case startResend:
		if st := &c.starts[m.Index]; !st.answered {
			env.Send(st.hive, st.req)
			env.After(startResendInterval, m)
		}
	default:
		panic(fmt.Sprintf("keeper: inference client got an unknown timer %T %+v", m, m))
	}
}

// maybeBegin validates and sends a request once it is due (and, with Sequential, once the one
// before it ended ThinkTime ago).
func (c *InferClient) maybeBegin(env node.Env, i int) {
	st := &c.reqs[i]
	if !st.due || (c.cfg.Sequential && !st.thought) || st.reqID != 0 || st.res.Outcome != OutcomeOpen || !c.startsReady() {
		return
	}
	st.res.Findings = ScanPrompt(st.spec.Prompt)
	if !st.batchErr.OK() {
		env.Observe(node.Mark("keeper refused a batch larger than the slots"))
		c.end(env, i, OutcomeRefused, ExitUsage, st.batchErr)
		return
	}
	if err := ValidateRequest(st.spec, c.models[st.spec.Model]); err != nil {
		env.Observe(node.Mark("keeper refused an invalid inference request"))
		c.end(env, i, OutcomeRefused, ExitUsage, err.(*RequestError).APIError())
		return
	}
	st.res.SentAt = env.Now()
	if st.spec.Timeout > 0 {
		st.timers = append(st.timers, env.After(st.spec.Timeout+c.cfg.DoneWait, inferDeadline{Index: i}))
	}
	if st.spec.CancelAfter > 0 {
		st.timers = append(st.timers, env.After(st.spec.CancelAfter, inferCancelDue{Index: i}))
	}
	c.attempt(env, i)
}

// attempt starts a new attempt with a fresh ReqID.
func (c *InferClient) attempt(env node.Env, i int) {
	st := &c.reqs[i]
	if _, ok := c.timeLeft(env, st); !ok {
		c.endDeadline(env, i)
		return
	}
	st.reqID = c.newReqID(env)
	c.byID[st.reqID] = i
	st.res.ReqIDs = append(st.res.ReqIDs, st.reqID)
	st.inFlight, st.attemptDone, st.answered = true, false, false
	st.next, st.resends = 0, 0
	st.res.Tokens = nil
	st.connectWait = c.cfg.ConnectTimeout
	if c.send(env, i) {
		st.connect = env.After(st.connectWait, inferConnect{Index: i})
	}
}

// newReqID draws a ReqID from the node's random stream: never 0, never one drawn before by this
// incarnation, and (64 random bits) in practice never one of an earlier incarnation.
func (c *InferClient) newReqID(env node.Env) uint64 {
	for {
		id := env.Rand().Uint64()
		if _, used := c.byID[id]; id != 0 && !used && !slices.ContainsFunc(c.starts, func(s workerStart) bool { return s.req.ReqID == id }) {
			return id
		}
	}
}

// timeLeft is the time left until the request's deadline (0 when it has none), and false when
// the deadline has passed. Env.Now may jump, so the time since the first send is taken as at
// least the timer waits that passed; the local deadline timer (measured with After) is what
// ends a request the server does not end.
func (c *InferClient) timeLeft(env node.Env, st *inferState) (time.Duration, bool) {
	if st.spec.Timeout == 0 {
		return 0, true
	}
	left := st.spec.Timeout - max(env.Now().Sub(st.res.SentAt), st.waited)
	return left, left > 0
}

// send sends the current attempt's InferReq with the time left until the deadline. If the
// deadline has already passed it ends the request instead and returns false.
func (c *InferClient) send(env node.Env, i int) bool {
	st := &c.reqs[i]
	left, ok := c.timeLeft(env, st)
	if !ok {
		c.endDeadline(env, i)
		return false
	}
	s := st.spec
	env.Send(c.cfg.Queen, api.InferReq{ReqID: st.reqID, Model: s.Model, Prompt: s.Prompt, MaxTokens: s.MaxTokens,
		Seed: s.Seed, Timeout: left, MaxTime: s.MaxTime})
	st.res.Sends++
	return true
}

// onConnectTimeout resends an attempt nothing came back for, or gives up after the last wait.
func (c *InferClient) onConnectTimeout(env node.Env, i int) {
	st := &c.reqs[i]
	if !st.inFlight || st.answered || st.cancelling {
		return
	}
	st.waited += st.connectWait
	if st.resends < connectResendsMax {
		st.resends++
		env.Observe(node.Mark("keeper resent an unanswered inference request"))
		if c.send(env, i) {
			st.connectWait *= 2
			st.connect = env.After(st.connectWait, inferConnect{Index: i})
		}
		return
	}
	env.Observe(node.Mark("keeper gave up: no answer from the queen"))
	env.Send(c.cfg.Queen, api.InferCancel{ReqID: st.reqID}) // in case only the answers are lost
	c.end(env, i, OutcomeUnavailable, ExitUnavailable, api.Errorf(api.CodeUnavailable,
		"check that queen-rbee is running and reachable from this machine, then retry",
		"no answer from the queen at %s to %d sends of request %d over %v", c.cfg.Queen, st.res.Sends, st.reqID, st.waited))
}

func (c *InferClient) handleToken(env node.Env, t api.InferToken) {
	i, ok := c.byID[t.ReqID]
	if !ok {
		env.Log().Info("inference client ignores a token for an unknown request", "req_id", t.ReqID)
		return
	}
	st := &c.reqs[i]
	switch {
	case t.ReqID != st.reqID || st.attemptDone:
		// Earlier attempts only end with an InferDone (ALL_SLOTS_BUSY).
		c.violate(env, st, Violation{ReqID: t.ReqID, Kind: ViolationAfterDone, Index: t.Index, Want: st.next})
		return
	case st.res.Outcome != OutcomeOpen:
		st.res.Late++
		return
	}
	c.answered(env, st)
	if len(st.res.Tokens) == 0 {
		st.res.FirstTokenAt = env.Now()
	}
	st.res.Tokens = append(st.res.Tokens, t)
	switch {
	case t.Index < st.next:
		c.violate(env, st, Violation{ReqID: t.ReqID, Kind: ViolationDuplicate, Index: t.Index, Want: st.next})
	case t.Index > st.next:
		c.violate(env, st, Violation{ReqID: t.ReqID, Kind: ViolationGap, Index: t.Index, Want: st.next})
		st.next = t.Index + 1
	default:
		st.next++
	}
	if !st.cancelling {
		env.Cancel(st.stall)
		st.stall = env.After(c.cfg.StallTimeout, inferStall{Index: i})
	}
}

// answered notes that the connection works: the connect timer stops.
func (c *InferClient) answered(env node.Env, st *inferState) {
	if !st.answered {
		st.answered = true
		env.Cancel(st.connect)
	}
}

func (c *InferClient) violate(env node.Env, st *inferState, v Violation) {
	env.Observe(node.Mark("keeper saw a streaming protocol violation"))
	env.Log().Warn("inference stream broke the protocol", "req_id", v.ReqID, "kind", v.Kind, "index", v.Index, "want", v.Want)
	st.res.Violations = append(st.res.Violations, v)
}

func (c *InferClient) handleDone(env node.Env, d api.InferDone) {
	i, ok := c.byID[d.ReqID]
	if !ok {
		env.Log().Info("inference client ignores a done for an unknown request", "req_id", d.ReqID)
		return
	}
	st := &c.reqs[i]
	if first, ok := c.dones[d.ReqID]; ok && first == d {
		// The queen answered a resend of an ended attempt with its end again: a replay.
		st.res.Late++
		return
	}
	switch {
	case d.ReqID != st.reqID || st.attemptDone:
		c.violate(env, st, Violation{ReqID: d.ReqID, Kind: ViolationSecondDone, Index: d.Tokens, Want: st.next})
		return
	case st.res.Outcome != OutcomeOpen:
		st.res.Late++
		return
	}
	c.answered(env, st)
	env.Cancel(st.stall)
	st.inFlight, st.attemptDone = false, true
	c.dones[d.ReqID] = d
	if d.Tokens != st.next {
		c.violate(env, st, Violation{ReqID: d.ReqID, Kind: ViolationCount, Index: d.Tokens, Want: st.next})
	}
	st.res.FinishReason, st.res.DoneTokens, st.res.Worker = d.FinishReason, d.Tokens, d.Worker
	switch {
	case st.cancelling:
		// The person asked to stop: interrupted, whatever the done says (it is recorded).
		st.res.DoneReceived = true
		c.end(env, i, OutcomeInterrupted, ExitInterrupted, d.Err)
	case d.Err.Code == api.CodeAllSlotsBusy && len(st.res.Tokens) == 0:
		c.onBusy(env, i, d.Err)
	default:
		st.res.DoneReceived = true
		code := ExitCodeFor(d.FinishReason, d.Err)
		c.end(env, i, outcomeOf(code, d.Err), code, d.Err)
	}
}

// outcomeOf names how a request the server ended went, from its exit code.
func outcomeOf(code ExitCode, err api.Error) Outcome {
	switch code {
	case ExitOK:
		return OutcomeCompleted
	case ExitUsage:
		return OutcomeRefused
	case ExitUnavailable:
		if err.Code == api.CodeAllSlotsBusy {
			return OutcomeBusy
		}
		return OutcomeUnavailable
	case ExitTimeout:
		return OutcomeTimeout
	case ExitInterrupted:
		return OutcomeInterrupted
	}
	return OutcomeFailed
}

// onBusy retries a request refused with ALL_SLOTS_BUSY as a new attempt after the next
// backoff, or gives up when the backoffs are used up. A retry is only made before any token
// came, so the output never mixes two attempts.
func (c *InferClient) onBusy(env node.Env, i int, e api.Error) {
	st := &c.reqs[i]
	if st.res.BusyRetries >= len(c.cfg.BusyBackoff) {
		env.Observe(node.Mark("keeper gave up: all slots busy"))
		st.res.DoneReceived = true
		still := fmt.Sprintf("still busy after %d attempts, backing off %v", len(st.res.ReqIDs), c.cfg.BusyBackoff)
		e.Message = joinNonEmpty(", ", e.Message, still)
		e.Suggestion = joinNonEmpty("; ", e.Suggestion, "add workers or retry later")
		c.end(env, i, OutcomeBusy, ExitUnavailable, e)
		return
	}
	env.Observe(node.Mark("keeper backed off on all slots busy"))
	wait := c.cfg.BusyBackoff[st.res.BusyRetries]
	st.res.BusyRetries++
	if c.cfg.Plants.Has(PlantNoBackoff) {
		c.attempt(env, i)
		return
	}
	st.backingOff = true
	st.timers = append(st.timers, env.After(wait, inferBusyRetry{Index: i}))
}

// onStall cancels a stream that went StallTimeout without a token, keeping what came.
func (c *InferClient) onStall(env node.Env, i int) {
	st := &c.reqs[i]
	if !st.inFlight || st.cancelling || st.res.Outcome != OutcomeOpen {
		return
	}
	env.Observe(node.Mark("keeper cancelled a stalled stream"))
	env.Send(c.cfg.Queen, api.InferCancel{ReqID: st.reqID})
	c.end(env, i, OutcomeStalled, ExitTimeout, api.Errorf(api.CodeTimeout,
		fmt.Sprintf("the %d tokens received are kept; retry, or raise --stall-timeout for a slow model", len(st.res.Tokens)),
		"no token for %v after %s of %s; the worker, the queen or the network stalled", c.cfg.StallTimeout, stallPoint(st.next), st.spec.Model))
}

// onCancelDue cancels a request as Ctrl+C does: it sends InferCancel (again every
// ConnectTimeout until the queen confirms) and waits up to DoneWait for the InferDone.
func (c *InferClient) onCancelDue(env node.Env, i int) {
	st := &c.reqs[i]
	if st.res.Outcome != OutcomeOpen {
		return
	}
	env.Observe(node.Mark("keeper interrupted an inference request"))
	if !st.inFlight { // backing off: nothing runs
		c.end(env, i, OutcomeInterrupted, ExitInterrupted, api.Errorf(api.CodeCancelled, "",
			"request interrupted while waiting to retry after ALL_SLOTS_BUSY"))
		return
	}
	st.cancelling = true
	env.Cancel(st.stall)
	env.Cancel(st.connect)
	env.Send(c.cfg.Queen, api.InferCancel{ReqID: st.reqID})
	st.timers = append(st.timers, env.After(c.cfg.ConnectTimeout, inferCancelResend{Index: i}),
		env.After(c.cfg.DoneWait, inferDoneWait{Index: i}))
}

// onDeadline ends a request whose deadline passed DoneWait ago without an InferDone (the
// server should have ended it at the deadline).
func (c *InferClient) onDeadline(env node.Env, i int) {
	st := &c.reqs[i]
	if st.res.Outcome != OutcomeOpen || st.cancelling { // a cancel ends by its own DoneWait
		return
	}
	if st.inFlight {
		env.Send(c.cfg.Queen, api.InferCancel{ReqID: st.reqID})
	}
	c.endDeadline(env, i)
}

func (c *InferClient) endDeadline(env node.Env, i int) {
	env.Observe(node.Mark("keeper ended a request at its deadline"))
	c.end(env, i, OutcomeTimeout, ExitTimeout, api.Errorf(api.CodeDeadlineExceeded,
		"raise --timeout, or lower --max-tokens",
		"request to %s did not finish within its %v deadline", c.reqs[i].spec.Model, c.reqs[i].spec.Timeout))
}

// end records how a request ended and stops its timers; with Sequential, the next request
// goes ThinkTime later.
func (c *InferClient) end(env node.Env, i int, o Outcome, code ExitCode, e api.Error) {
	st := &c.reqs[i]
	if st.res.Outcome != OutcomeOpen {
		panic(fmt.Sprintf("keeper: request %d ends twice: %s, then %s", i, st.res.Outcome, o))
	}
	st.res.Outcome, st.res.ExitCode, st.res.Err, st.res.DoneAt = o, code, e, env.Now()
	st.inFlight, st.backingOff = false, false
	env.Cancel(st.stall)
	env.Cancel(st.connect)
	for _, id := range st.timers {
		env.Cancel(id)
	}
	st.timers = nil
	if c.cfg.Sequential && i+1 < len(c.reqs) {
		env.After(c.cfg.ThinkTime, inferThought{Index: i + 1})
	}
}

func joinNonEmpty(sep string, parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, sep)
}

// stallPoint names where a stream stalled: after its acceptance, or after its last token.
func stallPoint(next int) string {
	if next == 0 {
		return "the request was accepted"
	}
	return fmt.Sprintf("token %d", next-1)
}
