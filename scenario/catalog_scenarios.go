package scenario

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// catalogEntries are the catalog/* scenarios of SCENARIOS.md that the simulator runs.
func catalogEntries() []Entry {
	return []Entry{
		{ID: "catalog/concurrent-registration", Doc: "hives sharing one disk finish the same download and register it at the same instant: exactly one row, the others see already-registered, catalog operations linearizable",
			FaultKinds: []string{"net-delay", "net-duplicate", "net-reorder"}, build: buildConcurrentRegistration},
		{ID: "catalog/corruption-recovery", Doc: "the catalog file is corrupted (flipped bytes, clobbered header, truncation) while hives run and restart: it is backed up, rebuilt from the model files, and no model with an intact file is lost",
			FaultKinds: []string{"disk-flip", "disk-clobber-header", "disk-truncate", "crash-restart"}, build: buildCorruptionRecovery,
			ensure: ensureCorruption},
		{ID: "catalog/orphan-cleanup", Doc: "model files are deleted by hand and others appear unregistered; cleanup removes the orphan rows, adopts the valid files, and reports a summary",
			FaultKinds: []string{"crash-restart", "net-delay"}, build: buildOrphanCleanup},
		{ID: "catalog/large-query", Doc: "a catalog of 1,000 to 2,000 models is listed by provider page by page: every scan sees each model once, in order, within its page size",
			FaultKinds: []string{"crash-restart", "net-delay"}, build: buildLargeQuery},
		{ID: "catalog/backup-restore", Doc: "an online backup is taken while registrations go on, and later restored: the backup is consistent and the restore brings back every model registered before it",
			FaultKinds: []string{"crash-restart", "net-delay", "net-duplicate"}, build: buildBackupRestore},
		{ID: "catalog/schema-migration", Doc: "hives open a schema-v1 catalog, also with a crash in the middle of the migration: it migrates in one transaction, keeps every row, and a crash leaves v1 intact for the next start",
			FaultKinds: []string{"crash-restart", "power-fail"}, build: buildSchemaMigration, ensure: ensureMigrationCrash},
		{ID: "catalog/disk-faults", Doc: "torn writes on power failure, failed fsyncs and a full disk under catalog writes: no acknowledged registration lost, clear errors, nothing half-written",
			FaultKinds: []string{"power-fail", "power-fail-at-write", "disk-fsync-fail", "disk-full", "disk-slow", "crash-restart"}, build: buildDiskFaults},
	}
}

// catalogCluster is one queen and hives that share one machine's disk and catalog, with model
// files already downloaded, and catalog clients.
func catalogCluster(rng *rand.Rand, hives, models, clients int, broadcast bool) Scenario {
	sc := Scenario{
		Chaos: 5 * time.Minute, Settle: 2 * time.Minute,
		Queen:   QueenSpec{Addr: "queen-1", MaxWorkers: 1000, HeartbeatTimeout: 120 * time.Second, StaleGrace: 5 * time.Minute},
		Network: defaultNetwork(),
	}
	var addrs []node.Addr
	for h := 0; h < hives; h++ {
		a := node.Addr(fmt.Sprintf("hive-%d", h+1))
		addrs = append(addrs, a)
		sc.Hives = append(sc.Hives, HiveSpec{Addr: a, Machine: "machine-1", Catalog: true})
	}
	var refs []string
	for m := 0; m < models; m++ {
		ref := fmt.Sprintf("org-%d/model-%d-GGUF/model.Q4_K_M.gguf", rng.IntN(3), m)
		refs = append(refs, ref)
		sc.Models = append(sc.Models, ModelFile{Machine: "machine-1", Provider: "hf", Reference: ref,
			Architecture: "llama", ContextLength: uint64(2048 << rng.IntN(3)), PayloadBytes: int64(4 * (256 + rng.IntN(1024))),
			Broken: rng.IntN(10) == 0})
		if rng.IntN(2) == 0 {
			// This download finishes during the run, after the catalog exists.
			sc.Models[m].At = 10*time.Second + time.Duration(rng.Int64N(int64(sc.Chaos/2)))
		}
	}
	for c := 0; c < clients; c++ {
		sc.CatalogClients = append(sc.CatalogClients, CatalogClientSpec{Addr: node.Addr(fmt.Sprintf("keeper-%d", c+1)),
			Client: keeper.CatalogConfig{Hives: addrs, Provider: "hf", References: refs, RegisterPercent: 60,
				Broadcast: broadcast, ThinkTime: 2 * time.Second}})
	}
	return sc
}

func buildConcurrentRegistration(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, max(2, pick(rng, k.Hives, 3, 3)), pick(rng, k.WorkersPerHive, 3, 8), pick(rng, k.Clients, 1, 2), true)
	sc.Require = []string{markRaced}
	return sc
}

func buildCorruptionRecovery(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, pick(rng, k.Hives, 1, 2), pick(rng, k.WorkersPerHive, 4, 10), pick(rng, k.Clients, 1, 2), false)
	sc.Require = []string{"catalog rebuilt after corruption"}
	return sc
}

func buildDiskFaults(rng *rand.Rand, k Knobs) Scenario {
	return catalogCluster(rng, pick(rng, k.Hives, 1, 2), pick(rng, k.WorkersPerHive, 4, 8), pick(rng, k.Clients, 1, 3), false)
}

