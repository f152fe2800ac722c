package queen

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// The errors a person may see. Each says what happened, why, and what to do.

const suggestList = "list the registered workers (rbee-keeper workers list) and use one of their IDs"

func errRecovering(op string) api.Error {
	return api.Errorf(api.CodeUnavailable,
		"retry later; if this lasts, check the queen's disk (its log says what failed)",
		"the queen could not read its worker registry from disk, so this %s was not applied", op)
}

func errUnavailable(what, worker string, err error) api.Error {
	return api.Errorf(api.CodeUnavailable,
		"retry the request later; if this lasts, check the queen's disk for free space and errors",
		"could not persist the %s of worker %s, so nothing changed: %v", what, worker, err)
}

func errInvalidSpec(err error) api.Error {
	return api.Errorf(api.CodeInvalidRequest,
		"fix the worker's registration in its hive and register again",
		"registration refused: %v", err)
}

func errInvalidRegisterState(worker string, st api.WorkerState) api.Error {
	return api.Errorf(api.CodeInvalidRequest,
		"register the worker as idle or loading, then report other states with an update",
		"registration of worker %s refused: state %q is not idle or loading", worker, st)
}

func errInvalidState(worker string, st api.WorkerState) api.Error {
	return api.Errorf(api.CodeInvalidRequest,
		"use one of the states loading, idle, busy, draining",
		"state update of worker %s refused: %q is not a worker state", worker, st)
}

func errRegistryFull(maxWorkers int, worker string) api.Error {
	return api.Errorf(api.CodeRegistryFull,
		"remove stale workers (rbee-keeper workers list --stale, then rbee-keeper workers remove ID) or raise the queen's max_workers",
		"registry holds its maximum of %d workers; worker %s was not registered", maxWorkers, worker)
}

func errUnknownWorker(worker, suggestion string) api.Error {
	return api.Errorf(api.CodeUnknownWorker, suggestion,
		"worker %s is not registered (it was removed, expired, or never registered)", worker)
}

func errStaleRegistration(cur api.WorkerRecord, inc uint64) api.Error {
	return api.Errorf(api.CodeStaleIncarnation,
		"the hive restarted this worker since; register it with its current incarnation",
		"worker %s is registered as incarnation %d; this registration names the older incarnation %d and was refused", cur.ID, cur.Incarnation, inc)
}

func errStaleHeartbeat(cur api.WorkerRecord, inc uint64) api.Error {
	return api.Errorf(api.CodeStaleIncarnation,
		"register the worker again with its current incarnation",
		"heartbeat names incarnation %d but worker %s is registered as incarnation %d", inc, cur.ID, cur.Incarnation)
}

func errAlreadyBusy(cur api.WorkerRecord, expect uint64) api.Error {
	return api.Errorf(api.CodeWorkerAlreadyBusy,
		"route the request to another worker (claim again)",
		"worker %s is already busy: another request took it first (version %d, you expected %d)", cur.ID, cur.Version, expect)
}

func errVersionConflict(cur api.WorkerRecord, expect uint64) api.Error {
	return api.Errorf(api.CodeVersionConflict,
		"read the worker again (get) and retry the update on its current version",
		"worker %s changed since you read it: its version is %d, you expected %d", cur.ID, cur.Version, expect)
}

func errWorkerStale(cur api.WorkerRecord, timeout time.Duration) api.Error {
	return api.Errorf(api.CodeWorkerStale,
		"route the request to a healthy worker; this one needs a heartbeat or a registration from its hive first",
		"worker %s is %s (no heartbeat confirmed within %s), so it cannot be made busy", cur.ID, cur.Health, timeout)
}

func errClaimNotHeld(cur api.WorkerRecord, claim string) api.Error {
	held := "no claim"
	if cur.ClaimID != "" {
		held = "claim " + cur.ClaimID
	}
	return api.Errorf(api.CodeClaimNotHeld,
		"the claim already ended (released, replaced by a state update, or the worker re-registered); do not use the worker under it",
		"worker %s is not held by claim %q: it is %s under %s", cur.ID, claim, cur.State, held)
}

func errIncarnationChanged(cur api.WorkerRecord, inc uint64) api.Error {
	if inc > cur.Incarnation {
		return api.Errorf(api.CodeIncarnationChanged,
			"check which incarnation the claim was made on; route the request again",
			"the release names incarnation %d but worker %s is registered as incarnation %d with capability %s", inc, cur.ID, cur.Incarnation, cur.Capability)
	}
	return api.Errorf(api.CodeIncarnationChanged,
		"route the request again: the worker's capabilities changed",
		"the claim was made on incarnation %d; worker %s re-registered as incarnation %d with capability %s, which voided it", inc, cur.ID, cur.Incarnation, cur.Capability)
}

// errNoWorker explains why no worker could be claimed, with counts of the ones that serve the
// model but were not eligible.
func (q *Queen) errNoWorker(r api.ClaimReq) api.Error {
	var serving, busy, unhealthy int
	for _, ww := range q.sorted {
		w := ww.rec
		if w.Model != r.Model || (r.Capability != "" && w.Capability != r.Capability) {
			continue
		}
		serving++
		switch {
		case w.Health != api.HealthHealthy:
			unhealthy++
		case w.State == api.StateBusy:
			busy++
		}
	}
	target := "model " + r.Model
	if r.Capability != "" {
		target += " on capability " + r.Capability
	}
	why := fmt.Sprintf("%d workers serve it: %d busy, %d not healthy, %d loading or draining", serving, busy, unhealthy, serving-busy-unhealthy)
	if serving == 0 {
		why = "no registered worker serves it"
	}
	return api.Errorf(api.CodeNoWorkerAvailable,
		"retry after a worker is released, or start more workers for the model",
		"no idle, healthy worker for %s: %s", target, why)
}
