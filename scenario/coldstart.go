package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// e2e/cold-start: no worker for the model anywhere and the model on no disk. Each inference
// client first has a hive start a worker of the model (rbee-keeper worker start): the hive
// downloads the model from the hub (whose first answers are 503s, so the download is retried)
// and registers it in its catalog, checks it fits the device, spawns the worker process through
// its process table, and answers once the worker reported ready and is registered; then the
// client's requests go out and are served by that worker.

// markColdServed is the harness mark of a completion served by a worker started on request.
const markColdServed = "harness: a completion came from a worker started on request"

// coldDevice and coldDeviceMemory are the device the workers start on and its memory.
const (
	coldDevice       = "cuda:0"
	coldDeviceMemory = 24 << 30
)

func buildColdStart(rng *rand.Rand, k Knobs) Scenario {
	hives, clients, slots := pick(rng, k.Hives, 1, 2), pick(rng, k.Clients, 1, 2), 4
	sc := inferCluster(rng, hives, 0, slots, clients, 10)
	ref := strings.TrimPrefix(inferModel, "hf:") // the catalog ID of repo/file is the model the clients ask for
	repo, file := ref[:strings.LastIndex(ref, "/")], ref[strings.LastIndex(ref, "/")+1:]
	sc.Hub = &sim.HubConfig{BandwidthBytesPerSec: 1 << 20, ChunkBytes: 64 << 10, Latency: 20 * time.Millisecond,
		Files: []sim.HubFile{{Repo: repo, Revision: "main", File: file, Spec: gguf.Spec{Architecture: "llama",
			ContextLength: inferContext, BlockCount: 22, FileType: 15, Name: repo,
			PayloadBytes: int64(4 * (1<<20 + rng.IntN(1<<20))), Seed: 1 + rng.Uint64N(1000)}}}}
	// Hub faults of one kind do not add up, but two can follow each other: leave room for both.
	sc.Provisioner = &ProvisionerSpec{RetryAttemptsMax: 12}
	// The hives share one machine (its disk, catalog and process table), as the download
	// monitors assume: with two clients, two hives start workers of the model at once, and
	// one download serves both.
	for i := range sc.Hives {
		sc.Hives[i].Machine = "machine-1"
		sc.Hives[i].Catalog, sc.Hives[i].Spawn = true, true
		sc.Hives[i].DeviceMemory = map[string]int64{coldDevice: coldDeviceMemory}
	}
	// Client c starts its worker on hive c mod hives: two starts of one model, on one hive or
	// two, share one download.
	for c := range sc.InferClients {
		h := &sc.Hives[c%hives]
		h.Started = append(h.Started, api.WorkerSpec{ID: fmt.Sprintf("%s-w%d", h.Addr, len(h.Started)+1), Model: inferModel,
			Capability: coldDevice, Slots: slots})
		sc.InferClients[c].Client.StartWorkers = []keeper.StartSpec{{Hive: h.Addr, Repo: repo, Revision: "main", File: file,
			Device: coldDevice, Slots: slots}}
	}
	sc.Require = []string{"worker start: downloading the model", "downloaded model registered", "worker start: preflight passed",
		"hive spawned a worker process", "worker ready", "worker start answered: ready and registered",
		"harness: hub answered with fault server-error", markColdServed}
	return sc
}

// ensureColdHubErrors makes the hub answer the first requests (the starts' first HEADs) with
// 503 just before the clients start, so the download is always retried.
func ensureColdHubErrors(rng *rand.Rand, sc *Scenario) {
	sc.Faults = append(sc.Faults, faults.Fault{Kind: "hub-5xx", At: time.Second + time.Duration(rng.IntN(900))*time.Millisecond,
		Targets: []node.Addr{HubAddr}, Value: 1 + rng.Int64N(3), For: 3 * time.Minute})
	sortFaults(sc.Faults)
}

// startedWorker reports whether a worker is one the scenario's hives start on request.
func (r *run) startedWorker(w node.Addr) bool {
	for _, h := range r.sc.Hives {
		for _, s := range h.Started {
			if node.Addr(s.ID) == w {
				return true
			}
		}
	}
	return false
}

