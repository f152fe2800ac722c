package engine

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// Many completions at once, as fast as possible: each is exactly textgen.Completion, with
// both finish reasons, and no completion has more than its MaxTokens.
func TestCPUMatchesTextgen(t *testing.T) {
	const eosMean = 12
	p, rec := mkPort(t)(NewCPU(CPUConfig{EOSMean: eosMean}))
	load(t, p, rec, 1<<20)
	type want struct {
		texts  []string
		reason api.FinishReason
	}
	wants := map[uint64]want{}
	id := uint64(100)
	for _, prompt := range prompts {
		for seed := uint64(0); seed < 12; seed++ {
			maxTokens := 1 + int(seed*7+uint64(len(prompt)))%40
			if seed == 11 {
				maxTokens = 500
			}
			texts, reason := textgen.Completion(prompt, seed<<40|seed, maxTokens, eosMean)
			wants[id] = want{texts, reason}
			p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: prompt, PromptTokens: 3,
				MaxTokens: maxTokens, Seed: seed<<40 | seed})
			id++
		}
	}
	got := rec.waitFor(t, "every completion's end", func(s []sent) bool {
		n := 0
		for _, x := range s {
			if _, ok := x.msg.(api.EngineDone); ok {
				n++
			}
		}
		return n == len(wants)
	})
	checkProtocol(t, got, workerAddr)
	reasons := map[api.FinishReason]int{}
	for id, w := range wants {
		toks, done := completion(got, id)
		if !slices.Equal(toks, w.texts) || done.Reason != w.reason || !done.Err.OK() {
			t.Errorf("request %d: got %q then %+v, want %q then %s", id, toks, *done, w.texts, w.reason)
		}
		reasons[done.Reason]++
	}
	if reasons[api.FinishStop] == 0 || reasons[api.FinishLength] == 0 {
		t.Errorf("finish reasons %v: want both stop and length among %d completions", reasons, len(wants))
	}
}

// With the defaults, in fake time: the load reports every 10% at 50 ms steps, the first token
// comes after the prefill and the next ones every 1/50 s.
func TestCPUPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultCPUConfig()
		p, rec := mkPort(t)(NewCPU(cfg))
		start := time.Now()
		p.Deliver(workerAddr, api.EngineLoad{Model: "m", SizeBytes: 1 << 30})
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.all()
		if len(got) != 11 {
			t.Fatalf("load sent %d messages, want 10 progress reports and EngineLoaded:%s", len(got), dump(got))
		}
		for i, s := range got[:10] {
			pr, ok := s.msg.(api.EngineLoadProgress)
			want := time.Duration(i+1) * cfg.LoadTime / 10
			if !ok || pr.Percent != float64(10*(i+1)) || s.at.Sub(start) != want {
				t.Errorf("load message %d: %+v at %v, want progress %d at %v", i, s.msg, s.at.Sub(start), 10*(i+1), want)
			}
		}
		if l, ok := got[10].msg.(api.EngineLoaded); !ok || !l.Err.OK() || got[10].at.Sub(start) != cfg.LoadTime {
			t.Errorf("load ended with %+v at %v, want EngineLoaded at %v", got[10].msg, got[10].at.Sub(start), cfg.LoadTime)
		}

		start = time.Now()
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "the bee", PromptTokens: 10, MaxTokens: 20, Seed: 3})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		all := rec.all()[11:]
		checkProtocol(t, all, workerAddr)
		texts, reason := textgen.Completion("the bee", 3, 20, cfg.EOSMean)
		if toks, done := completion(all, 1); !slices.Equal(toks, texts) || done == nil || done.Reason != reason {
			t.Fatalf("got %q then %+v, want %q then %s", toks, done, texts, reason)
		}
		prefill := 10 * cfg.PrefillPerToken
		for i, s := range all[:len(texts)] {
			if want := prefill + time.Duration(i)*time.Second/50; s.at.Sub(start) != want {
				t.Errorf("token %d at %v, want %v", i, s.at.Sub(start), want)
			}
		}
		if end := all[len(texts)]; end.at.Sub(start) != prefill+time.Duration(len(texts)-1)*time.Second/50 {
			t.Errorf("EngineDone at %v, want with the last token", end.at.Sub(start))
		}
	})
}

