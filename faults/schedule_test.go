package faults

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

var allKinds = []string{
	"client-gone", "clock-drift", "clock-jump", "clock-skew", "crash-restart", "device-fault",
	"disk-clobber-header", "disk-flip", "disk-fsync-fail", "disk-full", "disk-slow", "disk-truncate",
	"engine-crash", "engine-hang", "engine-oom",
	"hub-5xx", "hub-corrupt", "hub-hang", "hub-ignore-range", "hub-rate-limit", "hub-reset",
	"net-delay", "net-duplicate", "net-loss", "net-reorder",
	"partition-isolate", "partition-oneway", "partition-split", "partition-symmetric",
	"pause", "power-fail", "power-fail-at-write", "worker-hang",
}

func TestCatalogueIsSortedAndComplete(t *testing.T) {
	var got []string
	for _, k := range Catalogue() {
		got = append(got, k.Name())
		if k.Doc() == "" {
			t.Errorf("%s has no Doc", k.Name())
		}
		if l, ok := Lookup(k.Name()); !ok || l.Name() != k.Name() {
			t.Errorf("Lookup(%q) = %v, %v", k.Name(), l, ok)
		}
	}
	if !slices.Equal(got, allKinds) {
		t.Fatalf("catalogue %v, want %v", got, allKinds)
	}
	if _, ok := Lookup("partition"); ok {
		t.Fatal("Lookup found a kind that does not exist")
	}
}

// TestEveryKindDrawsValidFaultsThatHeal: every kind draws faults that validate and respect
// maxFor, and a run with them ends with the network, the processes and the links healed.
func TestEveryKindDrawsValidFaultsThatHeal(t *testing.T) {
	const maxFor = 10 * time.Second
	for _, k := range Catalogue() {
		for seed := range uint64(30) {
			c := newCluster(seed)
			f := k.Draw(rand.New(rand.NewPCG(seed, 0)), c.t, time.Second, maxFor)
			if err := (Schedule{f}).Validate(c.t); err != nil {
				t.Fatalf("%s drew an invalid fault %+v: %v", k.Name(), f, err)
			}
			lasting := mustLookup(k.Name()).lasting()
			// For starts later (a hang, a crash point) or the target itself ends the fault (an engine hang).
			forLater := k.Name() == "worker-hang" || k.Name() == "engine-hang" || k.Name() == "power-fail-at-write" || strings.HasPrefix(k.Name(), "hub-")
			if f.Kind != k.Name() || f.At != time.Second || f.For > maxFor || (!lasting && !forLater && f.For != 0) {
				t.Fatalf("%s drew %+v", k.Name(), f)
			}
			c.inj.Schedule(Schedule{f})
			c.s.Run(time.Minute)
			checkHealed(t, c, f)
			if got := c.inj.Activated(); !reflect.DeepEqual(got, map[string]int{f.Kind: 1}) {
				t.Fatalf("after %+v: activated %v", f, got)
			}
		}
	}
}

func checkHealed(t *testing.T, c *cluster, f Fault) {
	t.Helper()
	n := c.s.Network()
	if n.Partitioned() || n.Default() != (sim.LinkConfig{Latency: linkLatency}) {
		t.Fatalf("after %+v: partitioned %v, default %+v", f, n.Partitioned(), n.Default())
	}
	for _, a := range c.s.Addrs() {
		if f.Kind == "client-gone" && a == f.Targets[0] {
			if !c.s.Gone(a) {
				t.Fatalf("after %+v: %s is not gone", f, a)
			}
			continue // gone for good, by design
		}
		if !c.s.Up(a) || c.s.Paused(a) || c.s.Clock(a).DriftPPM() != 0 {
			t.Fatalf("after %+v: %s up %v paused %v drift %d", f, a, c.s.Up(a), c.s.Paused(a), c.s.Clock(a).DriftPPM())
		}
	}
}

