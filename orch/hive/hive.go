// Package hive is rbee-hive, the pool manager on every machine, as a sans-IO node.Node.
//
// The hive owns a set of workers (described by Config.Workers): it registers them with the
// queen's registry, heartbeats for them, re-registers them when the queen restarts or forgets
// them, and moves them to a fallback device after a device fault (a new incarnation). Either it
// runs work on them itself for clients that hold a claim, or (Config.WorkerProcesses) the
// workers are processes of their own (orch/worker) that report ready and status to the hive,
// which registers them when ready and removes them when they go silent; with
// Config.ProcessTable it also spawns, kills, respawns and stops those processes itself
// (lifecycle.go). It also keeps the machine's model catalog and downloads models
// (orch/provision).
//
// Callers' duties: give the hive a valid Config (Config.Validate) and a Disk it can keep its
// incarnation counter on; several hives may share one Disk if their addresses differ.
package hive

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// Config configures a hive.
type Config struct {
	// Queen is the address of queen-rbee. Required.
	Queen node.Addr
	// Workers are the workers this hive owns. Hive and Incarnation are filled in by the hive;
	// ID, Model, Capability and Slots are required. May be empty.
	Workers []api.WorkerSpec
	// HeartbeatInterval is how often the hive heartbeats for each worker. Default 15s; zero
	// means the default.
	HeartbeatInterval time.Duration
	// RetryInterval is how long an unanswered registry request waits before it is sent again
	// with the same request ID. Default 1s; zero means the default.
	RetryInterval time.Duration
	// UseDedupMax bounds how many finished work (and catalog) requests are remembered to
	// answer repeats. Default 1024; zero means the default.
	UseDedupMax int
	// Catalog makes the hive keep its machine's model catalog (SQLite, shared by every hive on
	// the machine) and answer catalog requests. False means catalog requests are refused.
	Catalog bool
	// CatalogPath is the catalog file on the machine's disk; empty means
	// "catalog/models.db".
	CatalogPath string
	// ModelsDir is where model files live on the machine's disk; empty means "models/".
	ModelsDir string
	// CatalogBusyTimeout is how long a catalog call waits for another process's lock on the
	// catalog file. Zero means the catalog's default (5s); negative means never wait, which a
	// simulation needs (nothing can release a lock while a call waits there).
	CatalogBusyTimeout time.Duration
	// Plants are planted bugs to switch on (only in -tags plant builds).
	Plants plant.Set
	// Provision, when set, makes the hive download models from the hub it names (needs
	// Catalog: downloaded files are registered there). Nil means no downloads.
	Provision *provision.Config
	// WorkerProcesses says the workers are processes of their own (llm-worker-rbee at the
	// address of their ID): the hive registers a worker only once it reports ready
	// (api.WorkerReady), follows its status reports (api.WorkerStatus), and removes it from the
	// registry when they stop for WorkerStatusTimeout. False: the hive runs work itself
	// (api.UseReq) and registers every worker at start.
	WorkerProcesses bool
	// WorkerStatusTimeout is how long a worker process may go without a status report before
	// the hive counts it dead. Default 15s; zero means the default.
	WorkerStatusTimeout time.Duration

	// Worker lifecycle (see lifecycle.go).

	// ProcessTable, when set, is the address of the machine's process table (the process
	// port), and the hive runs its worker processes itself: it adopts or spawns them at start,
	// kills those that do not load in time, respawns crashed ones, stops idle ones and stops
	// them all when it shuts down. Needs WorkerProcesses. Empty: someone else starts the
	// workers.
	ProcessTable node.Addr
	// WorkerBinary is the worker program spawned. Default "llm-worker-rbee"; empty means the
	// default.
	WorkerBinary string
	// Version is the hive's version: a spawned worker binary that reports another version is
	// killed and refused (VERSION_MISMATCH). Empty: any version is accepted.
	Version string
	// BasePort is the first port given to worker processes; the hive takes the lowest free one
	// from here. Default 9300; zero means the default; at most 65535.
	BasePort int
	// LoadTimeout is how long a spawned worker may take to report ready before it is killed
	// (LOADING_TIMEOUT) and respawned. Default 30s; zero means the default.
	LoadTimeout time.Duration
	// StopGrace is how long a worker asked to stop (TERM) has before it is killed. Default
	// 10s; zero means the default; below 30s, the bound of a whole shutdown.
	StopGrace time.Duration
	// IdleTimeout stops a worker process whose status reports show no active and no queued
	// request for this long. Zero means never.
	IdleTimeout time.Duration
	// WorkerModelBytes is the size in bytes of each model (by model ID) passed to spawned
	// workers (--model-bytes); a model not listed gets 0. May be nil.
	WorkerModelBytes map[string]int64

	// Starting workers on request (api.WorkerStartReq, see start.go; needs Catalog and
	// ProcessTable).

	// DeviceMemoryBytes is the memory of each device (by name, e.g. "cuda:0") that the
	// preflight of a worker start checks the model against; a device not listed is not
	// checked. May be nil.
	DeviceMemoryBytes map[string]int64
}

