package scenario

import "math/rand/v2"

// buildBandwidthLimit: see the provisioner/bandwidth-limit entry.
func buildBandwidthLimit(rng *rand.Rand, k Knobs) Scenario {
	return oneHubFault(rng, k, "download resumed")
}

// buildProgress: see the provisioner/progress entry.
func buildProgress(rng *rand.Rand, k Knobs) Scenario {
	return oneHubFault(rng, k, "download resumed")
}
