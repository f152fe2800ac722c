package hive

import (
	"sort"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// Handle implements node.Node.
func (h *Hive) Handle(env node.Env, from node.Addr, m node.Msg) {
	if h.life.exited {
		return // the hive exited after a shutdown; its process is going away
	}
	if h.downloads.prov != nil && h.downloads.prov.Handle(env, from, m) {
		return
	}
	switch m := m.(type) {
	case api.ModelDownloadReq:
		h.handleDownload(env, from, m)
	case api.WorkerStartReq:
		h.handleStart(env, from, m)
	case provision.Progress:
		if from == env.Self() {
			h.downloadProgress(env, m)
		}
	case provision.Done:
		if from == env.Self() {
			h.downloadDone(env, m)
		}
	case heartbeatTick:
		if !h.life.shutdown { // a hive shutting down registers and heartbeats nothing more
			h.handleHeartbeatTick(env)
		}
	case retryTick:
		h.handleRetryTick(env)
	case api.RegistryResp:
		if from == h.cfg.Queen {
			h.handleRegistryResp(env, m)
			h.checkShutdownDone(env) // a shutdown waits for its removals
		}
	case api.UseReq:
		h.handleUse(env, from, m)
	case useDone:
		h.handleUseDone(env, m)
	case api.CatalogRegisterReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.CatalogGetReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.CatalogListReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.CatalogCleanupReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.CatalogBackupReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.CatalogRestoreReq:
		h.handleCatalog(env, from, m, m.ReqID)
	case api.WorkerReady:
		if w := h.byID[m.Worker]; w == nil || w.drain != drainRetired {
			h.onWorkerReady(env, from, m)
		}
	case api.WorkerStatus:
		if w := h.byID[m.Worker]; w == nil || w.drain != drainRetired {
			h.onWorkerStatus(env, from, m)
		}
	case api.WorkerDrain:
		h.startDrain(env, from, m)
	case api.WorkerDrained:
		h.workerDrained(env, from, m)
	case api.ProcListResp:
		if h.fromTable(env, from, m) {
			h.handleProcList(env, m)
		}
	case api.ProcSpawned:
		if h.fromTable(env, from, m) {
			h.handleProcSpawned(env, m)
		}
	case api.ProcExited:
		if h.fromTable(env, from, m) {
			h.handleProcExited(env, m)
		}
	case api.ProcTerm:
		h.handleProcTerm(env, from)
	case lifeRetryTick:
		if from == env.Self() {
			h.handleLifeRetryTick(env)
		}
	case lifeTimer:
		if from == env.Self() {
			h.handleLifeTimer(env, m)
		}
	case lifeIdle:
		if from == env.Self() {
			h.handleLifeIdle(env, m)
		}
	case lifeStable:
		if from == env.Self() {
			h.handleLifeStable(m)
		}
	case shutdownGrace:
		if from == env.Self() {
			h.handleShutdownGrace(env)
		}
	case shutdownDeadline:
		if from == env.Self() {
			h.handleShutdownDeadline(env)
		}
	case api.WorkerLoading:
		env.Log().Debug("worker loading", "worker", m.Worker, "percent", m.Percent)
		// A client waiting for this worker's start sees the model load (rbee-keeper worker
		// start draws it).
		if op := h.start.byWorker[m.Worker]; op != nil && from == node.Addr(m.Worker) {
			env.Send(op.key.from, m)
		}
	case api.DeviceFault:
		h.handleDeviceFault(env, m)
	case api.WorkerHang:
		h.handleWorkerHang(env, m)
	case hangEnd:
		if w := h.byID[m.Worker]; w != nil && w.hangs > 0 {
			w.hangs--
		}
	default:
		env.Log().Warn("hive ignores an unknown message", "from", from, "msg", m.MsgName())
	}
}

// send makes req the worker's one outstanding registry request (an earlier one is dropped, so
// its late answer is ignored) and sends it.
func (h *Hive) send(env node.Env, w *worker, req api.RegistryRequest) {
	if w.pending != nil {
		delete(h.inflight, w.pending.RequestID())
	}
	w.pending = req
	h.inflight[req.RequestID()] = w
	env.Send(h.cfg.Queen, req)
}

func (h *Hive) nextReqID() uint64 {
	h.reqN++
	return h.reqBase + h.reqN
}

func (h *Hive) register(env node.Env, w *worker) {
	if w.drain != drainNone {
		return // a worker being drained is never (re-)registered: nothing may route to it
	}
	h.send(env, w, api.RegisterReq{ReqID: h.nextReqID(), Spec: w.spec, State: api.StateIdle})
}

func (h *Hive) handleHeartbeatTick(env node.Env) {
	env.After(h.cfg.HeartbeatInterval, heartbeatTick{})
	for _, w := range h.workers {
		if h.cfg.WorkerProcesses {
			h.checkWorkerAlive(env, w)
			if !w.ready {
				continue
			}
		}
		if w.hangs > 0 || w.pending != nil {
			continue
		}
		if !w.registered {
			h.register(env, w)
			continue
		}
		h.send(env, w, api.HeartbeatReq{ReqID: h.nextReqID(), Worker: w.spec.ID, Incarnation: w.spec.Incarnation})
	}
}

// handleRetryTick sends every unanswered registry request again, with its original request ID,
// so the queen can answer a repeat from its cache instead of applying it twice.
func (h *Hive) handleRetryTick(env node.Env) {
	env.After(h.cfg.RetryInterval, retryTick{})
	h.retryDrains(env)
	for _, w := range h.workers {
		if w.pending != nil && w.hangs == 0 {
			env.Send(h.cfg.Queen, w.pending)
		}
	}
}

func (h *Hive) handleRegistryResp(env node.Env, r api.RegistryResp) {
	w, ok := h.inflight[r.ReqID]
	if !ok {
		return // a duplicate, or an answer to a request we gave up on
	}
	delete(h.inflight, r.ReqID)
	req := w.pending
	w.pending = nil
	h.noteEpoch(env, r.Epoch)
	switch req.(type) {
	case api.RegisterReq:
		h.registerAnswered(env, w, r)
	case api.HeartbeatReq:
		h.heartbeatAnswered(env, w, r)
	case api.GetReq, api.UpdateStateReq, api.RemoveReq:
		h.drainAnswered(env, w, req, r)
	}
}

// noteEpoch re-registers every worker when the queen's epoch changes: the queen restarted and
// holds our workers as unconfirmed (or not at all).
func (h *Hive) noteEpoch(env node.Env, epoch uint64) {
	if epoch <= h.epoch {
		return
	}
	restarted := h.epoch != 0
	h.epoch = epoch
	if !restarted {
		return
	}
	env.Observe(node.Mark("hive re-registered after queen restart"))
	for _, w := range h.workers {
		w.registered = false
		if w.hangs == 0 && (w.ready || !h.cfg.WorkerProcesses) {
			h.register(env, w)
		}
	}
}

func (h *Hive) registerAnswered(env node.Env, w *worker, r api.RegistryResp) {
	switch r.Err.Code {
	case api.CodeOK:
		w.registered = r.Record.Incarnation == w.spec.Incarnation
		if w.registered {
			h.startRegistered(env, w)
		}
	case api.CodeStaleIncarnation:
		// The queen knows a newer incarnation than ours: our counter was lost. Move past it.
		if r.Record.Incarnation >= h.nextInc {
			h.nextInc = r.Record.Incarnation
		}
		w.spec.Incarnation = h.newIncarnation(env)
		h.register(env, w)
	default:
		env.Log().Warn("worker registration refused; will retry at the next heartbeat",
			"worker", w.spec.ID, "code", r.Err.Code, "message", r.Err.Message, "suggestion", r.Err.Suggestion)
	}
}

func (h *Hive) heartbeatAnswered(env node.Env, w *worker, r api.RegistryResp) {
	switch r.Err.Code {
	case api.CodeUnknownWorker, api.CodeStaleIncarnation:
		env.Observe(node.Mark("hive re-registered a forgotten worker"))
		w.registered = false
		h.register(env, w)
	}
}

func (h *Hive) handleDeviceFault(env node.Env, f api.DeviceFault) {
	for _, w := range h.workers {
		if w.spec.Capability != f.Device || f.Fallback == "" || f.Fallback == f.Device {
			continue
		}
		env.Log().Warn("device failed; worker falls back", "worker", w.spec.ID, "device", f.Device, "fallback", f.Fallback)
		env.Observe(node.Mark("worker fell back after device fault"))
		w.spec.Capability = f.Fallback
		w.spec.Incarnation = h.newIncarnation(env)
		w.registered = false
		h.failUses(env, w)
		h.register(env, w)
	}
}

func (h *Hive) handleWorkerHang(env node.Env, m api.WorkerHang) {
	w := h.byID[m.Worker]
	if w == nil || m.For <= 0 {
		return
	}
	w.hangs++
	env.After(m.For, hangEnd{Worker: w.spec.ID})
}

func sortWorkers(ws []*worker) {
	sort.Slice(ws, func(i, j int) bool { return ws[i].spec.ID < ws[j].spec.ID })
}
