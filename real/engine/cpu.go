package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
	"github.com/rbee-sim/rbee-sim/real"
)

// Defaults of the CPU engine (DefaultCPUConfig).
const (
	// DefaultTokensPerSec is DefaultCPUConfig's token rate of each completion.
	DefaultTokensPerSec = 50.0
	// DefaultPrefillPerToken is DefaultCPUConfig's prompt processing time per prompt token.
	DefaultPrefillPerToken = 500 * time.Microsecond
	// DefaultLoadTime is DefaultCPUConfig's model loading time.
	DefaultLoadTime = 500 * time.Millisecond
	// DefaultLoadSteps is how many progress reports a load makes when CPUConfig.LoadSteps is 0.
	DefaultLoadSteps = 10
	// DefaultEOSMean is DefaultCPUConfig's mean end-of-sequence position: the simulator's
	// default too (sim.EngineDefaultEOSMean), so both give the same completions.
	DefaultEOSMean = 64
)

// CPUConfig configures the built-in CPU engine. Start from DefaultCPUConfig; the zero value
// is valid too: no load time, no prefill, tokens as fast as possible, no end-of-sequence.
type CPUConfig struct {
	// TokensPerSec is each completion's token rate after its first token; 0 means as fast as
	// possible. Every running completion gets the full rate.
	TokensPerSec float64
	// PrefillPerToken is the prompt processing time per prompt token (EngineGenerate's
	// PromptTokens): the first token comes PromptTokens*PrefillPerToken after the request.
	PrefillPerToken time.Duration
	// LoadTime is how long a model load takes, whatever its size.
	LoadTime time.Duration
	// LoadSteps is how many EngineLoadProgress reports a load sends, evenly spread over
	// LoadTime, the last one 100; 0 means DefaultLoadSteps (10).
	LoadSteps int
	// EOSMean is the mean end-of-sequence position (see textgen.EOSPosition); 0 means never:
	// every completion runs to MaxTokens.
	EOSMean int
	// MaxConcurrent bounds the completions that run at once; beyond it EngineGenerate is
	// refused with ALL_SLOTS_BUSY. 0 means no bound (the worker's slots bound them).
	MaxConcurrent int
	// Clock drives the load and token timers; nil means clock.New() (the wall clock, which is
	// fake inside a testing/synctest bubble). Tests may pass clock.NewMock().
	Clock clock.Clock
	// Logger receives the engine's logs; nil means discard.
	Logger *slog.Logger
}

// DefaultCPUConfig returns the CPU engine's defaults: 50 tokens/s, 0.5 ms prefill per prompt
// token, a 500 ms load in 10 steps, end-of-sequence at 64 tokens on average.
func DefaultCPUConfig() CPUConfig {
	return CPUConfig{TokensPerSec: DefaultTokensPerSec, PrefillPerToken: DefaultPrefillPerToken,
		LoadTime: DefaultLoadTime, LoadSteps: DefaultLoadSteps, EOSMean: DefaultEOSMean}
}

// Validate checks: TokensPerSec finite and not negative; PrefillPerToken, LoadTime,
// LoadSteps, EOSMean and MaxConcurrent not negative.
func (c CPUConfig) Validate() error {
	if c.TokensPerSec < 0 || math.IsNaN(c.TokensPerSec) || math.IsInf(c.TokensPerSec, 0) {
		return fmt.Errorf("cpu engine: TokensPerSec %v must be finite and not negative (0 means as fast as possible)",
			c.TokensPerSec)
	}
	if c.PrefillPerToken < 0 || c.LoadTime < 0 || c.LoadSteps < 0 || c.EOSMean < 0 || c.MaxConcurrent < 0 {
		return fmt.Errorf("cpu engine: PrefillPerToken %v, LoadTime %v, LoadSteps %d, EOSMean %d and MaxConcurrent %d must not be negative",
			c.PrefillPerToken, c.LoadTime, c.LoadSteps, c.EOSMean, c.MaxConcurrent)
	}
	return nil
}

// NewCPU returns the constructor of a CPU engine port, for real.Runtime.AddPort. The engine
// needs no server and no model file: its completions are textgen's, exactly
// textgen.Completion(prompt, seed, maxTokens, cfg.EOSMean), paced by cfg. It fails if cfg is
// invalid.
func NewCPU(cfg CPUConfig) (func(real.Send) real.Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.LoadSteps == 0 {
		cfg.LoadSteps = DefaultLoadSteps
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	return func(send real.Send) real.Port {
		return newPort(&cpu{cfg: cfg}, send, cfg.Logger, cfg.MaxConcurrent)
	}, nil
}

// cpu is the CPU engine's backend.
type cpu struct{ cfg CPUConfig }

// load waits LoadTime in LoadSteps steps, reporting each but the last (the port sends 100).
func (c *cpu) load(ctx context.Context, m api.EngineLoad, progress func(float64)) api.Error {
	steps := int64(c.cfg.LoadSteps)
	total := int64(c.cfg.LoadTime)
	for k := int64(1); k <= steps; k++ {
		if !sleep(ctx, c.cfg.Clock, time.Duration(total*k/steps-total*(k-1)/steps)) {
			return cancelled(ctx)
		}
		if k < steps {
			progress(float64(100 * k / steps))
		}
	}
	return api.Error{}
}

// generate sends textgen's tokens: the first after the prefill, then one per 1/TokensPerSec.
// The timer for the next token is set before a token is sent, so that a test driving a mock
// clock may advance it as soon as it has seen the token.
func (c *cpu) generate(ctx context.Context, g *generation) (api.FinishReason, api.Error) {
	n, reason := g.MaxTokens, api.FinishLength
	if eos := textgen.EOSPosition(g.Prompt, g.Seed, c.cfg.EOSMean, g.MaxTokens); eos > 0 {
		n, reason = eos, api.FinishStop
	}
	if !sleep(ctx, c.cfg.Clock, time.Duration(g.PromptTokens)*c.cfg.PrefillPerToken) {
		return api.FinishError, cancelled(ctx)
	}
	var interval time.Duration
	if c.cfg.TokensPerSec > 0 {
		interval = time.Duration(float64(time.Second) / c.cfg.TokensPerSec)
	}
	tokens := textgen.NewTokens(g.Prompt, g.Seed)
	for i := 0; i < n; i++ {
		var t *clock.Timer
		if i+1 < n && interval > 0 {
			t = c.cfg.Clock.Timer(interval)
		}
		if !g.emit(tokens.Next()) {
			if t != nil {
				t.Stop()
			}
			return api.FinishError, cancelled(ctx)
		}
		if t == nil {
			if ctx.Err() != nil {
				return api.FinishError, cancelled(ctx)
			}
			continue
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return api.FinishError, cancelled(ctx)
		}
	}
	return reason, api.Error{}
}

func (c *cpu) stopped(context.Context, *generation, int) {}

func (c *cpu) close() error { return nil }

// sleep waits d on clk; false when ctx was cancelled first. A d of 0 or less does not wait.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := clk.Timer(d)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}

// cancelled is the error of work stopped because ctx was cancelled (EngineStop, a reload,
// Close). The port drops it: nobody is waiting for it.
func cancelled(ctx context.Context) api.Error {
	return api.Errorf(api.CodeCancelled, "nothing to do: the engine was told to stop",
		"stopped: %v", context.Cause(ctx))
}
