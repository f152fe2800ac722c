package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

type pair struct{ from, to node.Addr }

// TestPartitionKindsCutDuringAndHealAfter covers each partition kind: the links it cuts lose
// messages while it lasts, the others keep working, and after For every link works again.
func TestPartitionKindsCutDuringAndHealAfter(t *testing.T) {
	cases := []struct {
		f         Fault
		cut, open []pair
	}{
		{Fault{Kind: "partition-symmetric", Targets: []node.Addr{"queen-1", "hive-1"}},
			[]pair{{"queen-1", "hive-1"}, {"hive-1", "queen-1"}}, []pair{{"queen-1", "hive-2"}}},
		{Fault{Kind: "partition-oneway", Targets: []node.Addr{"queen-1", "hive-1"}},
			[]pair{{"queen-1", "hive-1"}}, []pair{{"hive-1", "queen-1"}}},
		{Fault{Kind: "partition-isolate", Targets: []node.Addr{"hive-1"}},
			[]pair{{"queen-1", "hive-1"}, {"hive-1", "queen-1"}, {"hive-1", "client-1"}, {"hive-2", "hive-1"}},
			[]pair{{"queen-1", "hive-2"}, {"client-1", "queen-1"}}},
		{Fault{Kind: "partition-split", Groups: [][]node.Addr{{"hive-1", "queen-1"}, {"client-1", "hive-2"}}},
			[]pair{{"queen-1", "hive-2"}, {"client-1", "hive-1"}, {"hive-2", "queen-1"}},
			[]pair{{"queen-1", "hive-1"}, {"hive-2", "client-1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.f.Kind, func(t *testing.T) {
			c := newCluster(1)
			tc.f.At, tc.f.For = time.Second, 10*time.Second
			c.inj.Schedule(Schedule{tc.f})
			want := map[node.Addr][]int{}
			n := 0
			send := func(at time.Duration, ps []pair, delivered bool) {
				for _, p := range ps {
					n++
					c.kickAt(at, p.from, p.to, n)
					if delivered {
						want[p.to] = append(want[p.to], n)
					}
				}
			}
			send(2*time.Second, tc.cut, false)
			send(2*time.Second, tc.open, true)
			send(12*time.Second, tc.cut, true)
			c.s.Run(13 * time.Second)
			for _, a := range c.t.nodes() {
				if got := c.nodes[a].pings(); !slices.Equal(got, want[a]) {
					t.Errorf("%s got pings %v, want %v", a, got, want[a])
				}
			}
			if c.s.Network().Partitioned() {
				t.Errorf("links still cut after the fault ended")
			}
		})
	}
}

// TestOverlappingPartitionsHealIndependently: the end of one partition keeps the links that a
// later one, or code outside this package, still cuts.
func TestOverlappingPartitionsHealIndependently(t *testing.T) {
	c := newCluster(1)
	c.s.Network().Block("client-1", "queen-1") // cut by someone else, before any fault
	c.inj.Schedule(Schedule{
		{Kind: "partition-oneway", At: 1 * time.Second, For: 4 * time.Second, Targets: []node.Addr{"queen-1", "hive-1"}},
		{Kind: "partition-symmetric", At: 2 * time.Second, For: 8 * time.Second, Targets: []node.Addr{"hive-1", "queen-1"}},
		{Kind: "partition-isolate", At: 3 * time.Second, For: 12 * time.Second, Targets: []node.Addr{"hive-1"}},
		{Kind: "partition-oneway", At: 4 * time.Second, For: 2 * time.Second, Targets: []node.Addr{"client-1", "queen-1"}},
	})
	blocked := func(want bool, ps ...pair) func() string {
		return func() string {
			for _, p := range ps {
				if got := c.s.Network().Blocked(p.from, p.to); got != want {
					return fmt.Sprintf("%s -> %s blocked = %v, want %v", p.from, p.to, got, want)
				}
			}
			return ""
		}
	}
	qh, hq, cq, qc := pair{"queen-1", "hive-1"}, pair{"hive-1", "queen-1"}, pair{"client-1", "queen-1"}, pair{"queen-1", "client-1"}
	c.checkAt(t, 6*time.Second, blocked(true, qh, hq, cq)) // oneway ended; sym and isolate remain
	c.checkAt(t, 6*time.Second, blocked(false, qc))
	c.checkAt(t, 11*time.Second, blocked(true, qh, hq, cq)) // sym ended; isolate remains
	c.checkAt(t, 16*time.Second, blocked(false, qh, hq))    // all faults ended
	c.checkAt(t, 16*time.Second, blocked(true, cq))         // the outside block stays
	c.kickAt(12*time.Second, "queen-1", "hive-1", 1)
	c.kickAt(16*time.Second, "queen-1", "hive-1", 2)
	c.s.Run(17 * time.Second)
	if got := c.nodes["hive-1"].pings(); !slices.Equal(got, []int{2}) {
		t.Fatalf("hive-1 got %v, want only the ping sent after every partition ended", got)
	}
}

// TestKindInjectAppliesNowAndHealsAfterFor: the standalone form of a fault, outside a schedule.
func TestKindInjectAppliesNowAndHealsAfterFor(t *testing.T) {
	c := newCluster(1)
	k, _ := Lookup("partition-isolate")
	c.s.Run(time.Second)
	k.Inject(c.s, c.t, Fault{Kind: k.Name(), At: time.Hour, For: 5 * time.Second, Targets: []node.Addr{"queen-1"}})
	if !c.s.Network().Blocked("hive-1", "queen-1") {
		t.Fatal("Inject did not cut queen-1 off at once")
	}
	c.s.Run(7 * time.Second)
	if c.s.Network().Partitioned() {
		t.Fatal("the partition did not heal after For")
	}
}
