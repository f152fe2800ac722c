package model

import (
	"math"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// TestHistoryRecording: retries and duplicates keep the first invoke and the first reply,
// unknown replies are ignored, internal transitions are instants of the queen, and open
// operations end at MaxInt64 with an unknown outcome.
func TestHistoryRecording(t *testing.T) {
	h := NewHistory()
	get1 := api.GetReq{ReqID: 1, Worker: "w1"}
	h.Invoke("c1", get1, 10)
	h.Internal(node.Mark("some coverage mark"), 12) // ignored
	h.Internal(api.QueenStarted{Epoch: 1}, 15)
	h.Invoke("c2", api.GetReq{ReqID: 1, Worker: "w1"}, 20) // other client, same ReqID
	h.Invoke("c1", get1, 30)                               // retry: ignored
	h.Return("c1", api.RegistryResp{ReqID: 1, Err: api.Error{Code: api.CodeTimeout}}, 35)
	h.Return("c1", api.RegistryResp{ReqID: 1, Err: api.Error{Code: api.CodeUnknownWorker}}, 40)
	h.Return("c1", api.RegistryResp{ReqID: 1}, 50) // duplicate: ignored
	h.Return("c3", api.RegistryResp{ReqID: 7}, 55) // unknown key: ignored
	h.Invoke("c1", get1, 60)                       // retry of a finished op: ignored

	if h.Len() != 3 || h.Open() != 1 {
		t.Fatalf("Len %d Open %d, want 3 and 1", h.Len(), h.Open())
	}
	ops := h.Operations()
	want := []struct {
		client     int
		call, ret  int64
		known      bool
		code       api.Code
		isInternal bool
	}{
		{0, 10, 40, true, api.CodeUnknownWorker, false},
		{1, 15, 15, true, api.CodeOK, true},
		{2, 20, math.MaxInt64, false, api.CodeOK, false},
	}
	for i, w := range want {
		op := ops[i]
		ret := op.Output.(RegistryReturn)
		call := op.Input.(RegistryCall)
		if op.ClientId != w.client || op.Call != w.call || op.Return != w.ret || ret.Known != w.known ||
			ret.Resp.Err.Code != w.code || (call.Internal != nil) != w.isInternal {
			t.Errorf("op %d = %+v, want %+v", i, op, w)
		}
	}
	if id, ok := h.ClientID(QueenClient); !ok || id != 1 {
		t.Errorf("ClientID(queen) = %d, %v; want 1, true", id, ok)
	}
}

// TestHistoryOrder: Operations sorts by call time, keeping the recording order for equal
// times, whatever order the calls came in.
func TestHistoryOrder(t *testing.T) {
	h := NewHistory()
	h.Invoke("c1", api.GetReq{ReqID: 1}, 30)
	h.Invoke("c2", api.GetReq{ReqID: 1}, 10)
	h.Internal(api.WorkerExpired{Worker: "w1"}, 30)
	h.Invoke("c3", api.GetReq{ReqID: 1}, 10)
	var got []node.Addr
	for _, op := range h.Operations() {
		got = append(got, op.Input.(RegistryCall).Client)
	}
	want := []node.Addr{"c2", "c3", "c1", QueenClient}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}

// TestHistoryReturnBeforeInvokePanics: a reply stamped before its request is a recorder bug.
func TestHistoryReturnBeforeInvokePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	h := NewHistory()
	h.Invoke("c1", api.GetReq{ReqID: 1}, 30)
	h.Return("c1", api.RegistryResp{ReqID: 1}, 20)
}
