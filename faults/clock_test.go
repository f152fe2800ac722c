package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// TestClockSkewShiftsEnvNowThenIsUndone.
func TestClockSkewShiftsEnvNowThenIsUndone(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "clock-skew", At: time.Second, For: 10 * time.Second,
		Targets: []node.Addr{"hive-1"}, Value: int64(5 * time.Second)}})
	c.stampAt(2*time.Second, "hive-1")
	c.stampAt(12*time.Second, "hive-1")
	c.s.Run(13 * time.Second)
	want := []time.Duration{7 * time.Second, 12 * time.Second}
	if got := c.stamps("hive-1"); !slices.Equal(got, want) {
		t.Fatalf("hive-1 clock read %v, want %v", got, want)
	}
}

// TestClockDriftRunsFastThenRestoresTheOldDrift, with a nested drift that ends first.
func TestClockDriftRunsFastThenRestoresTheOldDrift(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{
		{Kind: "clock-drift", At: 1 * time.Second, For: 10 * time.Second, Targets: []node.Addr{"hive-1"}, Value: 100_000},
		{Kind: "clock-drift", At: 3 * time.Second, For: 2 * time.Second, Targets: []node.Addr{"hive-1"}, Value: -50_000},
	})
	drift := func(want int64) func() string {
		return func() string {
			if got := c.s.Clock("hive-1").DriftPPM(); got != want {
				return fmt.Sprintf("drift %d ppm, want %d", got, want)
			}
			return ""
		}
	}
	c.checkAt(t, 4*time.Second, drift(-50_000))
	c.checkAt(t, 6*time.Second, drift(100_000))
	c.checkAt(t, 12*time.Second, drift(0))
	c.stampAt(12*time.Second, "hive-1")
	c.s.Run(13 * time.Second)
	// 2s at +10%, 2s at -5%, 6s at +10%: 800ms - 100ms = 700ms ahead.
	if got := c.stamps("hive-1"); !slices.Equal(got, []time.Duration{12*time.Second + 700*time.Millisecond}) {
		t.Fatalf("hive-1 clock read %v, want [12.7s]", got)
	}
}

// TestClockJumpMovesEnvNowBackwardsForGood.
func TestClockJumpMovesEnvNowBackwardsForGood(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "clock-jump", At: 2 * time.Second, Targets: []node.Addr{"queen-1"}, Value: int64(-30 * time.Second)}})
	for _, at := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second} {
		c.stampAt(at, "queen-1")
	}
	c.s.Run(11 * time.Second)
	want := []time.Duration{time.Second, -27 * time.Second, -20 * time.Second}
	if got := c.stamps("queen-1"); !slices.Equal(got, want) {
		t.Fatalf("queen-1 clock read %v, want %v", got, want)
	}
}
