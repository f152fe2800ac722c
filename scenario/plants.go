package scenario

// PlantCase pairs a planted bug with the scenario whose checkers must catch it, within a budget
// of seeds (1..Seeds).
type PlantCase struct {
	Plant, Scenario string
	Seeds           uint64
}

// PlantCases are the planted bugs and the scenarios that catch them: the plant tests in
// properties and the canary (rbee-sim canary) both run them. Every plant of orch/plant.Known
// must have one.
func PlantCases() []PlantCase {
	return []PlantCase{
		{Plant: "registry-lost-update", Scenario: "registry/concurrent-state-update", Seeds: 10},
		{Plant: "registry-stale-routing", Scenario: "registry/persistence", Seeds: 30},
		{Plant: "catalog-no-dedupe", Scenario: "catalog/concurrent-registration", Seeds: 10},
		{Plant: "catalog-delete-corrupt", Scenario: "catalog/corruption-recovery", Seeds: 10},
		{Plant: "catalog-ack-before-commit", Scenario: "catalog/disk-faults", Seeds: 60},
		{Plant: "provisioner-double-download", Scenario: "provisioner/single-flight", Seeds: 10},
		{Plant: "provisioner-ignore-retry-after", Scenario: "provisioner/rate-limit-429", Seeds: 10},
		{Plant: "provisioner-resume-wrong-offset", Scenario: "provisioner/resume", Seeds: 30},
		{Plant: "provisioner-retry-terminal", Scenario: "provisioner/hub-errors", Seeds: 5},
		{Plant: "provisioner-skip-checksum", Scenario: "provisioner/gguf-validation", Seeds: 10},
		{Plant: "provisioner-ignore-bandwidth-limit", Scenario: "provisioner/bandwidth-limit", Seeds: 5},
		{Plant: "provisioner-progress-percent-of-attempt", Scenario: "provisioner/progress", Seeds: 10},
		{Plant: "worker-slot-leak-on-cancel", Scenario: "inference/cancel", Seeds: 10},
		{Plant: "failover-duplicate-tokens", Scenario: "e2e/failover", Seeds: 10},
		{Plant: "queen-route-to-draining", Scenario: "e2e/rolling-update", Seeds: 10},
		{Plant: "queen-ignore-client-gone", Scenario: "inference/client-disconnect", Seeds: 10},
		{Plant: "keeper-no-backoff", Scenario: "inference/worker-busy-retry", Seeds: 5},
	}
}
