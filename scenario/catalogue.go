package scenario

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Knobs size a generated scenario. A zero field is drawn from the seed.
type Knobs struct {
	Hives          int `json:"hives,omitempty"`
	WorkersPerHive int `json:"workers_per_hive,omitempty"`
	Clients        int `json:"clients,omitempty"`
	Faults         int `json:"faults,omitempty"`
}

// Entry is one named scenario of the catalogue.
type Entry struct {
	// ID is the scenario's ID in SCENARIOS.md.
	ID string
	// Doc says what happens and what must hold, in one line.
	Doc string
	// FaultKinds are the fault kinds the scenario draws its schedule from.
	FaultKinds []string
	// MaxFaultFor bounds how long one fault lasts; zero means one minute.
	MaxFaultFor time.Duration
	// build makes the scenario's topology and workload and sets its requirements; faults are
	// added by Generate.
	build func(rng *rand.Rand, k Knobs) Scenario
	// ensure, when set, adds the faults the scenario is about if the random draw missed them.
	ensure func(rng *rand.Rand, sc *Scenario)
}

var models = []string{"hf:meta-llama/Llama-3.2-1B", "hf:TinyLlama/TinyLlama-1.1B-Chat"}

var chaosKinds = []string{"clock-drift", "clock-jump", "clock-skew", "crash-restart", "net-delay",
	"net-duplicate", "net-loss", "net-reorder", "partition-isolate", "partition-oneway",
	"partition-split", "partition-symmetric", "pause", "power-fail"}