// A mock clock drives the engine: each token comes once the clock has moved by the interval.
func TestCPUMockClock(t *testing.T) {
	mock := clock.NewMock()
	p, rec := mkPort(t)(NewCPU(CPUConfig{TokensPerSec: 10, Clock: mock, LoadSteps: 1}))
	load(t, p, rec, 0)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 7, Prompt: "p", PromptTokens: 1, MaxTokens: 5, Seed: 1})
	for i := 1; i <= 5; i++ {
		rec.waitTokens(t, 7, i)
		if toks, _ := completion(rec.all(), 7); len(toks) != i {
			t.Fatalf("after %d intervals: %d tokens, want %d", i-1, len(toks), i)
		}
		if i < 5 {
			mock.Add(100 * time.Millisecond)
		}
	}
	got := rec.waitDone(t, 7)
	texts, _ := textgen.Completion("p", 1, 5, 0)
	if toks, done := completion(got, 7); !slices.Equal(toks, texts) || done.Reason != api.FinishLength {
		t.Fatalf("got %q then %+v, want %q then length", toks, *done, texts)
	}
}

// EngineStop mid-completion: nothing more is sent for it, the others go on, and its slot
// (MaxConcurrent) is free at once.
func TestCPUStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultCPUConfig()
		cfg.EOSMean, cfg.MaxConcurrent = 0, 2
		p, rec := mkPort(t)(NewCPU(cfg))
		load(t, p, rec, 0)
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "a", PromptTokens: 1, MaxTokens: 100, Seed: 1})
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 2, Prompt: "b", PromptTokens: 1, MaxTokens: 100, Seed: 2})
		time.Sleep(100 * time.Millisecond)
		p.Deliver(workerAddr, api.EngineStop{ReqID: 1})
		n1, _ := completion(rec.all(), 1)
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 3, Prompt: "c", PromptTokens: 1, MaxTokens: 3, Seed: 3})
		p.Deliver(workerAddr, api.EngineStop{ReqID: 99}) // unknown: nothing happens
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := rec.all()
		checkProtocol(t, got, workerAddr)
		toks1, done1 := completion(got, 1)
		if len(n1) == 0 || len(toks1) != len(n1) || done1 != nil {
			t.Errorf("stopped request: %d tokens when stopped, %d in all, end %+v; want tokens before the stop only and no end",
				len(n1), len(toks1), done1)
		}
		for _, id := range []uint64{2, 3} {
			if _, done := completion(got, id); done == nil || done.Reason != api.FinishLength {
				t.Errorf("request %d ended with %+v, want length (the stop of request 1 freed a slot)", id, done)
			}
		}
	})
}

// Refusals come at once with the simulator's codes: no model, loading, invalid, full; a repeat
// of a running ReqID is ignored.
func TestCPURefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultCPUConfig()
		cfg.MaxConcurrent, cfg.EOSMean = 1, 0
		p, rec := mkPort(t)(NewCPU(cfg))
		gen := func(id uint64, maxTokens, promptTokens int) *api.EngineDone {
			p.Deliver(workerAddr, api.EngineGenerate{ReqID: id, Prompt: "x", PromptTokens: promptTokens, MaxTokens: maxTokens})
			synctest.Wait()
			_, done := completion(rec.all(), id)
			return done
		}
		wantError(t, gen(1, 5, 1), api.CodeEngineError, "no model is loaded")
		p.Deliver(workerAddr, api.EngineLoad{Model: "m-1", SizeBytes: -1})
		synctest.Wait()
		if l := loads(rec.all()); len(l) != 1 || l[0].Err.Code != api.CodeInvalidRequest {
			t.Fatalf("load of a negative size: %+v, want INVALID_REQUEST", l)
		}
		p.Deliver(workerAddr, api.EngineLoad{Model: "m-1", SizeBytes: 1})
		wantError(t, gen(2, 5, 1), api.CodeEngineError, "still loading m-1")
		time.Sleep(time.Second)
		wantError(t, gen(3, 0, 1), api.CodeInvalidRequest, "max_tokens 0")
		wantError(t, gen(4, 5, -1), api.CodeInvalidRequest, "prompt_tokens -1")
		if done := gen(5, 1000, 1); done != nil {
			t.Fatalf("request 5 ended at once: %+v", done)
		}
		wantError(t, gen(6, 5, 1), api.CodeAllSlotsBusy, "limit")
		gen(5, 1000, 1) // a repeat: ignored
		p.Deliver(otherAddr, api.EngineGenerate{ReqID: 5, Prompt: "x", PromptTokens: 1, MaxTokens: 3})
		synctest.Wait()
		got := rec.all()
		if done := rec.all()[len(got)-1].msg.(api.EngineDone); done.Err.Code != api.CodeAllSlotsBusy {
			t.Errorf("the same ReqID from another sender: %+v, want ALL_SLOTS_BUSY (another completion)", done)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		got = rec.all()
		toks, _ := completion(got, 5)
		if len(toks) != 1000 {
			t.Errorf("request 5 (and its ignored repeat) sent %d tokens, want 1000", len(toks))
		}
		n := 0
		for _, s := range got {
			if d, ok := s.msg.(api.EngineDone); ok && d.ReqID == 5 && s.to == workerAddr {
				n++
			}
		}
		if n != 1 {
			t.Errorf("request 5 ended %d times", n)
		}
	})
}

