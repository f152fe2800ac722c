package hive

import (
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Worker processes (Config.WorkerProcesses): a worker reports ready once its model is loaded,
// then its status every few seconds. The hive registers it when ready, with a fresh
// incarnation (a worker that reports ready again has restarted: its requests are gone), and
// removes it from the registry when its reports stop for WorkerStatusTimeout, so the queen
// stops routing to it and fails its requests over.

// handleWorkerReady registers a worker that finished loading, or logs why it could not load.
func (h *Hive) handleWorkerReady(env node.Env, from node.Addr, m api.WorkerReady) {
	w := h.byID[m.Worker]
	if !h.cfg.WorkerProcesses || w == nil || from != node.Addr(m.Worker) {
		env.Log().Warn("hive ignores a ready report", "from", from, "worker", m.Worker)
		return
	}
	if !m.Err.OK() {
		env.Log().Error("worker could not load its model", "worker", m.Worker, "code", m.Err.Code,
			"message", m.Err.Message, "suggestion", m.Err.Suggestion)
		env.Observe(node.Mark("worker failed to load"))
		w.ready = false
		return
	}
	if w.ready && !w.lost {
		return // a repeat
	}
	if w.lost || w.registered {
		// A restarted worker: nothing of its old incarnation runs any more.
		w.spec.Incarnation = h.newIncarnation(env)
	}
	w.ready, w.lost, w.lastStatus, w.registered = true, false, env.Now(), false
	env.Observe(node.Mark("worker ready"))
	h.register(env, w)
}

// handleWorkerStatus notes that a worker is alive. A worker the hive does not know as ready (a
// hive restart while the worker ran on) is adopted: registered as it is.
func (h *Hive) handleWorkerStatus(env node.Env, from node.Addr, m api.WorkerStatus) {
	w := h.byID[m.Worker]
	if !h.cfg.WorkerProcesses || w == nil || from != node.Addr(m.Worker) {
		return
	}
	w.lastStatus = env.Now()
	if !w.ready || w.lost {
		if w.lost {
			w.spec.Incarnation = h.newIncarnation(env)
		}
		w.ready, w.lost, w.registered = true, false, false
		env.Observe(node.Mark("hive adopted a running worker"))
		h.register(env, w)
	}
}

// checkWorkerAlive counts a ready worker lost when its status reports stopped, and removes it
// from the registry.
func (h *Hive) checkWorkerAlive(env node.Env, w *worker) {
	if !w.ready || env.Now().Sub(w.lastStatus) <= h.cfg.WorkerStatusTimeout {
		return
	}
	env.Log().Warn("worker stopped reporting; removing it from the registry", "worker", w.spec.ID,
		"silent_for", env.Now().Sub(w.lastStatus).String())
	env.Observe(node.Mark("hive detected a lost worker"))
	w.ready, w.lost, w.registered = false, true, false
	h.send(env, w, api.RemoveReq{ReqID: h.nextReqID(), Worker: w.spec.ID})
}
