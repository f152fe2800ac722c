package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// recordedRegistry is a history of one registration and one read of it, as a real run
// records it; lost says the read comes back "unknown worker" after the registration was
// acknowledged (a lost update).
func recordedRegistry(lost bool) []Recorded {
	spec := api.WorkerSpec{ID: "w1", Hive: "hive-1", Incarnation: 1, Model: "m", Capability: "cpu", Slots: 1}
	rec := api.WorkerRecord{WorkerSpec: spec, State: api.StateIdle, Health: api.HealthHealthy, Version: 1}
	reg := api.RegisterReq{ReqID: 1, Spec: spec, State: api.StateIdle}
	get := api.GetReq{ReqID: 7, Worker: "w1"}
	getResp := api.RegistryResp{ReqID: 7, Op: get.MsgName(), Record: rec, Epoch: 1}
	if lost {
		getResp = api.RegistryResp{ReqID: 7, Op: get.MsgName(), Err: api.Error{Code: api.CodeUnknownWorker, Message: "no such worker"}, Epoch: 1}
	}
	ms := time.Millisecond
	return []Recorded{
		{At: 1 * ms, Kind: "send", From: "hive-1", To: "queen", Msg: reg},
		{At: 2 * ms, Kind: "deliver", From: "hive-1", To: "queen", Msg: reg},
		{At: 3 * ms, Kind: "send", From: "queen", To: "hive-1", Msg: api.RegistryResp{ReqID: 1, Op: reg.MsgName(), Record: rec, Created: true, Epoch: 1}},
		{At: 4 * ms, Kind: "deliver", From: "queen", To: "hive-1", Msg: api.RegistryResp{ReqID: 1, Op: reg.MsgName(), Record: rec, Created: true, Epoch: 1}},
		{At: 5 * ms, Kind: "send", From: "client-1", To: "queen", Msg: get},
		{At: 6 * ms, Kind: "deliver", From: "queen", To: "client-1", Msg: getResp},
	}
}

func registrySC() Scenario {
	return Scenario{ID: "real/test", Queen: QueenSpec{Addr: "queen", MaxWorkers: 8},
		Hives:   []HiveSpec{{Addr: "hive-1", Workers: []api.WorkerSpec{{ID: "w1", Model: "m", Capability: "cpu", Slots: 1}}}},
		Clients: []ClientSpec{{Addr: "client-1", Keeper: keeper.Config{Queen: "queen", Models: []string{"m"}}}}}
}

// The recorded-history judge runs porcupine on what real processes recorded: a consistent
// history passes, a lost update fails at the linearizability stage.
func TestJudgeRecordedRegistry(t *testing.T) {
	sc := registrySC()
	ok := JudgeRecorded(sc, RealRun{Events: recordedRegistry(false), Completed: 1}, Options{})
	if !ok.Passed {
		t.Fatalf("a consistent history failed: %+v", ok.Checkers)
	}
	bad := JudgeRecorded(sc, RealRun{Events: recordedRegistry(true), Completed: 1}, Options{})
	if bad.Passed || bad.FirstFailure().Stage != "linearizability" {
		t.Fatalf("a lost update passed or failed elsewhere: %+v", bad.Checkers)
	}
	// The processes' coverage marks are counted, as the simulator counts its nodes'.
	evs := append(recordedRegistry(false), Recorded{At: 7 * time.Millisecond, Kind: "observe", From: "queen", Obs: node.Mark("registry restored from log")})
	if got := JudgeRecorded(sc, RealRun{Events: evs, Completed: 1}, Options{}).Marks["registry restored from log"]; got != 1 {
		t.Errorf("mark counted %d times, want 1", got)
	}
	// No work at all is not a pass.
	if idle := JudgeRecorded(sc, RealRun{Events: recordedRegistry(false)}, Options{}); idle.Passed {
		t.Error("a run with no completed work passed")
	}
}

// Inference results are judged against the model's exact completion, and an open request
// fails liveness.
func TestJudgeRecordedInference(t *testing.T) {
	spec := keeper.InferSpec{Model: "m", Prompt: "hello bees", MaxTokens: 12, Seed: 5}
	sc := Scenario{ID: "real/infer", Queen: QueenSpec{Addr: "queen", MaxWorkers: 8},
		InferClients: []InferClientSpec{{Addr: "keeper-1", Client: keeper.InferConfig{Queen: "queen", Requests: []keeper.InferSpec{spec}}}}}
	want, reason := textgen.Completion(spec.Prompt, spec.Seed, spec.MaxTokens, engineEOSMean(sc))
	good := keeper.InferResult{Index: 0, Outcome: keeper.OutcomeCompleted, FinishReason: reason}
	for i, w := range want {
		good.Tokens = append(good.Tokens, api.InferToken{Index: i, Text: w})
	}
	res := JudgeRecorded(sc, RealRun{InferResults: map[node.Addr][]keeper.InferResult{"keeper-1": {good}}}, Options{})
	if !res.Passed {
		t.Fatalf("the exact completion failed: %+v", res.Checkers)
	}
	wrong := good
	wrong.Tokens = append([]api.InferToken(nil), good.Tokens...)
	wrong.Tokens[len(wrong.Tokens)-1].Text = " WRONG"
	res = JudgeRecorded(sc, RealRun{InferResults: map[node.Addr][]keeper.InferResult{"keeper-1": {wrong}}}, Options{})
	if res.Passed || !strings.Contains(res.FirstFailure().Detail, "WRONG") {
		t.Fatalf("a wrong token passed: %+v", res.Checkers)
	}
	open := keeper.InferResult{Index: 0, Outcome: keeper.OutcomeOpen}
	res = JudgeRecorded(sc, RealRun{InferResults: map[node.Addr][]keeper.InferResult{"keeper-1": {good, open}}}, Options{})
	if res.Passed {
		t.Fatalf("an open request passed: %+v", res.Checkers)
	}
}
