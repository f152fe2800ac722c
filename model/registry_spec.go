package model

import (
	"github.com/rbee-sim/rbee-sim/orch/api"
)

// regState is the registry as one partition sees it: one worker. It is a comparable value, so
// == is its equality.
//
// The model cannot predict the registry-wide version a write gets (other workers' writes
// advance the same counter), nor the ID a claim gets. After a write whose reply it has not
// seen yet, those fields are wildcards: verKnown false means the version is some value above
// last; claimKnown false means the claim ID is some non-empty string. The next output that
// shows the field resolves it.
//
// Invariant: present && verKnown implies rec.Version == last.
type regState struct {
	present    bool
	verKnown   bool
	claimKnown bool
	rec        api.WorkerRecord
	// last is the highest version this worker ever had, kept across removal: a new or
	// replaced record must get a higher one.
	last uint64
}

// absent returns the state after the worker is removed: only its version floor remains.
func (s regState) absent() regState {
	return regState{verKnown: true, claimKnown: true, last: s.last}
}

// healthy reports whether the worker's Health is healthy.
func (s regState) healthy() bool { return s.rec.Health == api.HealthHealthy }

// written returns s after a client-visible write: a new version (a wildcard until an output
// shows it), and, if clearClaim, no claim.
func (s regState) written(clearClaim bool) regState {
	s.verKnown = false
	s.rec.Version = 0
	if clearClaim {
		s.claimKnown = true
		s.rec.ClaimID = ""
	}
	return s
}

// withVersion returns s with its wildcard version resolved to v (the caller checked v > last).
func (s regState) withVersion(v uint64) regState {
	s.verKnown = true
	s.rec.Version = v
	s.last = v
	return s
}

// viewKind says what a successful response must carry as its Record.
type viewKind uint8

const (
	viewNone        viewKind = iota // nothing checked (List entries are checked separately)
	viewExact                       // exactly the view
	viewZeroOrExact                 // the zero record or exactly the view (Remove)
)

// outcome is one result the specification allows for an operation in a state: the code, the
// record a successful response carries, its flags, and the state after.
type outcome struct {
	code    api.Code
	view    regState
	kind    viewKind
	created bool
	removed bool
	// listed is, for a List, whether the worker must be in the list.
	listed bool
	next   regState
}

// fail is an outcome that changes nothing and answers with code.
func fail(s regState, code api.Code) []outcome {
	return []outcome{{code: code, next: s}}
}

// succeed is a successful outcome whose response carries view as its record.
func succeed(view, next regState) outcome {
	return outcome{code: api.CodeOK, view: view, kind: viewExact, next: next}
}

// specRegister follows Register(spec, st).
func specRegister(s regState, r api.RegisterReq) []outcome {
	if r.Spec.Validate() != nil || (r.State != api.StateIdle && r.State != api.StateLoading) {
		return fail(s, api.CodeInvalidRequest)
	}
	fresh := regState{
		present:    true,
		claimKnown: true,
		rec:        api.WorkerRecord{WorkerSpec: r.Spec, State: r.State, Health: api.HealthHealthy},
		last:       s.last,
	}.written(true)
	switch {
	case !s.present:
		// The model does not count workers across partitions, so REGISTRY_FULL is always
		// allowed for an absent worker.
		created := succeed(fresh, fresh)
		created.created = true
		return []outcome{{code: api.CodeRegistryFull, next: s}, created}
	case r.Spec.Incarnation < s.rec.Incarnation:
		return fail(s, api.CodeStaleIncarnation)
	case r.Spec.Incarnation == s.rec.Incarnation:
		n := s
		n.rec.Health = api.HealthHealthy
		return []outcome{succeed(n, n)}
	default:
		return []outcome{succeed(fresh, fresh)}
	}
}

// specHeartbeat follows Heartbeat(W, inc).
func specHeartbeat(s regState, r api.HeartbeatReq) []outcome {
	switch {
	case !s.present:
		return fail(s, api.CodeUnknownWorker)
	case r.Incarnation != s.rec.Incarnation:
		return fail(s, api.CodeStaleIncarnation)
	}
	n := s
	n.rec.Health = api.HealthHealthy
	return []outcome{succeed(n, n)}
}

// specGet follows Get(W).
func specGet(s regState) []outcome {
	if !s.present {
		return fail(s, api.CodeUnknownWorker)
	}
	return []outcome{succeed(s, s)}
}

