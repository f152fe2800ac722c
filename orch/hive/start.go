package hive

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	llmworker "github.com/rbee-sim/rbee-sim/orch/worker"
)

// Starting workers on request (api.WorkerStartReq, rbee-keeper worker start), on a hive that
// keeps a catalog and runs its worker processes (Config.Catalog, Config.ProcessTable):
//
//  1. The model is looked up in the catalog (its file still there at its registered size);
//     if it is absent, it is downloaded from the hub through the provisioner, like a
//     api.ModelDownloadReq, and registered.
//  2. Preflight: the model (its size, or its VRAMRequired if larger) must fit the device's
//     memory (Config.DeviceMemoryBytes) less what the hive's other live workers on that device
//     hold; otherwise INSUFFICIENT_VRAM names both numbers. A device not listed is not checked.
//  3. A worker "<hive>-w<N>" (N counts the hive's starts, never reused) is added for the model
//     (its catalog ID) on the device, made durable on the hive's disk, and spawned through the
//     process table like the workers of Config.Workers (lifecycle.go).
//  4. The start is answered once the worker reported ready and the queen acknowledged its
//     registration; or with the first failure: download, preflight, spawn (missing binary,
//     another version, no free port), a failed load, a loading timeout, a crash while loading.
//     A worker whose start failed is stopped for good (killed if it runs) and forgotten: it is
//     never registered and never respawned. A worker that did start is kept alive (respawned
//     after crashes) like any other.
//
// A repeat of a start (same sender and ReqID) joins it, or is answered again from memory (the
// last Config.UseDedupMax finished starts). A restarted hive restores its started workers from
// its disk (adopting their running processes) and the starts still waiting for them, so a
// client's resend is answered when the worker is ready, and no second worker is started.

// startsFile is where a hive keeps its started workers.
func (h *Hive) startsFile(env node.Env) string { return "hive/" + string(env.Self()) + "/started.json" }

type startPhase uint8

const (
	startDownloading startPhase = iota + 1 // the model is being downloaded
	startWaiting                           // the worker was added; waiting for it to be ready and registered
	startDone                              // answered
)

// startOp is one client's start request.
type startOp struct {
	key    useKey
	req    api.WorkerStartReq
	model  string // the catalog ID of the model
	phase  startPhase
	worker string // the worker added for it, once there is one
	resp   api.WorkerStartResp
}

type startState struct {
	ops      map[useKey]*startOp
	byWorker map[string]*startOp // the start waiting for each worker
	done     []useKey            // finished starts, oldest first, for eviction
	// next is the number of the last worker started (numbers IDs, never reused); records are
	// the started workers, as kept on disk; bytes the size of each started worker's model.
	next    int
	records []startRecord
	bytes   map[string]int64
}

// startRecord is a started worker as the hive keeps it on disk.
type startRecord struct {
	Spec       api.WorkerSpec `json:"spec"`
	ModelBytes int64          `json:"model_bytes"`
	From       node.Addr      `json:"from"`
	ReqID      uint64         `json:"req_id"`
	// Answered: the start was answered (the worker was ready and registered).
	Answered bool `json:"answered,omitempty"`
}

type startsOnDisk struct {
	Next    int           `json:"next"`
	Workers []startRecord `json:"workers"`
}

// restoreStarts reads the started workers back at Start and adds them to the hive's workers,
// each with the start that waits for it.
func (h *Hive) restoreStarts(env node.Env) {
	h.start = startState{ops: map[useKey]*startOp{}, byWorker: map[string]*startOp{}, bytes: map[string]int64{}}
	b, err := node.ReadFile(env.Disk(), h.startsFile(env))
	if node.IsNotExist(err) {
		return
	}
	var d startsOnDisk
	if err == nil {
		err = json.Unmarshal(b, &d)
	}
	if err != nil {
		env.Log().Error("cannot read the workers this hive started; they are not restarted and their processes are left alone",
			"file", h.startsFile(env), "err", err, "suggestion", "start the workers again (rbee-keeper worker start)")
		return
	}
	h.start.next = d.Next
	for _, r := range d.Workers {
		if h.byID[r.Spec.ID] != nil {
			continue
		}
		h.start.records = append(h.start.records, r)
		h.start.bytes[r.Spec.Model] = r.ModelBytes
		w := &worker{spec: r.Spec}
		w.spec.Hive = env.Self()
		w.spec.Incarnation = h.newIncarnation(env)
		h.workers = append(h.workers, w)
		h.byID[r.Spec.ID] = w
		op := &startOp{key: useKey{from: r.From, reqID: r.ReqID}, model: r.Spec.Model, phase: startWaiting, worker: r.Spec.ID}
		h.start.ops[op.key] = op
		if r.Answered {
			op.phase, op.resp = startDone, api.WorkerStartResp{ReqID: r.ReqID, Worker: r.Spec.ID, Model: r.Spec.Model}
			h.start.done = append(h.start.done, op.key)
		} else {
			h.start.byWorker[r.Spec.ID] = op
		}
		env.Observe(node.Mark("hive restored a started worker"))
	}
}

