// Package worker is llm-worker-rbee: one loaded model, a fixed number of inference slots, a
// bounded FIFO queue, token streaming, cancellation and time limits, over an inference engine
// reached through the engine port (the api.Engine* messages). It is a state machine driven by
// messages, part of the deterministic core: no goroutines, no wall clock, every effect through
// node.Env.
//
// Life: Start asks the engine to load the model and forwards its progress to the hive
// (api.WorkerLoading). Once loaded, the worker reports api.WorkerReady and then api.WorkerStatus
// every Config.StatusInterval. A load that fails or outlasts Config.LoadTimeout is reported as a
// WorkerReady with Err, and the worker takes no work (the hive stops the process).
// api.WorkerDrain makes it refuse new work, finish what it has, and report api.WorkerDrained.
//
// Requests: an api.InferReq is known by (sender, ReqID). It starts generating when a slot is
// free, waits in the queue (FIFO, at most Config.QueueMax) otherwise, and is refused with
// ALL_SLOTS_BUSY beyond that. Its tokens go to the sender as api.InferToken, and it ends with
// exactly one api.InferDone: stop, length, cancelled, timeout (MaxTime from the start of
// generation, or the sender's deadline from receipt) or error. No token follows the end, and
// the slot is freed on every path. A repeated InferReq is never run twice: while it runs the
// repeat is ignored, after its end the same InferDone is sent again (for the last
// doneRememberedMax requests).
//
// Callers' duties (the runtime): deliver the engine's messages from Config.Engine, the only
// address whose Engine* messages the worker believes. A restart is a new Worker: the requests
// of the dead process are lost with it (their senders get no InferDone from it and rely on
// their own timeouts), and the model is loaded again.
package worker

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Limits of the worker.
const (
	// SlotsLimit bounds Config.Slots.
	SlotsLimit = 256
	// QueueLimit bounds Config.QueueMax.
	QueueLimit = 4096
	// doneRememberedMax bounds how many ended requests are remembered to answer repeats.
	doneRememberedMax = 4096
)

// PlantSlotLeakOnCancel is the planted bug "worker-slot-leak-on-cancel" (see orch/plant): a
// cancelled running request keeps its slot, so the worker fills up and refuses work.
const PlantSlotLeakOnCancel = "worker-slot-leak-on-cancel"

// Config is a worker's configuration. Build it from DefaultConfig and check it with Validate.
type Config struct {
	// ID is the worker's ID in its hive's and the queen's registries ("worker-ws-1"), sent in
	// every report to the hive; required.
	ID string
	// Hive is the address of the worker's hive: it gets WorkerLoading, WorkerReady,
	// WorkerStatus and WorkerDrained, and only its WorkerDrain is obeyed; required.
	Hive node.Addr
	// Engine is the address of the inference engine; required.
	Engine node.Addr
	// Model is the catalog ID of the model the worker serves; required. A request that names
	// another model is refused with MODEL_NOT_SERVED (an empty InferReq.Model means this one).
	Model string
	// ModelBytes is the model file's size in bytes, passed to the engine's load; at least 0.
	ModelBytes int64
	// Slots is how many requests generate at once; default 1; 1 to SlotsLimit.
	Slots int
	// QueueMax is how many requests may wait for a slot, first in first out; default 8; 0
	// means none wait (a request that finds every slot busy is refused); at most QueueLimit.
	QueueMax int
	// LoadTimeout is how long the model may take to load before the worker reports failure
	// (LOADING_TIMEOUT); default 30s, positive. The hive enforces it too.
	LoadTimeout time.Duration
	// StatusInterval is the period of WorkerStatus reports once ready; default 5s, positive.
	StatusInterval time.Duration
	// Plants enables planted bugs (tests and the canary only).
	Plants plant.Set
}

// DefaultConfig returns the defaults listed on Config's fields; the required fields are empty.
func DefaultConfig() Config {
	return Config{Slots: 1, QueueMax: 8, LoadTimeout: 30 * time.Second, StatusInterval: 5 * time.Second}
}

// Validate checks: ID, Hive, Engine and Model set; ModelBytes >= 0; Slots in 1..SlotsLimit;
// QueueMax in 0..QueueLimit; LoadTimeout and StatusInterval positive; every plant known to this
// build and a worker plant.
func (c Config) Validate() error {
	switch {
	case c.ID == "" || c.Hive == "" || c.Engine == "" || c.Model == "":
		return fmt.Errorf("worker: ID, Hive, Engine and Model must all be set (got ID %q, Hive %q, Engine %q, Model %q)",
			c.ID, c.Hive, c.Engine, c.Model)
	case c.ModelBytes < 0:
		return fmt.Errorf("worker %s: ModelBytes %d must not be negative", c.ID, c.ModelBytes)
	case c.Slots < 1 || c.Slots > SlotsLimit:
		return fmt.Errorf("worker %s: Slots %d must be between 1 and %d", c.ID, c.Slots, SlotsLimit)
	case c.QueueMax < 0 || c.QueueMax > QueueLimit:
		return fmt.Errorf("worker %s: QueueMax %d must be between 0 and %d", c.ID, c.QueueMax, QueueLimit)
	case c.LoadTimeout <= 0 || c.StatusInterval <= 0:
		return fmt.Errorf("worker %s: LoadTimeout %v and StatusInterval %v must be positive",
			c.ID, c.LoadTimeout, c.StatusInterval)
	}
	if err := plant.Validate(c.Plants.Names()); err != nil {
		return fmt.Errorf("worker %s: %w", c.ID, err)
	}
	for _, n := range c.Plants.Names() {
		if n != PlantSlotLeakOnCancel {
			return fmt.Errorf("worker %s: plant %q is not a worker plant", c.ID, n)
		}
	}
	return nil
}