func TestRandomScheduleIsDeterministicAndBounded(t *testing.T) {
	topo := testTopology()
	const start, end, maxFor = 5 * time.Second, time.Minute, 20 * time.Second
	enabled := []string{"pause", "partition-isolate", "net-loss", "clock-jump", "worker-hang", "crash-restart"}
	reversed := slices.Clone(enabled)
	slices.Reverse(reversed)
	for seed := range uint64(50) {
		a := RandomSchedule(rand.New(rand.NewPCG(seed, 1)), topo, enabled, start, end, 12, maxFor)
		b := RandomSchedule(rand.New(rand.NewPCG(seed, 1)), topo, reversed, start, end, 12, maxFor)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two draws differ:\n%s\n--\n%s", seed, a.Summary(), b.Summary())
		}
		if len(a) != 12 {
			t.Fatalf("seed %d: %d faults, want 12", seed, len(a))
		}
		if err := a.Validate(topo); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for i, f := range a {
			if f.At < start || f.At >= end || f.For > maxFor || f.At+f.For > end || !slices.Contains(enabled, f.Kind) {
				t.Fatalf("seed %d: fault %d out of bounds: %+v", seed, i, f)
			}
			if i > 0 && (a[i-1].At > f.At || a[i-1].At == f.At && a[i-1].Kind > f.Kind) {
				t.Fatalf("seed %d: not sorted at %d:\n%s", seed, i, a.Summary())
			}
		}
	}
	if got := RandomSchedule(rand.New(rand.NewPCG(1, 1)), Topology{}, []string{"device-fault"}, 0, time.Minute, 3, time.Second); got != nil {
		t.Fatalf("a schedule of kinds the topology cannot host: %v", got)
	}
}

func TestSwarmPicksNonEmptySubsetsOfAvailableKinds(t *testing.T) {
	topo := testTopology()
	topo.Devices = nil
	sizes := map[int]bool{}
	for seed := range uint64(200) {
		got := Swarm(rand.New(rand.NewPCG(seed, 2)), Catalogue(), topo)
		again := Swarm(rand.New(rand.NewPCG(seed, 2)), Catalogue(), topo)
		if len(got) == 0 || !slices.Equal(got, again) || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("seed %d: swarm %v then %v", seed, got, again)
		}
		if slices.Contains(got, "device-fault") {
			t.Fatalf("seed %d: device-fault swarmed on a topology without devices", seed)
		}
		sizes[len(got)] = true
	}
	if len(sizes) < 5 || sizes[len(allKinds)] {
		t.Fatalf("swarm sizes %v do not look like coin flips over the 15 available kinds", sizes)
	}
	if got := Swarm(rand.New(rand.NewPCG(1, 2)), nil, topo); got != nil {
		t.Fatalf("swarm of no kinds = %v", got)
	}
}

func TestValidateRejectsBadFaultsNamingIndexAndField(t *testing.T) {
	ok := Fault{Kind: "pause", At: time.Second, For: time.Second, Targets: []node.Addr{"queen-1"}}
	cases := []struct {
		f    Fault
		want string
	}{
		{Fault{Kind: "meteor"}, `kind: unknown fault kind "meteor"`},
		{Fault{Kind: "pause", At: -1, Targets: []node.Addr{"queen-1"}}, "at: -1ns is negative"},
		{Fault{Kind: "pause", For: -time.Second, Targets: []node.Addr{"queen-1"}}, "for: -1s is negative"},
		{Fault{Kind: "pause", Targets: []node.Addr{"queen-9"}}, `targets[0]: "queen-9" is not a queen or hive`},
		{Fault{Kind: "crash-restart", Targets: []node.Addr{"client-1"}}, `targets[0]: "client-1" is not a queen or hive`},
		{Fault{Kind: "partition-symmetric", Targets: []node.Addr{"queen-1"}}, "targets: partition-symmetric needs 2 target(s), got 1"},
		{Fault{Kind: "partition-oneway", Targets: []node.Addr{"hive-1", "hive-1"}}, `targets[1]: "hive-1" is also targets[0]`},
		{Fault{Kind: "partition-split", Groups: [][]node.Addr{{"hive-1"}, {"hive-1"}}}, `groups[1][0]: "hive-1" is also in groups[0]`},
		{Fault{Kind: "partition-split", Groups: [][]node.Addr{{"hive-1"}}}, "groups: partition-split needs 2 to 3 groups, got 1"},
		{Fault{Kind: "partition-isolate", Targets: []node.Addr{"hive-1"}, Value: 3}, "value: partition-isolate does not use value"},
		{Fault{Kind: "clock-drift", Targets: []node.Addr{"hive-1"}, Value: 300_000}, "value: 300000 is outside [-200000, 200000] ppm"},
		{Fault{Kind: "clock-jump", For: time.Second, Targets: []node.Addr{"hive-1"}}, "for: clock-jump does not use for"},
		{Fault{Kind: "net-loss", Value: 1001}, "value: 1001 is outside [0, 1000] per-mille"},
		{Fault{Kind: "net-delay", Targets: []node.Addr{"hive-1"}}, "targets: net-delay does not use targets"},
		{Fault{Kind: "device-fault", Targets: []node.Addr{"hive-2"}, Device: "cuda:0"}, `device: "cuda:0" is not a device of hive "hive-2"`},
		{Fault{Kind: "worker-hang", Targets: []node.Addr{"queen-1"}, Worker: "w-1"}, `targets[0]: "queen-1" is not a hive`},
		{Fault{Kind: "power-fail", Targets: []node.Addr{"queen-1"}}, `machine "q" of "queen-1" also runs client "client-1"`},
	}
	topo := testTopology()
	topo.Machines["queen-1"], topo.Machines["client-1"] = "q", "q"
	for _, tc := range cases {
		err := Schedule{ok, tc.f}.Validate(topo)
		if err == nil || !strings.Contains(err.Error(), "fault 1 ("+tc.f.Kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want fault 1 and %q", tc.f, err, tc.want)
		}
	}
	if err := (Schedule{ok}).Validate(topo); err != nil {
		t.Fatalf("a good schedule: %v", err)
	}
}

