package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// Defaults of ProxyConfig.
const (
	// DefaultListen is the address a proxy listens on when ProxyConfig.Listen is empty: a free
	// port on the loopback interface.
	DefaultListen = "127.0.0.1:0"
	// DefaultChunkSize is the most bytes one read takes from a connection, and so the largest
	// unit a delay or a drop applies to.
	DefaultChunkSize = 32 << 10
	// DefaultDialTimeout bounds the proxy's dial to its target.
	DefaultDialTimeout = 5 * time.Second
)

// queueChunks is how many chunks one direction of a connection holds between reading and
// writing: the room that delays and a blackhole partition have before the sender blocks.
const queueChunks = 64

// piecesPerSecond is how finely a bandwidth limit is applied: a chunk is written in pieces of
// at most 1/piecesPerSecond of a second's worth of bytes, so that a limit set while a large
// chunk is in flight takes effect within that time and bursts stay small.
const piecesPerSecond = 20

// PartitionMode is how a partitioned proxy treats connections.
type PartitionMode int

const (
	// PartitionReset resets every live connection (an RST to both ends) and resets every new
	// one as soon as it is accepted, like a crashed peer or a firewall that rejects.
	//
	// A TCP dial to a listening socket completes in the kernel before the proxy can refuse
	// it, so a client sees the refusal as ECONNRESET (or EOF) on its first read or write
	// rather than ECONNREFUSED from the dial. The proxy keeps its port, so Addr stays valid.
	PartitionReset PartitionMode = iota + 1
	// PartitionBlackhole forwards nothing and closes nothing: bytes in flight wait in the
	// proxy (and, once its queues are full, in the kernel's buffers, which then stall the
	// sender), and new connections are accepted but not dialled through. Clients see
	// timeouts, as with a cable pulled out. On Heal everything held is delivered in order and
	// held connections are dialled through, as TCP retransmission would after a real
	// partition heals.
	PartitionBlackhole
)

// String names the mode.
func (m PartitionMode) String() string {
	switch m {
	case 0:
		return "none"
	case PartitionReset:
		return "reset"
	case PartitionBlackhole:
		return "blackhole"
	}
	return fmt.Sprintf("PartitionMode(%d)", int(m))
}

// ProxyConfig configures a Proxy. Only Target is required.
type ProxyConfig struct {
	// Listen is the address to listen on; DefaultListen when empty. Port 0 picks a free port
	// (see Proxy.Addr).
	Listen string
	// Target is the address every accepted connection is forwarded to.
	Target string
	// Seed seeds the proxy's random choices (jitter and drops): connection number i (from 0,
	// in accept order) draws from PCG(Seed, 2i) for bytes towards the target and PCG(Seed,
	// 2i+1) for bytes towards the client, one draw per chunk for each fault that needs one.
	// The choices are then reproducible given the same sequence of chunks, which TCP decides.
	Seed uint64
	// ChunkSize is the most bytes one read takes; DefaultChunkSize when 0.
	ChunkSize int
	// DialTimeout bounds each dial to Target; DefaultDialTimeout when 0.
	DialTimeout time.Duration
	// Clock times delays and bandwidth waits; the wall clock (clock.New()) when nil.
	Clock clock.Clock
}

// Stats are a proxy's counters since it started.
type Stats struct {
	// Accepted counts connections accepted from clients, refused ones included.
	Accepted int64
	// Active is the number of connections open now (accepted and not yet finished).
	Active int64
	// DialErrors counts connections whose dial to the target failed; the client's connection
	// was then reset, as the target would have refused it.
	DialErrors int64
	// BytesToTarget and BytesToClient count the bytes written to each side.
	BytesToTarget int64
	BytesToClient int64
	// Resets counts connections the proxy reset as an injected fault: cut by a reset
	// partition, refused during one, or dropped.
	Resets int64
	// Refused counts, of Resets, new connections reset at accept during a reset partition.
	Refused int64
	// Dropped counts, of Resets, connections reset by SetDrop.
	Dropped int64
}

