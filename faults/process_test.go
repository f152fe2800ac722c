package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

func (c *cluster) wantUp(want bool, addrs ...node.Addr) func() string {
	return func() string {
		for _, a := range addrs {
			if c.s.Up(a) != want {
				return fmt.Sprintf("%s up = %v, want %v", a, !want, want)
			}
		}
		return ""
	}
}

// TestCrashRestartRestartsAfterFor: the node is down for For, then starts again; messages to it
// meanwhile are lost.
func TestCrashRestartRestartsAfterFor(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "crash-restart", At: time.Second, For: 5 * time.Second, Targets: []node.Addr{"hive-1"}}})
	c.checkAt(t, 3*time.Second, c.wantUp(false, "hive-1"))
	c.kickAt(3*time.Second, "queen-1", "hive-1", 1)
	c.kickAt(7*time.Second, "queen-1", "hive-1", 2)
	c.s.Run(8 * time.Second)
	h := c.nodes["hive-1"]
	if h.starts != 2 || c.s.Crashes("hive-1") != 1 || !c.s.Up("hive-1") {
		t.Fatalf("starts %d crashes %d up %v, want 2, 1, true", h.starts, c.s.Crashes("hive-1"), c.s.Up("hive-1"))
	}
	if got := h.pings(); !slices.Equal(got, []int{2}) {
		t.Fatalf("hive-1 got %v, want [2]", got)
	}
}

// TestOverlappingCrashesKeepTheNodeDownUntilTheLastEnds, and a node that had not started yet
// is not started early by a crash's end.
func TestOverlappingCrashesKeepTheNodeDownUntilTheLastEnds(t *testing.T) {
	c := newCluster(1)
	late := c.add("queen-2", "queen-2", 10*time.Second)
	c.t.Queens = append(c.t.Queens, "queen-2")
	c.inj = NewInjector(c.s, c.t)
	c.inj.Schedule(Schedule{
		{Kind: "crash-restart", At: 1 * time.Second, For: 5 * time.Second, Targets: []node.Addr{"hive-2"}},
		{Kind: "crash-restart", At: 3 * time.Second, For: 10 * time.Second, Targets: []node.Addr{"hive-2"}},
		{Kind: "crash-restart", At: 1 * time.Second, For: 2 * time.Second, Targets: []node.Addr{"queen-2"}},
	})
	c.checkAt(t, 7*time.Second, c.wantUp(false, "hive-2", "queen-2"))
	c.checkAt(t, 14*time.Second, c.wantUp(true, "hive-2", "queen-2"))
	c.s.Run(15 * time.Second)
	if c.nodes["hive-2"].starts != 2 || c.s.Crashes("hive-2") != 1 || late.starts != 1 {
		t.Fatalf("hive-2 started %d times, crashed %d; queen-2 started %d; want 2, 1, 1",
			c.nodes["hive-2"].starts, c.s.Crashes("hive-2"), late.starts)
	}
}

// TestPowerFailCrashesTheMachineAndRestartsItsProcesses: every process on the machine goes
// down, even one the topology does not list, unsynced writes are lost, and all restart after
// For; an overlapping crash cannot restart a process while its machine has no power.
func TestPowerFailCrashesTheMachineAndRestartsItsProcesses(t *testing.T) {
	c := newCluster(1)
	worker := c.add("worker-x", "rack-1", 0)
	c.s.At(500*time.Millisecond, "write", func() {
		f, _ := c.s.Disk("rack-1").Open("unsynced", true)
		f.WriteAt([]byte("x"), 0)
	})
	c.inj.Schedule(Schedule{
		{Kind: "crash-restart", At: 800 * time.Millisecond, For: 2 * time.Second, Targets: []node.Addr{"hive-2"}},
		{Kind: "power-fail", At: time.Second, For: 5 * time.Second, Targets: []node.Addr{"hive-1"}},
	})
	c.checkAt(t, 3*time.Second, c.wantUp(false, "hive-1", "hive-2", "worker-x"))
	c.checkAt(t, 3*time.Second, c.wantUp(true, "queen-1", "client-1"))
	c.checkAt(t, 3*time.Second, func() string {
		if _, err := c.s.Disk("rack-1").Open("unsynced", false); !node.IsNotExist(err) {
			return fmt.Sprintf("an unsynced file survived the power failure: %v", err)
		}
		return ""
	})
	c.s.Run(7 * time.Second)
	if !c.s.Up("hive-1") || !c.s.Up("hive-2") || worker.starts != 2 || c.nodes["hive-2"].starts != 2 {
		t.Fatalf("after power returns: hive-1 up %v, hive-2 up %v (starts %d), worker-x starts %d",
			c.s.Up("hive-1"), c.s.Up("hive-2"), c.nodes["hive-2"].starts, worker.starts)
	}
}

// TestPauseHoldsMessagesUntilResume: a paused node handles what it missed when it resumes.
func TestPauseHoldsMessagesUntilResume(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{
		{Kind: "pause", At: time.Second, For: 5 * time.Second, Targets: []node.Addr{"hive-1"}},
		{Kind: "pause", At: 2 * time.Second, For: 1 * time.Second, Targets: []node.Addr{"hive-1"}},
	})
	c.kickAt(2*time.Second, "queen-1", "hive-1", 1)
	c.checkAt(t, 4*time.Second, func() string {
		if !c.s.Paused("hive-1") || len(c.nodes["hive-1"].got) != 0 {
			return fmt.Sprintf("paused %v, handled %v", c.s.Paused("hive-1"), c.nodes["hive-1"].got)
		}
		return ""
	})
	c.s.Run(7 * time.Second)
	got := c.nodes["hive-1"].got
	if len(got) != 1 || got[0].at != 6*time.Second || c.s.Paused("hive-1") {
		t.Fatalf("hive-1 handled %+v, paused %v; want ping 1 at 6s", got, c.s.Paused("hive-1"))
	}
}