// coldStartChecks: every start was answered OK, naming a worker the hive runs for the model's
// catalog ID (the model the clients ask for); every request completed, on such a worker.
func (r *run) coldStartChecks(addrs []node.Addr, clients map[node.Addr][]keeper.InferResult) []CheckerResult {
	starts := CheckerResult{Name: "every worker start is answered once the worker is ready and registered, for the model's catalog ID",
		Stage: "liveness", OK: true}
	n := 0
	for _, ic := range r.sc.InferClients {
		k, ok := r.s.Node(ic.Addr).(*keeper.InferClient)
		if !ok {
			continue
		}
		for i, got := range k.StartResults() {
			spec := ic.Client.StartWorkers[i]
			want := api.WorkerStartReq{Provider: spec.Provider, Repo: spec.Repo, File: spec.File}.ModelID()
			bad := ""
			switch {
			case !got.Err.OK():
				bad = fmt.Sprintf("failed: %v", got.Err)
			case got.Worker == "":
				bad = "was never answered"
			case got.Model != want || !r.startedWorker(node.Addr(got.Worker)):
				bad = fmt.Sprintf("answered worker %q for model %q, want one of the hive's started workers for %q", got.Worker, got.Model, want)
			default:
				if hv, ok := r.s.Node(spec.Hive).(*hive.Hive); ok {
					served := false
					for _, w := range hv.Workers() {
						served = served || w.ID == got.Worker && w.Model == want && w.Capability == spec.Device
					}
					if !served {
						bad = fmt.Sprintf("answered worker %s, which hive %s does not run for %s on %s", got.Worker, spec.Hive, want, spec.Device)
					}
				}
			}
			if bad != "" && starts.OK {
				starts.OK = false
				starts.Detail = fmt.Sprintf("%s's start of %s on %s %s", ic.Addr, want, spec.Hive, bad)
			}
			n++
		}
	}
	if starts.OK {
		starts.Detail = fmt.Sprintf("%d starts answered with a running, registered worker of the model", n)
	}
	served := CheckerResult{Name: "every request completes on a worker started for it", Stage: "liveness", OK: true}
	done := 0
	for _, a := range addrs {
		for _, x := range clients[a] {
			if x.Outcome != keeper.OutcomeCompleted || !r.startedWorker(x.Worker) {
				if served.OK {
					served.OK = false
					served.Detail = fmt.Sprintf("%s request #%d ended %q on worker %q with %v: after a cold start every request must complete on the started worker",
						a, x.Index, x.Outcome, x.Worker, x.Err)
				}
				continue
			}
			done++
		}
	}
	if served.OK {
		served.Detail = fmt.Sprintf("%d requests completed, each on a worker started on request", done)
	}
	return []CheckerResult{starts, r.checkColdModelFile(), served}
}

// checkColdModelFile: the model file the started workers load is on the machine's disk, at
// the catalog's path, byte for byte the hub's (its sha256).
func (r *run) checkColdModelFile() CheckerResult {
	c := CheckerResult{Name: "the downloaded model file is the hub's, at the catalog's path", Stage: "liveness", OK: true}
	f := r.sc.Hub.Files[0]
	_, want, _ := r.hub.Content(f.Repo, f.Revision, f.File)
	path := catalog.ModelPath("models/", "hf", f.Repo+"/"+f.File)
	b, err := node.ReadFile(r.s.Disk(r.sc.Hives[0].Machine), path)
	sum := sha256.Sum256(b)
	switch got := hex.EncodeToString(sum[:]); {
	case err != nil:
		c.OK, c.Detail = false, fmt.Sprintf("cannot read %s on %s: %v", path, r.sc.Hives[0].Machine, err)
	case got != want:
		c.OK, c.Detail = false, fmt.Sprintf("%s on %s has sha256 %s, the hub's file %s", path, r.sc.Hives[0].Machine, got, want)
	default:
		c.Detail = fmt.Sprintf("%s (%d bytes) has the hub's sha256", path, len(b))
	}
	return c
}
