package queen

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Plant names this package honours (see orch/plant).
const (
	plantLostUpdate   = "registry-lost-update"
	plantStaleRouting = "registry-stale-routing"
)

// handleRegister implements Register(spec, st) of the specification.
func (q *Queen) handleRegister(env node.Env, c call, r api.RegisterReq) api.RegistryResp {
	if err := r.Spec.Validate(); err != nil {
		return c.fail(errInvalidSpec(err))
	}
	if r.State != api.StateIdle && r.State != api.StateLoading {
		return c.fail(errInvalidRegisterState(r.Spec.ID, r.State))
	}
	w := q.workers[r.Spec.ID]
	switch {
	case w == nil:
		return q.registerNew(env, c, r)
	case r.Spec.Incarnation < w.rec.Incarnation:
		return c.fail(errStaleRegistration(w.rec, r.Spec.Incarnation))
	case r.Spec.Incarnation == w.rec.Incarnation:
		q.becomeHealthy(env, w) // a confirmation: health only, not logged
		resp := c.ok()
		resp.Record = w.rec
		return resp
	default:
		return q.reincarnate(env, c, w, r)
	}
}

// registerNew creates a worker, unless the registry is full.
func (q *Queen) registerNew(env node.Env, c call, r api.RegisterReq) api.RegistryResp {
	if len(q.sorted) >= q.cfg.MaxWorkers {
		env.Observe(node.Mark("registry full"))
		return c.fail(errRegistryFull(q.cfg.MaxWorkers, r.Spec.ID))
	}
	rec := api.WorkerRecord{WorkerSpec: r.Spec, State: r.State, Health: api.HealthHealthy, Version: q.version + 1}
	resp := c.ok()
	resp.Record, resp.Created = rec, true
	resp = q.commitResp(env, c, resp, logRecord{Version: rec.Version, Put: &rec}, "registration")
	if !resp.Err.OK() {
		return resp
	}
	if len(q.sorted) > q.cfg.MaxWorkers {
		panic(fmt.Sprintf("queen: %d workers registered, above max_workers %d", len(q.sorted), q.cfg.MaxWorkers))
	}
	q.armDeadline(env, q.workers[rec.ID])
	return resp
}

// reincarnate replaces a worker's spec and state after a registration with a higher
// incarnation; any claim on the old incarnation is voided.
func (q *Queen) reincarnate(env node.Env, c call, w *worker, r api.RegisterReq) api.RegistryResp {
	old := w.rec
	rec := old
	rec.WorkerSpec, rec.State, rec.Health, rec.ClaimID = r.Spec, r.State, api.HealthHealthy, ""
	rec.Version = q.version + 1
	resp := c.ok()
	resp.Record = rec
	resp = q.commitResp(env, c, resp, logRecord{Version: rec.Version, Put: &rec}, "re-registration")
	if !resp.Err.OK() {
		return resp
	}
	if old.Capability != rec.Capability {
		env.Observe(node.Mark("capability changed by re-registration"))
	}
	q.armDeadline(env, w)
	return resp
}

// handleHeartbeat implements Heartbeat(W, inc): health becomes healthy, not logged.
func (q *Queen) handleHeartbeat(env node.Env, c call, r api.HeartbeatReq) api.RegistryResp {
	w := q.workers[r.Worker]
	switch {
	case w == nil:
		return c.fail(errUnknownWorker(r.Worker, "register the worker again"))
	case r.Incarnation != w.rec.Incarnation:
		return c.fail(errStaleHeartbeat(w.rec, r.Incarnation))
	}
	q.becomeHealthy(env, w)
	resp := c.ok()
	resp.Record = w.rec
	return resp
}

// handleGet implements Get(W).
func (q *Queen) handleGet(c call, r api.GetReq) api.RegistryResp {
	w := q.workers[r.Worker]
	if w == nil {
		return c.fail(errUnknownWorker(r.Worker, suggestList))
	}
	resp := c.ok()
	resp.Record = w.rec
	return resp
}

// handleUpdateState implements UpdateState(W, expect, to), a compare-and-set on Version.
func (q *Queen) handleUpdateState(env node.Env, c call, r api.UpdateStateReq) api.RegistryResp {
	if !r.To.Valid() {
		return c.fail(errInvalidState(r.Worker, r.To))
	}
	w := q.workers[r.Worker]
	if w == nil {
		return c.fail(errUnknownWorker(r.Worker, suggestList))
	}
	if !q.cfg.Plants.Has(plantLostUpdate) && r.ExpectVersion != w.rec.Version {
		if r.To == api.StateBusy && w.rec.State == api.StateBusy {
			return c.fail(errAlreadyBusy(w.rec, r.ExpectVersion))
		}
		return c.fail(errVersionConflict(w.rec, r.ExpectVersion))
	}
	if r.To == api.StateBusy && w.rec.Health != api.HealthHealthy {
		return c.fail(errWorkerStale(w.rec, q.cfg.HeartbeatTimeout))
	}
	rec := w.rec
	rec.State, rec.ClaimID, rec.Version = r.To, "", q.version+1
	return q.writeOrRemove(env, c, rec, "state change")
}

