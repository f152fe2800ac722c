package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// item is one encoded envelope waiting for its peer.
type item struct {
	from, to node.Addr
	name     string
	data     []byte // the wire.Envelope's JSON
}

// pair is a (local sender, remote destination) that has been told PeerGone in this outage.
type pair struct{ from, to node.Addr }

// peer is one destination process: its FIFO queue and the state of its sender goroutine.
type peer struct {
	t        *Transport
	url      string
	endpoint string
	wake     chan struct{} // a token when the queue may have grown

	mu       sync.Mutex
	queue    []item
	bytes    int
	overflow bool // dropping for a full queue; logged once until it drains

	// Owned by the sender goroutine.
	down        bool // the last batch was dropped: a single try per batch until one is accepted
	downSince   time.Time
	downDropped int
	gone        map[pair]bool
	unauthLoud  bool                // a 401 was logged since the last accepted POST
	sentRoutes  map[node.Addr]Route // what this peer has been told
	peerBoot    int64
}

func newPeer(t *Transport, u string) *peer {
	return &peer{t: t, url: u, endpoint: u + EnvelopesPath, wake: make(chan struct{}, 1),
		gone: map[pair]bool{}, sentRoutes: map[node.Addr]Route{}}
}

// enqueue appends it to the queue, or drops it when the queue is full.
func (p *peer) enqueue(it item) {
	p.mu.Lock()
	if len(p.queue) >= maxQueued || p.bytes+len(it.data) > maxQueuedBytes {
		first := !p.overflow
		p.overflow = true
		n, b := len(p.queue), p.bytes
		p.mu.Unlock()
		p.t.drop(1)
		if first {
			p.t.log.Warn("transport: the queue to a peer is full; dropping new messages to it until it drains",
				"peer", p.url, "queued", n, "bytes", b, "msg", it.name, "to", it.to,
				"why", "the peer takes messages more slowly than this process sends them, or is unreachable")
		}
		return
	}
	p.queue = append(p.queue, it)
	p.bytes += len(it.data)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take waits for queued items and removes the next batch: up to maxBatchEnvelopes items and
// maxBatchBytes bytes (at least one item). It returns nil when the transport closes.
func (p *peer) take() []item {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			n, size := 0, 0
			for n < len(p.queue) && n < maxBatchEnvelopes && (n == 0 || size+len(p.queue[n].data) <= maxBatchBytes) {
				size += len(p.queue[n].data)
				n++
			}
			batch := make([]item, n)
			copy(batch, p.queue)
			clear(p.queue[:n])
			p.queue = p.queue[n:]
			p.bytes -= size
			if len(p.queue) == 0 {
				p.queue = nil
				p.overflow = false
			}
			p.mu.Unlock()
			return batch
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.t.ctx.Done():
			return nil
		}
	}
}

// discard empties the queue after Close and returns how many items it held.
func (p *peer) discard() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.queue)
	p.queue, p.bytes = nil, 0
	return n
}

func (p *peer) run() {
	defer p.t.wg.Done()
	for {
		batch := p.take()
		if batch == nil {
			return
		}
		p.send(batch)
	}
}

// outcome classifies a POST's result.
type outcome int

const (
	accepted     outcome = iota
	transient            // worth another try: network error, 408, 429, 5xx
	unauthorized         // 401 or 403
	refusedOne           // 400 naming one envelope
	refusedAll           // any other answer
	closing              // the transport is closing
)

// result is what one POST came back with.
type result struct {
	outcome outcome
	status  int
	err     error // what went wrong, for logs
	index   int   // refusedOne: the envelope
	reply   batchReply
}

// send delivers one batch: tries, the refusal of single envelopes, and the outage rules.
func (p *peer) send(batch []item) {
	tries := maxTries
	if p.down {
		tries = 1
	}
	for try := 0; ; {
		routes := p.gossip()
		res := p.post(p.body(batch, routes))
		switch res.outcome {
		case accepted:
			p.accepted(batch, routes, res.reply)
			return
		case closing:
			p.t.drop(len(batch))
			return
		case refusedOne:
			if res.index >= len(batch) {
				p.t.stats.failedPosts.Add(1)
				p.failed(batch, result{outcome: refusedAll, err: fmt.Errorf("%w (it named envelope %d of %d)", res.err, res.index, len(batch))})
				return
			}
			p.refuseOne(batch[res.index], res.err)
			batch = append(batch[:res.index:res.index], batch[res.index+1:]...)
			if len(batch) == 0 {
				return
			}
			continue // not a failed try: the peer is up
		case transient:
			p.t.stats.failedPosts.Add(1)
			try++
			if try < tries {
				select {
				case <-time.After(retryDelays[try-1]):
					continue
				case <-p.t.ctx.Done():
					p.t.drop(len(batch))
					return
				}
			}
		default:
			p.t.stats.failedPosts.Add(1)
		}
		p.failed(batch, res)
		return
	}
}

