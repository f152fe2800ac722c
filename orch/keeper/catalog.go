package keeper

import (
	"fmt"
	"sort"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// CatalogConfig configures a catalog client: a keeper that registers and looks up models in
// the hives' catalogs, as `rbee-keeper models` does.
type CatalogConfig struct {
	// Hives are the hives the client talks to. Required.
	Hives []node.Addr `json:"hives"`
	// Provider and References name the models it registers and looks up. Required.
	Provider   string   `json:"provider"`
	References []string `json:"references"`
	// RegisterPercent is the share of operations, 0 to 100, that register; the rest look up.
	RegisterPercent int `json:"register_percent"`
	// Broadcast sends each registration to every hive at the same instant, as hives that share
	// a disk do when they all finish the same download.
	Broadcast bool `json:"broadcast,omitempty"`
	// ThinkTime is the mean pause between operations (exponential). Default 1s.
	ThinkTime time.Duration `json:"think_time"`
	// RetryInterval is how long an unanswered request waits before it is sent again with the
	// same ID. Default 500ms.
	RetryInterval time.Duration `json:"retry_interval"`
	// Operations stops the client after this many operations; zero means no limit.
	Operations int `json:"operations"`
}

// Validate lists every problem with the config.
func (c CatalogConfig) Validate() error {
	var errs []string
	if len(c.Hives) == 0 {
		errs = append(errs, "no hives")
	}
	if c.Provider == "" || len(c.References) == 0 {
		errs = append(errs, "provider and references are required")
	}
	if c.RegisterPercent < 0 || c.RegisterPercent > 100 {
		errs = append(errs, fmt.Sprintf("register_percent %d is outside 0..100", c.RegisterPercent))
	}
	if c.ThinkTime < 0 || c.RetryInterval < 0 || c.Operations < 0 {
		errs = append(errs, "durations and counts must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid catalog client config: %v", errs)
	}
	return nil
}

// CatalogStats counts what a catalog client saw.
type CatalogStats struct {
	Operations int // operations answered
	Inserted   int // registrations that inserted
	Present    int // registrations that found the model already registered
	Errors     int // answers with an error
}

type catalogThink struct{}
type catalogRetry struct{}

func (catalogThink) MsgName() string { return "keeper.catalog_think" }
func (catalogRetry) MsgName() string { return "keeper.catalog_retry" }

type outstanding struct {
	to  node.Addr
	msg node.Msg
}

// CatalogClient is a keeper that uses the hives' model catalogs.
type CatalogClient struct {
	cfg     CatalogConfig
	reqBase uint64
	reqN    uint64
	waiting map[uint64]outstanding
	done    int
	stats   CatalogStats
}

// NewCatalogClient returns a catalog client. It panics on an invalid config.
func NewCatalogClient(cfg CatalogConfig) *CatalogClient {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.ThinkTime == 0 {
		cfg.ThinkTime = time.Second
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 500 * time.Millisecond
	}
	return &CatalogClient{cfg: cfg}
}

// Stats returns what the client saw so far.
func (c *CatalogClient) Stats() CatalogStats { return c.stats }

// Start implements node.Node.
func (c *CatalogClient) Start(env node.Env) {
	c.reqBase = env.Rand().Uint64() &^ 0xffffffff
	c.waiting = map[uint64]outstanding{}
	env.After(c.think(env), catalogThink{})
	env.After(c.cfg.RetryInterval, catalogRetry{})
}

func (c *CatalogClient) think(env node.Env) time.Duration {
	return time.Duration(env.Rand().ExpFloat64()*float64(c.cfg.ThinkTime)) + time.Millisecond
}

// Handle implements node.Node.
func (c *CatalogClient) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case catalogThink:
		c.next(env)
	case catalogRetry:
		env.After(c.cfg.RetryInterval, catalogRetry{})
		for _, id := range c.waitingIDs() {
			w := c.waiting[id]
			env.Send(w.to, w.msg)
		}
	case api.CatalogResp:
		c.answered(env, from, m)
	}
}

func (c *CatalogClient) waitingIDs() []uint64 {
	ids := make([]uint64, 0, len(c.waiting))
	for id := range c.waiting { //det:sorted
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (c *CatalogClient) send(env node.Env, to node.Addr, build func(id uint64) node.Msg) {
	c.reqN++
	id := c.reqBase + c.reqN
	m := build(id)
	c.waiting[id] = outstanding{to: to, msg: m}
	env.Send(to, m)
}

func (c *CatalogClient) next(env node.Env) {
	if c.cfg.Operations > 0 && c.done >= c.cfg.Operations {
		return
	}
	ref := c.cfg.References[env.Rand().IntN(len(c.cfg.References))]
	hives := c.cfg.Hives
	register := env.Rand().IntN(100) < c.cfg.RegisterPercent
	if !register || !c.cfg.Broadcast {
		hives = []node.Addr{hives[env.Rand().IntN(len(hives))]}
	}
	for _, h := range hives {
		if register {
			c.send(env, h, func(id uint64) node.Msg {
				return api.CatalogRegisterReq{ReqID: id, Provider: c.cfg.Provider, Reference: ref}
			})
		} else {
			c.send(env, h, func(id uint64) node.Msg {
				return api.CatalogGetReq{ReqID: id, ID: c.cfg.Provider + ":" + ref}
			})
		}
	}
}

func (c *CatalogClient) answered(env node.Env, from node.Addr, r api.CatalogResp) {
	w, ok := c.waiting[r.ReqID]
	if !ok || w.to != from {
		return
	}
	delete(c.waiting, r.ReqID)
	c.stats.Operations++
	switch {
	case !r.Err.OK():
		c.stats.Errors++
	case r.Op == (api.CatalogRegisterReq{}).MsgName() && r.Inserted:
		c.stats.Inserted++
	case r.Op == (api.CatalogRegisterReq{}).MsgName():
		c.stats.Present++
	}
	if len(c.waiting) == 0 {
		c.done++
		env.After(c.think(env), catalogThink{})
	}
}
