package real

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
)

// The registry slice (queen + hive) on the real runtime, in fake time: a hive registers its
// three workers and keeps them healthy with heartbeats; after the hive crashes, the queen
// removes the idle workers once the 120 s heartbeat timeout has passed, and not before.
func TestRegistrySliceOnRealRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		marks := map[node.Mark]int{}
		observe := func(_ node.Addr, o node.Observation) {
			if m, ok := o.(node.Mark); ok {
				mu.Lock()
				marks[m]++
				mu.Unlock()
			}
		}
		rt := newTestRuntime(t, Config{Seed: 1, Observe: observe})
		addSlice(t, rt)

		time.Sleep(5 * time.Second) // the hive starts first: its first requests are lost, then retried
		synctest.Wait()
		checkWorkers(t, rt, "after 5 s", 3)
		var registered []string
		mustDo(t, rt.Inspect("hive-ws", func(n node.Node) { registered = n.(*hive.Hive).Registered() }))
		if want := []string{"worker-ws-1", "worker-ws-2", "worker-ws-3"}; !slices.Equal(registered, want) {
			t.Errorf("hive says registered %v, want %v", registered, want)
		}
		time.Sleep(3 * time.Minute) // heartbeats keep them past several timeouts
		synctest.Wait()
		checkWorkers(t, rt, "after 3 more minutes", 3)

		mustDo(t, rt.Crash("hive-ws"))
		// The last heartbeat came at most 15 s before the crash, so the deadline is at least
		// 105 s after it.
		time.Sleep(100 * time.Second)
		synctest.Wait()
		checkWorkers(t, rt, "100 s after the hive crashed", 3)
		time.Sleep(21 * time.Second)
		synctest.Wait()
		checkWorkers(t, rt, "121 s after the hive crashed", 0)
		mu.Lock()
		defer mu.Unlock()
		if n := marks["worker expired idle"]; n != 3 {
			t.Errorf("mark \"worker expired idle\" seen %d times, want 3; marks: %v", n, marks)
		}
	})
}

// addSlice adds queen-1 on machine "queen" and hive-ws with three workers on machine "ws",
// and starts them.
func addSlice(t *testing.T, rt *Runtime) {
	t.Helper()
	var workers []api.WorkerSpec
	for _, id := range []string{"worker-ws-1", "worker-ws-2", "worker-ws-3"} {
		workers = append(workers, api.WorkerSpec{ID: id, Model: "hf:TheBloke/tinyllama", Capability: "cpu", Slots: 1})
	}
	mustDo(t, rt.Add("queen-1", "queen", func() node.Node { return queen.New(queen.DefaultConfig()) }))
	mustDo(t, rt.Add("hive-ws", "ws", func() node.Node {
		return hive.New(hive.Config{Queen: "queen-1", Workers: workers})
	}))
	mustDo(t, rt.StartAll())
}

// checkWorkers fails unless the queen holds want workers, all of hive-ws, healthy and idle.
func checkWorkers(t *testing.T, rt *Runtime, when string, want int) {
	t.Helper()
	var recs []api.WorkerRecord
	mustDo(t, rt.Inspect("queen-1", func(n node.Node) { recs = n.(*queen.Queen).Records() }))
	if len(recs) != want {
		t.Fatalf("%s: the queen holds %d workers, want %d: %+v", when, len(recs), want, recs)
	}
	for _, r := range recs {
		if r.Hive != "hive-ws" || r.Health != api.HealthHealthy || r.State != api.StateIdle {
			t.Errorf("%s: worker %s of %s is %s and %s, want of hive-ws, healthy and idle",
				when, r.ID, r.Hive, r.Health, r.State)
		}
	}
}
