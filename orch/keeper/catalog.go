package keeper

import (
	"fmt"
	"sort"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
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
	// ScanPercent is the share of operations, 0 to 100, that list every model of the
	// provider, page by page (PageSize models a page; zero means 100).
	ScanPercent int `json:"scan_percent,omitempty"`
	PageSize    int `json:"page_size,omitempty"`
	// Downloads are model files on the hub the client asks hives to download, and
	// DownloadPercent the share of operations, 0 to 100, that do (broadcast like
	// registrations).
	Downloads       []DownloadSpec `json:"downloads,omitempty"`
	DownloadPercent int            `json:"download_percent,omitempty"`
	// Script lists maintenance steps (cleanup, backup, restore) the client sends to the first
	// hive at fixed times, as an operator would.
	Script []CatalogStep `json:"script,omitempty"`
}

// DownloadSpec names a model file on the hub.
type DownloadSpec struct {
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	File     string `json:"file"`
}

// CatalogStep is one scripted maintenance request.
type CatalogStep struct {
	// At is when to send it, from the client's start.
	At time.Duration `json:"at"`
	// Op is "cleanup", "backup" or "restore".
	Op string `json:"op"`
	// Name is the backup file, for backup and restore.
	Name string `json:"name,omitempty"`
	// Adopt, for cleanup, registers valid files that have no row.
	Adopt bool `json:"adopt,omitempty"`
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
	if c.RegisterPercent < 0 || c.RegisterPercent > 100 || c.ScanPercent < 0 || c.ScanPercent > 100 {
		errs = append(errs, fmt.Sprintf("register_percent %d and scan_percent %d must be within 0..100", c.RegisterPercent, c.ScanPercent))
	}
	if c.DownloadPercent < 0 || c.DownloadPercent > 100 || c.DownloadPercent > 0 && len(c.Downloads) == 0 {
		errs = append(errs, fmt.Sprintf("download_percent %d needs downloads and must be within 0..100", c.DownloadPercent))
	}
	if c.PageSize < 0 {
		errs = append(errs, "page_size must not be negative")
	}
	for i, st := range c.Script {
		switch {
		case st.Op != "cleanup" && st.Op != "backup" && st.Op != "restore":
			errs = append(errs, fmt.Sprintf("script[%d]: op %q is not cleanup, backup or restore", i, st.Op))
		case st.Op != "cleanup" && st.Name == "":
			errs = append(errs, fmt.Sprintf("script[%d]: %s needs a backup name", i, st.Op))
		case st.At < 0:
			errs = append(errs, fmt.Sprintf("script[%d]: at must not be negative", i))
		}
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
	Scans      int // full scans completed
	Steps      int // scripted maintenance steps answered
	Downloads  int // downloads answered (registered or failed)
	Progress   int // download progress messages received
}

type catalogThink struct{}
type catalogRetry struct{}
type catalogStepDue struct{ Index int }

func (catalogThink) MsgName() string   { return "keeper.catalog_think" }
func (catalogRetry) MsgName() string   { return "keeper.catalog_retry" }
func (catalogStepDue) MsgName() string { return "keeper.catalog_step" }

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
	// scanning is the request ID of the page a scan waits for (0: no scan).
	scanning uint64
	// scripted are the maintenance requests in flight; they run beside the workload.
	scripted map[uint64]outstanding
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
	c.scripted = map[uint64]outstanding{}
	env.After(c.think(env), catalogThink{})
	env.After(c.cfg.RetryInterval, catalogRetry{})
	for i, st := range c.cfg.Script {
		env.After(st.At, catalogStepDue{Index: i})
	}
}

func (c *CatalogClient) think(env node.Env) time.Duration {
	return time.Duration(env.Rand().ExpFloat64()*float64(c.cfg.ThinkTime)) + time.Millisecond
}

