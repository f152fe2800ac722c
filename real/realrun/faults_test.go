package realrun

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/chaos"
)

// Overlapping network faults combine as in the simulator: the end of a delay does not heal a
// partition, and a link cut by two partitions stays cut until both have ended.
func TestOverlappingNetworkFaults(t *testing.T) {
	r := &run{proxies: map[[2]node.Addr]*chaos.Proxy{}, injected: map[string]int{}, net: netFaults{cuts: map[*chaos.Proxy]int{}}}
	for _, k := range [][2]node.Addr{{"a", "b"}, {"b", "a"}} {
		px, err := chaos.NewProxy("127.0.0.1:0", "127.0.0.1:9") // never dialled here
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		r.proxies[k] = px
	}
	ab, ba := r.proxies[[2]node.Addr{"a", "b"}], r.proxies[[2]node.Addr{"b", "a"}]
	step := func(f faults.Fault) chaos.Step {
		t.Helper()
		s, ok := r.step(f)
		if !ok {
			t.Fatalf("no step for %+v", f)
		}
		return s
	}
	both := step(faults.Fault{Kind: "partition-symmetric", Targets: []node.Addr{"a", "b"}, For: time.Second})
	oneway := step(faults.Fault{Kind: "partition-oneway", Targets: []node.Addr{"a", "b"}, For: time.Second})
	delay := step(faults.Fault{Kind: "net-delay", Value: int64(time.Millisecond), For: time.Second})
	for _, do := range []func() error{both.Do, oneway.Do, delay.Do, delay.Undo} {
		if err := do(); err != nil {
			t.Fatal(err)
		}
	}
	if ab.Partitioned() == 0 || ba.Partitioned() == 0 {
		t.Fatalf("the end of a delay healed a partition: a->b %v, b->a %v", ab.Partitioned(), ba.Partitioned())
	}
	if err := both.Undo(); err != nil {
		t.Fatal(err)
	}
	if ab.Partitioned() == 0 || ba.Partitioned() != 0 {
		t.Fatalf("after the symmetric partition ended: a->b %v (the one-way one still cuts it), b->a %v (healed)", ab.Partitioned(), ba.Partitioned())
	}
	if err := oneway.Undo(); err != nil {
		t.Fatal(err)
	}
	if ab.Partitioned() != 0 {
		t.Fatalf("a->b still cut after every partition ended: %v", ab.Partitioned())
	}
	if got := r.injectedCopy(); got["partition-symmetric"] != 1 || got["partition-oneway"] != 1 || got["net-delay"] != 1 {
		t.Errorf("injected %v", got)
	}
}

// A fault step that failed keeps its error in result.json, and the file reads back (JudgeDir).
func TestTimelineErrorsRoundTrip(t *testing.T) {
	tl := timelineOf([]chaos.Event{{Name: "crash-restart [w1]", Err: errors.New("do: no worker process")}, {Name: "pause [hive-1]"}})
	b, err := json.Marshal(resultFile{Timeline: tl})
	if err != nil {
		t.Fatal(err)
	}
	var back resultFile
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("result.json does not read back: %v\n%s", err, b)
	}
	if back.Timeline[0].Err != "do: no worker process" || back.Timeline[1].Err != "" {
		t.Errorf("timeline read back as %+v", back.Timeline)
	}
}
