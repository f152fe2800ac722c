package model

import (
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// RegistryModel returns the porcupine model of the worker registry's sequential
// specification (orch/api/registry.go). It takes histories of Operations whose Input is a
// RegistryCall and whose Output is a RegistryReturn, as History.Operations returns them; it
// does not support porcupine's Event histories.
//
// The model partitions a history by worker ID (every ID the history names, sorted); each
// partition is checked against one worker's state: present or not, its record, and the
// highest version it ever had.
//
//   - An operation naming a worker (Register, Heartbeat, Get, UpdateState, Release, Remove, the
//     internal WorkerHealthChanged and WorkerExpired) goes to that worker's partition; a
//     successful Claim to the partition of the worker it returned.
//   - QueenStarted goes to every partition.
//   - List goes to every partition as "this worker's entry in the list": listed, the entry
//     must equal the worker's record and the worker must match the filter; not listed, the
//     worker must be absent or not match.
//   - A Claim answered NO_WORKER_AVAILABLE goes to every partition as "this worker was not
//     eligible". (It is read-only, so it could simply be dropped: removing an operation that
//     changes nothing from a legal sequential history leaves a legal one, so a history that is
//     illegal without it was illegal with it. Projecting it instead also catches a registry
//     that answers NO_WORKER_AVAILABLE while a worker is eligible.)
//   - A Claim with an unknown outcome goes to every partition, where it may do nothing or, if
//     the worker is eligible, make it busy under an unknown claim ID and version.
//   - A Claim or List with an error the specification never gives it goes to every partition,
//     where no state allows it.
//
// "Every partition" skips, for a Claim and a filtered List, the workers that no Register in
// the history ever gave a matching model and capability: there the operation is a no-op that
// always holds, so leaving it out changes no verdict and saves most of the work.
//
// Soundness: a linearization of the whole history, restricted to what one worker sees, is a
// linearization of that worker's partition, so an illegal partition proves an illegal history.
// The check is not complete: each partition may pick its own point for a shared operation, an
// unknown Claim may seem to take several workers, and REGISTRY_FULL (a count over all workers)
// is always allowed for an absent worker.
//
// Operations that constrain nothing are left out: replies with code UNAVAILABLE (the
// specification says they changed nothing) and Gets and Lists whose reply never came.
//
// Versions: the model cannot predict the registry-wide counter, so a write's new version is
// taken from its reply after checking that it is higher than any version the worker ever had,
// also before a removal.
//
// Unknown outcomes (porcupine.NondeterministicModel): an operation whose reply never came may
// or may not have taken effect. (Its return time is unbounded, so "not applied" is the same as
// "applied after everything else"; allowing it outright keeps the search short.) Fields such
// an operation would have set that no reply showed (a version, a claim ID) are wildcards that
// the next reply showing them resolves.
//
// Replies are checked fully: the error code, the Created and Removed flags of a success, and
// the record of a successful Register, Heartbeat, Get, UpdateState, Claim or Release (all
// fields, Health, Version and ClaimID included); Remove may carry the zero record or the
// record as it was. The records of error replies and the Epoch are not checked.
func RegistryModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition:         partitionRegistry,
		Init:              func() []any { return []any{regState{verKnown: true, claimKnown: true}} },
		Step:              stepRegistry,
		Equal:             func(a, b any) bool { return a.(regState) == b.(regState) },
		Hash:              hashState,
		DescribeOperation: describeOperation,
		DescribeState:     describeState,
	}
	return nm.ToModel()
}

// stepIn is the Input of an operation in one worker's partition.
type stepIn struct {
	worker string
	call   RegistryCall
}

// stepOut is the Output of an operation in one worker's partition.
type stepOut struct {
	known bool
	resp  *api.RegistryResp // nil for an internal transition
	// For a List: whether the worker is in the list, its entry, and whether the list as a
	// whole breaks the specification (not sorted by ID, or an ID twice).
	listed    bool
	entry     api.WorkerRecord
	malformed bool
}

// code is the reply's error code; an internal transition always succeeds.
func (o *stepOut) code() api.Code {
	if o.resp == nil {
		return api.CodeOK
	}
	return o.resp.Err.Code
}