// mode is what the worker as a whole is doing; only the become* methods change it.
type mode uint8

const (
	modeLoading  mode = iota // waiting for the engine's EngineLoaded
	modeReady                // takes requests
	modeFailed               // the load failed or timed out: refuses everything
	modeDraining             // WorkerDrain: finishes what it has, refuses new requests
)

// Worker is llm-worker-rbee. Its zero value is not usable; call New.
type Worker struct {
	cfg     Config
	mode    mode
	drained bool // WorkerDrained was sent
	nextID  uint64
	live    map[key]*request    // requests queued or running; looked up, never iterated
	byID    map[uint64]*request // the same, by the worker's own ID; looked up, never iterated
	queue   []*request          // waiting for a slot, oldest first
	active  int                 // slots in use
	done    doneCache
	load    node.TimerID // the LoadTimeout timer while loading
	// exitTo is the process table that sent TERM: the worker exits there once drained.
	exitTo node.Addr
}

var _ node.Node = (*Worker)(nil)

// New returns a worker. It panics if cfg is invalid: check it with Validate first.
func New(cfg Config) *Worker {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("worker.New: %v", err))
	}
	return &Worker{cfg: cfg, live: map[key]*request{}, byID: map[uint64]*request{},
		done: newDoneCache(doneRememberedMax)}
}

// Start asks the engine to load the model and arms the load timeout. The worker's own request
// IDs (the engine's ReqIDs) start at a random point, so that a restarted worker does not take
// a stale engine message of its previous incarnation for one of its own.
func (w *Worker) Start(env node.Env) {
	w.mode = modeLoading
	w.nextID = env.Rand().Uint64()>>2 + 1
	env.Send(w.cfg.Engine, api.EngineLoad{Model: w.cfg.Model, SizeBytes: w.cfg.ModelBytes})
	w.load = env.After(w.cfg.LoadTimeout, timerMsg{Kind: kindLoad})
}

// Handle reacts to one message: the engine's (only from Config.Engine), a request or cancel
// from any sender but the engine, a drain from Config.Hive, or one of the worker's own timers.
func (w *Worker) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case timerMsg:
		if from == env.Self() {
			w.handleTimer(env, m)
		}
	case api.EngineLoadProgress:
		if w.fromEngine(env, from, m) && w.mode == modeLoading {
			env.Send(w.cfg.Hive, api.WorkerLoading{Worker: w.cfg.ID, Percent: m.Percent})
		}
	case api.EngineLoaded:
		if w.fromEngine(env, from, m) {
			w.handleLoaded(env, m)
		}
	case api.EngineToken:
		if w.fromEngine(env, from, m) {
			w.handleToken(env, m)
		}
	case api.EngineDone:
		if w.fromEngine(env, from, m) {
			w.handleEngineDone(env, m)
		}
	case api.InferReq:
		if w.notFromEngine(env, from, m) {
			w.handleReq(env, from, m)
		}
	case api.InferCancel:
		if w.notFromEngine(env, from, m) {
			w.handleCancel(env, from, m)
		}
	case node.PeerGone:
		if from != w.cfg.Engine {
			w.handlePeerGone(env, m)
		}
	case api.ProcTerm:
		// SIGTERM from the process table: stop taking requests, finish those running, exit.
		env.Observe(node.Mark("worker stopping on TERM"))
		w.exitTo = from
		w.becomeDraining(env)
	case api.WorkerDrain:
		if from == w.cfg.Hive && (m.Worker == "" || m.Worker == w.cfg.ID) {
			w.becomeDraining(env)
		} else {
			env.Log().Warn("worker: drain ignored: not from this worker's hive or for another worker",
				"from", from, "worker", m.Worker)
		}
	default:
		env.Log().Debug("worker: message ignored", "from", from, "msg", m.MsgName())
	}
}

// fromEngine reports whether an engine message came from the engine, logging it if not.
func (w *Worker) fromEngine(env node.Env, from node.Addr, m node.Msg) bool {
	if from != w.cfg.Engine {
		env.Log().Warn("worker: engine message from a node that is not the engine, ignored",
			"from", from, "engine", w.cfg.Engine, "msg", m.MsgName())
		return false
	}
	return true
}

