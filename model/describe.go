package model

import (
	"fmt"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// describeOperation is the model's DescribeOperation: one line per operation, prefixed with
// the worker whose partition it is in, e.g. "w1 | c3: Get -> ok idle/healthy inc=1 v=4".
func describeOperation(input, output any) string {
	switch in := input.(type) {
	case *stepIn:
		out := output.(*stepOut)
		return fmt.Sprintf("%s | %s: %s -> %s", in.worker, in.call.Client, describeCall(in.call), describeStepOut(in, out))
	case RegistryCall:
		ret := output.(RegistryReturn)
		return fmt.Sprintf("%s: %s -> %s", in.Client, describeCall(in), describeReturn(ret))
	}
	return fmt.Sprintf("%v -> %v", input, output)
}

// describeCall names a request or internal transition with its arguments.
func describeCall(c RegistryCall) string {
	switch r := c.Req.(type) {
	case api.RegisterReq:
		return fmt.Sprintf("Register(%s inc=%d %s/%s %s)", r.Spec.ID, r.Spec.Incarnation, r.Spec.Model, r.Spec.Capability, r.State)
	case api.HeartbeatReq:
		return fmt.Sprintf("Heartbeat(%s inc=%d)", r.Worker, r.Incarnation)
	case api.GetReq:
		return fmt.Sprintf("Get(%s)", r.Worker)
	case api.UpdateStateReq:
		return fmt.Sprintf("UpdateState(%s v=%d -> %s)", r.Worker, r.ExpectVersion, r.To)
	case api.ClaimReq:
		return fmt.Sprintf("Claim(%s %s)", r.Model, r.Capability)
	case api.ReleaseReq:
		return fmt.Sprintf("Release(%s inc=%d claim=%s)", r.Worker, r.Incarnation, r.ClaimID)
	case api.RemoveReq:
		return fmt.Sprintf("Remove(%s)", r.Worker)
	case api.ListReq:
		return fmt.Sprintf("List(%s %s)", r.Model, r.Capability)
	}
	switch o := c.Internal.(type) {
	case api.WorkerHealthChanged:
		return fmt.Sprintf("internal HealthChanged(%s %s)", o.Worker, o.Health)
	case api.WorkerExpired:
		return fmt.Sprintf("internal Expired(%s: %s)", o.Worker, o.Reason)
	case api.QueenStarted:
		return fmt.Sprintf("internal QueenStarted(epoch=%d workers=%d)", o.Epoch, o.Workers)
	}
	return fmt.Sprintf("%+v", c)
}

// describeStepOut describes an output as one partition sees it.
func describeStepOut(in *stepIn, out *stepOut) string {
	switch {
	case !out.known:
		return "? (no reply)"
	case out.resp == nil:
		return "ok"
	case out.code() != api.CodeOK:
		return string(out.code())
	}
	if _, isList := in.call.Req.(api.ListReq); isList {
		if out.malformed {
			return "malformed list (not sorted by ID, or an ID twice)"
		}
		if !out.listed {
			return "ok, not listed"
		}
		return "ok, listed " + describeRecord(out.entry)
	}
	return "ok " + describeResp(*out.resp)
}

// describeReturn describes a recorded output.
func describeReturn(ret RegistryReturn) string {
	switch {
	case !ret.Known:
		return "? (no reply)"
	case ret.Resp.Err.Code != api.CodeOK:
		return string(ret.Resp.Err.Code)
	}
	if len(ret.Resp.Records) > 0 {
		ids := make([]string, len(ret.Resp.Records))
		for i, r := range ret.Resp.Records {
			ids[i] = r.ID
		}
		return "ok [" + strings.Join(ids, " ") + "]"
	}
	return "ok " + describeResp(ret.Resp)
}

// describeResp describes a successful reply's record and flags.
func describeResp(r api.RegistryResp) string {
	s := describeRecord(r.Record)
	if r.Created {
		s += " created"
	}
	if r.Removed {
		s += " removed"
	}
	return s
}

// describeRecord describes a record briefly.
func describeRecord(r api.WorkerRecord) string {
	if r == (api.WorkerRecord{}) {
		return "-"
	}
	s := fmt.Sprintf("%s %s/%s inc=%d %s/%s v=%d", r.ID, r.Model, r.Capability, r.Incarnation, r.State, r.Health, r.Version)
	if r.ClaimID != "" {
		s += " claim=" + r.ClaimID
	}
	return s
}

// describeState is the model's DescribeState.
func describeState(state any) string {
	s := state.(regState)
	if !s.present {
		return fmt.Sprintf("absent (last v=%d)", s.last)
	}
	r := s.rec
	ver := fmt.Sprintf("v=%d", r.Version)
	if !s.verKnown {
		ver = fmt.Sprintf("v>%d", s.last)
	}
	claim := ""
	switch {
	case !s.claimKnown:
		claim = " claim=?"
	case r.ClaimID != "":
		claim = " claim=" + r.ClaimID
	}
	return fmt.Sprintf("%s/%s inc=%d %s/%s %s%s", r.Model, r.Capability, r.Incarnation, r.State, r.Health, ver, claim)
}