func TestScheduleRoundTripsThroughJSON(t *testing.T) {
	sch := RandomSchedule(rand.New(rand.NewPCG(3, 3)), testTopology(), allKinds, 0, time.Minute, 40, 10*time.Second)
	b, err := json.Marshal(sch)
	if err != nil {
		t.Fatal(err)
	}
	var back Schedule
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sch, back) {
		t.Fatalf("round trip changed the schedule:\n%s\n--\n%s", sch.Summary(), back.Summary())
	}
	if !strings.Contains(string(b), `"kind":"`) || !strings.Contains(string(b), `"at":`) {
		t.Fatalf("unexpected JSON %s", b)
	}
}

func TestSummaryIsOneReadableLinePerFault(t *testing.T) {
	sch := Schedule{
		{Kind: "partition-isolate", At: 12500 * time.Millisecond, For: 30 * time.Second, Targets: []node.Addr{"queen-1"}},
		{Kind: "partition-oneway", At: time.Second, For: time.Second, Targets: []node.Addr{"queen-1", "hive-1"}},
		{Kind: "partition-split", At: time.Second, For: time.Second, Groups: [][]node.Addr{{"a", "b"}, {"c"}}},
		{Kind: "net-loss", At: time.Second, For: time.Second, Value: 50},
		{Kind: "net-delay", At: time.Second, For: time.Second, Value: int64(200 * time.Millisecond)},
		{Kind: "clock-jump", At: time.Second, Targets: []node.Addr{"hive-1"}, Value: int64(-30 * time.Second)},
		{Kind: "clock-drift", At: time.Second, For: time.Minute, Targets: []node.Addr{"hive-1"}, Value: 1000},
		{Kind: "power-fail", At: time.Second, For: time.Second, Targets: []node.Addr{"hive-1"}},
		{Kind: "device-fault", At: time.Second, Targets: []node.Addr{"hive-1"}, Device: "cuda:0"},
		{Kind: "worker-hang", At: time.Second, For: time.Second, Targets: []node.Addr{"hive-1"}, Worker: "w-1"},
	}
	want := strings.Join([]string{
		"12.5s partition-isolate queen-1 for 30s",
		"1s partition-oneway queen-1 -> hive-1 for 1s",
		"1s partition-split [a b] | [c] for 1s",
		"1s net-loss loss 5% for 1s",
		"1s net-delay +200ms for 1s",
		"1s clock-jump hive-1 -30s",
		"1s clock-drift hive-1 +1000ppm for 1m0s",
		"1s power-fail hive-1's machine for 1s",
		"1s device-fault hive-1 cuda:0",
		"1s worker-hang hive-1 w-1 for 1s",
	}, "\n")
	if got := sch.Summary(); got != want {
		t.Fatalf("summary:\n%s\nwant:\n%s", got, want)
	}
}

