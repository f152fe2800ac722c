package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/worker"
)

// engineClient records everything the engine sends it, with arrival times. Tests send it
// requests by injecting them into the engine as if from the client.
type engineClient struct {
	s          *Sim
	tokens     map[uint64][]api.EngineToken
	tokenAt    map[uint64][]time.Duration
	dones      map[uint64][]api.EngineDone
	doneAt     map[uint64]time.Duration
	progress   []float64
	progressAt []time.Duration
	loaded     []api.EngineLoaded
	loadedAt   time.Duration
}

func newEngineClient(s *Sim) *engineClient {
	return &engineClient{s: s, tokens: map[uint64][]api.EngineToken{}, tokenAt: map[uint64][]time.Duration{},
		dones: map[uint64][]api.EngineDone{}, doneAt: map[uint64]time.Duration{}}
}

func (c *engineClient) Start(node.Env) {}

func (c *engineClient) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.EngineToken:
		c.tokens[m.ReqID] = append(c.tokens[m.ReqID], m)
		c.tokenAt[m.ReqID] = append(c.tokenAt[m.ReqID], c.s.Now())
	case api.EngineDone:
		c.dones[m.ReqID] = append(c.dones[m.ReqID], m)
		c.doneAt[m.ReqID] = c.s.Now()
	case api.EngineLoadProgress:
		c.progress = append(c.progress, m.Percent)
		c.progressAt = append(c.progressAt, c.s.Now())
	case api.EngineLoaded:
		c.loaded = append(c.loaded, m)
		c.loadedAt = c.s.Now()
	}
}

// texts returns the token texts of id, failing on a gap or repeat in the indexes.
func (c *engineClient) texts(t *testing.T, id uint64) []string {
	t.Helper()
	var out []string
	for i, tk := range c.tokens[id] {
		if tk.Index != i {
			t.Fatalf("request %d: token %d has index %d", id, i, tk.Index)
		}
		out = append(out, tk.Text)
	}
	return out
}

// done returns the one EngineDone of id.
func (c *engineClient) done(t *testing.T, id uint64) api.EngineDone {
	t.Helper()
	if len(c.dones[id]) != 1 {
		t.Fatalf("request %d got %d ends, want 1: %+v", id, len(c.dones[id]), c.dones[id])
	}
	return c.dones[id][0]
}

// engineRig is a simulation with an engine at "engine" and a recording client at "cli" on one
// machine and a perfect network.
type engineRig struct {
	s   *Sim
	eng *Engine
	cli *engineClient
}

const testModelBytes = 4 << 30 // loads in 2s at the default rate

func newEngineRig(t testing.TB, cfg EngineConfig, seed uint64) *engineRig {
	s := New(Options{Seed: seed})
	s.Network().SetDefault(LinkConfig{})
	eng := NewEngine(cfg)
	cli := newEngineClient(s)
	s.Add("engine", "gpu-box", 0, func() node.Node { return eng })
	s.Add("cli", "gpu-box", 0, func() node.Node { return cli })
	return &engineRig{s: s, eng: eng, cli: cli}
}

// send delivers m to the engine from the client at time at.
func (r *engineRig) send(at time.Duration, m node.Msg) {
	r.s.At(at, "send "+m.MsgName(), func() { r.s.Inject("cli", "engine", m) })
}

// loaded loads the model at time 0 and runs until it is loaded.
func (r *engineRig) loaded(t *testing.T) {
	t.Helper()
	r.send(0, api.EngineLoad{Model: "tiny", SizeBytes: testModelBytes})
	r.s.Run(3 * time.Second)
	if len(r.cli.loaded) != 1 || !r.cli.loaded[0].Err.OK() {
		t.Fatalf("load: %+v", r.cli.loaded)
	}
}

func gen(id uint64, prompt string, promptTokens, maxTokens int, seed uint64) api.EngineGenerate {
	return api.EngineGenerate{ReqID: id, Prompt: prompt, PromptTokens: promptTokens, MaxTokens: maxTokens, Seed: seed}
}

