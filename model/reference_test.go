package model

import (
	"fmt"
	"slices"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// refRegistry is a deliberately naive sequential implementation of the registry's
// specification (orch/api/registry.go), written apart from the model, to generate histories
// the model must accept.
type refRegistry struct {
	max     int
	version uint64
	claims  int
	workers map[string]api.WorkerRecord
}

func newRefRegistry(max int) *refRegistry {
	return &refRegistry{max: max, workers: make(map[string]api.WorkerRecord)}
}

func (r *refRegistry) next() uint64 {
	r.version++
	return r.version
}

// ids returns the registered worker IDs, sorted.
func (r *refRegistry) ids() []string {
	ids := make([]string, 0, len(r.workers))
	for id := range r.workers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// busy returns the busy workers' IDs, sorted.
func (r *refRegistry) busy() []string {
	var ids []string
	for _, id := range r.ids() {
		if r.workers[id].State == api.StateBusy {
			ids = append(ids, id)
		}
	}
	return ids
}

// apply runs one request. pick chooses among n eligible workers for a Claim.
func (r *refRegistry) apply(req api.RegistryRequest, pick func(n int) int) api.RegistryResp {
	var resp api.RegistryResp
	switch q := req.(type) {
	case api.RegisterReq:
		resp = r.register(q)
	case api.HeartbeatReq:
		resp = r.heartbeat(q)
	case api.GetReq:
		w, ok := r.workers[q.Worker]
		if !ok {
			resp = errResp(api.CodeUnknownWorker)
		} else {
			resp.Record = w
		}
	case api.UpdateStateReq:
		resp = r.updateState(q)
	case api.ClaimReq:
		resp = r.claim(q, pick)
	case api.ReleaseReq:
		resp = r.release(q)
	case api.RemoveReq:
		w, ok := r.workers[q.Worker]
		if !ok {
			resp = errResp(api.CodeUnknownWorker)
		} else {
			delete(r.workers, q.Worker)
			resp = api.RegistryResp{Record: w, Removed: true}
		}
	case api.ListReq:
		resp = r.list(q)
	default:
		panic(fmt.Sprintf("refRegistry: %T", req))
	}
	resp.ReqID = req.RequestID()
	resp.Op = req.MsgName()
	return resp
}

func errResp(code api.Code) api.RegistryResp { return api.RegistryResp{Err: api.Error{Code: code}} }

func (r *refRegistry) register(q api.RegisterReq) api.RegistryResp {
	if q.Spec.Validate() != nil || (q.State != api.StateIdle && q.State != api.StateLoading) {
		return errResp(api.CodeInvalidRequest)
	}
	w, ok := r.workers[q.Spec.ID]
	fresh := api.WorkerRecord{WorkerSpec: q.Spec, State: q.State, Health: api.HealthHealthy}
	switch {
	case !ok && len(r.workers) >= r.max:
		return errResp(api.CodeRegistryFull)
	case !ok:
		fresh.Version = r.next()
		r.workers[q.Spec.ID] = fresh
		return api.RegistryResp{Record: fresh, Created: true}
	case q.Spec.Incarnation < w.Incarnation:
		return errResp(api.CodeStaleIncarnation)
	case q.Spec.Incarnation == w.Incarnation:
		w.Health = api.HealthHealthy
	default:
		fresh.Version = r.next()
		w = fresh
	}
	r.workers[w.ID] = w
	return api.RegistryResp{Record: w}
}

func (r *refRegistry) heartbeat(q api.HeartbeatReq) api.RegistryResp {
	w, ok := r.workers[q.Worker]
	switch {
	case !ok:
		return errResp(api.CodeUnknownWorker)
	case q.Incarnation != w.Incarnation:
		return errResp(api.CodeStaleIncarnation)
	}
	w.Health = api.HealthHealthy
	r.workers[w.ID] = w
	return api.RegistryResp{Record: w}
}

func (r *refRegistry) updateState(q api.UpdateStateReq) api.RegistryResp {
	w, ok := r.workers[q.Worker]
	switch {
	case !q.To.Valid():
		return errResp(api.CodeInvalidRequest)
	case !ok:
		return errResp(api.CodeUnknownWorker)
	case q.ExpectVersion != w.Version && q.To == api.StateBusy && w.State == api.StateBusy:
		return errResp(api.CodeWorkerAlreadyBusy)
	case q.ExpectVersion != w.Version:
		return errResp(api.CodeVersionConflict)
	case q.To == api.StateBusy && w.Health != api.HealthHealthy:
		return errResp(api.CodeWorkerStale)
	}
	w.State, w.ClaimID, w.Version = q.To, "", r.next()
	return r.store(w)
}

// store writes w back, or removes it if it is not healthy.
func (r *refRegistry) store(w api.WorkerRecord) api.RegistryResp {
	if w.Health != api.HealthHealthy {
		delete(r.workers, w.ID)
		return api.RegistryResp{Record: w, Removed: true}
	}
	r.workers[w.ID] = w
	return api.RegistryResp{Record: w}
}

func (r *refRegistry) claim(q api.ClaimReq, pick func(n int) int) api.RegistryResp {
	var eligible []string
	for _, id := range r.ids() {
		w := r.workers[id]
		if w.Model == q.Model && (q.Capability == "" || w.Capability == q.Capability) &&
			w.State == api.StateIdle && w.Health == api.HealthHealthy {
			eligible = append(eligible, id)
		}
	}
	if len(eligible) == 0 {
		return errResp(api.CodeNoWorkerAvailable)
	}
	w := r.workers[eligible[pick(len(eligible))]]
	r.claims++
	w.State, w.ClaimID, w.Version = api.StateBusy, fmt.Sprintf("c%d", r.claims), r.next()
	r.workers[w.ID] = w
	return api.RegistryResp{Record: w}
}

func (r *refRegistry) release(q api.ReleaseReq) api.RegistryResp {
	w, ok := r.workers[q.Worker]
	switch {
	case !ok:
		return errResp(api.CodeUnknownWorker)
	case q.Incarnation != w.Incarnation:
		return errResp(api.CodeIncarnationChanged)
	case w.State != api.StateBusy || w.ClaimID != q.ClaimID:
		return errResp(api.CodeClaimNotHeld)
	}
	w.State, w.ClaimID, w.Version = api.StateIdle, "", r.next()
	return r.store(w)
}

func (r *refRegistry) list(q api.ListReq) api.RegistryResp {
	var recs []api.WorkerRecord
	for _, id := range r.ids() {
		w := r.workers[id]
		if (q.Model == "" || w.Model == q.Model) && (q.Capability == "" || w.Capability == q.Capability) {
			recs = append(recs, w)
		}
	}
	return api.RegistryResp{Records: recs}
}

// stale makes a busy worker stale, as the queen does on a heartbeat timeout; it reports
// whether it applied.
func (r *refRegistry) stale(id string) bool {
	w, ok := r.workers[id]
	if !ok || w.State != api.StateBusy {
		return false
	}
	w.Health = api.HealthStale
	r.workers[id] = w
	return true
}

// expire removes a worker on the queen's own account; it reports whether it applied.
func (r *refRegistry) expire(id string) bool {
	_, ok := r.workers[id]
	delete(r.workers, id)
	return ok
}

// restart makes every worker unconfirmed.
func (r *refRegistry) restart() {
	for id, w := range r.workers {
		w.Health = api.HealthUnconfirmed
		r.workers[id] = w
	}
}