// specUpdateState follows UpdateState(W, expect, to). With a wildcard version both a match
// and a mismatch are possible; a match resolves the wildcard to expect.
func specUpdateState(s regState, r api.UpdateStateReq) []outcome {
	switch {
	case !r.To.Valid():
		return fail(s, api.CodeInvalidRequest)
	case !s.present:
		return fail(s, api.CodeUnknownWorker)
	}
	mismatch := api.CodeVersionConflict
	if r.To == api.StateBusy && s.rec.State == api.StateBusy {
		mismatch = api.CodeWorkerAlreadyBusy
	}
	if s.verKnown {
		if r.ExpectVersion != s.rec.Version {
			return fail(s, mismatch)
		}
		return []outcome{updateMatched(s, r.To)}
	}
	out := fail(s, mismatch)
	if r.ExpectVersion > s.last {
		out = append(out, updateMatched(s.withVersion(r.ExpectVersion), r.To))
	}
	return out
}

// updateMatched is UpdateState once the expected version matched.
func updateMatched(s regState, to api.WorkerState) outcome {
	if to == api.StateBusy && !s.healthy() {
		return outcome{code: api.CodeWorkerStale, next: s}
	}
	w := s
	w.rec.State = to
	w = w.written(true)
	return writeMaybeRemove(w)
}

// writeMaybeRemove answers a successful write of w; a worker that is not healthy is removed
// by it, and the response shows the record as last written.
func writeMaybeRemove(w regState) outcome {
	if w.healthy() {
		return succeed(w, w)
	}
	o := succeed(w, w.absent())
	o.removed = true
	return o
}

// eligible reports whether Claim(model, cap) may hand out the worker.
func eligible(s regState, r api.ClaimReq) bool {
	return s.present && s.rec.Model == r.Model &&
		(r.Capability == "" || s.rec.Capability == r.Capability) &&
		s.rec.State == api.StateIdle && s.healthy()
}

// specClaim follows Claim(model, cap) as this worker's partition sees it: if the worker is
// eligible the claim may take it (success), otherwise this worker does not stop the answer
// NO_WORKER_AVAILABLE.
func specClaim(s regState, r api.ClaimReq) []outcome {
	if !eligible(s, r) {
		return fail(s, api.CodeNoWorkerAvailable)
	}
	w := s
	w.rec.State = api.StateBusy
	w = w.written(false)
	w.claimKnown = false
	w.rec.ClaimID = ""
	return []outcome{succeed(w, w)}
}

// specRelease follows Release(W, inc, claim). With a wildcard claim ID both a match (any
// non-empty claim) and a mismatch are possible.
func specRelease(s regState, r api.ReleaseReq) []outcome {
	switch {
	case !s.present:
		return fail(s, api.CodeUnknownWorker)
	case r.Incarnation != s.rec.Incarnation:
		return fail(s, api.CodeIncarnationChanged)
	case s.rec.State != api.StateBusy:
		return fail(s, api.CodeClaimNotHeld)
	}
	released := s
	released.rec.State = api.StateIdle
	done := writeMaybeRemove(released.written(true))
	switch {
	case s.claimKnown && s.rec.ClaimID == r.ClaimID:
		return []outcome{done}
	case s.claimKnown || r.ClaimID == "":
		return fail(s, api.CodeClaimNotHeld)
	default:
		return []outcome{{code: api.CodeClaimNotHeld, next: s}, done}
	}
}

// specRemove follows Remove(W).
func specRemove(s regState) []outcome {
	if !s.present {
		return fail(s, api.CodeUnknownWorker)
	}
	return []outcome{{code: api.CodeOK, view: s, kind: viewZeroOrExact, removed: true, next: s.absent()}}
}

// specList follows List(model, cap) as this worker's partition sees it: the worker is listed
// exactly when present and matching the filter, and then as it is.
func specList(s regState, r api.ListReq) []outcome {
	match := s.present && (r.Model == "" || s.rec.Model == r.Model) &&
		(r.Capability == "" || s.rec.Capability == r.Capability)
	return []outcome{{code: api.CodeOK, view: s, listed: match, next: s}}
}

// specHealthChanged follows the internal WorkerHealthChanged(W, stale): only a busy worker
// becomes stale, and the specification knows no other internal health change.
func specHealthChanged(s regState, o api.WorkerHealthChanged) []outcome {
	if !s.present || o.Health != api.HealthStale || s.rec.State != api.StateBusy {
		return nil
	}
	n := s
	n.rec.Health = api.HealthStale
	return []outcome{{code: api.CodeOK, next: n}}
}

// specExpired follows the internal WorkerExpired(W): the queen removes a worker it holds.
func specExpired(s regState) []outcome {
	if !s.present {
		return nil
	}
	return []outcome{{code: api.CodeOK, next: s.absent()}}
}

// specQueenStarted follows the internal QueenStarted: every worker becomes unconfirmed.
func specQueenStarted(s regState) []outcome {
	n := s
	if n.present {
		n.rec.Health = api.HealthUnconfirmed
	}
	return []outcome{{code: api.CodeOK, next: n}}
}
