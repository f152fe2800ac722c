package engine

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
	"github.com/rbee-sim/rbee-sim/orch/worker"
	"github.com/rbee-sim/rbee-sim/real"
)

// recordPort is a port that plays a hive or a queen: it keeps what it is sent.
type recordPort struct{ rec *recorder }

func (p recordPort) Deliver(from node.Addr, m node.Msg) { p.rec.send(from, m) }
func (p recordPort) Close() error                       { return nil }

// A real worker node in a real.Runtime, with the CPU engine at its engine address: it loads
// (progress to the hive, then ready), and the InferTokens it streams to the queen for
// concurrent requests are textgen.Completion, at the engine's pace in fake time; a cancelled
// request ends cancelled and frees its slot.
func TestWorkerWithCPUEngine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			workerID  = "worker-ws-1"
			hive      = node.Addr("hive-ws")
			queen     = node.Addr("queen-1")
			engineAt  = node.Addr("engine-ws-1")
			model     = "hf:org/tiny-GGUF/tiny.gguf"
			maxTokens = 40
		)
		rt, err := real.New(real.Config{DataDir: t.TempDir(), Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Stop()
		cfg := DefaultCPUConfig()
		cfg.EOSMean = 16
		mk, err := NewCPU(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hiveRec, queenRec := newRecorder(), newRecorder()
		must(t, rt.AddPort(engineAt, mk))
		must(t, rt.AddPort(hive, func(real.Send) real.Port { return recordPort{hiveRec} }))
		must(t, rt.AddPort(queen, func(real.Send) real.Port { return recordPort{queenRec} }))
		wcfg := worker.DefaultConfig()
		wcfg.ID, wcfg.Hive, wcfg.Engine, wcfg.Model, wcfg.ModelBytes = workerID, hive, engineAt, model, 1<<30
		wcfg.Slots, wcfg.QueueMax = 3, 8
		must(t, wcfg.Validate())
		must(t, rt.Add("worker-ws-1", "ws", func() node.Node { return worker.New(wcfg) }))
		must(t, rt.Start("worker-ws-1"))

		time.Sleep(time.Second)
		synctest.Wait()
		var loading []float64
		ready := false
		for _, s := range hiveRec.all() {
			switch m := s.msg.(type) {
			case api.WorkerLoading:
				loading = append(loading, m.Percent)
			case api.WorkerReady:
				ready = m.Err.OK() && m.Slots == 3
			}
		}
		if !ready || !slices.Equal(loading, []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}) {
			t.Fatalf("hive got loading %v and ready %v, want 10..100 then ready with 3 slots", loading, ready)
		}

		type req struct {
			prompt string
			seed   uint64
		}
		reqs := map[uint64]req{}
		for i, prompt := range prompts {
			reqs[uint64(i+1)] = req{prompt, uint64(i) * 1000003}
		}
		start := time.Now()
		for id := uint64(1); id <= uint64(len(reqs)); id++ {
			r := reqs[id]
			rt.Inject(queen, "worker-ws-1", api.InferReq{ReqID: id, Model: model, Prompt: r.prompt,
				MaxTokens: maxTokens, Seed: r.seed})
		}
		rt.Inject(queen, "worker-ws-1", api.InferReq{ReqID: 99, Model: model, Prompt: "to cancel", MaxTokens: 1000, Seed: 1})
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		rt.Inject(queen, "worker-ws-1", api.InferCancel{ReqID: 99})
		time.Sleep(time.Minute)
		synctest.Wait()

		got := queenRec.all()
		for id, r := range reqs {
			texts, reason := textgen.Completion(r.prompt, r.seed, maxTokens, cfg.EOSMean)
			var toks []string
			var done *api.InferDone
			for _, s := range got {
				switch m := s.msg.(type) {
				case api.InferToken:
					if m.ReqID == id {
						if done != nil || m.Index != len(toks) {
							t.Errorf("request %d: token %d after %d tokens (ended: %v)", id, m.Index, len(toks), done != nil)
						}
						toks = append(toks, m.Text)
					}
				case api.InferDone:
					if m.ReqID == id {
						if done != nil {
							t.Errorf("request %d ended twice", id)
						}
						done = &m
					}
				}
			}
			if !slices.Equal(toks, texts) || done == nil || done.FinishReason != reason || done.Tokens != len(texts) {
				t.Errorf("request %d: got %q then %+v, want %q then %s", id, toks, done, texts, reason)
			}
		}
		for _, s := range got {
			if d, ok := s.msg.(api.InferDone); ok && d.ReqID == 99 && d.FinishReason != api.FinishCancelled {
				t.Errorf("cancelled request ended %+v", d)
			}
		}
		// Three slots, seven requests of at most 40 tokens at 50 tokens/s (and the cancelled
		// one holding a slot for 50 ms): the last ends by 3 rounds of 0.8 s, in fake time.
		last := got[len(got)-1].at.Sub(start)
		if last > 3*time.Second {
			t.Errorf("the last message came %v after the requests, want the slots reused within 3 s", last)
		}
		var status *api.WorkerStatus
		for _, s := range hiveRec.all() {
			if m, ok := s.msg.(api.WorkerStatus); ok {
				status = &m
			}
		}
		if status == nil || status.Active != 0 || status.Queued != 0 {
			t.Errorf("worker status at the end %+v, want no slot active and nothing queued", status)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