// Catalogue returns every scenario the simulator can run, sorted by ID.
func Catalogue() []Entry {
	entries := []Entry{
		{ID: "registry/linearizable", Doc: "hives and routers use the registry under partitions, crashes, loss, duplication, reordering and clock faults; its history is linearizable",
			FaultKinds: append(append([]string{}, chaosKinds...), "device-fault", "worker-hang"), build: buildLinearizable},
		{ID: "registry/heartbeat-timeout-busy", Doc: "a busy worker stops heartbeating past 120s: stale-but-busy, never routed to, removed when its request ends or after 5 min",
			FaultKinds: []string{"worker-hang"}, build: buildHeartbeatBusy, ensure: ensureSpacedHangs},
		{ID: "registry/overflow", Doc: "the registry is full and hives register more: REGISTRY_FULL, nothing registered changes, never over the maximum",
			FaultKinds: []string{"crash-restart", "partition-isolate", "net-duplicate"}, build: buildOverflow},
		{ID: "registry/concurrent-state-update", Doc: "routers race to move one idle worker to busy: exactly one compare-and-set wins, the others get WORKER_ALREADY_BUSY",
			FaultKinds: []string{"net-duplicate", "net-reorder", "net-delay"}, build: buildConcurrentCAS},
		{ID: "registry/capability-change", Doc: "a GPU driver crash moves workers from cuda to cpu: a new incarnation, claims on the old one fail clearly, new requests use cpu",
			FaultKinds: []string{"device-fault", "net-delay"}, build: buildCapabilityChange,
			ensure: ensureFault("device-fault", 0, 1)},
		{ID: "registry/persistence", Doc: "the queen crashes and loses power and restarts: the registry is rebuilt from its log and hive re-registration, and never routes to workers that died meanwhile",
			FaultKinds: []string{"crash-restart", "power-fail", "partition-isolate"}, build: buildPersistence,
			ensure: ensureQueenCrash},
	}
	entries = append(entries, catalogEntries()...)
	entries = append(entries, provisionEntries()...)
	entries = append(entries, inferEntries()...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	return entries
}

// Lookup finds a catalogue entry by ID.
func Lookup(id string) (Entry, error) {
	var ids []string
	for _, e := range Catalogue() {
		if e.ID == id {
			return e, nil
		}
		ids = append(ids, e.ID)
	}
	return Entry{}, fmt.Errorf("no scenario %q; the scenarios are: %s (rbee-sim list)", id, strings.Join(ids, ", "))
}

// Generate draws a complete scenario from the seed: topology and workload from one stream,
// the fault schedule from another, so changing one never shifts the other.
func (e Entry) Generate(seed uint64, k Knobs) Scenario {
	rng := rand.New(rand.NewPCG(seed, sim.StreamWorkload))
	sc := e.build(rng, k)
	sc.ID, sc.Seed = e.ID, seed
	frng := rand.New(rand.NewPCG(seed, sim.StreamFaults))
	count := k.Faults
	if count == 0 {
		count = 2 + frng.IntN(7)
	}
	maxFor := e.MaxFaultFor
	if maxFor == 0 {
		maxFor = time.Minute
	}
	sc.Faults = faults.RandomSchedule(frng, sc.Topology(), e.AvailableKinds(sc), 10*time.Second,
		sc.Chaos-maxFor, count, maxFor)
	if e.ensure != nil {
		e.ensure(frng, &sc)
	}
	return sc
}

// ensureFault makes sure the schedule has at least n faults of kind lasting at least minFor:
// a scenario about that fault must not be a run without it. Several make the rare path
// certain where one fault can miss it by chance (a hang that times out in the second
// between two pieces of work finds an idle worker).
func ensureFault(kind string, minFor time.Duration, n int) func(*rand.Rand, *Scenario) {
	return func(rng *rand.Rand, sc *Scenario) {
		have := 0
		for i, f := range sc.Faults {
			if f.Kind == kind {
				sc.Faults[i].For = max(f.For, minFor)
				have++
			}
		}
		k, ok := faults.Lookup(kind)
		if !ok || !k.Available(sc.Topology()) {
			return
		}
		for ; have < n; have++ {
			f := k.Draw(rng, sc.Topology(), 30*time.Second+time.Duration(rng.Int64N(int64(sc.Chaos/2))), max(minFor, time.Minute))
			f.For = max(f.For, minFor)
			sc.Faults = append(sc.Faults, f)
		}
		sortFaults(sc.Faults)
	}
}

// ensureSpacedHangs adds two long worker hangs that do not overlap, each past the heartbeat
// timeout: a hang that times out in the moment between two pieces of work finds the worker
// idle (and expires it), so one hang alone can miss stale-but-busy by chance; two apart make
// it certain in practice.
func ensureSpacedHangs(rng *rand.Rand, sc *Scenario) {
	k, ok := faults.Lookup("worker-hang")
	if !ok || !k.Available(sc.Topology()) {
		return
	}
	for _, at := range []time.Duration{time.Minute, 5*time.Minute + 30*time.Second} {
		f := k.Draw(rng, sc.Topology(), at+time.Duration(rng.Int64N(int64(10*time.Second))), time.Minute)
		f.For = 150*time.Second + time.Duration(rng.Int64N(int64(40*time.Second)))
		sc.Faults = append(sc.Faults, f)
	}
	sortFaults(sc.Faults)
}

// defaultNetwork is a LAN: 1 ms latency plus 2 ms mean jitter.
func defaultNetwork() sim.LinkConfig {
	return sim.LinkConfig{Latency: time.Millisecond, Jitter: 2 * time.Millisecond}
}

// faultOf builds one fault of kind aimed at the scenario's first hive (and, for disk faults,
// its catalog file), at time at.
func faultOf(kind string, at time.Duration, sc *Scenario) faults.Fault {
	f := faults.Fault{Kind: kind, At: at, Targets: []node.Addr{sc.Hives[0].Addr}}
	switch kind {
	// Hub faults last 3 minutes, so downloads meet them even after a hive crash or a hang.
	case "hub-reset":
		f.Targets, f.Value, f.For = []node.Addr{HubAddr}, 100<<10, 3*time.Minute
	case "hub-rate-limit":
		// Clients wait 15s.
		f.Targets, f.Value, f.For = []node.Addr{HubAddr}, 2, 3*time.Minute
	case "hub-corrupt":
		f.Targets, f.Value, f.For = []node.Addr{HubAddr}, 1, 3*time.Minute
	case "crash-restart":
		f.For = 5 * time.Second
	case "disk-flip", "disk-truncate":
		f.File, f.Value = "catalog/models.db", -1
	case "disk-clobber-header":
		f.File, f.Value = "catalog/models.db", 100
	}
	return f
}

// ensureQueenCrash makes sure the queen crashes at least once, after it has state to lose.
func ensureQueenCrash(rng *rand.Rand, sc *Scenario) {
	for _, f := range sc.Faults {
		if (f.Kind == "crash-restart" || f.Kind == "power-fail") && len(f.Targets) > 0 && f.Targets[0] == sc.Queen.Addr {
			return
		}
	}
	at := time.Minute + time.Duration(rng.Int64N(int64(sc.Chaos/2)))
	sc.Faults = append(sc.Faults, faults.Fault{Kind: "crash-restart", At: at, For: time.Duration(1+rng.IntN(30)) * time.Second,
		Targets: []node.Addr{sc.Queen.Addr}})
	sortFaults(sc.Faults)
}

func sortFaults(fs faults.Schedule) {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].At < fs[j].At })
}

// AvailableKinds are the entry's fault kinds that the scenario's topology supports.
func (e Entry) AvailableKinds(sc Scenario) []string {
	topo := sc.Topology()
	var kinds []string
	for _, name := range e.FaultKinds {
		if k, ok := faults.Lookup(name); ok && k.Available(topo) {
			kinds = append(kinds, name)
		}
	}
	return kinds
}

func pick(rng *rand.Rand, v, lo, hi int) int {
	if v > 0 {
		return v
	}
	return lo + rng.IntN(hi-lo+1)
}