// Proxy is a TCP proxy with switchable faults. Its methods are safe to call from any
// goroutine at any time; a fault applies from the next chunk each connection forwards.
type Proxy struct {
	cfg  ProxyConfig
	clk  clock.Clock
	ln   net.Listener
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	toTarget, toClient limiter

	mu     sync.Mutex
	closed bool
	mode   PartitionMode
	healed chan struct{} // closed while the proxy is not in a blackhole partition
	delay  time.Duration
	jitter time.Duration
	drop   float64
	conns  map[*conn]struct{}
	nextID uint64

	accepted, dialErrors, bytesToTarget, bytesToClient atomic.Int64
	resets, refused, dropped                           atomic.Int64
}

// NewProxy starts a proxy that listens on listen ("127.0.0.1:0" for a free port) and forwards
// every connection to target, with seed 0 and the other defaults of ProxyConfig.
func NewProxy(listen, target string) (*Proxy, error) {
	return NewProxyConfig(ProxyConfig{Listen: listen, Target: target})
}

// NewProxyConfig starts a proxy configured by cfg. The caller must Close it.
func NewProxyConfig(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("chaos: proxy: no target address (ProxyConfig.Target)")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ChunkSize < 0 || cfg.DialTimeout < 0 {
		return nil, fmt.Errorf("chaos: proxy: negative ChunkSize (%d) or DialTimeout (%v)", cfg.ChunkSize, cfg.DialTimeout)
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy for %s: listen on %s: %w", cfg.Target, cfg.Listen, err)
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{
		cfg:    cfg,
		clk:    cfg.Clock,
		ln:     ln,
		done:   make(chan struct{}),
		healed: healed,
		conns:  make(map[*conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy listens on, with the port it was given.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.cfg.Target }

// Partition starts a partition in the given mode (see PartitionMode); it lasts until Heal or
// another Partition. Switching from blackhole to reset resets the held connections too.
func (p *Proxy) Partition(mode PartitionMode) error {
	if mode != PartitionReset && mode != PartitionBlackhole {
		return fmt.Errorf("chaos: proxy %s: unknown partition mode %v (use PartitionReset or PartitionBlackhole)", p.Addr(), mode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.mode
	p.mode = mode
	if mode == PartitionReset {
		// Cut before waking anything held by a blackhole, so that nothing slips through.
		for c := range p.conns {
			if c.kill() {
				p.resets.Add(1)
			}
		}
	}
	switch {
	case mode == PartitionBlackhole && prev != PartitionBlackhole:
		p.healed = make(chan struct{})
	case mode != PartitionBlackhole && prev == PartitionBlackhole:
		close(p.healed)
	}
	return nil
}

// Heal ends a partition: new connections are forwarded again, and what a blackhole held is
// delivered. Connections a reset partition cut stay cut. Healing a proxy that is not
// partitioned does nothing.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == PartitionBlackhole {
		close(p.healed)
	}
	p.mode = 0
}

// Partitioned is the current partition mode; 0 when there is none.
func (p *Proxy) Partitioned() PartitionMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetDelay delays every chunk by d plus a uniform random extra in [0, jitter), counted from
// when the proxy read it. Chunks of one direction of a connection keep their order: a chunk
// drawn a shorter delay than the one before it waits for that one. The delay is latency, not
// a throughput limit: chunks in flight overlap. SetDelay(0, 0) turns it off.
func (p *Proxy) SetDelay(d, jitter time.Duration) error {
	if d < 0 || jitter < 0 {
		return fmt.Errorf("chaos: proxy %s: negative delay %v or jitter %v", p.Addr(), d, jitter)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.jitter = d, jitter
	return nil
}

// SetDrop makes every chunk, with probability prob, drop its connection: TCP gives no way to
// lose bytes silently (the kernel retransmits them), so a dropped chunk is not delivered and
// its connection is reset at both ends, as a middlebox that loses state would do. Stats
// counts these in Dropped and Resets. SetDrop(0) turns it off; SetDrop(1) resets every
// connection at its first chunk.
func (p *Proxy) SetDrop(prob float64) error {
	if math.IsNaN(prob) || prob < 0 || prob > 1 {
		return fmt.Errorf("chaos: proxy %s: drop probability %v is not in [0, 1]", p.Addr(), prob)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = prob
	return nil
}

// SetBandwidth limits each direction of the proxy, all its connections together, to
// bytesPerSec (a full-duplex link of that speed); 0 removes the limit. Bytes are released in
// pieces of at most a twentieth of a second's worth, each only after its share of time has
// passed, so sending n bytes takes at least n/bytesPerSec.
func (p *Proxy) SetBandwidth(bytesPerSec int64) error {
	if bytesPerSec < 0 {
		return fmt.Errorf("chaos: proxy %s: negative bandwidth %d bytes/s (use 0 for no limit)", p.Addr(), bytesPerSec)
	}
	p.toTarget.set(bytesPerSec)
	p.toClient.set(bytesPerSec)
	return nil
}

// Clear removes every fault: it heals a partition and turns off delay, drop and the
// bandwidth limit.
func (p *Proxy) Clear() {
	p.Heal()
	p.mu.Lock()
	p.delay, p.jitter, p.drop = 0, 0, 0
	p.mu.Unlock()
	p.toTarget.set(0)
	p.toClient.set(0)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := int64(len(p.conns))
	p.mu.Unlock()
	return Stats{
		Accepted:      p.accepted.Load(),
		Active:        active,
		DialErrors:    p.dialErrors.Load(),
		BytesToTarget: p.bytesToTarget.Load(),
		BytesToClient: p.bytesToClient.Load(),
		Resets:        p.resets.Load(),
		Refused:       p.refused.Load(),
		Dropped:       p.dropped.Load(),
	}
}

// Close stops the proxy: it stops listening, resets every connection (a plain close would
// let a peer take a cut-off stream for a complete one), and returns once every goroutine the
// proxy started has exited. Calling it again does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.kill()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("chaos: proxy %s: close listener: %w", p.Addr(), err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			// Out of file descriptors or the like: wait a little rather than spin.
			t := p.clk.Timer(10 * time.Millisecond)
			select {
			case <-p.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		p.accepted.Add(1)
		ctx, cancel := context.WithCancel(context.Background())
		c := &conn{p: p, client: nc.(*net.TCPConn), ctx: ctx, cancel: cancel}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.kill()
			return
		}
		c.id = p.nextID
		p.nextID++
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go c.run()
	}
}

// settings is a snapshot of the per-chunk faults.
type settings struct {
	delay, jitter time.Duration
	drop          float64
}

func (p *Proxy) settings() settings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return settings{p.delay, p.jitter, p.drop}
}

func (p *Proxy) partition() (PartitionMode, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.healed
}

// conn is one proxied connection.
type conn struct {
	p      *Proxy
	id     uint64
	client *net.TCPConn
	ctx    context.Context // done once the connection is killed or finished
	cancel context.CancelFunc

	mu     sync.Mutex
	ended  bool
	target *net.TCPConn // nil until dialled
}

// kill resets both sides of c (SO_LINGER 0: close sends an RST) and reports whether c was
// still alive.
func (c *conn) kill() bool { return c.end(true) }

// end closes both sides of c, with an RST if reset, unless c already ended.
func (c *conn) end(reset bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.ended = true
	c.cancel()
	closeTCP(c.client, reset)
	if c.target != nil {
		closeTCP(c.target, reset)
	}
	return true
}

func closeTCP(tc *net.TCPConn, reset bool) {
	if reset {
		_ = tc.SetLinger(0)
	}
	_ = tc.Close()
}

func (c *conn) dead() <-chan struct{} { return c.ctx.Done() }

func (c *conn) run() {
	p := c.p
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	defer c.end(false)
	if !c.admit() {
		return
	}
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	nc, err := d.DialContext(c.ctx, "tcp", p.cfg.Target)
	if err != nil {
		if c.kill() {
			p.dialErrors.Add(1)
		}
		return
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		closeTCP(nc.(*net.TCPConn), true)
		return
	}
	c.target = nc.(*net.TCPConn)
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { c.pump(c.client, c.target, &p.bytesToTarget, &p.toTarget, 2*c.id) })
	wg.Go(func() { c.pump(c.target, c.client, &p.bytesToClient, &p.toClient, 2*c.id+1) })
	wg.Wait()
}

// admit waits out a blackhole partition and refuses c during a reset one; it reports whether
// c may be dialled through.
func (c *conn) admit() bool {
	for {
		select {
		case <-c.dead():
			return false
		default:
		}
		mode, healed := c.p.partition()
		switch mode {
		case PartitionReset:
			if c.kill() {
				c.p.resets.Add(1)
				c.p.refused.Add(1)
			}
			return false
		case PartitionBlackhole:
			select {
			case <-healed:
			case <-c.dead():
				return false
			}
		default:
			return true
		}
	}
}

// chunk is bytes read from one side, due for writing to the other at due unless dropped.
type chunk struct {
	b    []byte
	due  time.Time
	drop bool
}

// pump forwards src to dst until src ends (then it half-closes dst) or c dies.
func (c *conn) pump(src, dst *net.TCPConn, n *atomic.Int64, lim *limiter, stream uint64) {
	p := c.p
	q := make(chan chunk, queueChunks)
	var reader sync.WaitGroup
	reader.Go(func() { c.read(src, q, rand.New(rand.NewPCG(p.cfg.Seed, stream))) })
	ok := true
	for ch := range q {
		if !c.waitUntil(ch.due) {
			ok = false
			break
		}
		if ch.drop {
			if c.kill() {
				p.resets.Add(1)
				p.dropped.Add(1)
			}
			ok = false
			break
		}
		if !c.waitHealed() || !c.write(dst, ch.b, n, lim) {
			ok = false
			break
		}
	}
	if ok {
		_ = dst.CloseWrite()
	} else {
		c.kill()
		for range q {
		}
	}
	reader.Wait()
}

// read reads src in chunks into q, stamping each with its due time and drop decision, until
// src ends (q is then closed) or fails (c is then reset, as the peer's reset is passed on).
func (c *conn) read(src *net.TCPConn, q chan<- chunk, rng *rand.Rand) {
	p := c.p
	defer close(q)
	buf := make([]byte, p.cfg.ChunkSize)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			f := p.settings()
			ch := chunk{b: append([]byte(nil), buf[:k]...), due: p.clk.Now().Add(f.delay)}
			if f.jitter > 0 {
				ch.due = ch.due.Add(time.Duration(rng.Int64N(int64(f.jitter))))
			}
			ch.drop = f.drop > 0 && rng.Float64() < f.drop
			select {
			case q <- ch:
			case <-c.dead():
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.kill()
			}
			return
		}
	}
}

