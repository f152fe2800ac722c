package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
	"github.com/rbee-sim/rbee-sim/orch/worker"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
)

// engineTick is the fake engine's timer: the next token of a run.
type engineTick struct{ ReqID uint64 }

func (engineTick) MsgName() string { return "test.engine_tick" }

// fakeEngine is an inference engine (the worker's engine port) in a few lines: it loads at
// once and generates textgen's completion (no end-of-sequence: always max_tokens), one token
// every interval.
type fakeEngine struct {
	interval time.Duration
	runs     map[uint64]*engineRun
}

type engineRun struct {
	from  node.Addr
	texts []string
	next  int
}

func (e *fakeEngine) Start(node.Env) { e.runs = map[uint64]*engineRun{} }

func (e *fakeEngine) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.EngineLoad:
		env.Send(from, api.EngineLoaded{})
	case api.EngineGenerate:
		texts, _ := textgen.Completion(m.Prompt, m.Seed, m.MaxTokens, 0)
		e.runs[m.ReqID] = &engineRun{from: from, texts: texts}
		env.After(e.interval, engineTick{m.ReqID})
	case api.EngineStop:
		delete(e.runs, m.ReqID)
	case engineTick:
		r := e.runs[m.ReqID]
		switch {
		case r == nil:
		case r.next < len(r.texts):
			env.Send(r.from, api.EngineToken{ReqID: m.ReqID, Index: r.next, Text: r.texts[r.next]})
			r.next++
			env.After(e.interval, m)
		default:
			env.Send(r.from, api.EngineDone{ReqID: m.ReqID, Reason: api.FinishLength})
			delete(e.runs, m.ReqID)
		}
	}
}

const realModel = "hf:TheBloke/TinyLlama-GGUF/tiny.gguf"

