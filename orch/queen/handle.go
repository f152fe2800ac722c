package queen

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Timer messages. Each carries the worker's timer generation: a timer set for an older
// registration (or before a later heartbeat) finds a different generation and is ignored.
type (
	// deadlineTimer fires when a worker's heartbeat deadline passes.
	deadlineTimer struct {
		Worker string
		Gen    uint64
	}
	// graceTimer fires when a stale-but-busy worker's grace period ends.
	graceTimer struct {
		Worker string
		Gen    uint64
	}
	// recoverTimer retries loading the registry from disk after a read error.
	recoverTimer struct{}
)

// MsgName implements node.Msg.
func (deadlineTimer) MsgName() string { return "queen.heartbeat_deadline" }

// MsgName implements node.Msg.
func (graceTimer) MsgName() string { return "queen.stale_grace" }

// MsgName implements node.Msg.
func (recoverTimer) MsgName() string { return "queen.recover_retry" }

// Start implements node.Node: it restores the registry from the queen's log on env.Disk(),
// bumps and stores the boot epoch, and arms a heartbeat deadline for every restored worker,
// all of which start unconfirmed. If the disk cannot be read, the queen answers UNAVAILABLE
// and retries every recoverRetry.
func (q *Queen) Start(env node.Env) {
	if q.started {
		panic("queen: Start called twice on one Queen; a restart needs a new Queen")
	}
	q.started = true
	q.recover(env)
}

// Handle implements node.Node: registry requests from any peer get one RegistryResp each;
// inference requests, tokens, ends and cancels are routed and relayed (infer.go); timers come
// back from the queen itself; anything else is logged and ignored.
func (q *Queen) Handle(env node.Env, from node.Addr, m node.Msg) {
	if !q.started {
		panic(fmt.Sprintf("queen: Handle(%s from %s) before Start", m.MsgName(), from))
	}
	if _, isTimer := m.(interface{ timer() }); isTimer && from != env.Self() {
		env.Log().Warn("queen: ignoring a timer message from a peer", "from", from, "msg", m.MsgName())
		return
	}
	switch msg := m.(type) {
	case deadlineTimer:
		q.handleDeadline(env, msg)
		q.recheckAttempts(env, msg.Worker)
	case graceTimer:
		q.handleGrace(env, msg)
		q.recheckAttempts(env, msg.Worker)
	case recoverTimer:
		q.handleRecover(env)
	case inferDeadlineTimer:
		q.handleInferDeadline(env, msg)
	case inferStallTimer:
		q.handleInferStall(env, msg)
	case api.InferReq:
		q.handleInferReq(env, from, msg)
	case api.InferToken:
		q.handleInferToken(env, from, msg)
	case api.InferDone:
		q.handleInferDone(env, from, msg)
	case api.InferCancel:
		q.handleInferCancel(env, from, msg)
	case node.PeerGone:
		q.handlePeerGone(env, msg)
	case api.InferCancelResp:
		// A worker confirming a cancel of an attempt the queen already abandoned.
	case api.RegistryRequest:
		q.handleRequest(env, from, msg)
		if _, get := msg.(api.GetReq); !get { // a Get changes nothing
			q.recheckAttempts(env, api.WorkerOf(msg)) // a removal, staleness or restart fails attempts over
		}
	default:
		env.Log().Warn("queen: ignoring unknown message", "from", from, "msg", m.MsgName())
	}
}

func (deadlineTimer) timer() {}
func (graceTimer) timer()    {}
func (recoverTimer) timer()  {}

// call is the request being answered: who asked, under which ReqID, for which operation.
type call struct {
	from  node.Addr
	reqID uint64
	op    string
	epoch uint64
}

// ok is a success response to c, with no record yet.
func (c call) ok() api.RegistryResp {
	return api.RegistryResp{ReqID: c.reqID, Op: c.op, Epoch: c.epoch}
}

// fail is an error response to c.
func (c call) fail(e api.Error) api.RegistryResp {
	r := c.ok()
	r.Err = e
	return r
}

// handleRequest answers one registry request: from the dedup cache if (from, ReqID) was
// answered before, otherwise by applying it. The one response goes back to from.
func (q *Queen) handleRequest(env node.Env, from node.Addr, req api.RegistryRequest) {
	c := call{from: from, reqID: req.RequestID(), op: req.MsgName(), epoch: q.epoch}
	if !q.ready {
		env.Send(from, c.fail(errRecovering(c.op)))
		return
	}
	key := dedupKey{From: from, ReqID: c.reqID}
	if cached, ok := q.dedup.get(key); ok {
		env.Send(from, q.answerCached(env, c, cached))
		return
	}
	var resp api.RegistryResp
	switch r := req.(type) {
	case api.RegisterReq:
		resp = q.handleRegister(env, c, r)
	case api.HeartbeatReq:
		resp = q.handleHeartbeat(env, c, r)
	case api.GetReq:
		resp = q.handleGet(c, r)
	case api.UpdateStateReq:
		resp = q.handleUpdateState(env, c, r)
	case api.ClaimReq:
		resp = q.handleClaim(env, c, r)
	case api.ReleaseReq:
		resp = q.handleRelease(env, c, r)
	case api.RemoveReq:
		resp = q.handleRemove(env, c, r)
	case api.ListReq:
		resp = q.handleList(c, r)
	default:
		env.Log().Warn("queen: ignoring unknown registry request", "from", from, "msg", req.MsgName())
		return
	}
	if _, done := q.dedup.get(key); !done && cacheable(req, resp) {
		q.dedup.add(key, resp, false)
	}
	env.Send(from, resp)
}

// cacheable says whether a response is remembered for retries that were not already made
// durable with a mutation. Reads are not: they change nothing, so answering a retry afresh is
// as correct and keeps List answers out of memory. UNAVAILABLE is not: it changed nothing and
// the retry must be applied once the disk works.
func cacheable(req api.RegistryRequest, resp api.RegistryResp) bool {
	switch req.(type) {
	case api.GetReq, api.ListReq:
		return false
	}
	return resp.Err.Code != api.CodeUnavailable
}

// answerCached answers a repeated request with the response it got the first time, under the
// current epoch. A ReqID reused for another operation is a client bug and is refused.
func (q *Queen) answerCached(env node.Env, c call, cached api.RegistryResp) api.RegistryResp {
	if cached.Op != c.op {
		env.Log().Warn("queen: request id reused for another operation", "from", c.from, "req_id", c.reqID, "first", cached.Op, "now", c.op)
		return c.fail(api.Errorf(api.CodeInvalidRequest,
			"give every request its own request id; reuse an id only to retry the same request",
			"request id %d from %s was already used for %s, so this %s was not applied", c.reqID, c.from, cached.Op, c.op))
	}
	env.Observe(node.Mark("duplicate request answered from cache"))
	cached.Epoch = q.epoch
	return cached
}