// write writes b to dst within the bandwidth limit, counting bytes into n; it reports
// whether all of b was written.
func (c *conn) write(dst *net.TCPConn, b []byte, n *atomic.Int64, lim *limiter) bool {
	for len(b) > 0 {
		k, until := lim.take(len(b), c.p.clk.Now())
		if !until.IsZero() && !c.waitUntil(until) {
			return false
		}
		w, err := dst.Write(b[:k])
		n.Add(int64(w))
		if err != nil {
			return false
		}
		b = b[k:]
	}
	return true
}

// waitUntil waits until t on the proxy's clock; false if c died first.
func (c *conn) waitUntil(t time.Time) bool {
	d := t.Sub(c.p.clk.Now())
	if d <= 0 {
		select {
		case <-c.dead():
			return false
		default:
			return true
		}
	}
	timer := c.p.clk.Timer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-c.dead():
		return false
	}
}

// waitHealed waits while the proxy is in a blackhole partition; false if c died first.
func (c *conn) waitHealed() bool {
	for {
		mode, healed := c.p.partition()
		if mode != PartitionBlackhole {
			select {
			case <-c.dead():
				return false
			default:
				return true
			}
		}
		select {
		case <-healed:
		case <-c.dead():
			return false
		}
	}
}

// limiter is the bandwidth limit of one direction of a proxy: a token bucket that holds one
// piece.
type limiter struct {
	mu   sync.Mutex
	rate int64     // bytes per second; 0: no limit
	next time.Time // when the bytes reserved so far have had their time
}

func (l *limiter) set(rate int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = rate
	l.next = time.Time{}
}

// take reserves up to want bytes at now: it returns how many and the time before which they
// must not be written (zero without a limit).
func (l *limiter) take(want int, now time.Time) (int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate <= 0 {
		return want, time.Time{}
	}
	k := int64(want)
	k = min(k, max(1, l.rate/piecesPerSecond))
	start := l.next
	if start.Before(now) {
		start = now
	}
	l.next = start.Add(time.Duration(k * int64(time.Second) / l.rate))
	return int(k), l.next
}
