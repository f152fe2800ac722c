package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/sim"
)

// TestNetFaultsRestoreTheDefaultInOrder: nested and overlapping network faults combine while
// they last, and each end removes only its own change.
func TestNetFaultsRestoreTheDefaultInOrder(t *testing.T) {
	c := newCluster(1)
	base := c.s.Network().Default()
	c.inj.Schedule(Schedule{
		{Kind: "net-delay", At: 1 * time.Second, For: 10 * time.Second, Value: int64(100 * time.Millisecond)},
		{Kind: "net-loss", At: 2 * time.Second, For: 3 * time.Second, Value: 500},       // nested in the delay
		{Kind: "net-duplicate", At: 8 * time.Second, For: 6 * time.Second, Value: 1000}, // outlives the delay
	})
	want := func(latency time.Duration, loss, dup float64) func() string {
		return func() string {
			d := c.s.Network().Default()
			if d.Latency != latency || d.Loss != loss || d.Duplicate != dup {
				return fmt.Sprintf("default = %+v, want latency %v loss %v duplicate %v", d, latency, loss, dup)
			}
			return ""
		}
	}
	slow := linkLatency + 100*time.Millisecond
	c.checkAt(t, 1500*time.Millisecond, want(slow, 0, 0))
	c.checkAt(t, 3*time.Second, want(slow, 0.5, 0))
	c.checkAt(t, 6*time.Second, want(slow, 0, 0))
	c.checkAt(t, 9*time.Second, want(slow, 0, 1))
	c.checkAt(t, 12*time.Second, want(linkLatency, 0, 1))
	c.s.Run(15 * time.Second)
	if got := c.s.Network().Default(); got != base {
		t.Fatalf("default after every fault = %+v, want %+v", got, base)
	}
}

// TestNetLossLosesDuringAndDeliversAfter: net-loss at 1000 per mille loses every message.
func TestNetLossLosesDuringAndDeliversAfter(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "net-loss", At: time.Second, For: 5 * time.Second, Value: 1000}})
	c.kickAt(2*time.Second, "queen-1", "hive-1", 1)
	c.kickAt(7*time.Second, "queen-1", "hive-1", 2)
	c.s.Run(8 * time.Second)
	if got := c.nodes["hive-1"].pings(); !slices.Equal(got, []int{2}) {
		t.Fatalf("hive-1 got %v, want [2]", got)
	}
}

// TestNetDuplicateDeliversTwice: net-duplicate at 1000 per mille delivers every message twice.
func TestNetDuplicateDeliversTwice(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "net-duplicate", At: time.Second, For: 5 * time.Second, Value: 1000}})
	c.kickAt(2*time.Second, "queen-1", "hive-1", 1)
	c.kickAt(7*time.Second, "queen-1", "hive-1", 2)
	c.s.Run(8 * time.Second)
	if got := c.nodes["hive-1"].pings(); !slices.Equal(got, []int{1, 1, 2}) {
		t.Fatalf("hive-1 got %v, want [1 1 2]", got)
	}
}

// TestNetDelayAddsLatency: a message sent during net-delay arrives Value later.
func TestNetDelayAddsLatency(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "net-delay", At: time.Second, For: 5 * time.Second, Value: int64(100 * time.Millisecond)}})
	c.kickAt(2*time.Second, "queen-1", "hive-1", 1)
	c.kickAt(7*time.Second, "queen-1", "hive-1", 2)
	c.s.Run(8 * time.Second)
	var at []time.Duration
	for _, r := range c.nodes["hive-1"].got {
		at = append(at, r.at)
	}
	want := []time.Duration{2*time.Second + linkLatency + 100*time.Millisecond, 7*time.Second + linkLatency}
	if !slices.Equal(at, want) {
		t.Fatalf("arrivals %v, want %v", at, want)
	}
}

// TestNetReorderLetsLaterMessagesOvertake: during net-reorder a burst arrives out of order.
func TestNetReorderLetsLaterMessagesOvertake(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "net-reorder", At: time.Second, For: 5 * time.Second, Value: 1000}})
	c.checkAt(t, 2*time.Second, func() string {
		if d := c.s.Network().Default(); d.Reorder != 1 || d.ReorderDelay != reorderDelay {
			return fmt.Sprintf("default during net-reorder = %+v", d)
		}
		return ""
	})
	for i := range 20 {
		c.kickAt(2*time.Second, "queen-1", "hive-1", i)
	}
	c.s.Run(7 * time.Second)
	got := c.nodes["hive-1"].pings()
	if len(got) != 20 || slices.IsSorted(got) {
		t.Fatalf("hive-1 got %v, want all 20 pings out of order", got)
	}
	if d := c.s.Network().Default(); d != (sim.LinkConfig{Latency: linkLatency}) {
		t.Fatalf("default after net-reorder = %+v", d)
	}
}