// TestInjectorNamesActionsAndCountsActivations: only faults whose start ran count.
func TestInjectorNamesActionsAndCountsActivations(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{
		{Kind: "partition-isolate", At: time.Second, For: time.Second, Targets: []node.Addr{"queen-1"}},
		{Kind: "partition-isolate", At: 2 * time.Second, For: time.Second, Targets: []node.Addr{"hive-1"}},
		{Kind: "crash-restart", At: 3 * time.Second, For: time.Second, Targets: []node.Addr{"hive-1"}},
		{Kind: "pause", At: time.Hour, For: time.Second, Targets: []node.Addr{"hive-1"}},
	})
	c.s.Run(time.Minute)
	want := map[string]int{"partition-isolate": 2, "crash-restart": 1}
	if got := c.inj.Activated(); !reflect.DeepEqual(got, want) {
		t.Fatalf("activated %v, want %v", got, want)
	}
	trace := strings.Join(c.s.Trace().Lines(), "\n")
	for _, name := range []string{"fault partition-isolate start queen-1", "fault partition-isolate end queen-1",
		"fault crash-restart end hive-1"} {
		if !strings.Contains(trace, name) {
			t.Errorf("no action %q in the trace", name)
		}
	}
}

// TestSameScheduleSameTraceHash: a random schedule on the same seed replays exactly.
func TestSameScheduleSameTraceHash(t *testing.T) {
	run := func() uint64 {
		c := newCluster(9)
		sch := RandomSchedule(c.s.Stream(sim.StreamFaults), c.t, allKinds, 0, 30*time.Second, 30, 5*time.Second)
		c.inj.Schedule(sch)
		for i := range 300 {
			ns := c.t.nodes()
			c.kickAt(time.Duration(i)*100*time.Millisecond, ns[i%len(ns)], ns[(i+1)%len(ns)], i)
		}
		c.s.Run(time.Minute)
		return c.s.Trace().Hash()
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("same seed and schedule gave hashes %x and %x", a, b)
	}
}

// TestHealAllEndsActiveFaultsOnce: HealAll ends what is active, the scheduled ends then do
// nothing, and faults that have not started yet still start.
func TestHealAllEndsActiveFaultsOnce(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{
		{Kind: "partition-isolate", At: time.Second, For: time.Minute, Targets: []node.Addr{"queen-1"}},
		{Kind: "net-delay", At: time.Second, For: time.Minute, Value: int64(time.Second)},
		{Kind: "crash-restart", At: time.Second, For: time.Minute, Targets: []node.Addr{"hive-1"}},
		{Kind: "pause", At: time.Second, For: time.Minute, Targets: []node.Addr{"hive-2"}},
		{Kind: "clock-drift", At: time.Second, For: time.Minute, Targets: []node.Addr{"hive-2"}, Value: 1000},
		{Kind: "crash-restart", At: 40 * time.Second, For: time.Second, Targets: []node.Addr{"hive-1"}},
	})
	c.s.Run(10 * time.Second)
	c.inj.HealAll()
	c.s.Run(11 * time.Second)
	if n := c.s.Network(); n.Partitioned() || n.Default().Latency != linkLatency || !c.s.Up("hive-1") ||
		c.s.Paused("hive-2") || c.s.Clock("hive-2").DriftPPM() != 0 {
		t.Fatalf("after HealAll: partitioned %v default %+v hive-1 up %v hive-2 paused %v",
			n.Partitioned(), n.Default(), c.s.Up("hive-1"), c.s.Paused("hive-2"))
	}
	c.s.Run(2 * time.Minute)
	if c.nodes["hive-1"].starts != 3 || c.s.Crashes("hive-1") != 2 {
		t.Fatalf("hive-1 started %d times and crashed %d, want 3 and 2", c.nodes["hive-1"].starts, c.s.Crashes("hive-1"))
	}
	checkHealed(t, c, Fault{Kind: "heal-all"})
}