// notFromEngine reports whether a message that is not the engine's came from elsewhere than
// the engine, logging it if not: the engine's address sends Engine* messages only.
func (w *Worker) notFromEngine(env node.Env, from node.Addr, m node.Msg) bool {
	if from == w.cfg.Engine {
		env.Log().Warn("worker: message from the engine that is not an engine message, ignored", "msg", m.MsgName())
		return false
	}
	return true
}

// handleLoaded ends the load: ready, or failed with the engine's error. A late EngineLoaded
// (after the load timeout, a drain, or a second one) is ignored.
func (w *Worker) handleLoaded(env node.Env, m api.EngineLoaded) {
	if w.mode != modeLoading {
		return
	}
	if !m.Err.OK() {
		w.becomeFailed(env, api.Errorf(api.CodeEngineError,
			"check the model file and the GPU's free memory, then start the worker again",
			"worker %s could not load %s: %s", w.cfg.ID, w.cfg.Model, m.Err.Message))
		return
	}
	w.becomeReady(env)
}

// becomeReady reports the worker ready and starts its status reports.
func (w *Worker) becomeReady(env node.Env) {
	w.stopLoadTimer(env)
	w.mode = modeReady
	env.Send(w.cfg.Hive, api.WorkerReady{Worker: w.cfg.ID, Slots: w.cfg.Slots})
	env.After(w.cfg.StatusInterval, timerMsg{Kind: kindStatus})
}

// becomeFailed reports a failed load; the worker then refuses every request.
func (w *Worker) becomeFailed(env node.Env, err api.Error) {
	w.stopLoadTimer(env)
	w.mode = modeFailed
	env.Send(w.cfg.Hive, api.WorkerReady{Worker: w.cfg.ID, Slots: w.cfg.Slots, Err: err})
}

// becomeDraining stops taking requests; WorkerDrained follows once the last one ends (at
// once if there is none). A repeated drain repeats WorkerDrained if it was sent.
func (w *Worker) becomeDraining(env node.Env) {
	w.stopLoadTimer(env)
	if w.mode == modeDraining && w.drained {
		env.Send(w.cfg.Hive, api.WorkerDrained{Worker: w.cfg.ID})
		if w.exitTo != "" {
			env.Send(w.exitTo, api.ProcExit{Code: 0})
		}
		return
	}
	w.mode = modeDraining
	w.maybeDrained(env)
}

// maybeDrained sends WorkerDrained once a draining worker has nothing left to do.
func (w *Worker) maybeDrained(env node.Env) {
	if w.mode != modeDraining || w.drained || w.active > 0 || len(w.queue) > 0 {
		return
	}
	w.drained = true
	env.Observe(node.Mark("worker drained"))
	env.Send(w.cfg.Hive, api.WorkerDrained{Worker: w.cfg.ID})
	if w.exitTo != "" {
		env.Send(w.exitTo, api.ProcExit{Code: 0}) // a graceful stop ends with the process
	}
}

func (w *Worker) stopLoadTimer(env node.Env) {
	if w.load != 0 {
		env.Cancel(w.load)
		w.load = 0
	}
}

// timerKind says what a timer is for.
type timerKind uint8

const (
	kindLoad     timerKind = iota // LoadTimeout passed
	kindStatus                    // time for a WorkerStatus
	kindMaxTime                   // request Req reached its MaxTime
	kindDeadline                  // request Req passed its sender's deadline
)

// timerMsg is a worker timer. Req is the worker's own ID of the request for kindMaxTime and
// kindDeadline. A request's timers are cancelled when it ends and IDs are never reused, so a
// timer of an ended request finds nothing and is dropped.
type timerMsg struct {
	Kind timerKind
	Req  uint64
}

// MsgName implements node.Msg.
func (timerMsg) MsgName() string { return "worker.timer" }

func (w *Worker) handleTimer(env node.Env, m timerMsg) {
	switch m.Kind {
	case kindLoad:
		w.load = 0
		if w.mode == modeLoading {
			env.Observe(node.Mark("worker load timed out"))
			w.becomeFailed(env, api.Errorf(api.CodeLoadingTimeout,
				"check the model file, the disk and the GPU, or raise the load timeout",
				"worker %s did not load %s within its load timeout of %v", w.cfg.ID, w.cfg.Model, w.cfg.LoadTimeout))
		}
	case kindStatus:
		env.Send(w.cfg.Hive, api.WorkerStatus{Worker: w.cfg.ID, Active: w.active, Queued: len(w.queue), Slots: w.cfg.Slots})
		env.After(w.cfg.StatusInterval, timerMsg{Kind: kindStatus})
	case kindMaxTime:
		if r := w.byID[m.Req]; r != nil && r.running {
			r.maxTime = 0
			w.expireMaxTime(env, r)
		}
	case kindDeadline:
		if r := w.byID[m.Req]; r != nil {
			r.deadline = 0
			w.expireDeadline(env, r)
		}
	}
}
