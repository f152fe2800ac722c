package keeper

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// Worker starts before inference (e2e/cold-start): the client has hives start workers, holds
// its requests until every start succeeded, and ends them with the start's error when one
// fails.

const coldModel = "hf:TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf"

func startSpec(hive node.Addr, device string) StartSpec {
	return StartSpec{Hive: hive, Repo: "TheBloke/Tiny-GGUF", File: "tiny.Q4_K_M.gguf", Device: device, Slots: 2}
}

func coldConfig(starts ...StartSpec) InferConfig {
	cfg := inferConfig(InferSpec{Model: coldModel, Prompt: "hello bees", MaxTokens: 8, Seed: 1},
		InferSpec{Model: coldModel, Prompt: "hello wasps", MaxTokens: 8, Seed: 2, At: time.Second})
	cfg.StartWorkers = starts
	return cfg
}

// split returns the worker starts sent, by hive, and the messages sent to the queen.
func split(t *testing.T, sent []nodetest.Sent) (map[node.Addr][]api.WorkerStartReq, []node.Msg) {
	t.Helper()
	starts := map[node.Addr][]api.WorkerStartReq{}
	var queen []node.Msg
	for _, s := range sent {
		switch m := s.Msg.(type) {
		case api.WorkerStartReq:
			starts[s.To] = append(starts[s.To], m)
		default:
			if s.To != queenAddr {
				t.Fatalf("sent %T %+v to %s", s.Msg, s.Msg, s.To)
			}
			queen = append(queen, m)
		}
	}
	return starts, queen
}

// TestStartWorkersHoldsRequestsUntilStarted: the starts go out at once and again every second
// with the same ReqID; no request is sent before every start was answered OK; then the due
// requests go out; repeats and strangers' answers change nothing.
func TestStartWorkersHoldsRequestsUntilStarted(t *testing.T) {
	r := newInferRig(t, coldConfig(startSpec("hive-1", "cuda:0"), startSpec("hive-2", "cpu")))
	starts, queen := split(t, r.env.TakeSent())
	if len(queen) != 0 || len(starts["hive-1"]) != 1 || len(starts["hive-2"]) != 1 {
		t.Fatalf("at start sent starts %+v and %+v to the queen, want one start per hive and nothing else", starts, queen)
	}
	first := starts["hive-1"][0]
	if first.Repo != "TheBloke/Tiny-GGUF" || first.File != "tiny.Q4_K_M.gguf" || first.Device != "cuda:0" || first.Slots != 2 ||
		first.ModelID() != coldModel {
		t.Fatalf("start %+v", first)
	}
	r.advance(2500 * time.Millisecond)
	starts, queen = split(t, r.env.TakeSent())
	if len(queen) != 0 || len(starts["hive-1"]) != 2 || starts["hive-1"][1] != first {
		t.Fatalf("unanswered starts resent %+v (queen got %+v), want the same start twice in 2.5s", starts, queen)
	}
	ok1 := api.WorkerStartResp{ReqID: first.ReqID, Worker: "hive-1-w1", Model: coldModel}
	r.c.Handle(r.env, "hive-2", ok1) // not hive-2's start: ignored
	r.c.Handle(r.env, "hive-1", ok1)
	r.advance(2 * time.Second)
	starts, queen = split(t, r.env.TakeSent())
	if len(queen) != 0 || len(starts["hive-1"]) != 0 || len(starts["hive-2"]) != 2 {
		t.Fatalf("with one start answered: starts %+v, queen %+v; want hive-2's resent only", starts, queen)
	}
	second := starts["hive-2"][0]
	r.c.Handle(r.env, "hive-2", api.WorkerStartResp{ReqID: second.ReqID, Worker: "hive-2-w1", Model: coldModel})
	_, queen = split(t, r.env.TakeSent())
	if len(queen) != 2 {
		t.Fatalf("once every start succeeded the client sent %+v, want both due requests", queen)
	}
	for _, m := range queen {
		if req, ok := m.(api.InferReq); !ok || req.Model != coldModel {
			t.Fatalf("sent %+v", m)
		}
	}
	r.c.Handle(r.env, "hive-2", api.WorkerStartResp{ReqID: second.ReqID, Worker: "hive-2-w1", Model: coldModel})
	r.advance(3 * time.Second)
	if starts, _ := split(t, r.env.TakeSent()); len(starts) != 0 {
		t.Fatalf("answered starts were sent again: %+v", starts)
	}
	if got := r.c.StartResults(); got[0] != ok1 || got[1].Worker != "hive-2-w1" {
		t.Fatalf("StartResults() = %+v", got)
	}
}

// TestStartWorkersFailureEndsRequests: a failed start ends every request with its error
// (failed, exit code 1), none is sent, and the start is not sent again.
func TestStartWorkersFailureEndsRequests(t *testing.T) {
	r := newInferRig(t, coldConfig(startSpec("hive-1", "cuda:1")))
	starts, _ := split(t, r.env.TakeSent())
	req := starts["hive-1"][0]
	vram := api.Errorf(api.CodeInsufficientVRAM, "choose a smaller quantization of the model",
		"model %s needs 4.00 GiB of device memory, but cuda:1 has 2.00 GiB", coldModel)
	r.c.Handle(r.env, "hive-1", api.WorkerStartResp{ReqID: req.ReqID, Model: coldModel, Err: vram})
	r.advance(5 * time.Second)
	starts, queen := split(t, r.env.TakeSent())
	if len(starts) != 0 || len(queen) != 0 {
		t.Fatalf("after a failed start the client sent starts %+v and %+v to the queen", starts, queen)
	}
	for _, x := range r.c.Results() {
		if x.Outcome != OutcomeFailed || x.ExitCode != ExitFailed || x.Err.Code != api.CodeInsufficientVRAM ||
			!strings.Contains(x.Err.Message, "hive-1") || !strings.Contains(x.Err.Message, "4.00 GiB") || x.Err.Suggestion != vram.Suggestion {
			t.Fatalf("request %d ended %q exit %d with %v: want failed, exit 1, the start's error naming the hive", x.Index, x.Outcome, x.ExitCode, x.Err)
		}
	}
	if len(r.c.Pending()) != 0 {
		t.Fatalf("pending %v", r.c.Pending())
	}
}

func TestStartWorkersValidate(t *testing.T) {
	cfg := coldConfig(StartSpec{Hive: "hive-1", Repo: "r", File: "f", Device: "cuda:0"})
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "start_workers[0]") {
		t.Fatalf("a start with no slots: Validate() = %v", err)
	}
}
