package faults

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// TestDeviceFaultReachesTheHiveFromItsGPUPort.
func TestDeviceFaultReachesTheHiveFromItsGPUPort(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "device-fault", At: time.Second, Targets: []node.Addr{"hive-1"}, Device: "cuda:1"}})
	c.s.Run(2 * time.Second)
	got := c.nodes["hive-1"].got
	want := api.DeviceFault{Device: "cuda:1", Fallback: "cpu"}
	if len(got) != 1 || got[0].from != "gpu:hive-1" || got[0].msg != want || got[0].at != time.Second {
		t.Fatalf("hive-1 handled %+v, want %+v from gpu:hive-1 at 1s", got, want)
	}
}

// TestWorkerHangReachesTheHiveFromItsProcessPort.
func TestWorkerHangReachesTheHiveFromItsProcessPort(t *testing.T) {
	c := newCluster(1)
	c.inj.Schedule(Schedule{{Kind: "worker-hang", At: time.Second, For: 30 * time.Second,
		Targets: []node.Addr{"hive-2"}, Worker: "w-3"}})
	c.s.Run(2 * time.Second)
	got := c.nodes["hive-2"].got
	want := api.WorkerHang{Worker: "w-3", For: 30 * time.Second}
	if len(got) != 1 || got[0].from != "proc:hive-2" || got[0].msg != want {
		t.Fatalf("hive-2 handled %+v, want %+v from proc:hive-2", got, want)
	}
}
