package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// Transport sends this process's messages to other processes and serves theirs. Its methods
// are safe for concurrent use. The zero value is not usable; call New.
type Transport struct {
	cfg       Config
	reg       *wire.Registry
	log       *slog.Logger
	client    *http.Client
	ownClient bool
	self      string // normalized Advertise; "" when this process only sends
	boot      int64  // this process's boot stamp: Unix nanoseconds at New
	routes    *routeTable

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // sender goroutines

	mu     sync.Mutex
	peers  map[string]*peer // by base URL
	closed bool

	logged sync.Map // keys of things logged once: string

	stats struct {
		sent, received, dropped, noRoute, refused, batches, failedPosts, peerGone atomic.Uint64
	}
}

// Stats are the transport's counters since New, in messages unless said otherwise.
type Stats struct {
	// Sent: messages a peer accepted.
	Sent uint64
	// Received: messages from peers handed to Config.Deliver.
	Received uint64
	// Dropped: messages this process gave up on, whatever the reason (NoRoute and Refused
	// included), plus incoming ones for addresses it does not have.
	Dropped uint64
	// NoRoute: messages dropped because no route led to their destination.
	NoRoute uint64
	// Refused: messages a peer refused as undecodable (and incoming ones this process refused).
	Refused uint64
	// Batches: POSTs a peer accepted.
	Batches uint64
	// FailedPosts: POSTs that failed, every try counted.
	FailedPosts uint64
	// PeerGone: node.PeerGone messages delivered to local senders.
	PeerGone uint64
}

// New checks cfg and returns a Transport. It starts nothing until the first Send to a peer.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, reg: cfg.Registry, log: cfg.Logger, client: cfg.Client, boot: time.Now().UnixNano(),
		peers: map[string]*peer{}}
	if t.reg == nil {
		t.reg = wire.Default
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.client == nil {
		t.client, t.ownClient = defaultClient(), true
	}
	if cfg.Advertise != "" {
		t.self, _ = baseURL(cfg.Advertise) // checked by Validate
	}
	static := make(map[node.Addr]string, len(cfg.Peers))
	for a, u := range cfg.Peers {
		static[a], _ = baseURL(u)
	}
	t.routes = newRouteTable(static)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// defaultClient keeps connections alive, goes direct (cluster traffic is not for a proxy)
// and gives up connecting after dialTimeout.
func defaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
}

// Send queues m for the process that runs to; it matches real.Config.Remote. It never blocks:
// a message with no route, one that cannot be encoded, and one that finds its peer's queue
// full are dropped, counted and logged.
func (t *Transport) Send(from, to node.Addr, m node.Msg) {
	if m == nil {
		t.drop(1)
		t.log.Debug("transport: nil message dropped", "from", from, "to", to)
		return
	}
	u, ok := t.routes.lookup(to)
	if !ok || u == t.self {
		t.drop(1)
		t.stats.noRoute.Add(1)
		t.log.Debug("transport: message dropped: no route to its destination",
			"from", from, "to", to, "msg", m.MsgName(),
			"fix", "give the address a route in Config.Peers, or have its process send to this one first")
		return
	}
	env, err := t.reg.Encode(from, to, m)
	var data []byte
	if err == nil {
		data, err = json.Marshal(env)
	}
	if err == nil && len(data) > maxEnvelopeBytes {
		err = fmt.Errorf("it is %d bytes encoded, over the limit of %d: send it in smaller parts", len(data), maxEnvelopeBytes)
	}
	if err != nil {
		t.drop(1)
		if t.once("encode\x00" + m.MsgName()) {
			t.log.Error("transport: cannot send a message to another process; dropping it and every later one like it",
				"from", from, "to", to, "msg", m.MsgName(), "err", err)
		}
		return
	}
	p := t.peer(u)
	if p == nil {
		t.drop(1) // closed
		return
	}
	p.enqueue(item{from: from, to: to, name: m.MsgName(), data: data})
}

// peer returns the peer at base URL u, starting its sender goroutine on first use; nil after
// Close.
func (t *Transport) peer(u string) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	p := t.peers[u]
	if p == nil {
		p = newPeer(t, u)
		t.peers[u] = p
		t.wg.Add(1)
		go p.run()
	}
	return p
}

// Learn records that addr is run by the process at baseURL, replacing any learned route (a
// later announcement by addr's own process replaces it in turn). A static route from
// Config.Peers, or an address of this process, cannot be changed.
func (t *Transport) Learn(addr node.Addr, baseURLStr string) error {
	u, err := baseURL(baseURLStr)
	switch {
	case err != nil:
		return fmt.Errorf("transport: Learn(%q): %w", addr, err)
	case addr == "":
		return fmt.Errorf("transport: Learn(%q, %q): the address is empty", addr, baseURLStr)
	case t.cfg.Local(addr):
		return fmt.Errorf("transport: Learn(%q, %q): %q is an address of this process, which needs no route", addr, baseURLStr, addr)
	case u == t.self:
		return fmt.Errorf("transport: Learn(%q, %q): that is this process's own URL, but %q is not one of its addresses", addr, baseURLStr, addr)
	}
	if s, ok := t.routes.static[addr]; ok && s != u {
		return fmt.Errorf("transport: Learn(%q, %q): Config.Peers routes %q to %s and static routes are never replaced; change the configuration instead",
			addr, baseURLStr, addr, s)
	} else if ok {
		return nil
	}
	t.routes.set(addr, Route{URL: u})
	return nil
}

// Routes returns every route this process knows: address -> base URL.
func (t *Transport) Routes() map[node.Addr]string {
	all := t.routes.all()
	out := make(map[node.Addr]string, len(all))
	for a, r := range all {
		out[a] = r.URL
	}
	return out
}

// Stats returns the counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	return Stats{
		Sent: s.sent.Load(), Received: s.received.Load(), Dropped: s.dropped.Load(), NoRoute: s.noRoute.Load(),
		Refused: s.refused.Load(), Batches: s.batches.Load(), FailedPosts: s.failedPosts.Load(), PeerGone: s.peerGone.Load(),
	}
}

// Close stops every sender goroutine and waits for them; messages still queued are dropped
// (and counted). Handler answers 503 from then on. Idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	already := t.closed
	t.closed = true
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	if already {
		return nil
	}
	t.cancel()
	t.wg.Wait()
	for _, p := range peers {
		t.drop(p.discard())
	}
	if t.ownClient {
		t.client.CloseIdleConnections()
	}
	return nil
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *Transport) drop(n int) { t.stats.dropped.Add(uint64(n)) }

// once reports whether key is seen for the first time (for logs that must not repeat).
func (t *Transport) once(key string) bool {
	_, seen := t.logged.LoadOrStore(key, true)
	return !seen
}

// local returns this process's addresses from Config.Addrs (none without it).
func (t *Transport) local() []node.Addr {
	if t.cfg.Addrs == nil || t.self == "" {
		return nil
	}
	return t.cfg.Addrs()
}

// drain reads and discards up to 64 KiB of a body so the connection can be reused.
func drain(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	return b
}
