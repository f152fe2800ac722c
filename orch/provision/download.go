package provision

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// phase is where a download stands.
type phase uint8

const (
	phaseLease phase = iota // waiting for another process's lease (or not yet tried)
	phaseHead               // HEAD sent, waiting for the answer
	phaseGet                // GET sent: waiting for the answer, then its body
	phaseWait               // waiting for a backoff, a Retry-After or the bandwidth bucket
)

type subscriber struct {
	Addr  node.Addr
	ReqID uint64
}

// download is one model file being fetched. Invariants: pos is the partial file's length as
// far as this process wrote it; hubReq != 0 exactly when a request to the hub is open and then
// byReq[hubReq] == d.
type download struct {
	id    string
	req   Request
	subs  []subscriber
	phase phase
	held  bool // this process holds the lease

	haveMeta bool   // size and sha are the hub's answer to HEAD
	size     int64  // the file's size
	sha      string // the file's sha256, lowercase hex

	pos        int64  // bytes in the partial file
	synced     int64  // bytes of the partial file known durable
	hubReq     uint64 // the open hub request, 0 if none
	gotResp    bool   // the open GET was answered 200/206
	rangeStart int64  // where the open GET's body starts
	got        int64  // body bytes received on the open GET
	credit     int64  // body bytes the open GET may still send (flow control; see bandwidth.go)

	hash partialHash // the running sha256 of the partial file's first bytes (see verify.go)

	attempts     int // consecutive failed attempts
	verifyFailed int // files that failed verification
	resumedFrom  int64
	resumed      bool
	tickBytes    int64 // pos at the last Progress
	timers       [kindCount]struct {
		id  node.TimerID
		seq uint64
	}
}

func (d *download) partial() string { return d.id + partialSuffix }
func (d *download) lease() string   { return d.id + leaseSuffix }
func (d *download) name() string {
	return d.req.Repo + "/" + d.req.File + "@" + d.req.Revision
}
func (d *download) percent() float64 { return percent(d.pos, d.size) }