// stepRegistry is the nondeterministic step: every state the worker may be in after the
// operation, none if the operation's output is impossible.
func stepRegistry(state, input, output any) []any {
	s := state.(regState)
	in, ok1 := input.(*stepIn)
	out, ok2 := output.(*stepOut)
	if !ok1 || !ok2 {
		panic(fmt.Sprintf("model: registry step got %T -> %T; check Operations with RegistryModel's partitioning, not Events", input, output))
	}
	if out.known && out.code() == api.CodeUnavailable {
		return []any{s}
	}
	outcomes := specOutcomes(s, in)
	if !out.known {
		next := make([]any, 0, len(outcomes)+1)
		next = append(next, s)
		for _, o := range outcomes {
			next = append(next, o.next)
		}
		return next
	}
	var next []any
	for _, o := range outcomes {
		if n, ok := o.match(out); ok {
			next = append(next, n)
		}
	}
	return next
}

// specOutcomes dispatches to the specification of the operation.
func specOutcomes(s regState, in *stepIn) []outcome {
	switch r := in.call.Req.(type) {
	case api.RegisterReq:
		return specRegister(s, r)
	case api.HeartbeatReq:
		return specHeartbeat(s, r)
	case api.GetReq:
		return specGet(s)
	case api.UpdateStateReq:
		return specUpdateState(s, r)
	case api.ClaimReq:
		return specClaim(s, r)
	case api.ReleaseReq:
		return specRelease(s, r)
	case api.RemoveReq:
		return specRemove(s)
	case api.ListReq:
		return specList(s, r)
	case nil:
	default:
		panic(fmt.Sprintf("model: unknown registry request %T", r))
	}
	switch o := in.call.Internal.(type) {
	case api.WorkerHealthChanged:
		return specHealthChanged(s, o)
	case api.WorkerExpired:
		return specExpired(s)
	case api.QueenStarted:
		return specQueenStarted(s)
	}
	panic(fmt.Sprintf("model: operation with neither a request nor an internal transition: %+v", in.call))
}

// match reports whether out is what o answers, and the state after, with any wildcard the
// reply shows resolved.
func (o outcome) match(out *stepOut) (regState, bool) {
	if out.code() != o.code {
		return regState{}, false
	}
	if o.code != api.CodeOK || out.resp == nil {
		return o.next, true
	}
	if out.malformed {
		return regState{}, false
	}
	if out.resp.Created != o.created || out.resp.Removed != o.removed {
		return regState{}, false
	}
	switch {
	case o.listed != out.listed:
		return regState{}, false
	case o.listed:
		return resolve(o.view, o.next, out.entry)
	case o.kind == viewExact:
		return resolve(o.view, o.next, out.resp.Record)
	case o.kind == viewZeroOrExact && out.resp.Record != (api.WorkerRecord{}):
		return resolve(o.view, o.next, out.resp.Record)
	}
	return o.next, true
}

// resolve checks a reply's record against the view the specification expects, filling in the
// view's wildcards from the reply, and returns next with the same wildcards resolved.
func resolve(view, next regState, got api.WorkerRecord) (regState, bool) {
	want := view.rec
	if !view.verKnown {
		if got.Version <= view.last {
			return regState{}, false
		}
		want.Version = got.Version
	}
	if !view.claimKnown {
		if got.ClaimID == "" {
			return regState{}, false
		}
		want.ClaimID = got.ClaimID
	}
	if got != want {
		return regState{}, false
	}
	if !view.verKnown {
		if next.present && !next.verKnown {
			next = next.withVersion(got.Version)
		} else {
			next.last = max(next.last, got.Version)
		}
	}
	if !view.claimKnown && next.present && !next.claimKnown {
		next.claimKnown = true
		next.rec.ClaimID = got.ClaimID
	}
	return next, true
}

// hashState hashes the fields of a state that are cheap to read; equal states hash equal.
func hashState(state any) uint64 {
	s := state.(regState)
	h := uint64(14695981039346656037)
	mix := func(v uint64) {
		h ^= v
		h *= 1099511628211
	}
	flags := uint64(0)
	for i, b := range []bool{s.present, s.verKnown, s.claimKnown} {
		if b {
			flags |= 1 << i
		}
	}
	mix(flags)
	mix(s.last)
	mix(s.rec.Version)
	mix(s.rec.Incarnation)
	mix(uint64(firstByte(string(s.rec.State)))<<16 | uint64(firstByte(string(s.rec.Health)))<<8 | uint64(len(s.rec.ClaimID)))
	return h
}

// firstByte is s's first byte, or 0.
func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}
