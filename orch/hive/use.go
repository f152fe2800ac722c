package hive

import (
	"sort"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// handleUse runs one piece of work on a worker, if the request is bound to the worker's current
// incarnation and a slot is free. A repeat of a request is answered from memory.
func (h *Hive) handleUse(env node.Env, from node.Addr, r api.UseReq) {
	key := useKey{from: from, reqID: r.ReqID}
	if u, ok := h.uses[key]; ok {
		if u.done {
			env.Send(from, u.resp)
		}
		return
	}
	w := h.byID[r.Worker]
	if err := h.admit(w, r); !err.OK() {
		h.finish(env, key, &use{worker: r.Worker}, api.UseResp{ReqID: r.ReqID, Worker: r.Worker, Err: err})
		return
	}
	w.active++
	if w.active > w.spec.Slots {
		panic("hive: worker " + w.spec.ID + " runs more work than it has slots")
	}
	u := &use{worker: w.spec.ID, inc: w.spec.Incarnation}
	u.timer = env.After(r.Work, useDone{From: from, ReqID: r.ReqID})
	h.uses[key] = u
}

func (h *Hive) admit(w *worker, r api.UseReq) api.Error {
	switch {
	case w == nil:
		return api.Errorf(api.CodeUnknownWorker, "list workers again and route to one that exists",
			"hive has no worker %q", r.Worker)
	case r.Incarnation != w.spec.Incarnation:
		return api.Errorf(api.CodeIncarnationChanged, "route the request again: the worker's capabilities changed",
			"the request was routed to incarnation %d of worker %s; it is now incarnation %d on %s, so the request was not run",
			r.Incarnation, w.spec.ID, w.spec.Incarnation, w.spec.Capability)
	case w.active >= w.spec.Slots:
		return api.Errorf(api.CodeAllSlotsBusy, "retry after a short wait, or route to another worker",
			"worker %s runs %d of %d slots", w.spec.ID, w.active, w.spec.Slots)
	}
	return api.Error{}
}

func (h *Hive) handleUseDone(env node.Env, m useDone) {
	key := useKey{from: m.From, reqID: m.ReqID}
	u, ok := h.uses[key]
	if !ok || u.done {
		return
	}
	if w := h.byID[u.worker]; w != nil {
		w.active--
	}
	h.finish(env, key, u, api.UseResp{ReqID: m.ReqID, Worker: u.worker})
}

// failUses ends every piece of work running on w with WORKER_INCARNATION_CHANGED: the worker
// restarted on another device and lost it.
func (h *Hive) failUses(env node.Env, w *worker) {
	var keys []useKey
	for k, u := range h.uses { //det:sorted
		if u.worker == w.spec.ID && !u.done {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].from != keys[j].from {
			return keys[i].from < keys[j].from
		}
		return keys[i].reqID < keys[j].reqID
	})
	for _, k := range keys {
		u := h.uses[k]
		env.Cancel(u.timer)
		w.active--
		err := api.Errorf(api.CodeIncarnationChanged, "route the request again: the worker's capabilities changed",
			"worker %s lost its device and restarted as incarnation %d on %s; the request bound to incarnation %d was stopped",
			w.spec.ID, w.spec.Incarnation, w.spec.Capability, u.inc)
		h.finish(env, k, u, api.UseResp{ReqID: k.reqID, Worker: w.spec.ID, Err: err})
	}
}

func (h *Hive) finish(env node.Env, key useKey, u *use, resp api.UseResp) {
	u.done, u.resp = true, resp
	h.uses[key] = u
	h.finished = append(h.finished, key)
	for len(h.finished) > h.cfg.UseDedupMax {
		delete(h.uses, h.finished[0])
		h.finished = h.finished[1:]
	}
	env.Send(key.from, resp)
}
