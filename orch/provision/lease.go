package provision

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// lease is the content of <model path>.lease: who downloads the file, until when, how much of
// the partial file it has synced, and the request (so that a restarted holder can resume it).
type lease struct {
	Holder    node.Addr
	Nonce     uint64
	Expires   time.Time
	Synced    int64
	Repo      string
	Revision  string
	File      string
	Provider  string
	Requester node.Addr
	ReqID     uint64
}

func (l lease) live(now time.Time) bool { return now.Before(l.Expires) }

func (l lease) request() Request {
	return Request{Repo: l.Repo, Revision: l.Revision, File: l.File, Provider: l.Provider,
		Requester: l.Requester, ReqID: l.ReqID}
}

// encode writes the lease as "key=value" lines; strings are Go-quoted.
func (l lease) encode() []byte {
	var b strings.Builder
	kv := func(k, v string) { b.WriteString(k + "=" + v + "\n") }
	kv("holder", strconv.Quote(string(l.Holder)))
	kv("nonce", strconv.FormatUint(l.Nonce, 16))
	kv("expires", strconv.FormatInt(l.Expires.UnixNano(), 10))
	kv("synced", strconv.FormatInt(l.Synced, 10))
	kv("repo", strconv.Quote(l.Repo))
	kv("revision", strconv.Quote(l.Revision))
	kv("file", strconv.Quote(l.File))
	kv("provider", strconv.Quote(l.Provider))
	kv("requester", strconv.Quote(string(l.Requester)))
	kv("req_id", strconv.FormatUint(l.ReqID, 10))
	return []byte(b.String())
}

// readLease reads and checks a lease file: every key present and well formed, Synced >= 0,
// Holder set. A missing file gives an error that matches fs.ErrNotExist.
func readLease(disk node.Disk, name string) (lease, error) {
	data, err := node.ReadFile(disk, name)
	if err != nil {
		return lease{}, err
	}
	kv := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return lease{}, fmt.Errorf("lease %s: bad line %q", name, line)
		}
		kv[k] = v
	}
	var l lease
	var errs []error
	str := func(k string) string {
		s, err := strconv.Unquote(kv[k])
		errs = append(errs, err)
		return s
	}
	num := func(k string, base int) uint64 {
		n, err := strconv.ParseUint(kv[k], base, 64)
		errs = append(errs, err)
		return n
	}
	l.Holder, l.Repo, l.Revision = node.Addr(str("holder")), str("repo"), str("revision")
	l.File, l.Provider, l.Requester = str("file"), str("provider"), node.Addr(str("requester"))
	l.Nonce, l.ReqID = num("nonce", 16), num("req_id", 10)
	l.Expires = time.Unix(0, int64(num("expires", 10)))
	l.Synced = int64(num("synced", 10))
	for _, err := range errs {
		if err != nil {
			return lease{}, fmt.Errorf("lease %s: %w", name, err)
		}
	}
	if l.Holder == "" || l.Synced < 0 {
		return lease{}, fmt.Errorf("lease %s: no holder or negative synced size", name)
	}
	return l, nil
}

// tryLease takes the download's lease, unless another process holds a live one: then it waits
// and looks again every LeasePoll. A lease this node's previous incarnation held, or an
// expired one, is taken over, and the partial file is cut to the part its holder synced.
func (p *Provisioner) tryLease(env node.Env, d *download) {
	old, err := readLease(env.Disk(), d.lease())
	theirs := err == nil && old.Holder != env.Self()
	if theirs && old.live(env.Now()) && !p.cfg.Plants.Has(PlantDoubleDownload) {
		if d.phase != phaseLease || d.timers[kindWake].id == 0 {
			env.Observe(node.Mark("download waiting for another process's lease"))
		}
		d.phase = phaseLease
		p.setTimer(env, d, kindWake, p.cfg.LeasePoll)
		return
	}
	if done, ok := finishedModel(env.Disk(), d.id); ok {
		env.Observe(node.Mark("download finished by another process"))
		p.end(env, d, done)
		return
	}
	if theirs {
		env.Observe(node.Mark("download lease taken over"))
	}
	size := p.partialSize(env, d)
	if err == nil && old.Synced < size {
		size = old.Synced // the rest may be torn: a crash loses unsynced writes
	}
	p.truncate(env, d, size)
	d.held = true
	if err := p.writeLease(env, d); err != nil {
		p.fail(env, d, diskError(d, err))
		return
	}
	p.setTimer(env, d, kindRenew, p.cfg.LeaseRenew)
	p.sendHead(env, d)
}

// writeLease writes this process's lease with a fresh expiry and the synced size.
func (p *Provisioner) writeLease(env node.Env, d *download) error {
	r := d.req
	l := lease{Holder: env.Self(), Nonce: p.nonce, Expires: env.Now().Add(p.cfg.LeaseTTL),
		Synced: d.synced, Repo: r.Repo, Revision: r.Revision, File: r.File, Provider: r.Provider,
		Requester: r.Requester, ReqID: r.ReqID}
	return node.WriteFileAtomic(env.Disk(), d.lease(), l.encode())
}

// ownsLease reports whether the lease on disk is this incarnation's.
func (p *Provisioner) ownsLease(env node.Env, d *download) bool {
	l, err := readLease(env.Disk(), d.lease())
	return err == nil && l.Holder == env.Self() && l.Nonce == p.nonce
}

// renewLease extends the lease, or, if another process has taken it (this one was too slow to
// renew), stops writing and waits as any other process would.
func (p *Provisioner) renewLease(env node.Env, d *download) {
	if !p.ownsLease(env, d) && !p.cfg.Plants.Has(PlantDoubleDownload) {
		env.Observe(node.Mark("download lease lost"))
		p.closeReq(env, d)
		p.stopTimer(env, d, kindTick)
		d.held, d.phase = false, phaseLease
		p.setTimer(env, d, kindWake, p.cfg.LeasePoll)
		return
	}
	if err := p.writeLease(env, d); err != nil {
		env.Log().Warn("provision: cannot renew lease", "file", d.id, "err", err)
	}
	p.setTimer(env, d, kindRenew, p.cfg.LeaseRenew)
}

// releaseLease removes the lease if it is still this incarnation's.
func (p *Provisioner) releaseLease(env node.Env, d *download) {
	if p.ownsLease(env, d) {
		if err := env.Disk().Remove(d.lease()); err != nil && !node.IsNotExist(err) {
			env.Log().Warn("provision: cannot remove lease", "file", d.id, "err", err)
		}
	}
	d.held = false
}
