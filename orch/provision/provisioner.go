package provision

import (
	"fmt"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Provisioner runs a hive's model downloads. Its zero value is not usable; call New.
type Provisioner struct {
	cfg       Config
	started   bool
	nonce     uint64               // this incarnation's lease nonce
	nextReq   uint64               // the next hub request ID
	downloads map[string]*download // by ID (the model path); looked up, never iterated
	byReq     map[uint64]*download // by open hub request ID
	bucket    bucket               // the bandwidth limit, shared by all downloads
	// hubNotBefore is the latest Retry-After deadline the hub gave (by this machine's clock):
	// a 429 applies to the client, not to one download, so no download asks before it.
	hubNotBefore time.Time
}

// New returns a provisioner. It panics if cfg is invalid: check it with Validate first.
func New(cfg Config) *Provisioner {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("provision.New: %v", err))
	}
	return &Provisioner{cfg: cfg, downloads: map[string]*download{}, byReq: map[uint64]*download{}}
}

// Start boots the provisioner, or restarts it after a crash: it draws a new incarnation nonce
// and resumes every download whose lease on disk names this node (a download the previous
// incarnation was running), from the part of its partial file the lease says was synced.
// Partial files without a lease are kept and resumed when a Request asks for them.
func (p *Provisioner) Start(env node.Env) {
	p.started = true
	p.nonce = env.Rand().Uint64()
	p.nextReq = env.Rand().Uint64()>>2 + 1
	p.bucket = bucket{tokens: float64(p.cfg.BurstBytes), at: env.Now()}
	names, err := env.Disk().List(p.cfg.ModelsDir)
	if err != nil {
		env.Log().Warn("provision: cannot list models", "err", err)
		return
	}
	for _, name := range names {
		if !strings.HasSuffix(name, leaseSuffix) {
			continue
		}
		l, err := readLease(env.Disk(), name)
		if err != nil || l.Holder != env.Self() {
			continue
		}
		env.Observe(node.Mark("download resumed after restart"))
		p.Request(env, l.request())
	}
}

// Request starts a download of the file req names, or joins the one already running for that
// file, and returns the download's ID. The requester gets Progress messages and exactly one
// Done. A file already in place and valid is reported Done at once, without a download.
func (p *Provisioner) Request(env node.Env, req Request) (id string) {
	if !p.started {
		panic("provision: Request before Start")
	}
	req, err := req.normalize()
	if err != nil {
		env.Send(req.Requester, Done{ReqID: req.ReqID,
			Err: api.Errorf(api.CodeInvalidRequest, "fix the request", "bad download request: %v", err)})
		return ""
	}
	id = p.modelPath(req)
	sub := subscriber{Addr: req.Requester, ReqID: req.ReqID}
	if d := p.downloads[id]; d != nil {
		d.subs = append(d.subs, sub)
		return id
	}
	if done, ok := finishedModel(env.Disk(), id); ok {
		done.ReqID = req.ReqID
		env.Send(req.Requester, done)
		return id
	}
	d := &download{id: id, req: req, subs: []subscriber{sub}}
	p.downloads[id] = d
	p.tryLease(env, d)
	return id
}

// Cancel stops a download for every requester: it closes the hub connection (HubCancel),
// syncs and keeps the partial file for a later resume, releases the lease and sends each
// requester a Done with CodeDownloadCancelled. An unknown or finished ID is a no-op.
func (p *Provisioner) Cancel(env node.Env, id string) {
	d := p.downloads[id]
	if d == nil {
		return
	}
	p.syncPartial(env, d)
	p.fail(env, d, api.Errorf(CodeDownloadCancelled, "request it again to resume",
		"download of %s cancelled at %.0f%%", d.name(), d.percent()))
}

// Handle reacts to a message and reports whether it was the provisioner's: an answer from
// Config.Hub (stale ones included, which it drops) or one of its own timers.
func (p *Provisioner) Handle(env node.Env, from node.Addr, m node.Msg) bool {
	switch m := m.(type) {
	case timerMsg:
		if from == env.Self() {
			p.handleTimer(env, m)
		}
	case api.HubResp:
		if from != p.cfg.Hub {
			return false
		}
		p.handleResp(env, m)
	case api.HubChunk:
		if from != p.cfg.Hub {
			return false
		}
		p.handleChunk(env, m)
	case api.HubEnd:
		if from != p.cfg.Hub {
			return false
		}
		p.handleEnd(env, m)
	default:
		return false
	}
	return true
}

// timerKind says what a timer is for; each download has at most one timer of each kind.
type timerKind uint8

const (
	kindWake   timerKind = iota // backoff, Retry-After, lease poll or bandwidth wait is over
	kindStall                   // no answer or chunk for ChunkTimeout
	kindRenew                   // renew the lease
	kindTick                    // send Progress
	kindCredit                  // the bucket has credit for the open GET again
	kindCount
)

// timerMsg is a provisioner timer; Seq tells a current timer from one replaced since.
type timerMsg struct {
	ID   string
	Kind timerKind
	Seq  uint64
}

// MsgName implements node.Msg.
func (timerMsg) MsgName() string { return "provision.timer" }

// setTimer (re)sets a download's timer of one kind.
func (p *Provisioner) setTimer(env node.Env, d *download, k timerKind, after time.Duration) {
	p.stopTimer(env, d, k)
	d.timers[k].seq++
	d.timers[k].id = env.After(after, timerMsg{ID: d.id, Kind: k, Seq: d.timers[k].seq})
}

// stopTimer cancels a download's timer of one kind, if set.
func (p *Provisioner) stopTimer(env node.Env, d *download, k timerKind) {
	if d.timers[k].id != 0 {
		env.Cancel(d.timers[k].id)
		d.timers[k].id = 0
	}
	d.timers[k].seq++
}

// handleTimer dispatches a current timer to its handler; stale ones are dropped.
func (p *Provisioner) handleTimer(env node.Env, m timerMsg) {
	d := p.downloads[m.ID]
	if d == nil || m.Kind >= kindCount || d.timers[m.Kind].seq != m.Seq {
		return
	}
	d.timers[m.Kind].id = 0
	switch m.Kind {
	case kindWake:
		p.wake(env, d)
	case kindStall:
		p.retry(env, d, fmt.Sprintf("no data from the hub for %v", p.cfg.ChunkTimeout), 0)
	case kindRenew:
		p.renewLease(env, d)
	case kindTick:
		p.tick(env, d)
	case kindCredit:
		p.topUp(env, d)
	}
}