// DefaultConfig returns a config with every default set and no workers.
func DefaultConfig(queen node.Addr) Config {
	return Config{Queen: queen, HeartbeatInterval: 15 * time.Second, RetryInterval: time.Second, UseDedupMax: 1024}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Queen)
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = d.RetryInterval
	}
	if c.UseDedupMax == 0 {
		c.UseDedupMax = d.UseDedupMax
	}
	if c.WorkerStatusTimeout == 0 {
		c.WorkerStatusTimeout = 15 * time.Second
	}
	if c.WorkerBinary == "" {
		c.WorkerBinary = "llm-worker-rbee"
	}
	if c.BasePort == 0 {
		c.BasePort = 9300
	}
	if c.LoadTimeout == 0 {
		c.LoadTimeout = 30 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	return c
}

// Validate lists every problem with the config.
func (c Config) Validate() error {
	var errs []string
	if c.Queen == "" {
		errs = append(errs, "queen address is empty")
	}
	if c.HeartbeatInterval < 0 || c.RetryInterval < 0 || c.UseDedupMax < 0 {
		errs = append(errs, "intervals and limits must not be negative")
	}
	seen := map[string]bool{}
	for i, w := range c.Workers {
		spec := w
		spec.Hive, spec.Incarnation = "hive", 1
		if err := spec.Validate(); err != nil {
			errs = append(errs, fmt.Sprintf("workers[%d]: %v", i, err))
		}
		if seen[w.ID] {
			errs = append(errs, fmt.Sprintf("workers[%d]: duplicate id %q", i, w.ID))
		}
		seen[w.ID] = true
	}
	for _, d := range sortedKeys(c.DeviceMemoryBytes) {
		if c.DeviceMemoryBytes[d] < 0 {
			errs = append(errs, fmt.Sprintf("device %q has %d bytes of memory; give a size of 0 or more, or leave the device out", d, c.DeviceMemoryBytes[d]))
		}
	}
	errs = append(errs, c.validateLifecycle()...)
	if len(errs) > 0 {
		return fmt.Errorf("invalid hive config: %v", errs)
	}
	return nil
}

// Timer messages of the hive.
type (
	heartbeatTick struct{}
	retryTick     struct{}
	useDone       struct {
		From  node.Addr
		ReqID uint64
	}
	hangEnd struct {
		Worker string
	}
)

func (heartbeatTick) MsgName() string { return "hive.heartbeat_tick" }
func (retryTick) MsgName() string     { return "hive.retry_tick" }
func (useDone) MsgName() string       { return "hive.use_done" }
func (hangEnd) MsgName() string       { return "hive.hang_end" }

type worker struct {
	spec       api.WorkerSpec
	registered bool
	hangs      int // overlapping hangs in progress; the worker is hung while any is
	// pending is the worker's one outstanding registry request, resent until answered; nil
	// when none.
	pending api.RegistryRequest
	active  int
	// Worker processes (Config.WorkerProcesses): ready once it reported ready; lastStatus is
	// when it last reported; dead once the hive counted it lost, until it reports again.
	ready      bool
	lastStatus time.Time
	lost       bool
	// drain is where the worker is in being drained (see drain.go).
	drain drainPhase
}

type useKey struct {
	from  node.Addr
	reqID uint64
}

type use struct {
	worker string
	inc    uint64
	timer  node.TimerID
	done   bool
	resp   api.UseResp
}

