//go:build plant

package worker

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// TestPlantSlotLeakOnCancel proves the planted bug leaks: after one cancelled running request
// a one-slot worker has no free slot although nothing runs, and refuses work for good. The
// correct behaviour is TestCancelledSlotIsReused.
func TestPlantSlotLeakOnCancel(t *testing.T) {
	cfg := testConfig(1, 1)
	cfg.Plants = plant.NewSet(PlantSlotLeakOnCancel)
	r := newReadyConfig(t, cfg)
	r.req(1)
	r.started()
	r.deliver(queen, api.InferCancel{ReqID: 1})
	wantEnd(t, r.done(), 1, api.FinishCancelled, api.CodeCancelled, 0)
	r.req(2) // queued behind a slot nobody uses
	none[api.EngineGenerate](r, engine)
	r.req(3)
	wantEnd(t, r.done(), 3, api.FinishError, api.CodeAllSlotsBusy, 0)
	if s := r.status(); s.Active != 1 || s.Queued != 1 {
		t.Fatalf("status %+v, want the leaked slot counted active and request 2 stuck", s)
	}
}
