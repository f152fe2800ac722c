//go:build plant

package queen

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Each planted bug changes exactly the behaviour it names; without it the same script gives
// the specified answers.

func TestPlantLostUpdate(t *testing.T) {
	for _, planted := range []bool{false, true} {
		cfg := DefaultConfig()
		if planted {
			cfg.Plants = plant.NewSet("registry-lost-update")
		}
		h := newHarness(t, cfg, nil)
		v := h.register("w1").Version
		h.expect("router-a", api.UpdateStateReq{ReqID: 1, Worker: "w1", ExpectVersion: v, To: api.StateBusy}, api.CodeOK)
		second := api.UpdateStateReq{ReqID: 1, Worker: "w1", ExpectVersion: v, To: api.StateBusy}
		stale := api.UpdateStateReq{ReqID: 2, Worker: "w1", ExpectVersion: v, To: api.StateIdle}
		if !planted {
			h.expect("router-b", second, api.CodeWorkerAlreadyBusy)
			h.expect("router-b", stale, api.CodeVersionConflict)
			continue
		}
		// Both routers win the same idle worker, and an outdated write goes through.
		h.expect("router-b", second, api.CodeOK)
		h.expect("router-b", stale, api.CodeOK)
		if got := h.get("w1"); got.Version != v+3 {
			t.Fatalf("planted: version %d, want %d", got.Version, v+3)
		}
	}
}

func TestPlantStaleRouting(t *testing.T) {
	for _, planted := range []bool{false, true} {
		cfg := DefaultConfig()
		if planted {
			cfg.Plants = plant.NewSet("registry-stale-routing")
		}
		h := newHarness(t, cfg, nil)
		h.register("w1")
		h.boot() // w1 is now unconfirmed
		c := h.do(router, api.ClaimReq{ReqID: h.next(), Model: "m"})
		if !planted {
			if c.Err.Code != api.CodeNoWorkerAvailable {
				t.Fatalf("unplanted: claim of an unconfirmed worker gave %+v", c)
			}
			continue
		}
		if !c.Err.OK() || c.Record.ID != "w1" || c.Record.Health != api.HealthUnconfirmed {
			t.Fatalf("planted: want the unconfirmed worker handed out, got %+v", c)
		}
		// Only claims change: a compare-and-set to busy still refuses an unhealthy worker.
		h.register("w2")
		h.boot()
		h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "w2", ExpectVersion: 3, To: api.StateBusy}, api.CodeWorkerStale)
	}
}