// Hive is one rbee-hive process.
type Hive struct {
	cfg       Config
	workers   []*worker // sorted by ID
	byID      map[string]*worker
	nextInc   uint64
	reqBase   uint64
	reqN      uint64
	epoch     uint64
	inflight  map[uint64]*worker // outstanding registry request ID -> its worker
	uses      map[useKey]*use
	finished  []useKey // finished uses, oldest first, for eviction
	catalog   catalogState
	downloads downloadState
	life      lifecycleState
	start     startState
}

// New returns a hive. It panics on an invalid config: validate at the edge.
func New(cfg Config) *Hive {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Hive{cfg: cfg.withDefaults()}
}

// Start implements node.Node: the hive's workers come up with a fresh incarnation (a hive
// restart restarts its workers) and are registered with the queen.
func (h *Hive) Start(env node.Env) {
	h.byID = map[string]*worker{}
	h.inflight = map[uint64]*worker{}
	h.uses = map[useKey]*use{}
	h.reqBase = env.Rand().Uint64() &^ 0xffffffff
	h.loadIncarnation(env)
	for _, spec := range h.cfg.Workers {
		w := &worker{spec: spec}
		w.spec.Hive = env.Self()
		w.spec.Incarnation = h.newIncarnation(env)
		h.workers = append(h.workers, w)
		h.byID[spec.ID] = w
	}
	h.restoreStarts(env) // workers started on request before a restart
	sortWorkers(h.workers)
	for _, w := range h.workers {
		if !h.cfg.WorkerProcesses {
			h.register(env, w)
		}
	}
	env.After(h.cfg.HeartbeatInterval, heartbeatTick{})
	env.After(h.cfg.RetryInterval, retryTick{})
	h.openCatalog(env) // a failure is logged; catalog requests retry the open
	h.startDownloads(env)
	h.startLifecycle(env)
}

func (h *Hive) incFile(env node.Env) string { return "hive/" + string(env.Self()) + "/incarnation" }

func (h *Hive) loadIncarnation(env node.Env) {
	b, err := node.ReadFile(env.Disk(), h.incFile(env))
	if err != nil && !node.IsNotExist(err) {
		env.Log().Warn("cannot read the incarnation counter; starting above the wall clock",
			"file", h.incFile(env), "err", err)
	}
	if node.IsNotExist(err) {
		h.nextInc = 0
		return
	}
	n, perr := strconv.ParseUint(string(b), 10, 64)
	if err != nil || perr != nil {
		// Unreadable: start high enough that no earlier incarnation can be above it.
		n = uint64(env.Now().Unix())
	}
	h.nextInc = n
}

// newIncarnation returns a fresh incarnation number, made durable before it is used so that a
// restarted hive never reuses one.
func (h *Hive) newIncarnation(env node.Env) uint64 {
	h.nextInc++
	if err := node.WriteFileAtomic(env.Disk(), h.incFile(env), []byte(strconv.FormatUint(h.nextInc, 10))); err != nil {
		env.Log().Error("cannot persist the incarnation counter; a restart may reuse an incarnation",
			"file", h.incFile(env), "err", err)
	}
	return h.nextInc
}

// Registered returns the IDs of the workers whose current registration the queen
// acknowledged, sorted.
func (h *Hive) Registered() []string {
	var ids []string
	for _, w := range h.workers {
		if w.registered {
			ids = append(ids, w.spec.ID)
		}
	}
	return ids
}

// Workers returns the current spec of every worker the hive keeps, sorted by ID: drained
// and retired ones, processes stopped for idleness or shutdown, and workers that cannot start
// (a missing binary, another version) are left out.
func (h *Hive) Workers() []api.WorkerSpec {
	out := make([]api.WorkerSpec, 0, len(h.workers))
	for _, w := range h.workers {
		if w.drain == drainRetired {
			continue
		}
		if lw := h.life.byID[w.spec.ID]; h.life.on && lw != nil && (lw.state == lifeStopped || lw.state == lifeFailed) {
			continue
		}
		out = append(out, w.spec)
	}
	return out
}

// Active is how many pieces of work the worker is running now.
func (h *Hive) Active(id string) int {
	if w := h.byID[id]; w != nil {
		return w.active
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m { //det:sorted (sorted next)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
