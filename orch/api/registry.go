package api

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// WorkerState is what a worker is doing, as the registry records it.
type WorkerState string

// Worker states. A claim or a compare-and-set moves idle to busy; only idle, healthy workers
// are ever handed out.
const (
	StateLoading  WorkerState = "loading"
	StateIdle     WorkerState = "idle"
	StateBusy     WorkerState = "busy"
	StateDraining WorkerState = "draining"
)

// Valid reports whether s is one of the four states.
func (s WorkerState) Valid() bool {
	switch s {
	case StateLoading, StateIdle, StateBusy, StateDraining:
		return true
	}
	return false
}

// Health is the queen's belief about whether a worker is alive. It is not part of the
// worker's Version: it changes with heartbeats and timeouts, not with client writes.
type Health string

// Health values.
const (
	// HealthHealthy: heartbeats arrive in time.
	HealthHealthy Health = "healthy"
	// HealthStale: no heartbeat for HeartbeatTimeout. A stale worker is never handed out. A
	// stale idle worker is removed at once; a stale busy one (stale-but-busy) is removed when
	// its request ends or after the stale grace period, unless a heartbeat revives it first.
	HealthStale Health = "stale"
	// HealthUnconfirmed: restored from disk after a queen restart and not yet confirmed by its
	// hive. Never handed out; removed like a stale worker if no confirmation comes in time.
	HealthUnconfirmed Health = "unconfirmed"
)

// WorkerSpec is what a hive registers for one of its workers.
type WorkerSpec struct {
	// ID is the worker's cluster-unique name, e.g. "worker-ws-1".
	ID string `json:"id"`
	// Hive is the address of the hive that owns the worker.
	Hive node.Addr `json:"hive"`
	// Incarnation grows each time the hive restarts the worker or its capabilities change.
	// A registration with a higher incarnation replaces the record; a lower one is refused.
	Incarnation uint64 `json:"incarnation"`
	// Model is the model reference the worker serves, e.g. "hf:TheBloke/tinyllama".
	Model string `json:"model"`
	// Capability is the device the worker runs on: "cpu", "cuda:0", "metal".
	Capability string `json:"capability"`
	// Slots is the number of requests the worker runs at once; at least 1.
	Slots int `json:"slots"`
}

// Validate checks the invariants every registered spec holds: a non-empty ID, Hive, Model and
// Capability, an incarnation of at least 1, and 1 to 1024 slots.
func (s WorkerSpec) Validate() error {
	switch {
	case s.ID == "":
		return fmt.Errorf("worker id is empty")
	case s.Hive == "":
		return fmt.Errorf("worker %q: hive is empty", s.ID)
	case s.Incarnation == 0:
		return fmt.Errorf("worker %q: incarnation must be at least 1", s.ID)
	case s.Model == "":
		return fmt.Errorf("worker %q: model is empty", s.ID)
	case s.Capability == "":
		return fmt.Errorf("worker %q: capability is empty", s.ID)
	case s.Slots < 1 || s.Slots > 1024:
		return fmt.Errorf("worker %q: slots is %d, want 1 to 1024", s.ID, s.Slots)
	}
	return nil
}

// WorkerRecord is a worker as the registry holds it.
type WorkerRecord struct {
	WorkerSpec
	State  WorkerState `json:"state"`
	Health Health      `json:"health"`
	// Version is the registry-wide revision of the record's last client-visible write
	// (registration that created or replaced it, state change, claim, release). It only grows,
	// also across removal and re-registration, so a compare-and-set can never succeed on an
	// outdated read.
	Version uint64 `json:"version"`
	// ClaimID names the claim that made the worker busy; empty unless busy through a claim.
	ClaimID string `json:"claim_id,omitempty"`
}