// writeOrRemove commits rec as the worker's new record, or, if the worker is not healthy,
// removes it (its request ended, so a stale or unconfirmed worker is let go).
func (q *Queen) writeOrRemove(env node.Env, c call, rec api.WorkerRecord, what string) api.RegistryResp {
	resp := c.ok()
	resp.Record = rec
	lr := logRecord{Version: rec.Version, Put: &rec}
	if rec.Health != api.HealthHealthy {
		lr = logRecord{Version: rec.Version, Delete: rec.ID}
		resp.Removed = true
	}
	resp = q.commitResp(env, c, resp, lr, what)
	if resp.Removed && resp.Err.OK() {
		env.Observe(node.Mark("stale worker removed when its request ended"))
	}
	if w := q.workers[rec.ID]; w != nil {
		q.assertWorker(w)
	}
	return resp
}

// handleClaim implements Claim(model, cap): one eligible worker, picked uniformly with
// env.Rand() among the eligible ones in ID order, becomes busy under a new claim.
func (q *Queen) handleClaim(env node.Env, c call, r api.ClaimReq) api.RegistryResp {
	eligible := q.scratch[:0]
	for _, cand := range q.sorted {
		if q.claimable(cand, r) {
			eligible = append(eligible, cand)
		}
	}
	q.scratch = eligible[:0]
	if len(eligible) == 0 {
		return c.fail(q.errNoWorker(r))
	}
	w := eligible[env.Rand().IntN(len(eligible))]
	clear(eligible) // drop the pointers so removed workers are not kept alive
	rec := w.rec
	rec.State, rec.Version = api.StateBusy, q.version+1
	rec.ClaimID = fmt.Sprintf("c%d-%d", q.epoch, q.claims+1)
	resp := c.ok()
	resp.Record = rec
	resp = q.commitResp(env, c, resp, logRecord{Version: rec.Version, Put: &rec}, "claim")
	if !resp.Err.OK() {
		return resp
	}
	q.claims++
	if w.rec.State != api.StateBusy || w.rec.ClaimID == "" {
		panic(fmt.Sprintf("queen: worker %s after a claim is %s with claim %q", w.rec.ID, w.rec.State, w.rec.ClaimID))
	}
	q.assertWorker(w)
	return resp
}

// claimable says whether w is eligible for the claim: serves the model (and capability, when
// one is asked for), idle, and healthy.
func (q *Queen) claimable(w *worker, r api.ClaimReq) bool {
	if w.rec.Model != r.Model || (r.Capability != "" && w.rec.Capability != r.Capability) {
		return false
	}
	if w.rec.State != api.StateIdle {
		return false
	}
	return w.rec.Health == api.HealthHealthy || q.cfg.Plants.Has(plantStaleRouting)
}

// handleRelease implements Release(W, inc, claim).
func (q *Queen) handleRelease(env node.Env, c call, r api.ReleaseReq) api.RegistryResp {
	w := q.workers[r.Worker]
	switch {
	case w == nil:
		return c.fail(errUnknownWorker(r.Worker, "nothing to release: the worker was removed, so its claim ended with it"))
	case r.Incarnation != w.rec.Incarnation:
		env.Log().Info("queen: release on another incarnation", "worker", r.Worker, "claim_incarnation", r.Incarnation, "incarnation", w.rec.Incarnation)
		return c.fail(errIncarnationChanged(w.rec, r.Incarnation))
	case w.rec.State != api.StateBusy || w.rec.ClaimID != r.ClaimID:
		return c.fail(errClaimNotHeld(w.rec, r.ClaimID))
	}
	rec := w.rec
	rec.State, rec.ClaimID, rec.Version = api.StateIdle, "", q.version+1
	return q.writeOrRemove(env, c, rec, "release")
}

// handleRemove implements Remove(W).
func (q *Queen) handleRemove(env node.Env, c call, r api.RemoveReq) api.RegistryResp {
	w := q.workers[r.Worker]
	if w == nil {
		return c.fail(errUnknownWorker(r.Worker, suggestList))
	}
	resp := c.ok()
	resp.Record, resp.Removed = w.rec, true
	return q.commitResp(env, c, resp, logRecord{Version: q.version, Delete: r.Worker}, "removal")
}

// handleList implements List(model, cap): matching records, sorted by ID.
func (q *Queen) handleList(c call, r api.ListReq) api.RegistryResp {
	resp := c.ok()
	for _, w := range q.sorted {
		rec := w.rec
		if (r.Model == "" || rec.Model == r.Model) && (r.Capability == "" || rec.Capability == r.Capability) {
			resp.Records = append(resp.Records, rec)
		}
	}
	return resp
}

// commitResp persists a change together with the response that acknowledges it (the dedup
// entry), then applies it; on a disk error it answers UNAVAILABLE and changes nothing.
func (q *Queen) commitResp(env node.Env, c call, resp api.RegistryResp, lr logRecord, what string) api.RegistryResp {
	lr.Dedup = &dedupEntry{From: c.from, ReqID: c.reqID, Resp: resp}
	if err := q.commit(env, lr); err != nil {
		env.Log().Error("queen: could not persist a registry change", "op", c.op, "worker", resp.Record.ID, "err", err)
		return c.fail(errUnavailable(what, resp.Record.ID, err))
	}
	return resp
}
