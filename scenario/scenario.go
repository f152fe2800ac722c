// Package scenario turns a named behaviour of SCENARIOS.md into a runnable, judged simulation:
// a Scenario is data (topology, workload, fault schedule, durations, seed) that Run assembles
// into a cluster of core nodes on the simulator, drives through a chaos phase and a settling
// phase, records the registry history at the client side, and judges with checkers in a fixed
// order: assumptions, linearizability, safety monitors, liveness.
//
// Callers' duties: Validate a scenario that came from outside (a file, a flag) before Run;
// Run never panics on a valid scenario unless the core breaks an internal invariant.
package scenario

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Scenario is one runnable, replayable simulation. Durations are nanoseconds in JSON.
type Scenario struct {
	// ID is the catalogue ID this scenario was drawn from, e.g. "registry/overflow".
	ID string `json:"id"`
	// Seed is the run seed: every random choice of the run derives from it.
	Seed uint64 `json:"seed"`
	// Chaos is how long faults may happen, from time zero.
	Chaos time.Duration `json:"chaos"`
	// Settle is how long the cluster runs after Chaos with every fault healed; liveness is
	// judged at its end.
	Settle  time.Duration   `json:"settle"`
	Queen   QueenSpec       `json:"queen"`
	Hives   []HiveSpec      `json:"hives"`
	Clients []ClientSpec    `json:"clients"`
	Network sim.LinkConfig  `json:"network"`
	Faults  faults.Schedule `json:"faults"`
	// Models are model files already on the machines' disks at the start.
	Models []ModelFile `json:"models,omitempty"`
	// CatalogClients register and look up models in the hives' catalogs.
	CatalogClients []CatalogClientSpec `json:"catalog_clients,omitempty"`
	// Hub, when set, is a simulated model hub at address "hub" that hives download from.
	Hub *sim.HubConfig `json:"hub,omitempty"`
	// InferClients send completions through the queen to worker processes.
	InferClients []InferClientSpec `json:"infer_clients,omitempty"`
	// Engine configures the simulated inference engine of every worker process; nil means
	// the engine's defaults.
	Engine *sim.EngineConfig `json:"engine,omitempty"`
	// WorkerQueue bounds each worker process's queue of requests waiting for a slot.
	WorkerQueue int `json:"worker_queue,omitempty"`
	// WorkerStarts delays worker processes (by ID) to start at a time (a new worker coming up
	// in a rolling update); others start at once. Not with Spawn.
	WorkerStarts map[string]time.Duration `json:"worker_starts,omitempty"`
	// Drains are operators' requests to drain a worker (api.WorkerDrain to its hive).
	Drains []DrainSpec `json:"drains,omitempty"`
	// Provisioner, when set, overrides the hives' download settings; zero fields keep the
	// provisioner's defaults.
	Provisioner *ProvisionerSpec `json:"provisioner,omitempty"`
	// Downlinks limits machines' inbound links, in bytes per second (sim.Network.SetDownlink):
	// download bodies and control messages share them.
	Downlinks map[string]int64 `json:"downlinks,omitempty"`
	// Plants are planted bugs to switch on (needs a -tags plant build).
	Plants []string `json:"plants,omitempty"`
	// Require lists coverage marks the run must reach; a run that misses one is invalid: it
	// did not test what it claims to.
	Require []string `json:"require,omitempty"`
}

// ProvisionerSpec is the download settings of every hive (see provision.Config).
type ProvisionerSpec struct {
	// BandwidthBytesPerSec is each hive's download limit; 0 is unlimited.
	BandwidthBytesPerSec int64 `json:"bandwidth_bytes_per_sec,omitempty"`
	// BurstBytes is the size of each hive's token bucket.
	BurstBytes int64 `json:"burst_bytes,omitempty"`
	// FreeSpaceMarginBytes is the free space a download must leave on the disk.
	FreeSpaceMarginBytes int64 `json:"free_space_margin_bytes,omitempty"`
	// RetryAttemptsMax bounds consecutive failed attempts of a download.
	RetryAttemptsMax int `json:"retry_attempts_max,omitempty"`
}

// apply copies the spec's non-zero settings into cfg; a nil spec changes nothing.
func (p *ProvisionerSpec) apply(cfg *provision.Config) {
	if p == nil {
		return
	}
	if p.BandwidthBytesPerSec > 0 {
		cfg.BandwidthBytesPerSec = p.BandwidthBytesPerSec
	}
	if p.BurstBytes > 0 {
		cfg.BurstBytes = p.BurstBytes
	}
	if p.FreeSpaceMarginBytes > 0 {
		cfg.FreeSpaceMarginBytes = p.FreeSpaceMarginBytes
	}
	if p.RetryAttemptsMax > 0 {
		cfg.RetryAttemptsMax = p.RetryAttemptsMax
	}
}

// EngineAddr is the address of a worker process's simulated inference engine.
func EngineAddr(worker string) node.Addr { return node.Addr(worker + "-engine") }

// HubAddr is the address of the simulated model hub.
const HubAddr node.Addr = "hub"

