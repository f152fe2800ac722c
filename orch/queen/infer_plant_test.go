//go:build plant

package queen

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// The inference path's planted bugs change exactly the behaviour they name; without them the
// same script gives the specified answers.

func TestPlantRouteToDraining(t *testing.T) {
	for _, planted := range []bool{false, true} {
		cfg := DefaultConfig()
		if planted {
			cfg.Plants = plant.NewSet("queen-route-to-draining")
		}
		h := newIH(t, cfg)
		h.worker("w1", "m", 1)
		h.setState("w1", api.StateDraining)
		if !planted {
			h.refused(client, req(1), api.CodeNoWorkerAvailable)
			continue
		}
		if to, _ := h.infer(client, req(1)); to != "w1" {
			t.Fatalf("planted: routed to %s", to)
		}
		h.wantLoad(1, map[string]int{"w1": 1})
	}
}

func TestPlantFailoverDuplicateTokens(t *testing.T) {
	for _, planted := range []bool{false, true} {
		cfg := DefaultConfig()
		if planted {
			cfg.Plants = plant.NewSet("failover-duplicate-tokens")
		}
		h, _ := failoverSetup(t, cfg)
		_, a := attemptIn(t, h.advance(cfg.StallTimeout))
		sent := h.tokens("w2", a.ReqID, 0, 3)
		var got []api.InferToken
		for _, s := range sent {
			got = append(got, s.Msg.(api.InferToken))
		}
		if !planted {
			if len(got) != 1 || got[0].Index != 2 {
				t.Fatalf("unplanted: relayed %+v, want only index 2", got)
			}
			continue
		}
		// The client receives indices 0 and 1 a second time.
		if len(got) != 3 || got[0].Index != 0 || got[1].Index != 1 || got[2].Index != 2 {
			t.Fatalf("planted: relayed %+v, want 0, 1 again and then 2", got)
		}
	}
}