// post sends one body and classifies the answer.
func (p *peer) post(body []byte) result {
	ctx, cancel := context.WithTimeout(p.t.ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return result{outcome: refusedAll, err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	auth.SetBearer(req, p.t.cfg.Key)
	resp, err := p.t.client.Do(req)
	if err != nil {
		if p.t.ctx.Err() != nil {
			return result{outcome: closing}
		}
		return result{outcome: transient, err: err}
	}
	data := drain(resp.Body)
	resp.Body.Close()
	res := result{status: resp.StatusCode}
	describe := func() error {
		if e, ok := wire.ReadError(data); ok {
			return fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, e.Code, e.Message)
		}
		return fmt.Errorf("HTTP %d: %.200q", resp.StatusCode, data)
	}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		if err := json.Unmarshal(data, &res.reply); err != nil {
			// Delivered, but the answer is not ours to read: a proxy in between, or another
			// program. Count it as accepted; routes may be resent later.
			p.t.log.Debug("transport: unreadable answer to an accepted batch", "peer", p.url, "err", err)
		}
		res.outcome = accepted
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		res.outcome, res.err = unauthorized, describe()
	case s == http.StatusBadRequest && resp.Header.Get(RefusedHeader) != "":
		res.outcome, res.err = refusedAll, describe()
		if i, err := strconv.Atoi(resp.Header.Get(RefusedHeader)); err == nil && i >= 0 {
			res.outcome, res.index = refusedOne, i
		}
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		res.outcome, res.err = transient, describe()
	default:
		res.outcome, res.err = refusedAll, describe()
	}
	return res
}

// body builds the batch's JSON from its encoded envelopes.
func (p *peer) body(batch []item, routes map[node.Addr]Route) []byte {
	size := 64
	for _, it := range batch {
		size += len(it.data) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	buf.WriteString(`{"from_url":`)
	u, _ := json.Marshal(p.t.self)
	buf.Write(u)
	buf.WriteString(`,"from_boot":`)
	buf.WriteString(strconv.FormatInt(p.t.boot, 10))
	if len(routes) > 0 {
		r, _ := json.Marshal(routes)
		buf.WriteString(`,"routes":`)
		buf.Write(r)
	}
	buf.WriteString(`,"envelopes":[`)
	for i, it := range batch {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(it.data)
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

// gossip returns the routes this peer has not been told yet: this process's addresses and
// every route it knows, except those that lead to the peer itself.
func (p *peer) gossip() map[node.Addr]Route {
	var out map[node.Addr]Route
	add := func(a node.Addr, r Route) {
		if r.URL == p.url || p.sentRoutes[a] == r {
			return
		}
		if out == nil {
			out = map[node.Addr]Route{}
		}
		out[a] = r
	}
	for a, r := range p.t.routes.all() {
		add(a, r)
	}
	for _, a := range p.t.local() {
		add(a, Route{URL: p.t.self, Boot: p.t.boot})
	}
	return out
}

// accepted ends an outage, counts the batch and remembers what the peer now knows.
func (p *peer) accepted(batch []item, routes map[node.Addr]Route, reply batchReply) {
	t := p.t
	t.stats.sent.Add(uint64(len(batch)))
	t.stats.batches.Add(1)
	if p.down {
		t.log.Info("transport: peer reachable again", "peer", p.url,
			"down_for", time.Since(p.downSince).Round(time.Millisecond), "messages_dropped", p.downDropped)
		p.down, p.downDropped = false, 0
		clear(p.gone)
	}
	p.unauthLoud = false
	if reply.Boot != 0 && reply.Boot != p.peerBoot {
		if p.peerBoot != 0 { // it restarted: only this batch's routes reached the new process
			clear(p.sentRoutes)
		}
		p.peerBoot = reply.Boot
	}
	for a, r := range routes {
		p.sentRoutes[a] = r
	}
	for _, a := range reply.NotHere {
		if t.routes.forget(a, p.url) {
			t.log.Info("transport: forgot a route: its process does not have the address", "addr", a, "peer", p.url)
		}
	}
}

// refuseOne drops an envelope the peer could not decode.
func (p *peer) refuseOne(it item, err error) {
	p.t.drop(1)
	p.t.stats.refused.Add(1)
	if p.t.once("refused\x00" + p.url + "\x00" + it.name) {
		p.t.log.Warn("transport: a peer refused a message it cannot decode; dropping it and sending the rest of its batch",
			"peer", p.url, "msg", it.name, "from", it.from, "to", it.to, "err", err,
			"fix", "run the same rbee version on every machine (this message is logged once per peer and message name)")
	}
}

// failed drops a batch the peer did not take, logs once per outage and tells each local
// sender once per outage per destination that its peer is gone.
func (p *peer) failed(batch []item, res result) {
	t := p.t
	switch {
	case res.outcome == unauthorized:
		if !p.unauthLoud {
			p.unauthLoud = true
			t.log.Error("transport: a peer refused this process's key; dropping messages to it",
				"peer", p.url, "key", keyName(t.cfg.Key), "err", res.err,
				"fix", "give every process the same cluster key (RBEE_API_KEY), or add this key to the peer's keys")
		}
	case !p.down && res.outcome == transient:
		t.log.Warn("transport: cannot reach a peer; dropping messages to it until it answers (the core retries)",
			"peer", p.url, "tries", maxTries, "err", res.err, "messages", len(batch))
	case !p.down:
		t.log.Error("transport: a peer refused a batch of messages; dropping them",
			"peer", p.url, "err", res.err, "messages", len(batch),
			"fix", "check that the peer runs the same rbee version and that its URL points at an rbee process")
	}
	if !p.down {
		p.down, p.downSince = true, time.Now()
	}
	p.downDropped += len(batch)
	for _, it := range batch {
		k := pair{it.from, it.to}
		if p.gone[k] || !t.cfg.Local(it.from) {
			continue
		}
		p.gone[k] = true
		t.stats.peerGone.Add(1)
		t.cfg.Deliver(it.to, it.from, node.PeerGone{Peer: it.to})
	}
	t.drop(len(batch)) // last, so that a reader of Stats sees the PeerGones already delivered
}

// keyName names the key in logs without revealing it.
func keyName(key string) string {
	if key == "" {
		return "none (dev mode)"
	}
	return auth.Fingerprint(key)
}