func (h *Hive) saveStarts(env node.Env) {
	b, err := json.Marshal(startsOnDisk{Next: h.start.next, Workers: h.start.records})
	if err == nil {
		err = node.WriteFileAtomic(env.Disk(), h.startsFile(env), b)
	}
	if err != nil {
		env.Log().Error("cannot record the started workers; a restarted hive will not restart them",
			"file", h.startsFile(env), "err", err)
	}
}

// handleStart begins a start, joins the one in progress for a repeat, or answers a repeat of
// a finished one.
func (h *Hive) handleStart(env node.Env, from node.Addr, r api.WorkerStartReq) {
	key := useKey{from: from, reqID: r.ReqID}
	if op := h.start.ops[key]; op != nil {
		if op.phase == startDone {
			env.Send(from, op.resp)
		}
		return // a resend of a start in progress: it is answered when it ends
	}
	if r.Provider == "" {
		r.Provider = "hf"
	}
	if r.Revision == "" {
		r.Revision = "main"
	}
	op := &startOp{key: key, req: r, model: r.ModelID()}
	h.start.ops[key] = op
	env.Log().Info("starting a worker on request", "from", from, "model", op.model, "device", r.Device, "slots", r.Slots)
	if err := h.startRefusal(env, r); !err.OK() {
		h.finishStart(env, op, err)
		return
	}
	if m, ok := h.registeredModel(env, r.Provider, r.Reference()); ok {
		env.Observe(node.Mark("worker start: model found in the catalog"))
		h.startPreflight(env, op, toRecord(m))
		return
	}
	if h.downloads.prov == nil {
		h.finishStart(env, op, api.Errorf(api.CodeModelNotFound,
			"download it first (rbee-keeper models download) or start the worker on a hive that can reach the hub",
			"model %s is not in hive %s's catalog, and the hive has no hub to download it from", op.model, env.Self()))
		return
	}
	op.phase = startDownloading
	env.Observe(node.Mark("worker start: downloading the model"))
	h.downloads.nextReq++
	id := h.downloads.prov.Request(env, provision.Request{Repo: r.Repo, Revision: r.Revision, File: r.File,
		Provider: r.Provider, Requester: env.Self(), ReqID: h.downloads.nextReq})
	h.downloads.waiting[id] = append(h.downloads.waiting[id], downloadWaiter{from: from, start: op,
		req: api.ModelDownloadReq{ReqID: r.ReqID, Provider: r.Provider, Repo: r.Repo, Revision: r.Revision, File: r.File}})
}

// startRefusal is why the hive cannot take a start at all; the zero Error when it can.
func (h *Hive) startRefusal(env node.Env, r api.WorkerStartReq) api.Error {
	switch {
	case !h.cfg.Catalog || !h.life.on:
		return api.Errorf(api.CodeStartUnsupported, "send the start to a hive configured with a model catalog and a process table",
			"hive %s does not start workers: it keeps no model catalog or does not run its worker processes", env.Self())
	case h.life.shutdown:
		return api.Errorf(api.CodeStartUnsupported, "start the worker on another hive, or once this one is back",
			"hive %s is shutting down", env.Self())
	case r.Repo == "" || r.File == "" || r.Device == "":
		return api.Errorf(api.CodeInvalidRequest, "give the model's repository and file on the hub, and a device such as cuda:0 or cpu",
			"worker start for %q on device %q: the repository, the file and the device are required", r.Reference(), r.Device)
	case r.Slots < 1 || r.Slots > 1024:
		return api.Errorf(api.CodeInvalidRequest, "ask for 1 to 1024 slots",
			"worker start for %s asks for %d slots", r.ModelID(), r.Slots)
	}
	return api.Error{}
}

