package scenario

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// provisionEntries are the provisioner/* scenarios of SCENARIOS.md the simulator runs so far.
func provisionEntries() []Entry {
	return []Entry{
		{ID: "provisioner/single-flight", Doc: "hives sharing one disk are asked for the same model at once: one download, the others wait for it and register it; never two writers of one file",
			FaultKinds: []string{"net-delay", "crash-restart"}, build: buildSingleFlight},
		{ID: "provisioner/resume", Doc: "downloads break part-way (connection resets, hive crashes): the next attempt resumes with Range from what is on disk, and a 200 instead of 206 starts over",
			FaultKinds: []string{"hub-reset", "hub-ignore-range", "crash-restart", "power-fail"}, build: buildResume,
			ensure: ensureHubFault("hub-reset", 2)},
		{ID: "provisioner/rate-limit-429", Doc: "the hub answers 429 with Retry-After: no request before it has passed, then the download goes on; 5xx and hangs are retried with capped, jittered backoff",
			FaultKinds: []string{"hub-rate-limit", "hub-5xx", "hub-hang"}, build: buildRateLimit,
			ensure: ensureHubFault("hub-rate-limit", 1)},
		{ID: "provisioner/hub-errors", Doc: "downloads of a missing repository, a missing file and a gated repository without a token: each ends at once with DOWNLOAD_FAILED naming the cause and what to do, never retried, nothing registered; the servable models still download",
			FaultKinds: []string{"hub-5xx", "net-delay", "disk-full"}, build: buildHubErrors},
		{ID: "provisioner/gguf-validation", Doc: "downloaded bytes are corrupted: the sha256 (the hub's ETag) and GGUF checks catch it before registration, the bad file is removed and the download retried",
			FaultKinds: []string{"hub-corrupt", "net-delay"}, build: buildValidation,
			ensure: ensureHubFault("hub-corrupt", 2)},
		{ID: "provisioner/bandwidth-limit", Doc: "hives on one machine download under a per-hive bandwidth limit that leaves room on the machine's link: the bytes each hive receives over every window of 1s or more stay within limit plus burst, and heartbeat round trips stay short",
			FaultKinds: []string{"hub-reset", "net-delay", "crash-restart"}, build: buildBandwidthLimit},
		{ID: "provisioner/progress", Doc: "clients that ask for downloads receive a stream of progress events: bytes, percent and speed consistent with the file, \"resuming from N%\" after an interruption, and the stream ends with the answer",
			FaultKinds: []string{"hub-reset", "crash-restart", "net-delay"}, build: buildProgress,
			ensure: ensureHubFault("hub-reset", 1)},
	}
}

// provisionCluster is one queen, hives sharing one machine's disk and catalog, a hub serving
// synthetic GGUF models, and clients that ask the hives to download them.
func provisionCluster(rng *rand.Rand, hives, models, clients int, broadcast bool) Scenario {
	sc := catalogCluster(rng, hives, 0, 0, broadcast)
	sc.Chaos, sc.Settle = 5*time.Minute, 6*time.Minute
	hub := sim.HubConfig{BandwidthBytesPerSec: 1 << 20, ChunkBytes: 64 << 10, Latency: 20 * time.Millisecond}
	var downloads []keeper.DownloadSpec
	for m := 0; m < models; m++ {
		repo := fmt.Sprintf("org-%d/model-%d-GGUF", rng.IntN(3), m)
		file := "model.Q4_K_M.gguf"
		hub.Files = append(hub.Files, sim.HubFile{Repo: repo, Revision: "main", File: file,
			Spec: gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 22, FileType: 15, Name: repo,
				PayloadBytes: int64(4 * (256<<10 + rng.IntN(768<<10))), Seed: uint64(m + 1)}})
		downloads = append(downloads, keeper.DownloadSpec{Repo: repo, Revision: "main", File: file})
	}
	sc.Hub = &hub
	var addrs []node.Addr
	for _, h := range sc.Hives {
		addrs = append(addrs, h.Addr)
	}
	var refs []string
	for _, d := range downloads {
		refs = append(refs, d.Repo+"/"+d.File)
	}
	for c := 0; c < clients; c++ {
		sc.CatalogClients = append(sc.CatalogClients, CatalogClientSpec{Addr: node.Addr(fmt.Sprintf("keeper-%d", c+1)),
			Client: keeper.CatalogConfig{Hives: addrs, Provider: "hf", References: refs, Downloads: downloads,
				DownloadPercent: 70, Broadcast: broadcast, ThinkTime: 2 * time.Second}})
	}
	return sc
}

func buildSingleFlight(rng *rand.Rand, k Knobs) Scenario {
	sc := provisionCluster(rng, max(2, pick(rng, k.Hives, 3, 3)), pick(rng, k.WorkersPerHive, 4, 8), pick(rng, k.Clients, 1, 2), true)
	sc.Require = []string{markRaced}
	return sc
}

func buildResume(rng *rand.Rand, k Knobs) Scenario { return oneHubFault(rng, k, "download resumed") }

func buildRateLimit(rng *rand.Rand, k Knobs) Scenario {
	return oneHubFault(rng, k, "harness: hub answered with fault rate-limit")
}

func buildValidation(rng *rand.Rand, k Knobs) Scenario {
	return oneHubFault(rng, k, "harness: hub answered with fault corrupt")
}

func buildHubErrors(rng *rand.Rand, k Knobs) Scenario {
	sc := oneHubFault(rng, k, "download failed: not found")
	sc.Hub.BandwidthBytesPerSec = 128 << 10
	gated := sc.Hub.Files[0]
	gated.Repo, gated.Gated, gated.Token = "meta-llama/Gated-Model-GGUF", true, "hf_secret"
	gated.Spec.Name = gated.Repo
	sc.Hub.Files = append(sc.Hub.Files, gated)
	bad := []keeper.DownloadSpec{
		{Repo: "no-such-org/no-such-model-GGUF", Revision: "main", File: "model.gguf"},
		{Repo: sc.Hub.Files[0].Repo, Revision: "main", File: "no-such-file.gguf"},
		{Repo: gated.Repo, Revision: "main", File: gated.File},
	}
	for i := range sc.CatalogClients {
		c := &sc.CatalogClients[i].Client
		c.Downloads = append(c.Downloads, bad...)
	}
	sc.Require = append(sc.Require, "download failed: gated")
	return sc
}

// oneHubFault is the shape of the scenarios about one hub fault: one or two hives, four to
// eight models, clients that ask any hive, and the path the run must reach.
func oneHubFault(rng *rand.Rand, k Knobs, require string) Scenario {
	sc := provisionCluster(rng, pick(rng, k.Hives, 1, 2), pick(rng, k.WorkersPerHive, 4, 8), pick(rng, k.Clients, 1, 2), false)
	sc.Require = []string{require}
	return sc
}

// ensureHubFault adds n faults of a hub kind early in the run, when downloads are under way,
// so that a scenario about that fault always meets it.
func ensureHubFault(kind string, n int) func(*rand.Rand, *Scenario) {
	return func(rng *rand.Rand, sc *Scenario) {
		for i := 0; i < n; i++ {
			// Before the clients start (at 2s): the first downloads meet the fault.
			at := 500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
			f := faultOf(kind, at, sc)
			sc.Faults = append(sc.Faults, f)
		}
		sortFaults(sc.Faults)
	}
}
