package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// TestWriteVisualization: an illegal history's HTML view names the partition's worker, the
// operations and the annotations (registry/linearizable failure folder).
func TestWriteVisualization(t *testing.T) {
	s := newScript()
	w1(s)
	s.over("r1", 100, 200, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 2, "")))
	s.over("r2", 101, 201, cas("w1", 1, api.StateBusy), ok(busy("w1", 1, 3, "")))
	s.lost("router", 150, claim())
	res := CheckRegistry(s.h.Operations(), 10*time.Second)
	if res.Verdict != porcupine.Illegal || res.Ops != 4 || res.Partitions != 1 {
		t.Fatalf("result %+v, want Illegal with 4 ops in 1 partition", res)
	}
	path := filepath.Join(t.ArtifactDir(), "history.html")
	fault := porcupine.Annotation{Tag: "faults", Start: 120, End: 180, Description: "partition r2 | queen"}
	if err := res.WriteVisualization(path, []porcupine.Annotation{fault}); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"w1 | r2: UpdateState(w1 v=1 -\\u003e busy)", "Claim(m1 ) -\\u003e ? (no reply)", "partition r2 | queen"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
}

// TestDescribeState names wildcards.
func TestDescribeState(t *testing.T) {
	s := regState{present: true, rec: busy("w1", 1, 0, ""), last: 4}
	if got, want := describeState(s), "m1/cpu inc=1 busy/healthy v>4 claim=?"; got != want {
		t.Errorf("describeState = %q, want %q", got, want)
	}
	if got, want := describeState(regState{last: 7}), "absent (last v=7)"; got != want {
		t.Errorf("describeState = %q, want %q", got, want)
	}
}