// startDownloaded goes on with a start once its download ended (resp is the download's answer).
func (h *Hive) startDownloaded(env node.Env, op *startOp, resp api.CatalogResp) {
	if op.phase != startDownloading {
		return
	}
	if !resp.Err.OK() {
		h.finishStart(env, op, api.Errorf(resp.Err.Code, resp.Err.Suggestion,
			"cannot start a worker of %s: its download failed: %s", op.model, resp.Err.Message))
		return
	}
	h.startPreflight(env, op, resp.Model)
}

// startPreflight checks that the model fits the device, then adds and spawns the worker.
func (h *Hive) startPreflight(env node.Env, op *startOp, m api.ModelRecord) {
	if h.life.shutdown {
		h.finishStart(env, op, h.startRefusal(env, op.req))
		return
	}
	need := max(m.SizeBytes, m.VRAMRequired)
	dev := op.req.Device
	if have, ok := h.cfg.DeviceMemoryBytes[dev]; ok {
		used, users := h.deviceUse(dev)
		if need > have-used {
			env.Observe(node.Mark("worker start refused: insufficient VRAM"))
			held := ""
			if used > 0 {
				held = fmt.Sprintf(", of which %s (%d bytes) are held by workers %v", gib(used), used, users)
			}
			h.finishStart(env, op, api.Errorf(api.CodeInsufficientVRAM,
				"choose a smaller quantization of the model (e.g. Q4_K_M instead of Q8_0), or another device",
				"model %s needs %s (%d bytes) of device memory, but %s on hive %s has %s (%d bytes)%s",
				op.model, gib(need), need, dev, env.Self(), gib(have), have, held))
			return
		}
	}
	env.Observe(node.Mark("worker start: preflight passed"))
	spec := api.WorkerSpec{ID: h.nextStartID(env), Hive: env.Self(), Incarnation: 1, Model: m.ID, Capability: dev, Slots: op.req.Slots}
	if err := spec.Validate(); err != nil {
		h.finishStart(env, op, api.Errorf(api.CodeInvalidRequest, "fix the request", "cannot start a worker of %s: %v", op.model, err))
		return
	}
	wc := h.workerConfig(spec, env.Self())
	wc.ModelBytes = m.SizeBytes
	if err := wc.Validate(); err != nil {
		h.finishStart(env, op, api.Errorf(api.CodeInvalidRequest, "fix the request", "cannot start a worker of %s: %v", op.model, err))
		return
	}
	op.phase, op.worker = startWaiting, spec.ID
	h.start.byWorker[spec.ID] = op
	h.start.bytes[spec.Model] = m.SizeBytes
	h.start.records = append(h.start.records, startRecord{Spec: api.WorkerSpec{ID: spec.ID, Model: spec.Model,
		Capability: spec.Capability, Slots: spec.Slots}, ModelBytes: m.SizeBytes, From: op.key.from, ReqID: op.key.reqID})
	h.saveStarts(env) // before the spawn: a restarted hive adopts the process, never spawns a second
	env.Log().Info("adding a worker", "worker", spec.ID, "model", spec.Model, "device", dev, "slots", spec.Slots)
	h.addWorker(env, spec)
}

// workerConfig is the configuration a spawned worker gets: Config.workerConfig, with the size
// of a model that a start downloaded.
func (h *Hive) workerConfig(spec api.WorkerSpec, hive node.Addr) llmworker.Config {
	wc := h.cfg.workerConfig(spec, hive)
	if _, ok := h.cfg.WorkerModelBytes[spec.Model]; !ok {
		wc.ModelBytes = h.start.bytes[spec.Model]
	}
	return wc
}

// nextStartID is the next unused worker ID "<hive>-w<N>".
func (h *Hive) nextStartID(env node.Env) string {
	for {
		h.start.next++
		id := fmt.Sprintf("%s-w%d", env.Self(), h.start.next)
		if h.byID[id] == nil {
			return id
		}
	}
}

