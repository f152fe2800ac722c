package realrun

import (
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// A required path never reached makes the run invalid; a harness mark only the simulator
// counts is listed, not judged.
func TestCheckRequired(t *testing.T) {
	sc := scenario.Scenario{Require: []string{"download resumed", markProgressResumed, "harness: a request survived a failover"}}
	c := checkRequired(sc, map[string]int{"download resumed": 2, markProgressResumed: 1})
	if !c.OK || !strings.Contains(c.Detail, "not counted on real processes") {
		t.Fatalf("reached: %+v", c)
	}
	if c := checkRequired(sc, map[string]int{"download resumed": 2}); c.OK || !strings.Contains(c.Detail, "invalid") {
		t.Fatalf("a path never reached: %+v", c)
	}
}

// The harness counts resumed progress in the history and, per hive, bodies over the burst at
// the fake hub.
func TestHarnessMarks(t *testing.T) {
	sc := scenario.Scenario{CatalogClients: []scenario.CatalogClientSpec{{Addr: "keeper-1"}},
		Provisioner: &scenario.ProvisionerSpec{BandwidthBytesPerSec: 1000, BurstBytes: 100}}
	evs := []scenario.Recorded{{Kind: "send", From: "hive-1", To: "keeper-1", Msg: provision.Progress{Resumed: true, ResumedFromPercent: 50}},
		{Kind: "send", From: "hive-1", To: "keeper-1", Msg: provision.Progress{}}}
	hl := &hubLog{Requests: []fakehub.Request{{Host: "a", Method: "GET", Status: 206, Bytes: 80}, {Host: "a", Method: "GET", Status: 200, Bytes: 30},
		{Host: "b", Method: "GET", Status: 206, Bytes: 90}, {Host: "b", Method: "GET", Status: 429, Bytes: 50}}}
	m := harnessMarks(sc, evs, hl)
	if m[markProgressResumed] != 1 || m[markOverBurst] != 1 {
		t.Fatalf("marks %v, want one resumed progress and one hive over its burst", m)
	}
}
