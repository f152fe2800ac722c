package model

import (
	"fmt"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// script builds a registry history by hand. Sequential steps (seq, lost, internal without a
// time) follow each other 10 ns apart; at and over take explicit times for overlapping ops.
type script struct {
	h     *History
	now   int64
	reqID uint64
}

func newScript() *script { return &script{h: NewHistory()} }

// seq records req by client, returning resp, after everything recorded so far.
func (s *script) seq(client string, req api.RegistryRequest, resp api.RegistryResp) {
	s.now += 10
	s.over(client, s.now, s.now+5, req, resp)
}

// over records req by client over [call, ret] with resp.
func (s *script) over(client string, call, ret int64, req api.RegistryRequest, resp api.RegistryResp) {
	s.reqID++
	req = withReqID(req, s.reqID)
	resp.ReqID = s.reqID
	s.h.Invoke(node.Addr(client), req, call)
	s.h.Return(node.Addr(client), resp, ret)
	s.now = max(s.now, ret)
}

// lost records req by client at call, with no reply ever.
func (s *script) lost(client string, call int64, req api.RegistryRequest) {
	s.reqID++
	s.h.Invoke(node.Addr(client), withReqID(req, s.reqID), call)
	s.now = max(s.now, call)
}

// internal records an internal transition after everything recorded so far.
func (s *script) internal(o node.Observation) {
	s.now += 10
	s.h.Internal(o, s.now)
}

// check runs CheckRegistry and fails t unless the verdict is want.
func (s *script) check(t *testing.T, want porcupine.CheckResult) {
	t.Helper()
	ops := s.h.Operations()
	res := CheckRegistry(ops, 10*time.Second)
	if res.Verdict != want {
		t.Errorf("verdict %s, want %s; history:", res.Verdict, want)
		for _, op := range ops {
			t.Logf("  [%d, %d] %s", op.Call, op.Return, describeOperation(op.Input, op.Output))
		}
	}
}

// withReqID returns req with its ReqID set.
func withReqID(req api.RegistryRequest, id uint64) api.RegistryRequest {
	switch r := req.(type) {
	case api.RegisterReq:
		r.ReqID = id
		return r
	case api.HeartbeatReq:
		r.ReqID = id
		return r
	case api.GetReq:
		r.ReqID = id
		return r
	case api.UpdateStateReq:
		r.ReqID = id
		return r
	case api.ClaimReq:
		r.ReqID = id
		return r
	case api.ReleaseReq:
		r.ReqID = id
		return r
	case api.RemoveReq:
		r.ReqID = id
		return r
	case api.ListReq:
		r.ReqID = id
		return r
	}
	panic(fmt.Sprintf("withReqID: %T", req))
}

// spec is worker id's spec at incarnation inc, serving m1 on cpu.
func spec(id string, inc uint64) api.WorkerSpec {
	return api.WorkerSpec{ID: id, Hive: "hive-a", Incarnation: inc, Model: "m1", Capability: "cpu", Slots: 1}
}

// rec is worker id's record.
func rec(id string, inc uint64, st api.WorkerState, h api.Health, v uint64, claim string) api.WorkerRecord {
	return api.WorkerRecord{WorkerSpec: spec(id, inc), State: st, Health: h, Version: v, ClaimID: claim}
}

// idle is a healthy idle record; busy a healthy busy one.
func idle(id string, inc, v uint64) api.WorkerRecord {
	return rec(id, inc, api.StateIdle, api.HealthHealthy, v, "")
}

func busy(id string, inc, v uint64, claim string) api.WorkerRecord {
	return rec(id, inc, api.StateBusy, api.HealthHealthy, v, claim)
}

// Requests, briefly.
func register(id string, inc uint64) api.RegisterReq {
	return api.RegisterReq{Spec: spec(id, inc), State: api.StateIdle}
}
func heartbeat(id string, inc uint64) api.HeartbeatReq {
	return api.HeartbeatReq{Worker: id, Incarnation: inc}
}
func get(id string) api.GetReq { return api.GetReq{Worker: id} }
func cas(id string, expect uint64, to api.WorkerState) api.UpdateStateReq {
	return api.UpdateStateReq{Worker: id, ExpectVersion: expect, To: to}
}
func claim() api.ClaimReq { return api.ClaimReq{Model: "m1"} }
func release(id string, inc uint64, claim string) api.ReleaseReq {
	return api.ReleaseReq{Worker: id, Incarnation: inc, ClaimID: claim}
}
func remove(id string) api.RemoveReq { return api.RemoveReq{Worker: id} }
func list() api.ListReq              { return api.ListReq{Model: "m1"} }

// Responses, briefly.
func ok(r api.WorkerRecord) api.RegistryResp { return api.RegistryResp{Record: r} }
func created(r api.WorkerRecord) api.RegistryResp {
	return api.RegistryResp{Record: r, Created: true}
}
func removed(r api.WorkerRecord) api.RegistryResp {
	return api.RegistryResp{Record: r, Removed: true}
}
func fails(code api.Code) api.RegistryResp { return api.RegistryResp{Err: api.Error{Code: code}} }
func listed(rs ...api.WorkerRecord) api.RegistryResp {
	return api.RegistryResp{Records: rs}
}

// Internal transitions, briefly.
func stale(id string) api.WorkerHealthChanged {
	return api.WorkerHealthChanged{Worker: id, Health: api.HealthStale}
}
func expired(id string) api.WorkerExpired   { return api.WorkerExpired{Worker: id, Reason: "test"} }
func started(epoch uint64) api.QueenStarted { return api.QueenStarted{Epoch: epoch} }