func percent(n, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

const (
	partialSuffix = ".partial"
	leaseSuffix   = ".lease"
)

// newReq opens a hub request for d.
func (p *Provisioner) newReq(env node.Env, d *download) uint64 {
	p.nextReq++
	d.hubReq = p.nextReq
	d.gotResp, d.got = false, 0
	p.byReq[d.hubReq] = d
	p.setTimer(env, d, kindStall, p.cfg.ChunkTimeout)
	return d.hubReq
}

// closeReq closes d's open hub request, telling the hub if a body may still be coming.
func (p *Provisioner) closeReq(env node.Env, d *download) {
	if d.hubReq == 0 {
		return
	}
	if d.phase == phaseGet {
		env.Send(p.cfg.Hub, api.HubCancel{ReqID: d.hubReq})
	}
	delete(p.byReq, d.hubReq)
	d.hubReq, d.credit = 0, 0
	p.stopTimer(env, d, kindStall)
	p.stopTimer(env, d, kindCredit)
}

// wake continues a download after a wait: lease first, then metadata, then the body.
func (p *Provisioner) wake(env node.Env, d *download) {
	switch {
	case !d.held:
		p.tryLease(env, d)
	case !d.haveMeta:
		p.sendHead(env, d)
	default:
		p.sendGet(env, d)
	}
}

// gated holds a request back while a Retry-After the hub gave is running: a 429 is for the
// client, not for one download. It reports whether it held the request back.
func (p *Provisioner) gated(env node.Env, d *download) bool {
	wait := p.hubNotBefore.Sub(env.Now())
	if wait <= 0 {
		return false
	}
	d.phase = phaseWait
	p.setTimer(env, d, kindWake, wait)
	return true
}

func (p *Provisioner) sendHead(env node.Env, d *download) {
	if p.gated(env, d) {
		return
	}
	d.phase = phaseHead
	id := p.newReq(env, d)
	env.Send(p.cfg.Hub, api.HubHeadReq{ReqID: id, Repo: d.req.Repo, Revision: d.req.Revision,
		File: d.req.File, Token: p.cfg.Token})
}

// sendGet asks for the body from the partial file's end, or verifies a complete partial file.
func (p *Provisioner) sendGet(env node.Env, d *download) {
	if d.pos == d.size {
		p.finish(env, d)
		return
	}
	if p.gated(env, d) {
		return
	}
	var window int64
	if p.limited() {
		if window = p.openWindow(env, d); window == 0 {
			return
		}
	}
	start := d.pos
	if start > 0 && p.cfg.Plants.Has(PlantResumeWrongOffset) {
		start++
	}
	if start > 0 {
		// Progress says "resuming from N%" from the latest break on.
		d.resumed, d.resumedFrom = true, d.pos
		env.Observe(node.Mark("download resumed"))
	}
	d.phase = phaseGet
	id := p.newReq(env, d)
	d.rangeStart = start
	env.Send(p.cfg.Hub, api.HubGetReq{ReqID: id, Repo: d.req.Repo, Revision: d.req.Revision,
		File: d.req.File, Token: p.cfg.Token, RangeStart: start, Window: window})
}

func (p *Provisioner) handleResp(env node.Env, m api.HubResp) {
	d := p.byReq[m.ReqID]
	if d == nil || d.gotResp {
		return // stale, or a duplicate
	}
	switch {
	case m.Status != 200 && m.Status != 206:
		d.phase = phaseWait // an error answer has no body: nothing to cancel
		p.closeReq(env, d)
		p.hubError(env, d, m)
	case d.phase == phaseHead:
		p.closeReq(env, d)
		p.onHead(env, d, m)
	default:
		p.onGetResp(env, d, m)
	}
}

// onHead takes the file's metadata and starts the body.
func (p *Provisioner) onHead(env node.Env, d *download, m api.HubResp) {
	if m.Size <= 0 || !validSHA256(m.SHA256) {
		p.retry(env, d, fmt.Sprintf("hub sent bad metadata (size %d, sha256 %q)", m.Size, m.SHA256), 0)
		return
	}
	d.size, d.sha, d.haveMeta = m.Size, m.SHA256, true
	if d.pos > d.size {
		p.truncate(env, d, 0)
	}
	if err := p.checkSpace(env, d); err.Code != api.CodeOK {
		p.fail(env, d, err)
		return
	}
	if d.pos > 0 && !d.resumed {
		d.resumed, d.resumedFrom = true, d.pos
		env.Observe(node.Mark("download resumed"))
	}
	if d.timers[kindTick].id == 0 {
		// Progress ticks on through retries: restarting it at every attempt would leave the
		// clients of a download whose attempts break within a second without any progress.
		d.tickBytes = d.pos
		p.setTimer(env, d, kindTick, p.cfg.ProgressInterval)
	}
	p.sendGet(env, d)
}

// onGetResp checks a 200 or 206 against what was asked; a 200 starts the file over.
func (p *Provisioner) onGetResp(env node.Env, d *download, m api.HubResp) {
	if m.Size != d.size || (m.SHA256 != "" && m.SHA256 != d.sha) {
		// The file changed on the hub since HEAD: what we have is of another file.
		p.closeReq(env, d)
		p.truncate(env, d, 0)
		d.haveMeta = false
		p.retry(env, d, "the file changed on the hub", 0)
		return
	}
	if m.Status == 200 {
		env.Observe(node.Mark("download restarted after 200"))
		p.truncate(env, d, 0)
		d.rangeStart = 0
	} else if m.Offset != d.rangeStart {
		p.retry(env, d, fmt.Sprintf("hub answered from byte %d, asked for %d", m.Offset, d.rangeStart), 0)
		return
	}
	d.gotResp = true
	p.setTimer(env, d, kindStall, p.cfg.ChunkTimeout)
}

func (p *Provisioner) handleChunk(env node.Env, m api.HubChunk) {
	d := p.byReq[m.ReqID]
	if d == nil || !d.gotResp {
		return
	}
	at := d.rangeStart + d.got
	if m.Offset != at || at+int64(len(m.Data)) > d.size {
		p.retry(env, d, fmt.Sprintf("chunk of %d bytes at %d, expected one at %d of %d",
			len(m.Data), m.Offset, at, d.size), 0)
		return
	}
	if err := p.write(env, d, m.Data); err != nil {
		p.writeFailed(env, d, err)
		return
	}
	d.got += int64(len(m.Data))
	d.attempts = 0
	if d.pos-d.synced >= p.cfg.SyncEveryBytes {
		p.syncPartial(env, d)
	}
	p.setTimer(env, d, kindStall, p.cfg.ChunkTimeout)
	if p.limited() {
		d.credit -= int64(len(m.Data))
		p.topUp(env, d)
	}
}

func (p *Provisioner) handleEnd(env node.Env, m api.HubEnd) {
	d := p.byReq[m.ReqID]
	if d == nil {
		return
	}
	d.phase = phaseWait // the connection is closed: no HubCancel
	p.closeReq(env, d)
	switch {
	case m.Err != "":
		p.retry(env, d, "connection ended: "+m.Err, 0)
	case !d.gotResp || d.rangeStart+d.got != d.size:
		p.retry(env, d, fmt.Sprintf("body ended at byte %d of %d", d.rangeStart+d.got, d.size), 0)
	default:
		p.finish(env, d)
	}
}

// writeFailed stops a download whose partial file cannot be written. The partial file is kept:
// a full disk is the usual cause, and the download resumes once space is freed.
func (p *Provisioner) writeFailed(env node.Env, d *download, err error) {
	p.syncPartial(env, d)
	if errors.Is(err, syscall.ENOSPC) {
		env.Observe(node.Mark("download stopped: disk full"))
		p.fail(env, d, api.Errorf(CodeDownloadFailed, fmt.Sprintf("free at least %d bytes on the "+
			"disk and request the model again: the download resumes from %.0f%%", d.size-d.pos,
			d.percent()), "disk full while downloading %s: %d of %d bytes written", d.name(), d.pos, d.size))
		return
	}
	p.fail(env, d, api.Errorf(CodeDownloadFailed, "check the disk", "cannot write %s: %v", d.partial(), err))
}

// retry closes the open request and tries again after after (0: the backoff), or ends the
// download once RetryAttemptsMax attempts in a row have failed.
func (p *Provisioner) retry(env node.Env, d *download, why string, after time.Duration) {
	p.closeReq(env, d)
	d.attempts++
	if d.attempts > p.cfg.RetryAttemptsMax {
		p.syncPartial(env, d)
		p.fail(env, d, api.Errorf(CodeDownloadFailed, "try again later; the download resumes "+
			"where it stopped", "download of %s failed after %d attempts: %s", d.name(),
			d.attempts, why))
		return
	}
	if after == 0 {
		after = p.backoff(env, d.attempts)
	}
	env.Log().Info("provision: retrying", "file", d.id, "why", why, "after", after)
	d.phase = phaseWait
	p.setTimer(env, d, kindWake, after)
}

// backoff is attempt n's wait: uniform in [c/2, c] with c = min(BackoffMax, BackoffBase*2^(n-1)).
func (p *Provisioner) backoff(env node.Env, n int) time.Duration {
	c := p.cfg.BackoffBase
	for i := 1; i < n && c < p.cfg.BackoffMax; i++ {
		c *= 2
	}
	c = min(c, p.cfg.BackoffMax)
	return c/2 + time.Duration(env.Rand().Int64N(int64(c/2)+1))
}

// fail ends a download for every requester with err. The partial file stays as it is.
func (p *Provisioner) fail(env node.Env, d *download, err api.Error) {
	env.Log().Info("provision: download ended", "file", d.id, "err", err)
	p.end(env, d, Done{Err: err})
}

// end finishes a download, sending each requester done (with its ID and ReqID filled in), and
// releases the lease and every timer.
func (p *Provisioner) end(env node.Env, d *download, done Done) {
	p.closeReq(env, d)
	for k := range kindCount {
		p.stopTimer(env, d, k)
	}
	if d.held {
		p.releaseLease(env, d)
	}
	delete(p.downloads, d.id)
	for _, s := range d.subs {
		done.ID, done.ReqID = d.id, s.ReqID
		env.Send(s.Addr, done)
	}
}

// tick sends Progress to every requester and sets the next tick.
func (p *Provisioner) tick(env node.Env, d *download) {
	gained := d.pos - d.tickBytes
	if gained < 0 {
		// The file started over during the interval (a 200 to a ranged GET, a body that
		// failed verification): count what was written since.
		gained = d.pos
	}
	rate := float64(gained) / p.cfg.ProgressInterval.Seconds()
	d.tickBytes = d.pos
	pct := d.percent()
	if p.cfg.Plants.Has(PlantProgressPercentOfAttempt) {
		pct = percent(d.got, d.size)
	}
	for _, s := range d.subs {
		env.Send(s.Addr, Progress{ID: d.id, ReqID: s.ReqID, Bytes: d.pos, Total: d.size,
			Percent: pct, BytesPerSec: int64(rate), Resumed: d.resumed,
			ResumedFromPercent: percent(d.resumedFrom, d.size)})
	}
	p.setTimer(env, d, kindTick, p.cfg.ProgressInterval)
}
