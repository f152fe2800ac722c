package provision

import (
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// PlantIgnoreBandwidthLimit never throttles: the token bucket always has room.
const PlantIgnoreBandwidthLimit = "provisioner-ignore-bandwidth-limit"

// The bandwidth limit is kept with flow control, not by dropping connections: a limited GET
// carries a window (HubGetReq.Window) the hub may not send past, and the hive widens it
// (HubCredit) as its token bucket refills. Bytes are taken from the bucket when they are
// granted, and the bucket refills only up to the burst less the credit granted and not yet
// received, so the bytes received over any window of time never pass rate x time + burst, and
// nothing the hub sent is thrown away.

// bucket is a token bucket of bytes, shared by every download of the process.
type bucket struct {
	tokens float64
	at     time.Time
	primed bool // a new process starts with a full bucket
}

// refill adds the tokens earned since the last call, up to the burst less held, the credit
// granted and not yet received.
func (b *bucket) refill(now time.Time, held int64, cfg Config) {
	if !b.primed {
		b.tokens, b.at, b.primed = float64(cfg.BurstBytes), now, true
	}
	if dt := now.Sub(b.at); dt > 0 { // a clock that jumps back adds nothing
		b.tokens += dt.Seconds() * float64(cfg.BandwidthBytesPerSec)
		b.at = now
	}
	b.tokens = max(0, min(b.tokens, float64(cfg.BurstBytes-held)))
}

// take removes up to most whole tokens from the bucket at time now, or none when fewer than
// least are there, and returns how many it took.
func (b *bucket) take(now time.Time, held, least, most int64, cfg Config) int64 {
	if cfg.Plants.Has(PlantIgnoreBandwidthLimit) {
		return most
	}
	b.refill(now, held, cfg)
	n := min(most, int64(b.tokens))
	if n < least {
		return 0
	}
	b.tokens -= float64(n)
	return n
}

// until is how long from now the bucket takes to hold n tokens, if held stays as it is.
func (b *bucket) until(now time.Time, held, n int64, cfg Config) time.Duration {
	b.refill(now, held, cfg)
	missing := float64(n) - b.tokens
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing/float64(cfg.BandwidthBytesPerSec)*float64(time.Second)) + time.Millisecond
}

// limited reports whether downloads are flow-controlled.
func (p *Provisioner) limited() bool { return p.cfg.BandwidthBytesPerSec > 0 }

// creditQuantum is the least credit worth a message: a chunk, less for a small burst or a
// rate so low that a chunk would take a quarter of ChunkTimeout.
func (p *Provisioner) creditQuantum() int64 {
	q := min(64<<10, p.cfg.BurstBytes, int64(float64(p.cfg.BandwidthBytesPerSec)*p.cfg.ChunkTimeout.Seconds()/4))
	return max(q, 1)
}

// creditMost is the most credit one download may hold: half the burst, so that downloads
// share the bucket.
func (p *Provisioner) creditMost() int64 { return max(p.creditQuantum(), p.cfg.BurstBytes/2) }

// openWindow takes the first window of a limited GET from the bucket; 0 means the bucket is
// too low and the GET must wait (d's wake timer is set).
func (p *Provisioner) openWindow(env node.Env, d *download) int64 {
	held := p.held()
	n := p.bucket.take(env.Now(), held, p.creditQuantum(), p.creditMost(), p.cfg)
	if n == 0 {
		env.Observe(node.Mark("download throttled"))
		d.phase = phaseWait
		p.setTimer(env, d, kindWake, p.bucket.until(env.Now(), held, p.creditQuantum(), p.cfg))
	}
	d.credit = n
	return n
}

// topUp grants the open GET more credit when what it holds runs below a quantum, or sets a
// timer for when the bucket will have it.
func (p *Provisioner) topUp(env node.Env, d *download) {
	q := p.creditQuantum()
	if d.credit >= q || d.hubReq == 0 || d.phase != phaseGet {
		return
	}
	held := p.held()
	n := p.bucket.take(env.Now(), held, q, p.creditMost()-d.credit, p.cfg)
	if n == 0 {
		if d.timers[kindCredit].id == 0 {
			env.Observe(node.Mark("download throttled"))
			p.setTimer(env, d, kindCredit, p.bucket.until(env.Now(), held, q, p.cfg))
		}
		return
	}
	d.credit += n
	env.Send(p.cfg.Hub, api.HubCredit{ReqID: d.hubReq, Bytes: n})
	// The hub may have been waiting on this credit: the stall clock starts now.
	p.setTimer(env, d, kindStall, p.cfg.ChunkTimeout)
}

// held is the credit granted to open GETs and not yet received.
func (p *Provisioner) held() int64 {
	var n int64
	for _, d := range p.downloads { //det:sorted (a sum)
		n += max(d.credit, 0)
	}
	return n
}
