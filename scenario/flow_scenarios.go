package scenario

import (
	"fmt"
	"math/rand/v2"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// markOverBurst is reached when a hive received more body bytes than its token bucket holds:
// the bandwidth limit had to act, so the run tested it.
const markOverBurst = "harness: a hive downloaded more than its burst"

// buildBandwidthLimit: two or three hives on one machine, each limited to 1 MiB/s with a
// 256 KiB burst, download 2-8 MiB files from a hub that would send each at 8 MiB/s. The
// machine's downlink carries 1.25 times the hives' limits: the limits leave a fifth of it for
// control traffic, and without them one body overruns it. Each hive runs a worker, so its
// heartbeats share the link with the downloads.
func buildBandwidthLimit(rng *rand.Rand, k Knobs) Scenario {
	hives := max(2, pick(rng, k.Hives, 2, 3))
	sc := provisionCluster(rng, hives, max(4, pick(rng, k.WorkersPerHive, 4, 6)), pick(rng, k.Clients, 1, 2), false)
	const limit = 1 << 20
	sc.Provisioner = &ProvisionerSpec{BandwidthBytesPerSec: limit, BurstBytes: 256 << 10}
	sc.Downlinks = map[string]int64{"machine-1": int64(hives * limit * 5 / 4)}
	sc.Hub.BandwidthBytesPerSec = 8 << 20
	for i := range sc.Hub.Files {
		sc.Hub.Files[i].Spec.PayloadBytes = int64(4 * (512<<10 + rng.IntN(1536<<10)))
	}
	for h := range sc.Hives {
		sc.Hives[h].Workers = []api.WorkerSpec{{ID: fmt.Sprintf("worker-%d-1", h+1), Model: "hf:" + sc.Hub.Files[0].Repo,
			Capability: "cpu", Slots: 1}}
	}
	sc.Require = []string{markOverBurst}
	return sc
}

// buildProgress: one hive, clients asking for downloads, connection resets that make later
// attempts resume: the clients must be told "resuming from N%".
func buildProgress(rng *rand.Rand, k Knobs) Scenario {
	sc := provisionCluster(rng, 1, pick(rng, k.WorkersPerHive, 3, 6), pick(rng, k.Clients, 1, 3), false)
	sc.Require = []string{"harness: progress said resuming from N%"}
	return sc
}