// Registry requests. Each carries a ReqID unique per sender; the queen answers each with the
// matching response and answers a retried (or duplicated) request with the same response
// instead of applying it twice.
type (
	// RegisterReq registers a worker or refreshes its registration.
	//  - not registered: created with State (idle or loading), healthy, unless the registry
	//    holds its maximum: REGISTRY_FULL.
	//  - same incarnation: a confirmation; health becomes healthy, nothing else changes.
	//  - higher incarnation: the spec and state are replaced, any claim is voided.
	//  - lower incarnation: STALE_INCARNATION.
	RegisterReq struct {
		ReqID uint64      `json:"req_id"`
		Spec  WorkerSpec  `json:"spec"`
		State WorkerState `json:"state"`
	}
	// HeartbeatReq says a worker is alive: health becomes healthy. UNKNOWN_WORKER or
	// STALE_INCARNATION tell the hive to register again.
	HeartbeatReq struct {
		ReqID       uint64 `json:"req_id"`
		Worker      string `json:"worker"`
		Incarnation uint64 `json:"incarnation"`
	}
	// GetReq reads one worker's record.
	GetReq struct {
		ReqID  uint64 `json:"req_id"`
		Worker string `json:"worker"`
	}
	// UpdateStateReq is a compare-and-set of a worker's state on its Version. Moving a busy
	// worker to busy gives WORKER_ALREADY_BUSY; another version mismatch VERSION_CONFLICT;
	// moving a worker that is not healthy to busy WORKER_STALE. Success clears the claim. A
	// stale worker that stops being busy is removed (Removed in the response).
	UpdateStateReq struct {
		ReqID         uint64      `json:"req_id"`
		Worker        string      `json:"worker"`
		ExpectVersion uint64      `json:"expect_version"`
		To            WorkerState `json:"to"`
	}
	// ClaimReq asks for one idle, healthy worker serving Model (and on Capability, when not
	// empty) and makes it busy under a new claim: the router's atomic pick.
	ClaimReq struct {
		ReqID      uint64 `json:"req_id"`
		Model      string `json:"model"`
		Capability string `json:"capability,omitempty"`
	}
	// ReleaseReq ends a claim: the worker becomes idle (or is removed, if stale). A claim
	// voided by re-registration gives WORKER_INCARNATION_CHANGED; any other mismatch
	// CLAIM_NOT_HELD.
	ReleaseReq struct {
		ReqID       uint64 `json:"req_id"`
		Worker      string `json:"worker"`
		Incarnation uint64 `json:"incarnation"`
		ClaimID     string `json:"claim_id"`
	}
	// RemoveReq deregisters a worker.
	RemoveReq struct {
		ReqID  uint64 `json:"req_id"`
		Worker string `json:"worker"`
	}
	// ListReq lists workers, filtered by model and capability when those are not empty,
	// sorted by ID.
	ListReq struct {
		ReqID      uint64 `json:"req_id"`
		Model      string `json:"model,omitempty"`
		Capability string `json:"capability,omitempty"`
	}
)

// RegistryResp answers every registry request. Err is zero on success. Record is the worker's
// record after the operation (for Register, Heartbeat, Get, UpdateState, Claim, Release);
// Removed says the operation removed the worker; Records answers List; Epoch is the queen's
// boot epoch, which grows at every queen start, so a hive can tell that the queen restarted.
type RegistryResp struct {
	ReqID   uint64         `json:"req_id"`
	Op      string         `json:"op"`
	Err     Error          `json:"error"`
	Record  WorkerRecord   `json:"record"`
	Created bool           `json:"created,omitempty"`
	Removed bool           `json:"removed,omitempty"`
	Records []WorkerRecord `json:"records,omitempty"`
	Epoch   uint64         `json:"epoch"`
}

// MsgName implements node.Msg.
func (RegisterReq) MsgName() string { return "registry.register" }

// MsgName implements node.Msg.
func (HeartbeatReq) MsgName() string { return "registry.heartbeat" }

// MsgName implements node.Msg.
func (GetReq) MsgName() string { return "registry.get" }

// MsgName implements node.Msg.
func (UpdateStateReq) MsgName() string { return "registry.update_state" }

// MsgName implements node.Msg.
func (ClaimReq) MsgName() string { return "registry.claim" }

// MsgName implements node.Msg.
func (ReleaseReq) MsgName() string { return "registry.release" }

// MsgName implements node.Msg.
func (RemoveReq) MsgName() string { return "registry.remove" }

// MsgName implements node.Msg.
func (ListReq) MsgName() string { return "registry.list" }

// MsgName implements node.Msg.
func (RegistryResp) MsgName() string { return "registry.resp" }

// RegistryRequest is implemented by every registry request.
type RegistryRequest interface {
	node.Msg
	RequestID() uint64
}

// RequestID implements RegistryRequest.
func (r RegisterReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r HeartbeatReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r GetReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r UpdateStateReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r ClaimReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r ReleaseReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r RemoveReq) RequestID() uint64 { return r.ReqID }