// The gateway in front of the real queen, with a real hive and a real worker (one slot, no
// queue) over a fake engine: streams, the OpenAI endpoints, refusals from the real routing,
// a client disconnect freeing the worker's slot through the queen, and the keeper over HTTP.
func TestAgainstTheRealQueen(t *testing.T) {
	srv, err := NewServer(ServerConfig{Queen: queenAddr, Policy: auth.Policy{Keys: []string{testKey}},
		Aliases: map[string]string{"tinyllama": realModel}})
	must(t, err)
	rt, err := real.New(real.Config{DataDir: t.TempDir(), Seed: 1})
	must(t, err)
	t.Cleanup(rt.Stop)
	qcfg := queen.DefaultConfig()
	qcfg.QueueAllowance = 0 // a worker is full at its slots
	must(t, rt.Add(queenAddr, "queen", func() node.Node { return queen.New(qcfg) }))
	must(t, rt.Add("hive-ws", "ws", func() node.Node {
		return hive.New(hive.Config{Queen: queenAddr, WorkerProcesses: true, RetryInterval: 100 * time.Millisecond,
			Workers: []api.WorkerSpec{{ID: "worker-ws-1", Model: realModel, Capability: "cpu", Slots: 1}}})
	}))
	wcfg := worker.DefaultConfig()
	wcfg.ID, wcfg.Hive, wcfg.Engine, wcfg.Model, wcfg.QueueMax = "worker-ws-1", "hive-ws", "engine-ws-1", realModel, 0
	must(t, rt.Add("worker-ws-1", "ws", func() node.Node { return worker.New(wcfg) }))
	must(t, rt.Add("engine-ws-1", "ws", func() node.Node { return &fakeEngine{interval: 3 * time.Millisecond} }))
	must(t, rt.AddPort(apiAddr, srv.Port))
	must(t, rt.StartAll())
	h := &harness{t: t, rt: rt, srv: srv}
	h.ts = newTestServer(t, srv)

	eventually(t, "the worker to be registered idle", func() bool {
		resp := h.do(nil, "GET", "/v1/workers", nil, "")
		defer resp.Body.Close()
		var wr WorkersResponse
		json.NewDecoder(resp.Body).Decode(&wr)
		return len(wr.Workers) == 1 && wr.Workers[0].State == api.StateIdle && wr.Workers[0].Health == api.HealthHealthy
	})
	resp := h.do(nil, "GET", "/v1/models", nil, "")
	var ml ModelList
	must(t, json.NewDecoder(resp.Body).Decode(&ml))
	resp.Body.Close()
	if len(ml.Data) != 2 || ml.Data[0].ID != realModel || ml.Data[1].ID != "tinyllama" {
		t.Fatalf("models %+v", ml)
	}

	// A stream: textgen's completion, token by token.
	want, _ := textgen.Completion("the hive at dawn", 11, 6, 0)
	resp = h.do(nil, "POST", "/v1/inference", map[string]any{"model": "tinyllama", "prompt": "the hive at dawn", "max_tokens": 6, "seed": 11}, "")
	ev := readEvents(t, resp.Body)
	var acc AcceptedEvent
	ev.expect("accepted", &acc)
	if acc.Worker != "worker-ws-1" {
		t.Fatalf("accepted %+v", acc)
	}
	for i, w := range want {
		var tok TokenEvent
		ev.expect("token", &tok)
		if tok.Index != i || tok.Text != w {
			t.Fatalf("token %+v, want %d %q", tok, i, w)
		}
	}
	var done DoneEvent
	ev.expect("done", &done)
	resp.Body.Close()
	if done.Error != nil || done.FinishReason != api.FinishLength || done.Usage != (Usage{4, 6, 10}) || done.Worker != "worker-ws-1" {
		t.Fatalf("done %+v", done)
	}

	// OpenAI chat, not streamed.
	resp = h.do(nil, "POST", "/v1/chat/completions", map[string]any{"model": "tinyllama", "max_tokens": 4, "seed": 2,
		"messages": []map[string]any{{"role": "user", "content": "Hi"}}}, "")
	var chat sdkCompletion
	must(t, json.NewDecoder(resp.Body).Decode(&chat))
	resp.Body.Close()
	wantChat, _ := textgen.Completion("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 2, 4, 0)
	if resp.StatusCode != 200 || chat.Choices[0].Message.Content != strings.Join(wantChat, "") {
		t.Fatalf("%d %+v, want content %q", resp.StatusCode, chat, strings.Join(wantChat, ""))
	}

	// The real queen's refusals.
	e := errorOf(t, h.do(nil, "POST", "/v1/inference", map[string]any{"model": "hf:x/y/z.gguf", "prompt": "p", "max_tokens": 1}, ""), 404)
	if e["code"] != string(api.CodeModelNotServed) || !strings.Contains(e["suggestion"].(string), "worker start") {
		t.Fatalf("%v", e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	long := h.do(ctx, "POST", "/v1/inference", map[string]any{"model": realModel, "prompt": "long", "max_tokens": 100000}, "")
	lev := readEvents(t, long.Body)
	lev.expect("accepted", nil)
	lev.expect("token", nil)
	busy := h.do(nil, "POST", "/v1/completions", map[string]any{"model": realModel, "prompt": "p", "max_tokens": 1}, "")
	if e := errorOf(t, busy, 503); e["code"] != string(api.CodeAllSlotsBusy) || e["type"] != "overloaded_error" || busy.Header.Get("Retry-After") != "1" {
		t.Fatalf("%v, Retry-After %q", e, busy.Header.Get("Retry-After"))
	}
	// The client goes away: the queen cancels the request at the worker, whose slot frees.
	cancel()
	long.Body.Close()
	eventually(t, "the slot to free", func() bool {
		var n int
		must(t, rt.Inspect(queenAddr, func(nd node.Node) { n = nd.(*queen.Queen).Inflight() }))
		return n == 0
	})

	// rbee-keeper over HTTP.
	k := newKeeperSide(t, h.ts.URL, testKey, keeper.InferConfig{Requests: []keeper.InferSpec{
		{Model: realModel, Prompt: "bees hum", MaxTokens: 8, Seed: 5, Timeout: 30 * time.Second},
	}})
	r := k.results()[0]
	wantK, _ := textgen.Completion("bees hum", 5, 8, 0)
	if r.ExitCode != keeper.ExitOK || texts(r.Tokens) != strings.Join(wantK, "") || r.Worker != "worker-ws-1" || len(r.Violations) != 0 {
		t.Fatalf("%+v, want tokens %q", r, strings.Join(wantK, ""))
	}
}
