// Package keeper is rbee-keeper's client logic as a sans-IO node.Node.
//
// In this slice a keeper is a routing client of the queen's worker registry: it acquires a
// worker (with an atomic Claim, or by listing workers and moving one from idle to busy with a
// compare-and-set on its version), runs work on it through the worker's hive, and gives it back
// (Release, or a compare-and-set back to idle). Every registry request is retried with the same
// request ID until it is answered, so the queen can answer repeats from its cache. Later issues
// grow this into the CLI's inference client.
//
// Callers' duties: give it a valid Config; a keeper never needs a disk.
package keeper

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Config configures a keeper's workload.
type Config struct {
	// Queen is the address of queen-rbee. Required.
	Queen node.Addr `json:"queen"`
	// Models are the model references the keeper asks for, one drawn per acquisition.
	// Required, non-empty.
	Models []string `json:"models"`
	// Capability, when set, restricts claims to workers on that device.
	Capability string `json:"capability,omitempty"`
	// ThinkTime is the mean pause between acquisitions (exponential). Default 500ms; zero
	// means the default.
	ThinkTime time.Duration `json:"think_time"`
	// WorkTime is the mean length of one piece of work (exponential, capped at four times the
	// mean). Default 2s.
	WorkTime time.Duration `json:"work_time"`
	// CASPercent is the share of acquisitions, 0 to 100, made by list + compare-and-set
	// instead of Claim. Zero means none.
	CASPercent int `json:"cas_percent"`
	// RetryInterval is how long an unanswered request waits before it is sent again. Default
	// 500ms.
	RetryInterval time.Duration `json:"retry_interval"`
	// UseTimeout is how long the keeper waits for work to finish before it gives the worker
	// back anyway. Default 60s.
	UseTimeout time.Duration `json:"use_timeout"`
	// Acquisitions stops the keeper after this many acquisitions; zero means no limit.
	Acquisitions int `json:"acquisitions"`
}

// Validate lists every problem with the config.
func (c Config) Validate() error {
	var errs []string
	if c.Queen == "" {
		errs = append(errs, "queen address is empty")
	}
	if len(c.Models) == 0 {
		errs = append(errs, "no models to ask for")
	}
	if c.CASPercent < 0 || c.CASPercent > 100 {
		errs = append(errs, fmt.Sprintf("cas_percent %d is outside 0..100", c.CASPercent))
	}
	if c.ThinkTime < 0 || c.WorkTime < 0 || c.RetryInterval < 0 || c.UseTimeout < 0 || c.Acquisitions < 0 {
		errs = append(errs, "durations and counts must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid keeper config: %v", errs)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ThinkTime == 0 {
		c.ThinkTime = 500 * time.Millisecond
	}
	if c.WorkTime == 0 {
		c.WorkTime = 2 * time.Second
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 500 * time.Millisecond
	}
	if c.UseTimeout == 0 {
		c.UseTimeout = time.Minute
	}
	return c
}

// workTimeCapFactor caps one piece of work at this many times Config.WorkTime.
const workTimeCapFactor = 4

// Stats counts what a keeper did.
type Stats struct {
	Acquired  int // workers acquired (claim or compare-and-set)
	Completed int // pieces of work that completed
	Failed    int // pieces of work that ended in an error or timed out
	Unserved  int // acquisitions that found no worker
	CASLost   int // compare-and-sets that lost
}

type phase int

const (
	phaseThinking phase = iota
	phaseListing
	phaseCAS
	phaseClaiming
	phaseUsing
	phaseReleasing
	phaseDone
)

// Timer messages of the keeper.
type (
	thinkDone  struct{}
	retryTick  struct{ ReqID uint64 }
	useTimeout struct{ ReqID uint64 }
)

func (thinkDone) MsgName() string  { return "keeper.think_done" }
func (retryTick) MsgName() string  { return "keeper.retry_tick" }
func (useTimeout) MsgName() string { return "keeper.use_timeout" }

// Keeper is one client.
type Keeper struct {
	cfg     Config
	phase   phase
	reqBase uint64
	reqN    uint64
	cur     node.Msg // the request in flight, resent until answered
	curTo   node.Addr
	curID   uint64
	model   string
	held    api.WorkerRecord // the worker held, while using or releasing
	viaCAS  bool
	stats   Stats
}

// New returns a keeper. It panics on an invalid config: validate at the edge.
func New(cfg Config) *Keeper {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Keeper{cfg: cfg.withDefaults()}
}

// Stats returns what the keeper did so far.
func (k *Keeper) Stats() Stats { return k.stats }

// Busy reports whether the keeper has a request in flight.
func (k *Keeper) Busy() bool { return k.cur != nil }

// Start implements node.Node.
func (k *Keeper) Start(env node.Env) {
	// Request IDs start at a random base so that a restarted keeper never repeats an ID the
	// queen still remembers.
	k.reqBase = env.Rand().Uint64() &^ 0xffffffff
	k.think(env)
}