// RequestID implements RegistryRequest.
func (r ListReq) RequestID() uint64 { return r.ReqID }

// Observations the queen reports through node.Env.Observe. They are the registry's internal
// transitions, which no client asked for; linearizability histories record them as instant
// operations at the queen.
type (
	// WorkerHealthChanged: the queen changed a worker's health on its own (a heartbeat
	// timeout made it stale).
	WorkerHealthChanged struct {
		Worker string `json:"worker"`
		Health Health `json:"health"`
	}
	// WorkerExpired: the queen removed a worker on its own (stale and idle, or the stale
	// grace period ran out). Reason says which.
	WorkerExpired struct {
		Worker string `json:"worker"`
		Reason string `json:"reason"`
	}
	// QueenStarted: the queen (re)started with Epoch and restored Workers records from its
	// log, all of them unconfirmed.
	QueenStarted struct {
		Epoch   uint64 `json:"epoch"`
		Workers int    `json:"workers"`
	}
)

// ObservationName implements node.Observation.
func (WorkerHealthChanged) ObservationName() string { return "registry.health_changed" }

// ObservationName implements node.Observation.
func (WorkerExpired) ObservationName() string { return "registry.expired" }

// ObservationName implements node.Observation.
func (QueenStarted) ObservationName() string { return "registry.queen_started" }

// The registry's sequential specification. The queen implements it and model/ checks recorded
// histories against it; both follow this text. W is the worker an operation names; next()
// returns the registry-wide version counter plus one and advances it.
//
//	Register(spec, st):
//	  spec invalid, or st not idle/loading     -> INVALID_REQUEST
//	  W absent, registry holds Max workers     -> REGISTRY_FULL
//	  W absent                                 -> create {spec, st, healthy, next(), no claim}; Created
//	  spec.Incarnation <  W.Incarnation        -> STALE_INCARNATION
//	  spec.Incarnation == W.Incarnation        -> Health = healthy (a confirmation; nothing else changes)
//	  spec.Incarnation >  W.Incarnation        -> spec replaced, State = st, claim voided, healthy, next()
//	Heartbeat(W, inc):
//	  W absent -> UNKNOWN_WORKER; inc != W.Incarnation -> STALE_INCARNATION; else Health = healthy
//	Get(W): W absent -> UNKNOWN_WORKER; else the record
//	UpdateState(W, expect, to):
//	  to invalid -> INVALID_REQUEST; W absent -> UNKNOWN_WORKER
//	  expect != W.Version: to == busy and W.State == busy -> WORKER_ALREADY_BUSY, else VERSION_CONFLICT
//	  to == busy and W not healthy             -> WORKER_STALE
//	  else State = to, claim cleared, next(); if W not healthy: W removed (Removed)
//	Claim(model, cap):
//	  eligible: Model == model, cap empty or Capability == cap, State idle, Health healthy
//	  none -> NO_WORKER_AVAILABLE; else one eligible W: State = busy, new ClaimID, next()
//	Release(W, inc, claim):
//	  W absent -> UNKNOWN_WORKER; inc != W.Incarnation -> WORKER_INCARNATION_CHANGED
//	  W.State != busy or W.ClaimID != claim -> CLAIM_NOT_HELD
//	  else State = idle, claim cleared, next(); if W not healthy: W removed (Removed)
//	Remove(W): W absent -> UNKNOWN_WORKER; else W removed
//	List(model, cap): every record matching the filter, sorted by ID
//	internal WorkerHealthChanged(W, stale): W.Health = stale (only busy workers become stale)
//	internal WorkerExpired(W): W removed
//	internal QueenStarted: every W.Health = unconfirmed
//
// A response with UNAVAILABLE changed nothing. The record in a response is the record after
// the operation (for a removing operation: as last written before removal).

// WorkerOf is the worker a registry request names, "" for claims and lists (which name none).
func WorkerOf(req RegistryRequest) string {
	switch r := req.(type) {
	case RegisterReq:
		return r.Spec.ID
	case HeartbeatReq:
		return r.Worker
	case GetReq:
		return r.Worker
	case UpdateStateReq:
		return r.Worker
	case ReleaseReq:
		return r.Worker
	case RemoveReq:
		return r.Worker
	}
	return ""
}
