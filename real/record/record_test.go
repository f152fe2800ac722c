package record

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

func TestWriteReadMerge(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	wa, err := Create(a)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := Create(b)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	req := api.RegisterReq{ReqID: 9, Spec: api.WorkerSpec{ID: "w", Hive: "h", Incarnation: 1, Model: "m", Capability: "cpu", Slots: 1}, State: api.StateIdle}
	wa.Trace(real.TraceEvent{At: t0.Add(2 * time.Millisecond), Kind: "deliver", From: "h", To: "queen", Msg: req})
	wb.Trace(real.TraceEvent{At: t0.Add(time.Millisecond), Kind: "send", From: "h", To: "queen", Msg: req})
	wa.Trace(real.TraceEvent{At: t0.Add(3 * time.Millisecond), Kind: "observe", From: "queen", Obs: node.Mark("registry full")})
	wa.Trace(real.TraceEvent{At: t0.Add(4 * time.Millisecond), Kind: "observe", From: "queen", Obs: api.QueenStarted{Epoch: 3}})
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	// A process killed mid-write leaves a torn last line: it is skipped.
	f, _ := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"at":5,"kind":"se`)
	f.Close()

	evs, err := ReadFiles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("%d events, want 4: %+v", len(evs), evs)
	}
	if evs[0].Kind != "send" || evs[1].Kind != "deliver" || !reflect.DeepEqual(evs[0].Msg, req) {
		t.Errorf("not merged by time or not decoded: %+v", evs[:2])
	}
	if evs[2].Obs != node.Mark("registry full") || !reflect.DeepEqual(evs[3].Obs, api.QueenStarted{Epoch: 3}) {
		t.Errorf("observations: %#v %#v", evs[2].Obs, evs[3].Obs)
	}

	// A restarted process appends after the torn line: the torn line is ended first, and the
	// new process's events read back.
	restarted, err := Create(a)
	if err != nil {
		t.Fatal(err)
	}
	restarted.pid++ // another process
	restarted.Trace(real.TraceEvent{At: t0.Add(5 * time.Millisecond), Kind: "observe", From: "queen", Obs: api.QueenStarted{Epoch: 4}})
	restarted.Close()
	evs, err = ReadFiles(a, b)
	if err != nil {
		t.Fatalf("a torn line before a restart's events: %v", err)
	}
	if len(evs) != 5 || !reflect.DeepEqual(evs[4].Obs, api.QueenStarted{Epoch: 4}) {
		t.Fatalf("%d events, want the 4 before the crash and the restart's: %+v", len(evs), evs)
	}

	// A bad line in the middle is an error, not skipped.
	os.WriteFile(b, []byte("garbage\n{\"at\":1,\"kind\":\"send\"}\n"), 0o644)
	if _, err := ReadFiles(b); err == nil {
		t.Error("a bad line in the middle of a file was accepted")
	}
	os.WriteFile(b, []byte("{\"at\":1,\"kind\":\"send\",\"pid\":7}\ngarbage\n{\"at\":2,\"kind\":\"send\",\"pid\":7}\n"), 0o644)
	if _, err := ReadFiles(b); err == nil {
		t.Error("a bad line between two lines of one process was accepted")
	}
}
