package properties

import (
	"crypto/rand"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// checks is how many scenarios each property draws: RBEE_CHECKS, default 40.
func checks() int {
	if v, err := strconv.Atoi(os.Getenv("RBEE_CHECKS")); err == nil && v > 0 {
		return v
	}
	return 40
}

func TestMain(m *testing.M) {
	// SQLite draws journal nonces from crypto/rand: make them deterministic, as rbee-sim does.
	rand.Reader = sqlitevfs.DeterministicRandom(0)
	flag.Parse()
	if f := flag.Lookup("rapid.checks"); f != nil && !isSet("rapid.checks") {
		f.Value.Set(strconv.Itoa(checks()))
	}
	os.Exit(m.Run())
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// drawScenario draws a scenario of the catalogue entry: a seed, small knobs, and a fault
// schedule drawn fault by fault, so rapid shrinks to fewer and smaller faults.
func drawScenario(t *rapid.T, e scenario.Entry) scenario.Scenario {
	seed := rapid.Uint64Range(1, 1<<40).Draw(t, "seed")
	k := scenario.Knobs{
		Hives:          rapid.IntRange(1, 3).Draw(t, "hives"),
		WorkersPerHive: rapid.IntRange(1, 4).Draw(t, "workers_per_hive"),
		Clients:        rapid.IntRange(1, 6).Draw(t, "clients"),
		Faults:         1,
	}
	sc := e.Generate(seed, k)
	kinds := e.AvailableKinds(sc)
	if len(kinds) == 0 {
		return sc
	}
	topo := sc.Topology()
	n := rapid.IntRange(0, 10).Draw(t, "faults")
	var sch faults.Schedule
	for i := 0; i < n; i++ {
		kind := rapid.SampledFrom(kinds).Draw(t, fmt.Sprintf("fault%d_kind", i))
		atS := rapid.IntRange(5, int(sc.Chaos/time.Second)-65).Draw(t, fmt.Sprintf("fault%d_at_s", i))
		forS := rapid.IntRange(1, 60).Draw(t, fmt.Sprintf("fault%d_for_s", i))
		detail := rapid.Uint64().Draw(t, fmt.Sprintf("fault%d_detail", i))
		kd, _ := faults.Lookup(kind)
		f := kd.Draw(mrand.New(mrand.NewPCG(detail, 0)), topo, time.Duration(atS)*time.Second, time.Duration(forS)*time.Second)
		sch = append(sch, f)
	}
	// Keep the scenario's own guaranteed faults (a scenario about a fault needs that fault).
	for _, f := range sc.Faults {
		if len(sc.Require) > 0 {
			sch = append(sch, f)
		}
	}
	sc.Faults = sch
	return sc
}

// failureRoot is where shrunk failing scenarios go: the test's artifact folder when go test
// was given -artifacts, else a folder under the system's temp dir.
func failureRoot(t *testing.T) string {
	if dir := os.Getenv("RBEE_FAILURE_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(os.TempDir(), "rbee-sim-failures")
}

// checkScenario is the property: the drawn scenario runs and every checker holds. On failure
// it writes the scenario (rapid's last failing call is the shrunk one) and the replay command.
func checkScenario(t *testing.T, id string) {
	e, err := scenario.Lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	root := failureRoot(t)
	rapid.Check(t, func(rt *rapid.T) {
		sc := drawScenario(rt, e)
		if err := sc.Validate(); err != nil {
			rt.Fatalf("drew an invalid scenario (a bug in the generator): %v", err)
		}
		res := scenario.Run(sc, scenario.Options{})
		if res.Passed {
			return
		}
		c := res.FirstFailure()
		if c.Stage == "assumptions" && len(sc.Faults) > 0 {
			// The drawn faults made the run vacuous (every worker down when the path it is
			// about comes up): an invalid case, not a pass and not a failure. rapid draws
			// another, and fails the test if too many are invalid. Runs of the scenario's own
			// schedule must be valid: the CLI sweep in CI fails on any invalid run.
			rt.Skipf("invalid case discarded: %s: %s", c.Name, c.Detail)
		}
		file, werr := reports.WriteFolder(reports.FailureDir(root, sc), sc, &res)
		if werr != nil {
			rt.Fatalf("%s seed %d failed [%s] %s: %s (and the report could not be written: %v)", sc.ID, sc.Seed, c.Stage, c.Name, c.Detail, werr)
		}
		rt.Fatalf("%s seed %d failed [%s] %s: %s\n  replay: %s", sc.ID, sc.Seed, c.Stage, c.Name, c.Detail,
			reports.ReplayCommand(sc, file))
	})
}

// TestRegistryLinearizable covers registry/linearizable.
func TestRegistryLinearizable(t *testing.T) { checkScenario(t, "registry/linearizable") }

// TestRegistryHeartbeatTimeoutBusy covers registry/heartbeat-timeout-busy.
func TestRegistryHeartbeatTimeoutBusy(t *testing.T) {
	checkScenario(t, "registry/heartbeat-timeout-busy")
}

// TestRegistryOverflow covers registry/overflow.
func TestRegistryOverflow(t *testing.T) { checkScenario(t, "registry/overflow") }

// TestRegistryConcurrentStateUpdate covers registry/concurrent-state-update.
func TestRegistryConcurrentStateUpdate(t *testing.T) {
	checkScenario(t, "registry/concurrent-state-update")
}

// TestRegistryCapabilityChange covers registry/capability-change.
func TestRegistryCapabilityChange(t *testing.T) { checkScenario(t, "registry/capability-change") }

// TestRegistryPersistence covers registry/persistence.
func TestRegistryPersistence(t *testing.T) { checkScenario(t, "registry/persistence") }

// TestCatalogConcurrentRegistration covers catalog/concurrent-registration.
func TestCatalogConcurrentRegistration(t *testing.T) {
	checkScenario(t, "catalog/concurrent-registration")
}

// TestCatalogCorruptionRecovery covers catalog/corruption-recovery.
func TestCatalogCorruptionRecovery(t *testing.T) { checkScenario(t, "catalog/corruption-recovery") }

// TestCatalogOrphanCleanup covers catalog/orphan-cleanup.
func TestCatalogOrphanCleanup(t *testing.T) { checkScenario(t, "catalog/orphan-cleanup") }

// TestCatalogLargeQuery covers catalog/large-query.
func TestCatalogLargeQuery(t *testing.T) { checkScenario(t, "catalog/large-query") }

// TestCatalogBackupRestore covers catalog/backup-restore.
func TestCatalogBackupRestore(t *testing.T) { checkScenario(t, "catalog/backup-restore") }

// TestCatalogSchemaMigration covers catalog/schema-migration.
func TestCatalogSchemaMigration(t *testing.T) { checkScenario(t, "catalog/schema-migration") }

// TestCatalogDiskFaults covers catalog/disk-faults.
func TestCatalogDiskFaults(t *testing.T) { checkScenario(t, "catalog/disk-faults") }

// TestProvisionerSingleFlight covers provisioner/single-flight.
func TestProvisionerSingleFlight(t *testing.T) { checkScenario(t, "provisioner/single-flight") }

// TestProvisionerResume covers provisioner/resume.
func TestProvisionerResume(t *testing.T) { checkScenario(t, "provisioner/resume") }

// TestProvisionerRateLimit429 covers provisioner/rate-limit-429.
func TestProvisionerRateLimit429(t *testing.T) { checkScenario(t, "provisioner/rate-limit-429") }

// TestProvisionerGGUFValidation covers provisioner/gguf-validation.
func TestProvisionerGGUFValidation(t *testing.T) { checkScenario(t, "provisioner/gguf-validation") }

// TestProvisionerHubErrors covers provisioner/hub-errors.
func TestProvisionerHubErrors(t *testing.T) { checkScenario(t, "provisioner/hub-errors") }

// TestProvisionerBandwidthLimit covers provisioner/bandwidth-limit.
func TestProvisionerBandwidthLimit(t *testing.T) { checkScenario(t, "provisioner/bandwidth-limit") }

// TestProvisionerProgress covers provisioner/progress.
func TestProvisionerProgress(t *testing.T) { checkScenario(t, "provisioner/progress") }

// TestInferenceEos covers inference/eos.
func TestInferenceEos(t *testing.T) { checkScenario(t, "inference/eos") }

// TestInferenceConcurrentSlots covers inference/concurrent-slots.
func TestInferenceConcurrentSlots(t *testing.T) { checkScenario(t, "inference/concurrent-slots") }

// TestInferenceCancel covers inference/cancel.
func TestInferenceCancel(t *testing.T) { checkScenario(t, "inference/cancel") }

// TestInferenceClientDisconnect covers inference/client-disconnect.
func TestInferenceClientDisconnect(t *testing.T) { checkScenario(t, "inference/client-disconnect") }

// TestInferenceTimeout covers inference/timeout.
func TestInferenceTimeout(t *testing.T) { checkScenario(t, "inference/timeout") }

// TestInferenceWorkerBusyRetry covers inference/worker-busy-retry.
func TestInferenceWorkerBusyRetry(t *testing.T) { checkScenario(t, "inference/worker-busy-retry") }

// TestE2ELoadBalancing covers e2e/load-balancing.
func TestE2ELoadBalancing(t *testing.T) { checkScenario(t, "e2e/load-balancing") }

// TestE2EFailover covers e2e/failover.
func TestE2EFailover(t *testing.T) { checkScenario(t, "e2e/failover") }

// TestE2ERollingUpdate covers e2e/rolling-update.
func TestE2ERollingUpdate(t *testing.T) { checkScenario(t, "e2e/rolling-update") }

// TestE2EDeadlines covers e2e/deadlines.
func TestE2EDeadlines(t *testing.T) { checkScenario(t, "e2e/deadlines") }

// TestLifecycleWorkerStart covers lifecycle/worker-start.
func TestLifecycleWorkerStart(t *testing.T) { checkScenario(t, "lifecycle/worker-start") }

// TestLifecycleCrashDetection covers lifecycle/crash-detection.
func TestLifecycleCrashDetection(t *testing.T) { checkScenario(t, "lifecycle/crash-detection") }

// TestInferenceStall covers inference/stall.
func TestInferenceStall(t *testing.T) { checkScenario(t, "inference/stall") }

// TestLifecycleShutdown covers lifecycle/shutdown.
func TestLifecycleShutdown(t *testing.T) { checkScenario(t, "lifecycle/shutdown") }

// TestLifecycleIdleTimeout covers lifecycle/idle-timeout.
func TestLifecycleIdleTimeout(t *testing.T) { checkScenario(t, "lifecycle/idle-timeout") }

// TestLifecycleStartFailures covers lifecycle/start-failures.
func TestLifecycleStartFailures(t *testing.T) { checkScenario(t, "lifecycle/start-failures") }

// TestE2EColdStart covers e2e/cold-start.
func TestE2EColdStart(t *testing.T) { checkScenario(t, "e2e/cold-start") }

// TestE2EGracefulShutdown covers e2e/graceful-shutdown.
func TestE2EGracefulShutdown(t *testing.T) { checkScenario(t, "e2e/graceful-shutdown") }

// TestValidationBatchSize covers validation/batch-size.
func TestValidationBatchSize(t *testing.T) { checkScenario(t, "validation/batch-size") }

// TestValidationMaxTokens covers validation/max-tokens.
func TestValidationMaxTokens(t *testing.T) { checkScenario(t, "validation/max-tokens") }

// TestValidationPromptInjection covers validation/prompt-injection.
func TestValidationPromptInjection(t *testing.T) { checkScenario(t, "validation/prompt-injection") }

// TestDeterminism: the same scenario twice gives the same trace hash; another seed another.
func TestDeterminism(t *testing.T) {
	for _, e := range scenario.Catalogue() {
		t.Run(e.ID, func(t *testing.T) {
			sc := e.Generate(42, scenario.Knobs{})
			a := scenario.Run(sc, scenario.Options{})
			b := scenario.Run(sc, scenario.Options{})
			if a.TraceHash != b.TraceHash || a.Events != b.Events {
				t.Fatalf("same scenario, two runs: hashes %s and %s, events %d and %d", a.TraceHash, b.TraceHash, a.Events, b.Events)
			}
			c := scenario.Run(e.Generate(43, scenario.Knobs{}), scenario.Options{})
			if c.TraceHash == a.TraceHash {
				t.Fatalf("seeds 42 and 43 gave the same trace hash %s", a.TraceHash)
			}
		})
	}
}
