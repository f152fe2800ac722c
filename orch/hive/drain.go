package hive

import (
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Draining a worker process (a rolling update: the new worker is up, the old one goes): the
// hive marks the worker draining in the registry (a compare-and-set on the record's version,
// so the queen stops routing to it), tells the worker to finish what it has (api.WorkerDrain),
// and when the worker reports api.WorkerDrained removes it from the registry and retires it:
// never registered again, its reports ignored, stopped when the hive runs its processes.

// drainPhase is where a worker is in being drained.
type drainPhase uint8

const (
	drainNone     drainPhase = iota
	drainMarking             // reading the record's version, then setting it draining
	drainWaiting             // draining in the registry; the worker finishes its requests
	drainRemoving            // drained; removal from the registry sent
	drainRetired             // gone for good
)

// startDrain begins draining a worker, on an operator's api.WorkerDrain to the hive.
func (h *Hive) startDrain(env node.Env, from node.Addr, m api.WorkerDrain) {
	w := h.byID[m.Worker]
	if w == nil || !h.cfg.WorkerProcesses {
		env.Log().Warn("hive: drain of an unknown worker ignored (or workers are not processes)", "from", from, "worker", m.Worker)
		return
	}
	if w.drain != drainNone {
		return // already draining: a repeat
	}
	env.Observe(node.Mark("hive draining a worker"))
	w.drain = drainMarking
	h.send(env, w, api.GetReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
}

// drainAnswered moves a drain on after a registry answer to its Get, UpdateState or Remove.
func (h *Hive) drainAnswered(env node.Env, w *worker, req api.RegistryRequest, r api.RegistryResp) {
	switch req.(type) {
	case api.GetReq:
		if r.Err.OK() {
			h.send(env, w, api.UpdateStateReq{ReqID: h.nextReqID(), Worker: w.spec.ID, ExpectVersion: r.Record.Version, To: api.StateDraining})
			return
		}
		h.tellDrain(env, w) // not registered: nothing to route away from
	case api.UpdateStateReq:
		switch r.Err.Code {
		case api.CodeOK, api.CodeUnknownWorker:
			h.tellDrain(env, w)
		default: // a concurrent write moved the version: read it again
			h.send(env, w, api.GetReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
		}
	case api.RemoveReq:
		if w.drain == drainRemoving {
			w.drain, w.registered, w.ready = drainRetired, false, false
			env.Observe(node.Mark("hive retired a drained worker"))
			h.retired(env, w)
		}
	}
}

func (h *Hive) tellDrain(env node.Env, w *worker) {
	w.drain = drainWaiting
	env.Observe(node.Mark("hive marked a worker draining"))
	env.Send(node.Addr(w.spec.ID), api.WorkerDrain{Worker: w.spec.ID})
}

// workerDrained removes a worker that finished its last request after WorkerDrain.
func (h *Hive) workerDrained(env node.Env, from node.Addr, m api.WorkerDrained) {
	w := h.byID[m.Worker]
	if w == nil || from != node.Addr(m.Worker) || w.drain != drainWaiting {
		return
	}
	w.drain = drainRemoving
	h.send(env, w, api.RemoveReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
}

// retiredOrDraining reports whether the hive must not register w as idle: draining workers are
// registered as draining, retired ones not at all.
func (w *worker) retiredOrDraining() bool { return w.drain != drainNone }

// retired stops a retired worker's process when the hive runs its processes; otherwise the
// process is the operator's to stop.
func (h *Hive) retired(env node.Env, w *worker) {
	if !h.life.on {
		return
	}
	if lw := h.life.byID[w.spec.ID]; lw != nil && lw.state == lifeRunning {
		h.stopping(env, lw, stopDrained, false)
	}
}

// retryDrains keeps every drain moving whatever was lost: a step whose registry request was
// replaced or never answered is sent again, and a worker that has not reported drained is told
// again (WorkerDrain is idempotent).
func (h *Hive) retryDrains(env node.Env) {
	for _, w := range h.workers {
		if w.pending != nil {
			continue // resent as it is below
		}
		switch w.drain {
		case drainMarking:
			h.send(env, w, api.GetReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
		case drainWaiting:
			env.Send(node.Addr(w.spec.ID), api.WorkerDrain{Worker: w.spec.ID})
		case drainRemoving:
			h.send(env, w, api.RemoveReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
		}
	}
}

// drainForStop marks a worker draining in the registry before the hive stops its process
// gracefully (TERM): its running requests finish there instead of failing over. The removal
// follows its exit (afterExit).
func (h *Hive) drainForStop(env node.Env, lw *lifeWorker) {
	w := h.byID[lw.id]
	if lw.idle != 0 {
		env.Cancel(lw.idle)
		lw.idle = 0
	}
	if w.drain != drainNone {
		return // already draining (a rolling update)
	}
	if !w.registered && w.pending == nil {
		h.removeFromRegistry(env, lw) // nothing registered to drain
		return
	}
	w.drain = drainMarking
	h.send(env, w, api.GetReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
}