// addWorker adds a worker at run time, with a fresh incarnation, and has its process spawned.
func (h *Hive) addWorker(env node.Env, spec api.WorkerSpec) {
	w := &worker{spec: spec}
	w.spec.Hive = env.Self()
	w.spec.Incarnation = h.newIncarnation(env)
	h.workers = append(h.workers, w)
	sortWorkers(h.workers)
	h.byID[spec.ID] = w
	h.addLifeWorker(env, spec.ID)
}

// deviceUse is the model memory the hive's live workers on a device hold, and who they are.
func (h *Hive) deviceUse(dev string) (int64, []string) {
	var used int64
	var users []string
	for _, w := range h.Workers() {
		if w.Capability != dev {
			continue
		}
		if b := h.modelBytes(w.Model); b > 0 {
			used += b
			users = append(users, w.ID)
		}
	}
	return used, users
}

// modelBytes is the size of a model the hive runs workers of, 0 when it does not know.
func (h *Hive) modelBytes(model string) int64 {
	if b, ok := h.cfg.WorkerModelBytes[model]; ok {
		return b
	}
	return h.start.bytes[model]
}

// startRegistered answers the start waiting for a worker the queen just registered.
func (h *Hive) startRegistered(env node.Env, w *worker) {
	if op := h.start.byWorker[w.spec.ID]; op != nil && op.phase == startWaiting {
		env.Observe(node.Mark("worker start answered: ready and registered"))
		h.finishStart(env, op, api.Error{})
	}
}

// startFailed ends the start waiting for a worker that could not start, and forgets the
// worker; it reports whether there was one, in which case the caller stops the worker for good
// instead of trying again.
func (h *Hive) startFailed(env node.Env, lw *lifeWorker, err api.Error) bool {
	op := h.start.byWorker[lw.id]
	if op == nil || op.phase != startWaiting {
		return false
	}
	h.forgetStarted(env, lw.id)
	h.finishStart(env, op, api.Errorf(err.Code, err.Suggestion, "worker %s for %s on %s did not start, and was given up: %s",
		lw.id, op.model, op.req.Device, err.Message))
	return true
}

// forgetStarted drops a started worker from the record on disk: a restarted hive does not
// bring it back.
func (h *Hive) forgetStarted(env node.Env, id string) {
	keep := h.start.records[:0]
	for _, r := range h.start.records {
		if r.Spec.ID != id {
			keep = append(keep, r)
		}
	}
	h.start.records = keep
	h.saveStarts(env)
}

// failStarts ends every start in progress with err (the hive shuts down).
func (h *Hive) failStarts(env node.Env, err api.Error) {
	var open []*startOp
	for _, op := range h.start.ops { //det:sorted (sorted next)
		if op.phase != startDone {
			open = append(open, op)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		if open[i].key.from != open[j].key.from {
			return open[i].key.from < open[j].key.from
		}
		return open[i].key.reqID < open[j].key.reqID
	})
	for _, op := range open {
		if op.worker != "" {
			h.forgetStarted(env, op.worker)
		}
		h.finishStart(env, op, err)
	}
}

// finishStart answers a start (err zero: its worker is ready and registered) and remembers the
// answer for repeats.
func (h *Hive) finishStart(env node.Env, op *startOp, err api.Error) {
	op.phase = startDone
	op.resp = api.WorkerStartResp{ReqID: op.key.reqID, Model: op.model, Err: err}
	if err.OK() {
		op.resp.Worker = op.worker
		for i := range h.start.records {
			if h.start.records[i].Spec.ID == op.worker {
				h.start.records[i].Answered = true
				h.saveStarts(env)
			}
		}
	} else {
		env.Log().Error("worker start failed", "from", op.key.from, "model", op.model, "code", err.Code,
			"message", err.Message, "suggestion", err.Suggestion)
		env.Observe(node.Mark("worker start failed"))
	}
	if op.worker != "" && h.start.byWorker[op.worker] == op {
		delete(h.start.byWorker, op.worker)
	}
	env.Send(op.key.from, op.resp)
	h.start.done = append(h.start.done, op.key)
	for len(h.start.done) > h.cfg.UseDedupMax {
		delete(h.start.ops, h.start.done[0])
		h.start.done = h.start.done[1:]
	}
}

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