func TestEngineLoadProgressAndTiming(t *testing.T) {
	r := newEngineRig(t, DefaultEngineConfig(), 1)
	r.send(0, api.EngineLoad{Model: "tiny", SizeBytes: testModelBytes})
	r.send(time.Second, gen(1, "hi", 1, 5, 1)) // still loading
	r.s.Run(time.Minute)
	if want := []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}; !slices.Equal(r.cli.progress, want) {
		t.Fatalf("progress %v, want %v", r.cli.progress, want)
	}
	for i, at := range r.cli.progressAt {
		if want := time.Duration(i+1) * 200 * time.Millisecond; at != want {
			t.Fatalf("progress %d at %v, want %v", i, at, want)
		}
	}
	if len(r.cli.loaded) != 1 || !r.cli.loaded[0].Err.OK() || r.cli.loadedAt != 2*time.Second {
		t.Fatalf("loaded %+v at %v, want ok at 2s (4 GiB at 2 GiB/s)", r.cli.loaded, r.cli.loadedAt)
	}
	if d := r.cli.done(t, 1); d.Reason != api.FinishError || d.Err.Code != api.CodeEngineError {
		t.Fatalf("generate while loading: %+v", d)
	}
	if st := r.eng.Stats(); st.Loads != 1 || st.Loaded != 1 || st.Refused != 1 || st.Requests != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEnginePrefillAndDecodeTiming(t *testing.T) {
	cfg := DefaultEngineConfig()
	cfg.EOSMean = 0
	r := newEngineRig(t, cfg, 1)
	r.loaded(t)
	t0 := 10 * time.Second
	r.send(t0, gen(1, "long prompt", 200, 5, 1))                  // prefill 100ms
	r.send(t0, gen(2, "other prompt", 2000, 3, 2))                // prefill 1s, concurrently
	r.send(t0+time.Millisecond, gen(1, "long prompt", 200, 5, 1)) // a repeat: ignored
	r.s.Run(time.Minute)
	check := func(id uint64, prefill time.Duration, n int) {
		t.Helper()
		at := r.cli.tokenAt[id]
		if len(at) != n {
			t.Fatalf("request %d: %d tokens, want %d", id, len(at), n)
		}
		for i, got := range at {
			// Each completion decodes at the full rate (40/s: 25ms a token) whatever else runs.
			if want := t0 + prefill + time.Duration(i)*25*time.Millisecond; got != want {
				t.Fatalf("request %d: token %d at %v, want %v", id, i, got, want)
			}
		}
		if d := r.cli.done(t, id); d.Reason != api.FinishLength || r.cli.doneAt[id] != at[n-1] {
			t.Fatalf("request %d: end %+v at %v, want length with the last token", id, d, r.cli.doneAt[id])
		}
	}
	check(1, 100*time.Millisecond, 5)
	check(2, time.Second, 3)
	if st := r.eng.Stats(); st.Requests != 2 || st.Tokens != 8 || st.MaxConcurrent != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestEngineStreamIsAPureFunctionOfPromptAndSeed: engines in different runs, with different
// run seeds and on different addresses, give the same stream for the same (prompt, seed),
// the one EngineCompletion names; another seed gives another stream.
func TestEngineStreamIsAPureFunctionOfPromptAndSeed(t *testing.T) {
	const prompt = "Write a poem about bees"
	streams := map[uint64][]string{}
	for _, run := range []uint64{1, 99} {
		r := newEngineRig(t, DefaultEngineConfig(), run)
		r.loaded(t)
		r.send(3*time.Second, gen(7, prompt, 5, 200, 42))
		r.send(3*time.Second, gen(8, prompt, 5, 200, 43))
		r.s.Run(time.Minute)
		for _, id := range []uint64{7, 8} {
			got := r.cli.texts(t, id)
			want, reason := EngineCompletion(prompt, 41+uint64(id-6), 200, EngineDefaultEOSMean)
			if !slices.Equal(got, want) || r.cli.done(t, id).Reason != reason {
				t.Fatalf("run %d request %d: %q %s, want %q %s", run, id, got, r.cli.done(t, id).Reason, want, reason)
			}
			if prev, ok := streams[id]; ok && !slices.Equal(prev, got) {
				t.Fatalf("request %d differs between runs: %q vs %q", id, prev, got)
			}
			streams[id] = got
		}
	}
	if slices.Equal(streams[7], streams[8]) {
		t.Fatalf("seeds 42 and 43 gave the same stream %q", streams[7])
	}
	long, _ := EngineCompletion(prompt, 42, 1000, 0)
	short, _ := EngineCompletion(prompt, 42, 10, 0)
	if !slices.Equal(long[:10], short) {
		t.Fatal("the stream depends on MaxTokens")
	}
}

func TestEngineEOSVersusLength(t *testing.T) {
	const prompt = "hello"
	// Find a seed whose end-of-sequence comes at 5 to 20 tokens.
	seed, eos := uint64(0), 0
	for s := uint64(1); eos == 0; s++ {
		if p := eosPosition(prompt, s, EngineDefaultEOSMean, 1000); p >= 5 && p <= 20 {
			seed, eos = s, p
		}
	}
	r := newEngineRig(t, DefaultEngineConfig(), 1)
	r.loaded(t)
	r.send(3*time.Second, gen(1, prompt, 1, 100, seed))   // EOS first: stop with exactly eos tokens
	r.send(3*time.Second, gen(2, prompt, 1, eos-1, seed)) // MaxTokens first: length
	r.send(3*time.Second, gen(3, prompt, 1, eos, seed))   // both at once: stop
	r.s.Run(time.Minute)
	for _, c := range []struct {
		id     uint64
		n      int
		reason api.FinishReason
	}{{1, eos, api.FinishStop}, {2, eos - 1, api.FinishLength}, {3, eos, api.FinishStop}} {
		if got := len(r.cli.texts(t, c.id)); got != c.n || r.cli.done(t, c.id).Reason != c.reason {
			t.Errorf("request %d: %d tokens and %s, want %d and %s", c.id, got, r.cli.done(t, c.id).Reason, c.n, c.reason)
		}
	}
	// The EOS position is geometric with the configured mean.
	sum := 0
	const draws = 4000
	for s := uint64(0); s < draws; s++ {
		sum += eosPosition("p", s, 64, 1<<20)
	}
	if mean := float64(sum) / draws; mean < 58 || mean > 70 {
		t.Fatalf("mean EOS position %.1f, want about 64", mean)
	}
	if p := eosPosition("p", 1, 1, 10); p != 1 {
		t.Fatalf("EOSMean 1 puts EOS at %d, want 1", p)
	}
}

func TestEngineStop(t *testing.T) {
	cfg := DefaultEngineConfig()
	cfg.EOSMean = 0
	r := newEngineRig(t, cfg, 1)
	r.loaded(t)
	r.send(3*time.Second, gen(1, "a", 1, 100, 1))
	r.send(3*time.Second, gen(2, "b", 1, 10, 1))
	r.send(3*time.Second+60*time.Millisecond, api.EngineStop{ReqID: 1}) // after tokens 0, 1, 2
	r.send(4*time.Second, api.EngineStop{ReqID: 1})                     // again: nothing
	r.s.Run(time.Minute)
	if n := len(r.cli.texts(t, 1)); n != 3 || len(r.cli.dones[1]) != 0 {
		t.Fatalf("stopped request: %d tokens and ends %+v, want 3 and none", n, r.cli.dones[1])
	}
	if n := len(r.cli.texts(t, 2)); n != 10 || r.cli.done(t, 2).Reason != api.FinishLength {
		t.Fatalf("the other request: %d tokens", n)
	}
}

func TestEngineHang(t *testing.T) {
	cfg := DefaultEngineConfig()
	cfg.EOSMean = 0
	r := newEngineRig(t, cfg, 1)
	r.loaded(t)
	t0 := 3 * time.Second
	r.send(t0, gen(1, "a", 1, 20, 1)) // tokens at t0+0.5ms+25ms*i
	hangAt, hangFor := t0+100*time.Millisecond, 2*time.Second
	r.s.At(hangAt, "hang", func() { r.eng.Hang(hangFor) })
	r.s.At(hangAt+time.Second, "hang again", func() { r.eng.Hang(500 * time.Millisecond) }) // inside the first
	r.s.Run(time.Minute)
	at := r.cli.tokenAt[1]
	if len(at) != 20 || r.cli.done(t, 1).Reason != api.FinishLength {
		t.Fatalf("%d tokens, end %+v", len(at), r.cli.dones[1])
	}
	for i, a := range at {
		if a > hangAt && a < hangAt+hangFor {
			t.Fatalf("token %d at %v, during the hang", i, a)
		}
	}
	// Tokens 0..3 came before the hang; token 4 fell due during it and comes as it ends; the
	// rest follow at the decode rate.
	prefill := time.Duration(float64(time.Second) / EngineDefaultPrefillTokensPerSec)
	if at[3] != t0+prefill+75*time.Millisecond || at[4] != hangAt+hangFor || at[5] != hangAt+hangFor+25*time.Millisecond {
		t.Fatalf("tokens 3..5 at %v, want %v, %v, %v", at[3:6], t0+prefill+75*time.Millisecond,
			hangAt+hangFor, hangAt+hangFor+25*time.Millisecond)
	}
}

func TestEngineOOM(t *testing.T) {
	r := newEngineRig(t, DefaultEngineConfig(), 1)
	r.loaded(t)
	r.s.At(3*time.Second, "oom", func() { r.eng.FailNext(EngineFaultOOM) })
	r.send(4*time.Second, gen(1, "a", 1, 5, 1))
	r.send(4*time.Second, gen(2, "b", 1, 5, 1))
	r.s.Run(time.Minute)
	d := r.cli.done(t, 1)
	if d.Reason != api.FinishError || d.Err.Code != api.CodeEngineError || !strings.Contains(d.Err.Message, "CUDA out of memory") ||
		r.cli.doneAt[1] != 4*time.Second || len(r.cli.tokens[1]) != 0 {
		t.Fatalf("OOM request: %+v at %v", d, r.cli.doneAt[1])
	}
	if d := r.cli.done(t, 2); d.Reason == api.FinishError {
		t.Fatalf("the request after the OOM failed too: %+v", d)
	}
	if st := r.eng.Stats(); st.OOMs != 1 || st.Refused != 1 || st.Requests != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEngineCrashRefusesUntilReloaded(t *testing.T) {
	cfg := DefaultEngineConfig()
	cfg.EOSMean = 0
	r := newEngineRig(t, cfg, 1)
	r.loaded(t)
	r.send(3*time.Second, gen(1, "a", 1, 100, 1))
	r.send(3*time.Second, gen(2, "b", 1, 100, 1))
	r.s.At(3*time.Second+30*time.Millisecond, "crash", func() { r.eng.FailNext(EngineFaultCrash) })
	r.send(4*time.Second, gen(3, "c", 1, 5, 1))
	r.send(5*time.Second, api.EngineLoad{Model: "tiny", SizeBytes: testModelBytes})
	r.send(8*time.Second, gen(4, "d", 1, 5, 1))
	r.s.Run(time.Minute)
	for _, id := range []uint64{1, 2, 3} {
		d := r.cli.done(t, id)
		if d.Reason != api.FinishError || d.Err.Code != api.CodeEngineError || !strings.Contains(d.Err.Message, "engine crashed") {
			t.Fatalf("request %d: %+v", id, d)
		}
	}
	if n := len(r.cli.tokens[1]); n != 2 || r.cli.doneAt[1] != 3*time.Second+30*time.Millisecond {
		t.Fatalf("request 1: %d tokens, ended at %v", n, r.cli.doneAt[1])
	}
	if d := r.cli.done(t, 4); d.Reason != api.FinishLength || len(r.cli.tokens[4]) != 5 {
		t.Fatalf("after the reload: %+v", d)
	}
	if st := r.eng.Stats(); st.Crashes != 1 || st.Loaded != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEngineProcessRestartForgetsTheModel(t *testing.T) {
	r := newEngineRig(t, DefaultEngineConfig(), 1)
	r.loaded(t)
	r.send(3*time.Second, gen(1, "a", 1, 100, 1))
	r.s.At(3*time.Second+50*time.Millisecond, "crash engine", func() { r.s.Crash("engine"); r.s.Restart("engine", 0) })
	r.s.At(3*time.Second+50*time.Millisecond, "hang a dead engine", func() { r.eng.Hang(time.Second) })
	r.send(4*time.Second, gen(2, "b", 1, 5, 1))
	r.s.Run(time.Minute)
	if len(r.cli.dones[1]) != 0 || len(r.cli.tokens[1]) == 0 {
		t.Fatalf("request 1 lost with the process: ends %+v", r.cli.dones[1])
	}
	if d := r.cli.done(t, 2); d.Err.Code != api.CodeEngineError || !strings.Contains(d.Err.Message, "no model") {
		t.Fatalf("after a restart: %+v", d)
	}
}

// workerHost records what a worker sends its hive and its requester.
type workerHost struct {
	ready   []api.WorkerReady
	tokens  []api.InferToken
	dones   []api.InferDone
	drained int
}

func (h *workerHost) Start(node.Env) {}

func (h *workerHost) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.WorkerReady:
		h.ready = append(h.ready, m)
	case api.InferToken:
		h.tokens = append(h.tokens, m)
	case api.InferDone:
		h.dones = append(h.dones, m)
	case api.WorkerDrained:
		h.drained++
	}
}

// TestWorkerOnEngine runs orch/worker against the simulated engine: it loads, reports ready,
// streams the completion EngineCompletion names, survives an OOM, and drains; a second run
// of the same seed gives the same trace hash.
func TestWorkerOnEngine(t *testing.T) {
	first := runWorkerOnEngine(t)
	if again := runWorkerOnEngine(t); again != first {
		t.Fatalf("trace hash %x, then %x: the run is not deterministic", first, again)
	}
}

func runWorkerOnEngine(t *testing.T) (traceHash uint64) {
	s := New(Options{Seed: 3})
	s.Network().SetDefault(LinkConfig{Latency: time.Millisecond})
	eng := NewEngine(DefaultEngineConfig())
	host := &workerHost{}
	cfg := worker.DefaultConfig()
	cfg.ID, cfg.Hive, cfg.Engine, cfg.Model, cfg.ModelBytes, cfg.Slots = "worker-1", "host", "engine", "tiny", testModelBytes, 2
	s.Add("engine", "gpu-box", 0, func() node.Node { return eng })
	s.Add("worker-1", "gpu-box", 0, func() node.Node { return worker.New(cfg) })
	s.Add("host", "gpu-box", 0, func() node.Node { return host })
	req := api.InferReq{Model: "tiny", Prompt: "once upon a time", MaxTokens: 300, Seed: 5}
	early := req
	early.ReqID = 1
	s.At(time.Second, "early request", func() { s.Inject("host", "worker-1", early) })
	s.At(3*time.Second, "oom", func() { eng.FailNext(EngineFaultOOM) })
	s.At(3*time.Second, "request", func() { s.Inject("host", "worker-1", api.InferReq{ReqID: 2, Prompt: "x", MaxTokens: 3}) })
	req.ReqID = 3
	s.At(4*time.Second, "request", func() { s.Inject("host", "worker-1", req) })
	s.At(5*time.Second, "drain", func() { s.Inject("host", "worker-1", api.WorkerDrain{Worker: "worker-1"}) })
	s.Run(time.Minute)
	if len(host.ready) != 1 || !host.ready[0].Err.OK() {
		t.Fatalf("ready %+v", host.ready)
	}
	want, reason := EngineCompletion(req.Prompt, req.Seed, req.MaxTokens, EngineDefaultEOSMean)
	var got []string
	for _, tk := range host.tokens {
		if tk.ReqID == 3 {
			got = append(got, tk.Text)
		}
	}
	ends := map[uint64]api.InferDone{}
	for _, d := range host.dones {
		if _, dup := ends[d.ReqID]; dup {
			t.Fatalf("two ends for request %d: %+v", d.ReqID, host.dones)
		}
		ends[d.ReqID] = d
	}
	if e := ends[1]; e.Err.Code != api.CodeUnavailable {
		t.Fatalf("request before ready: %+v", e)
	}
	if e := ends[2]; e.Err.Code != api.CodeEngineError || !strings.Contains(e.Err.Message, "CUDA out of memory") {
		t.Fatalf("OOM request: %+v", e)
	}
	if e := ends[3]; !slices.Equal(got, want) || e.FinishReason != reason || e.Tokens != len(want) {
		t.Fatalf("request 3 streamed %q and ended %+v, want %q and %s", got, e, want, reason)
	}
	if host.drained != 1 {
		t.Fatalf("WorkerDrained %d times", host.drained)
	}
	return s.Trace().Hash()
}