// ensureCorruption makes sure the catalog is corrupted, and that a hive restarts afterwards so
// the corruption is met at open as well as on a call.
func ensureCorruption(rng *rand.Rand, sc *Scenario) {
	at := time.Minute + time.Duration(rng.Int64N(int64(sc.Chaos/3)))
	kinds := []string{"disk-flip", "disk-clobber-header", "disk-truncate"}
	f := faultOf(kinds[rng.IntN(len(kinds))], at, sc)
	sc.Faults = append(sc.Faults, f, faultOf("crash-restart", at+time.Second, sc))
	sortFaults(sc.Faults)
}

func buildOrphanCleanup(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, pick(rng, k.Hives, 1, 2), max(4, pick(rng, k.WorkersPerHive, 6, 12)), pick(rng, k.Clients, 1, 2), false)
	deleted := 0
	for i := range sc.Models {
		// Some files present at the start are deleted by hand in the first minute: their rows
		// become orphans (the cleanup comes later).
		if sc.Models[i].At == 0 && !sc.Models[i].Broken && (deleted == 0 || rng.IntN(3) == 0) {
			sc.Models[i].DeleteAt = 30*time.Second + time.Duration(rng.Int64N(int64(30*time.Second)))
			deleted++
		}
	}
	if deleted == 0 {
		sc.Models[0].At, sc.Models[0].Broken, sc.Models[0].DeleteAt = 0, false, 40*time.Second
	}
	// Late downloads that nobody registers: files the cleanup adopts.
	for i := 0; i < 2; i++ {
		sc.Models = append(sc.Models, ModelFile{Machine: "machine-1", Provider: "hf", Reference: fmt.Sprintf("org-9/unregistered-%d-GGUF/model.gguf", i),
			Architecture: "llama", ContextLength: 4096, PayloadBytes: 1024, At: 90 * time.Second})
	}
	admin := keeper.CatalogConfig{Hives: []node.Addr{sc.Hives[0].Addr}, Provider: "hf", References: []string{"org-9/none"},
		ThinkTime: time.Hour, Script: []keeper.CatalogStep{{At: 2 * time.Minute, Op: "cleanup", Adopt: true},
			{At: 4 * time.Minute, Op: "cleanup", Adopt: true}}}
	sc.CatalogClients = append(sc.CatalogClients, CatalogClientSpec{Addr: "keeper-admin", Client: admin})
	sc.Require = []string{"catalog cleanup removed orphan rows", "catalog cleanup adopted files"}
	return sc
}

func buildLargeQuery(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, pick(rng, k.Hives, 1, 2), 1000+rng.IntN(1001), pick(rng, k.Clients, 1, 3), false)
	for i := range sc.Models {
		sc.Models[i].At, sc.Models[i].Broken, sc.Models[i].PayloadBytes = 0, false, 64
	}
	for i := range sc.CatalogClients {
		c := &sc.CatalogClients[i].Client
		c.ScanPercent, c.PageSize, c.RegisterPercent = 50, 50+rng.IntN(151), 20
	}
	sc.Chaos, sc.Settle = 3*time.Minute, time.Minute
	sc.Require = []string{"keeper completed a full catalog scan"}
	return sc
}

func buildBackupRestore(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, pick(rng, k.Hives, 1, 2), pick(rng, k.WorkersPerHive, 5, 10), pick(rng, k.Clients, 1, 3), false)
	backupAt := time.Minute + time.Duration(rng.Int64N(int64(time.Minute)))
	admin := keeper.CatalogConfig{Hives: []node.Addr{sc.Hives[0].Addr}, Provider: "hf", References: []string{"org-9/none"},
		ThinkTime: time.Hour, Script: []keeper.CatalogStep{{At: backupAt, Op: "backup", Name: "backups/catalog-1.db"},
			{At: backupAt + 90*time.Second, Op: "restore", Name: "backups/catalog-1.db"}}}
	sc.CatalogClients = append(sc.CatalogClients, CatalogClientSpec{Addr: "keeper-admin", Client: admin})
	sc.Require = []string{"catalog backed up", "catalog restored from backup"}
	return sc
}

func buildSchemaMigration(rng *rand.Rand, k Knobs) Scenario {
	sc := catalogCluster(rng, pick(rng, k.Hives, 1, 3), max(1, pick(rng, k.WorkersPerHive, 3, 10)), pick(rng, k.Clients, 1, 2), false)
	for i := range sc.Models {
		if sc.Models[i].At == 0 && !sc.Models[i].Broken {
			sc.Models[i].V1 = true
		}
	}
	sc.Models[0].At, sc.Models[0].Broken, sc.Models[0].V1 = 0, false, true
	sc.Require = []string{"harness: v1 catalog on disk at start"}
	return sc
}

// ensureMigrationCrash arms a power failure at a drawn write of the first hive's machine from
// the very start, so over the seeds every write of the migration (and of the first requests)
// is a crash point.
func ensureMigrationCrash(rng *rand.Rand, sc *Scenario) {
	f := faults.Fault{Kind: "power-fail-at-write", At: 0, For: time.Duration(1+rng.IntN(10)) * time.Second,
		Targets: []node.Addr{sc.Hives[0].Addr}, Value: int64(1 + rng.IntN(60))}
	sc.Faults = append(sc.Faults, f)
	sortFaults(sc.Faults)
}