// QueenSpec places and configures the queen.
type QueenSpec struct {
	Addr             node.Addr     `json:"addr"`
	MaxWorkers       int           `json:"max_workers"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
	StaleGrace       time.Duration `json:"stale_grace"`
}

// HiveSpec places a hive and its workers.
type HiveSpec struct {
	Addr    node.Addr        `json:"addr"`
	Machine string           `json:"machine"`
	Workers []api.WorkerSpec `json:"workers"`
	// Catalog makes the hive keep its machine's model catalog.
	Catalog bool `json:"catalog,omitempty"`
	// WorkerProcesses runs each worker as a process of its own (orch/worker at the address of
	// its ID, with a simulated engine at "<ID>-engine") on the hive's machine; the hive
	// registers a worker when it reports ready.
	WorkerProcesses bool `json:"worker_processes,omitempty"`
	// Spawn makes the hive spawn its worker processes itself, through its machine's process
	// table (at "procs@<machine>"), and keep them alive (needs WorkerProcesses).
	Spawn bool `json:"spawn,omitempty"`
	// WorkerVersion is the version the worker binary on this machine reports; empty means the
	// hive's own (WorkerVersionDefault). MissingBinary leaves the binary out of the machine.
	WorkerVersion string `json:"worker_version,omitempty"`
	MissingBinary bool   `json:"missing_binary,omitempty"`
	// IdleTimeout stops worker processes idle for that long (with Spawn); 0 never does.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	// IgnoreTerm lists worker processes (by ID) that ignore SIGTERM (with Spawn).
	IgnoreTerm []string `json:"ignore_term,omitempty"`
	// ShutdownAt, when set, sends the hive SIGTERM (from its process table) at that time.
	ShutdownAt time.Duration `json:"shutdown_at,omitempty"`
	// HeldPorts are ports something else on the machine holds (with Spawn).
	HeldPorts []int `json:"held_ports,omitempty"`
	// Started are the workers the hive will start on request (api.WorkerStartReq from an
	// inference client's StartWorkers), with the IDs the hive gives them ("<hive>-w<N>"):
	// none runs at the start, but the harness puts their engines on the machine and watches
	// them like the other worker processes (needs Spawn and Catalog).
	Started []api.WorkerSpec `json:"started,omitempty"`
	// DeviceMemory is the memory of the hive's devices that a worker start's preflight checks
	// (hive.Config.DeviceMemoryBytes).
	DeviceMemory map[string]int64 `json:"device_memory,omitempty"`
}

// processes are the hive's worker processes: its workers when it runs them as processes, and
// the workers it will start on request.
func (h HiveSpec) processes() []api.WorkerSpec {
	if !h.WorkerProcesses {
		return nil
	}
	return append(append([]api.WorkerSpec(nil), h.Workers...), h.Started...)
}

// DrainSpec is an operator draining a worker at a time.
type DrainSpec struct {
	At     time.Duration `json:"at"`
	Hive   node.Addr     `json:"hive"`
	Worker string        `json:"worker"`
}

// WorkerVersionDefault is the version of the hives and worker binaries in scenarios.
const WorkerVersionDefault = "0.1.0"

// ProcessTableAddr is the address of a machine's simulated process table.
func ProcessTableAddr(machine string) node.Addr { return node.Addr("procs@" + machine) }

// InferClientSpec places an inference client (rbee-keeper infer) and its requests.
type InferClientSpec struct {
	Addr   node.Addr          `json:"addr"`
	Client keeper.InferConfig `json:"client"`
}

// ClientSpec places a keeper and its workload.
type ClientSpec struct {
	Addr   node.Addr     `json:"addr"`
	Keeper keeper.Config `json:"keeper"`
}

// Validate checks a scenario before it runs and names every problem.
func (sc Scenario) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if sc.Chaos <= 0 || sc.Settle < 0 {
		add("chaos must be positive and settle not negative (chaos %v, settle %v)", sc.Chaos, sc.Settle)
	}
	if sc.Queen.Addr == "" || sc.Queen.MaxWorkers < 1 {
		add("queen needs an address and max_workers >= 1")
	}
	seen := map[node.Addr]bool{sc.Queen.Addr: true}
	for i, h := range sc.Hives {
		if h.Addr == "" || seen[h.Addr] {
			add("hives[%d]: address %q is empty or used twice", i, h.Addr)
		}
		seen[h.Addr] = true
	}
	for i, c := range sc.Clients {
		if c.Addr == "" || seen[c.Addr] {
			add("clients[%d]: address %q is empty or used twice", i, c.Addr)
		}
		seen[c.Addr] = true
		if err := c.Keeper.Validate(); err != nil {
			add("clients[%d]: %v", i, err)
		}
	}
	for i, c := range sc.CatalogClients {
		if c.Addr == "" || seen[c.Addr] {
			add("catalog_clients[%d]: address %q is empty or used twice", i, c.Addr)
		}
		seen[c.Addr] = true
		if err := c.Client.Validate(); err != nil {
			add("catalog_clients[%d]: %v", i, err)
		}
	}
	for i, c := range sc.InferClients {
		if c.Addr == "" || seen[c.Addr] {
			add("infer_clients[%d]: address %q is empty or used twice", i, c.Addr)
		}
		seen[c.Addr] = true
		if err := c.Client.Validate(); err != nil {
			add("infer_clients[%d]: %v", i, err)
		}
	}
	for _, h := range sc.Hives {
		for _, w := range h.processes() {
			if seen[node.Addr(w.ID)] || seen[EngineAddr(w.ID)] {
				add("hive %s: worker process %q (or its engine) has the address of another node", h.Addr, w.ID)
			}
			seen[node.Addr(w.ID)], seen[EngineAddr(w.ID)] = true, true
		}
		if len(h.Started) > 0 && !(h.WorkerProcesses && h.Spawn && h.Catalog) {
			add("hive %s: started workers need worker_processes, spawn and catalog: the hive spawns them and finds their model in its catalog", h.Addr)
		}
	}
	if sc.WorkerQueue < 0 {
		add("worker_queue %d must not be negative", sc.WorkerQueue)
	}
	for i, m := range sc.Models {
		if m.Machine == "" || m.Provider == "" || m.Reference == "" || m.PayloadBytes <= 0 || m.PayloadBytes%4 != 0 {
			add("models[%d]: needs a machine, provider, reference and a payload that is a positive multiple of 4 bytes", i)
		}
	}
	if sc.Hub != nil {
		if err := sc.Hub.Validate(); err != nil {
			add("hub: %v", err)
		}
	}
	if err := sc.Network.Validate(); err != nil {
		add("network: %v", err)
	}
	if p := sc.Provisioner; p != nil {
		cfg := provision.DefaultConfig()
		p.apply(&cfg)
		if err := cfg.Validate(); err != nil {
			add("provisioner: %v", err)
		}
	}
	for _, m := range sortedKeys(sc.Downlinks) {
		if sc.Downlinks[m] <= 0 {
			add("downlinks: machine %q has %d bytes/s; give a positive capacity or leave the machine out", m, sc.Downlinks[m])
		}
	}
	if err := sc.Faults.Validate(sc.Topology()); err != nil {
		add("faults: %v", err)
	}
	if err := plant.Validate(sc.Plants); err != nil {
		add("%v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid scenario %s (seed %d): %v", sc.ID, sc.Seed, errs)
	}
	return nil
}

// Topology is what the fault catalogue may target in this scenario.
func (sc Scenario) Topology() faults.Topology {
	t := faults.Topology{Queens: []node.Addr{sc.Queen.Addr}, Machines: map[node.Addr]string{},
		Devices: map[node.Addr][]string{}, Workers: map[node.Addr][]string{}, Files: map[node.Addr][]string{}}
	for _, h := range sc.Hives {
		t.Hives = append(t.Hives, h.Addr)
		if h.Machine != "" {
			t.Machines[h.Addr] = h.Machine
		}
		if h.Catalog {
			t.Files[h.Addr] = []string{"catalog/models.db"}
		}
		for _, w := range h.processes() {
			t.Processes = append(t.Processes, node.Addr(w.ID))
			t.Engines = append(t.Engines, EngineAddr(w.ID))
			if h.Machine != "" {
				t.Machines[node.Addr(w.ID)] = h.Machine
				t.Machines[EngineAddr(w.ID)] = h.Machine
			}
		}
		devs := map[string]bool{}
		for _, w := range h.Workers {
			t.Workers[h.Addr] = append(t.Workers[h.Addr], w.ID)
			if w.Capability != "cpu" && !devs[w.Capability] {
				devs[w.Capability] = true
				t.Devices[h.Addr] = append(t.Devices[h.Addr], w.Capability)
			}
		}
	}
	for _, c := range sc.Clients {
		t.Clients = append(t.Clients, c.Addr)
	}
	for _, c := range sc.CatalogClients {
		t.Clients = append(t.Clients, c.Addr)
	}
	for _, c := range sc.InferClients {
		t.Clients = append(t.Clients, c.Addr)
	}
	if sc.Hub != nil {
		t.Hub = HubAddr
	}
	return t
}

// WorkerCount is the number of workers over all hives, those started on request included.
func (sc Scenario) WorkerCount() int {
	n := 0
	for _, h := range sc.Hives {
		n += len(h.Workers) + len(h.Started)
	}
	return n
}

// Save writes the scenario as indented JSON.
func (sc Scenario) Save(path string) error {
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Load reads and validates a scenario file.
func Load(path string) (Scenario, error) {
	var sc Scenario
	b, err := os.ReadFile(path)
	if err != nil {
		return sc, fmt.Errorf("cannot read scenario file: %w", err)
	}
	if err := json.Unmarshal(b, &sc); err != nil {
		return sc, fmt.Errorf("scenario file %s is not valid scenario JSON: %w", path, err)
	}
	if err := sc.Validate(); err != nil {
		return sc, fmt.Errorf("scenario file %s: %w", path, err)
	}
	return sc, nil
}