// A new load drops running completions without an end and supersedes a load in progress,
// which then sends nothing more.
func TestCPUReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultCPUConfig()
		cfg.EOSMean = 0
		p, rec := mkPort(t)(NewCPU(cfg))
		load(t, p, rec, 0)
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "a", PromptTokens: 1, MaxTokens: 100, Seed: 1})
		time.Sleep(100 * time.Millisecond)
		before := len(rec.all())
		p.Deliver(workerAddr, api.EngineLoad{Model: "second", SizeBytes: 1})
		time.Sleep(cfg.LoadTime * 45 / 100)
		p.Deliver(workerAddr, api.EngineLoad{Model: "third", SizeBytes: 1})
		time.Sleep(time.Minute)
		synctest.Wait()
		after := rec.all()[before:]
		var pct []float64
		for _, s := range after {
			switch m := s.msg.(type) {
			case api.EngineToken, api.EngineDone:
				t.Errorf("after the reload: %+v", m)
			case api.EngineLoadProgress:
				pct = append(pct, m.Percent)
			}
		}
		// 40% of the second load (10..40, sent by 45% of its time), then all of the third.
		if l := loads(after); len(l) != 1 || !l[0].Err.OK() {
			t.Errorf("loads ended %+v, want one EngineLoaded (the superseded load sends none)", l)
		}
		if want := []float64{10, 20, 30, 40, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}; !slices.Equal(pct, want) {
			t.Errorf("progress %v, want the second load's first steps then the third's 10 steps", pct)
		}
	})
}

// Close stops everything: nothing is sent after it returns, and later messages are ignored.
func TestCPUClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultCPUConfig()
		rec := newRecorder()
		mk, err := NewCPU(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := mk(rec.send)
		load(t, p, rec, 0)
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "a", PromptTokens: 1, MaxTokens: 100, Seed: 1})
		p.Deliver(workerAddr, api.EngineLoad{Model: "again"})
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 2, Prompt: "a", PromptTokens: 1, MaxTokens: 100, Seed: 1})
		time.Sleep(10 * time.Millisecond)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		n := len(rec.all())
		p.Deliver(workerAddr, api.EngineLoad{Model: "late"})
		p.Deliver(workerAddr, api.EngineGenerate{ReqID: 3, Prompt: "a", PromptTokens: 1, MaxTokens: 100, Seed: 1})
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := rec.all(); len(got) != n {
			t.Errorf("sent after Close:%s", dump(got[n:]))
		}
	})
}

func TestCPUConfigValidate(t *testing.T) {
	for _, c := range []CPUConfig{{TokensPerSec: -1}, {PrefillPerToken: -1}, {LoadTime: -1}, {LoadSteps: -1},
		{EOSMean: -1}, {MaxConcurrent: -1}} {
		if _, err := NewCPU(c); err == nil {
			t.Errorf("NewCPU(%+v) took an invalid config", c)
		}
	}
	if err := DefaultCPUConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