// cluster builds the common shape: one queen, hives with workers on GPUs or CPU, and keepers.
func cluster(rng *rand.Rand, hives, perHive, clients int) Scenario {
	sc := Scenario{
		Chaos: 10 * time.Minute, Settle: 4 * time.Minute,
		Queen:   QueenSpec{Addr: "queen-1", MaxWorkers: 1000, HeartbeatTimeout: 120 * time.Second, StaleGrace: 5 * time.Minute},
		Network: defaultNetwork(),
	}
	for h := 0; h < hives; h++ {
		hs := HiveSpec{Addr: node.Addr(fmt.Sprintf("hive-%d", h+1)), Machine: fmt.Sprintf("machine-%d", h+1)}
		for w := 0; w < perHive; w++ {
			capability := "cpu"
			if rng.IntN(3) > 0 {
				capability = fmt.Sprintf("cuda:%d", w%2)
			}
			hs.Workers = append(hs.Workers, api.WorkerSpec{ID: fmt.Sprintf("worker-%d-%d", h+1, w+1),
				Model: models[rng.IntN(len(models))], Capability: capability, Slots: 1})
		}
		sc.Hives = append(sc.Hives, hs)
	}
	for c := 0; c < clients; c++ {
		sc.Clients = append(sc.Clients, ClientSpec{Addr: node.Addr(fmt.Sprintf("keeper-%d", c+1)),
			Keeper: keeper.Config{Queen: sc.Queen.Addr, Models: models, CASPercent: 30}})
	}
	return sc
}

func buildLinearizable(rng *rand.Rand, k Knobs) Scenario {
	return cluster(rng, pick(rng, k.Hives, 2, 3), pick(rng, k.WorkersPerHive, 2, 4), pick(rng, k.Clients, 3, 6))
}

func buildHeartbeatBusy(rng *rand.Rand, k Knobs) Scenario {
	sc := cluster(rng, pick(rng, k.Hives, 1, 2), pick(rng, k.WorkersPerHive, 1, 2), 0)
	// More clients than workers, with long work, so every worker is busy when it hangs.
	clients := 2*sc.WorkerCount() + 1 + rng.IntN(2)
	for c := 0; c < clients; c++ {
		sc.Clients = append(sc.Clients, ClientSpec{Addr: node.Addr(fmt.Sprintf("keeper-%d", c+1)),
			Keeper: keeper.Config{Queen: sc.Queen.Addr, Models: models, ThinkTime: time.Second,
				WorkTime: 3 * time.Minute, UseTimeout: 15 * time.Minute}})
	}
	// Work is long (capped at 12 min), so the cluster needs longer to show progress once the
	// faults stop.
	sc.Settle = 15 * time.Minute
	sc.Require = []string{"worker stale-but-busy"}
	return sc
}

func buildOverflow(rng *rand.Rand, k Knobs) Scenario {
	// At least four workers, so the registry can be full with room left below the maximum.
	sc := cluster(rng, max(2, pick(rng, k.Hives, 2, 3)), max(2, pick(rng, k.WorkersPerHive, 3, 4)), pick(rng, k.Clients, 2, 4))
	sc.Queen.MaxWorkers = sc.WorkerCount() - 1 - rng.IntN(3)
	sc.Require = []string{"registry full"}
	return sc
}

func buildConcurrentCAS(rng *rand.Rand, k Knobs) Scenario {
	sc := cluster(rng, 1, pick(rng, k.WorkersPerHive, 1, 2), 0)
	for i := range sc.Hives[0].Workers {
		sc.Hives[0].Workers[i].Model = models[0]
	}
	clients := max(3, pick(rng, k.Clients, 3, 5)) // a race needs racers
	for c := 0; c < clients; c++ {
		sc.Clients = append(sc.Clients, ClientSpec{Addr: node.Addr(fmt.Sprintf("keeper-%d", c+1)),
			Keeper: keeper.Config{Queen: sc.Queen.Addr, Models: models[:1], CASPercent: 100,
				ThinkTime: 20 * time.Millisecond, WorkTime: 200 * time.Millisecond}})
	}
	sc.Chaos, sc.Settle = 2*time.Minute, time.Minute
	sc.Require = []string{markContended}
	return sc
}

func buildCapabilityChange(rng *rand.Rand, k Knobs) Scenario {
	sc := cluster(rng, pick(rng, k.Hives, 1, 3), pick(rng, k.WorkersPerHive, 2, 3), pick(rng, k.Clients, 3, 6))
	for h := range sc.Hives {
		for w := range sc.Hives[h].Workers {
			sc.Hives[h].Workers[w].Capability = fmt.Sprintf("cuda:%d", w%2)
		}
	}
	for c := range sc.Clients {
		sc.Clients[c].Keeper.WorkTime = 20 * time.Second
		sc.Clients[c].Keeper.UseTimeout = 3 * time.Minute // longer than the longest work (80s)
	}
	sc.Require = []string{"worker fell back after device fault"}
	return sc
}

func buildPersistence(rng *rand.Rand, k Knobs) Scenario {
	sc := cluster(rng, pick(rng, k.Hives, 2, 3), pick(rng, k.WorkersPerHive, 2, 3), pick(rng, k.Clients, 3, 5))
	sc.Require = []string{"registry restored from log"}
	return sc
}