// Handle implements node.Node.
func (c *CatalogClient) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case catalogThink:
		c.next(env)
	case catalogStepDue:
		c.step(env, c.cfg.Script[m.Index])
	case catalogRetry:
		env.After(c.cfg.RetryInterval, catalogRetry{})
		for _, pending := range []map[uint64]outstanding{c.waiting, c.scripted} {
			for _, id := range sortedIDs(pending) {
				env.Send(pending[id].to, pending[id].msg)
			}
		}
	case api.CatalogResp:
		c.answered(env, from, m)
	case provision.Progress:
		c.stats.Progress++
	}
}

func sortedIDs(m map[uint64]outstanding) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m { //det:sorted
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
	if c.cfg.DownloadPercent > 0 && env.Rand().IntN(100) < c.cfg.DownloadPercent {
		c.download(env)
		return
	}
	if c.cfg.ScanPercent > 0 && env.Rand().IntN(100) < c.cfg.ScanPercent {
		c.scanPage(env, c.cfg.Hives[env.Rand().IntN(len(c.cfg.Hives))], "")
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

// download asks one hive (or, broadcast, every hive) to download a model file.
func (c *CatalogClient) download(env node.Env) {
	spec := c.cfg.Downloads[env.Rand().IntN(len(c.cfg.Downloads))]
	hives := c.cfg.Hives
	if !c.cfg.Broadcast {
		hives = []node.Addr{hives[env.Rand().IntN(len(hives))]}
	}
	for _, h := range hives {
		c.send(env, h, func(id uint64) node.Msg {
			return api.ModelDownloadReq{ReqID: id, Provider: c.cfg.Provider, Repo: spec.Repo, Revision: spec.Revision, File: spec.File}
		})
	}
}

// scanPage asks for one page of a full scan.
func (c *CatalogClient) scanPage(env node.Env, hive node.Addr, token string) {
	size := c.cfg.PageSize
	if size == 0 {
		size = 100
	}
	c.send(env, hive, func(id uint64) node.Msg {
		c.scanning = id
		return api.CatalogListReq{ReqID: id, Provider: c.cfg.Provider, PageSize: size, PageToken: token}
	})
}

// step sends one scripted maintenance request to the first hive.
func (c *CatalogClient) step(env node.Env, st CatalogStep) {
	c.reqN++
	id := c.reqBase + c.reqN
	var m node.Msg
	switch st.Op {
	case "cleanup":
		m = api.CatalogCleanupReq{ReqID: id, Adopt: st.Adopt}
	case "backup":
		m = api.CatalogBackupReq{ReqID: id, Name: st.Name}
	default:
		m = api.CatalogRestoreReq{ReqID: id, Name: st.Name}
	}
	c.scripted[id] = outstanding{to: c.cfg.Hives[0], msg: m}
	env.Send(c.cfg.Hives[0], m)
}

func (c *CatalogClient) answered(env node.Env, from node.Addr, r api.CatalogResp) {
	if w, ok := c.scripted[r.ReqID]; ok && w.to == from {
		delete(c.scripted, r.ReqID)
		c.stats.Steps++
		if !r.Err.OK() {
			c.stats.Errors++
		}
		return
	}
	w, ok := c.waiting[r.ReqID]
	if !ok || w.to != from {
		return
	}
	delete(c.waiting, r.ReqID)
	if r.ReqID == c.scanning {
		c.scanning = 0
		if r.Err.OK() && r.NextToken != "" {
			c.scanPage(env, from, r.NextToken)
			return
		}
		if r.Err.OK() {
			c.stats.Scans++
			env.Observe(node.Mark("keeper completed a full catalog scan"))
		}
	}
	c.stats.Operations++
	if _, ok := w.msg.(api.ModelDownloadReq); ok {
		c.stats.Downloads++
	}
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

// Pending is how many requests of the client's workload wait for an answer.
func (c *CatalogClient) Pending() int { return len(c.waiting) }

// PendingIDs are the request IDs of the workload waiting for an answer, sorted.
func (c *CatalogClient) PendingIDs() []uint64 { return sortedIDs(c.waiting) }
