package model

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// QueenClient is the pseudo-client under which History records the queen's internal
// transitions.
const QueenClient node.Addr = "queen"

// RegistryCall is the Input of a recorded registry operation: a client's request, or one of
// the queen's internal transitions.
type RegistryCall struct {
	// Client is the address that sent Req, or QueenClient for an internal transition.
	Client node.Addr
	// Req is the client's request; nil for an internal transition.
	Req api.RegistryRequest
	// Internal is api.WorkerHealthChanged, api.WorkerExpired or api.QueenStarted; nil for a
	// client's request.
	Internal node.Observation
}

// RegistryReturn is the Output of a recorded registry operation.
type RegistryReturn struct {
	// Known is false when no reply came: the operation may or may not have taken effect, and
	// its Return time is math.MaxInt64.
	Known bool
	// Resp is the reply; the zero value for an internal transition or an unknown outcome.
	Resp api.RegistryResp
}

// History records registry operations at the client side. It is safe for concurrent use; the
// order of its operations depends only on the calls made and their timestamps.
type History struct {
	mu      sync.Mutex
	ops     []recordedOp
	keys    map[opKey]int // (client, ReqID) -> index in ops
	clients map[node.Addr]int
	open    int
}

// opKey names a client operation: a retried or duplicated request keeps its ReqID.
type opKey struct {
	client node.Addr
	req    uint64
}

// recordedOp is one operation as History holds it until Operations.
type recordedOp struct {
	clientID int
	call     RegistryCall
	ret      RegistryReturn
	callAt   int64
	returnAt int64
	done     bool
}

// NewHistory returns an empty history.
func NewHistory() *History {
	return &History{keys: make(map[opKey]int), clients: make(map[node.Addr]int)}
}

// Invoke records that client sent req at time at. A repeated invoke of a key (client,
// req.RequestID()) already seen, open or finished, is a retry or a duplicate and is ignored:
// the first invoke time stands.
func (h *History) Invoke(client node.Addr, req api.RegistryRequest, at int64) {
	if req == nil {
		panic(fmt.Sprintf("model: Invoke by %s at %d with a nil request", client, at))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := opKey{client: client, req: req.RequestID()}
	if _, seen := h.keys[key]; seen {
		return
	}
	h.keys[key] = len(h.ops)
	h.ops = append(h.ops, recordedOp{
		clientID: h.clientIDLocked(client),
		call:     RegistryCall{Client: client, Req: req},
		callAt:   at,
	})
	h.open++
}

// Return records that client received resp at time at. It closes the open operation with the
// key (client, resp.ReqID); a response for an unknown or already closed key is a duplicate and
// is ignored. A response with code TIMEOUT is ignored too: it says the client stopped waiting,
// not what the queen did, so the operation stays open (unknown outcome) unless a real reply
// follows.
func (h *History) Return(client node.Addr, resp api.RegistryResp, at int64) {
	if resp.Err.Code == api.CodeTimeout {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.keys[opKey{client: client, req: resp.ReqID}]
	if !ok || h.ops[i].done {
		return
	}
	op := &h.ops[i]
	if at < op.callAt {
		panic(fmt.Sprintf("model: %s's request %d returned at %d, before it was invoked at %d",
			client, resp.ReqID, at, op.callAt))
	}
	op.ret = RegistryReturn{Known: true, Resp: resp}
	op.returnAt = at
	op.done = true
	h.open--
}

// Internal records one of the queen's internal transitions (api.WorkerHealthChanged,
// api.WorkerExpired, api.QueenStarted) as an instant operation of QueenClient at time at.
// Other observations (coverage marks, ...) are ignored.
func (h *History) Internal(o node.Observation, at int64) {
	switch o.(type) {
	case api.WorkerHealthChanged, api.WorkerExpired, api.QueenStarted:
	default:
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, recordedOp{
		clientID: h.clientIDLocked(QueenClient),
		call:     RegistryCall{Client: QueenClient, Internal: o},
		ret:      RegistryReturn{Known: true},
		callAt:   at,
		returnAt: at,
		done:     true,
	})
}

// clientIDLocked returns a's ClientId, assigning the next one on first appearance.
func (h *History) clientIDLocked(a node.Addr) int {
	id, ok := h.clients[a]
	if !ok {
		id = len(h.clients)
		h.clients[a] = id
	}
	return id
}

// ClientID returns the porcupine ClientId of a (for annotations), and whether a appears in
// the history.
func (h *History) ClientID(a node.Addr) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id, ok := h.clients[a]
	return id, ok
}

// Len returns the number of operations recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Open returns the number of operations that have no return (yet).
func (h *History) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open
}

// Operations returns the history in invocation order (by call time; equal times keep the
// order of the Invoke and Internal calls). An operation that never returned has Return =
// math.MaxInt64 and an Output with Known false. ClientId numbers clients from 0 in order of
// first appearance.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := make([]porcupine.Operation, len(h.ops))
	for i, r := range h.ops {
		ret, returnAt := r.ret, r.returnAt
		if !r.done {
			ret, returnAt = RegistryReturn{}, math.MaxInt64
		}
		ops[i] = porcupine.Operation{
			ClientId: r.clientID,
			Input:    r.call,
			Call:     r.callAt,
			Output:   ret,
			Return:   returnAt,
		}
	}
	slices.SortStableFunc(ops, func(a, b porcupine.Operation) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	return ops
}
