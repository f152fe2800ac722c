package chaos

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// deadline is how long a test waits for something that must happen: generous, since the
// machine may be loaded; only a failing test waits that long.
const deadline = 10 * time.Second

// echoServer listens on a free loopback port and echoes every connection; it stops (closing
// its connections and waiting for its goroutines) when the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string, seed uint64) *Proxy {
	t.Helper()
	p, err := NewProxyConfig(ProxyConfig{Listen: "127.0.0.1:0", Target: target, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// exchange writes msg on c and reads back as many bytes, within deadline.
func exchange(c net.Conn, msg []byte) error {
	if err := c.SetDeadline(time.Now().Add(deadline)); err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// roundTrip dials addr and exchanges msg on a new connection.
func roundTrip(addr string, msg []byte) error {
	c, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c, msg)
}

// mustFailNotTimeout checks that err is a failure the proxy caused (a reset or EOF), not
// the test's deadline.
func mustFailNotTimeout(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a reset", what)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: timed out, want a reset: %v", what, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestProxyForwardsAndCounts(t *testing.T) {
	p := newProxy(t, echoServer(t), 1)
	c := dial(t, p.Addr())
	msg := randomBytes(1<<20, 7)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // until the echo server's half-close comes through
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes back, not the %d sent", len(got), len(msg))
	}
	c.Close()
	waitFor(t, "the connection to finish", func() bool { return p.Stats().Active == 0 })
	want := Stats{Accepted: 1, BytesToTarget: int64(len(msg)), BytesToClient: int64(len(msg))}
	if s := p.Stats(); s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
}

func TestProxyPartitionReset(t *testing.T) {
	p := newProxy(t, echoServer(t), 1)
	live := dial(t, p.Addr())
	if err := exchange(live, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := p.Partition(PartitionReset); err != nil {
		t.Fatal(err)
	}
	if p.Partitioned() != PartitionReset {
		t.Fatalf("Partitioned() = %v", p.Partitioned())
	}
	// The live connection is cut: its read ends with a reset, long before the deadline.
	if err := live.SetReadDeadline(time.Now().Add(deadline)); err != nil {
		t.Fatal(err)
	}
	_, err := live.Read(make([]byte, 1))
	mustFailNotTimeout(t, err, "read on a live connection after the partition")
	// New connections are refused.
	mustFailNotTimeout(t, roundTrip(p.Addr(), []byte("during")), "a new connection during the partition")
	waitFor(t, "the counters", func() bool { s := p.Stats(); return s.Refused >= 1 && s.Resets >= 2 })

	p.Heal()
	if err := roundTrip(p.Addr(), []byte("after")); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	if s := p.Stats(); s.Dropped != 0 || s.DialErrors != 0 {
		t.Fatalf("stats %+v: drops or dial errors without cause", s)
	}
}

func TestProxyPartitionBlackhole(t *testing.T) {
	p := newProxy(t, echoServer(t), 1)
	live := dial(t, p.Addr())
	if err := exchange(live, []byte("before")); err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	if err := p.Partition(PartitionBlackhole); err != nil {
		t.Fatal(err)
	}
	fresh := dial(t, p.Addr()) // accepted, but held
	for _, c := range []net.Conn{live, fresh} {
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
		// Nothing can come back while the partition lasts.
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read during a blackhole gave %d bytes, %v; want a timeout", n, err)
		}
	}
	s := p.Stats()
	if s.BytesToTarget != before.BytesToTarget || s.Resets != 0 || s.Accepted != 2 {
		t.Fatalf("stats during the blackhole %+v (before %+v): want nothing forwarded, nothing reset, both accepted", s, before)
	}

	p.Heal()
	for _, c := range []net.Conn{live, fresh} {
		if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
			t.Fatalf("after Heal: got %q, %v; want the held bytes", got, err)
		}
		if err := exchange(c, []byte("again")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProxyBlackholeThenReset(t *testing.T) {
	p := newProxy(t, echoServer(t), 1)
	if err := p.Partition(PartitionBlackhole); err != nil {
		t.Fatal(err)
	}
	held := dial(t, p.Addr())
	waitFor(t, "the held connection", func() bool { return p.Stats().Active == 1 })
	if err := p.Partition(PartitionReset); err != nil {
		t.Fatal(err)
	}
	mustFailNotTimeout(t, exchange(held, []byte("x")), "a held connection after switching to reset")
}

func TestProxyDelay(t *testing.T) {
	p := newProxy(t, echoServer(t), 3)
	const d = 150 * time.Millisecond
	if err := p.SetDelay(d, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	start := time.Now()
	if err := exchange(c, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Both directions are delayed; only a lower bound is safe to assert.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v, want at least %v", took, 2*d)
	}
}

func TestProxyDelayKeepsOrder(t *testing.T) {
	p := newProxy(t, echoServer(t), 4)
	// Jitter much larger than the delay: an unordered queue would reorder the chunks.
	if err := p.SetDelay(time.Millisecond, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	var sent []byte
	errc := make(chan error, 1)
	for i := range 100 {
		sent = append(sent, byte(i))
	}
	go func() {
		for i := range sent {
			if _, err := c.Write(sent[i : i+1]); err != nil {
				errc <- err
				return
			}
			time.Sleep(time.Millisecond) // separate reads, separate chunks
		}
		errc <- nil
	}()
	if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("bytes reordered:\n got %v\nsent %v", got, sent)
	}
}

func TestProxyBandwidth(t *testing.T) {
	p := newProxy(t, echoServer(t), 5)
	const rate = 256 << 10
	if err := p.SetBandwidth(rate); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	msg := randomBytes(rate, 9) // one second's worth
	start := time.Now()
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed under a bandwidth limit")
	}
	// rate bytes at rate bytes/s take at least a second (less a rounding allowance).
	if took < 990*time.Millisecond {
		t.Fatalf("%d bytes at %d bytes/s took %v, want at least 1s", len(msg), rate, took)
	}
	// Removing the limit keeps the proxy working.
	if err := p.SetBandwidth(0); err != nil {
		t.Fatal(err)
	}
	if err := exchange(c, []byte("unlimited")); err != nil {
		t.Fatal(err)
	}
}

func TestProxyDropAllResets(t *testing.T) {
	p := newProxy(t, echoServer(t), 6)
	if err := p.SetDrop(1); err != nil {
		t.Fatal(err)
	}
	mustFailNotTimeout(t, roundTrip(p.Addr(), []byte("lost")), "a round trip with drop 1")
	waitFor(t, "the drop to be counted", func() bool { s := p.Stats(); return s.Dropped == 1 && s.Resets == 1 })
	if s := p.Stats(); s.BytesToTarget != 0 {
		t.Fatalf("a dropped chunk was delivered: %+v", s)
	}
	if err := p.SetDrop(0); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(p.Addr(), []byte("kept")); err != nil {
		t.Fatal(err)
	}
}

func TestProxyClear(t *testing.T) {
	p := newProxy(t, echoServer(t), 6)
	for _, err := range []error{p.Partition(PartitionReset), p.SetDrop(1), p.SetDelay(time.Hour, 0), p.SetBandwidth(1)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	p.Clear()
	if err := roundTrip(p.Addr(), []byte("clear")); err != nil {
		t.Fatal(err)
	}
}

func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := newProxy(t, target, 0)
	mustFailNotTimeout(t, roundTrip(p.Addr(), []byte("x")), "a round trip to a dead target")
	waitFor(t, "the dial error to be counted", func() bool { return p.Stats().DialErrors == 1 })
	if s := p.Stats(); s.Resets != 0 {
		t.Fatalf("a dial error counted as an injected reset: %+v", s)
	}
}

func TestProxyCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	target := echoServer(t)
	p, err := NewProxy("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	live := dial(t, addr)
	if err := exchange(live, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := p.SetDelay(time.Hour, 0); err != nil { // a chunk waiting in a delay
		t.Fatal(err)
	}
	if _, err := live.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	if err := p.Partition(PartitionBlackhole); err != nil {
		t.Fatal(err)
	}
	held := dial(t, addr) // a connection held by the blackhole
	waitFor(t, "both connections", func() bool { return p.Stats().Active == 2 })

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not return")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range []net.Conn{live, held} {
		if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(make([]byte, 8))
		mustFailNotTimeout(t, err, "read after Close")
		c.Close()
	}
	if err := roundTrip(addr, []byte("x")); err == nil {
		t.Fatal("the proxy still answers after Close")
	}
	// Every goroutine of the proxy is gone (the echo server's may still be winding down).
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func TestProxyRefusesBadSettings(t *testing.T) {
	if _, err := NewProxy("127.0.0.1:0", ""); err == nil {
		t.Error("no target accepted")
	}
	p := newProxy(t, "127.0.0.1:1", 0)
	for name, err := range map[string]error{
		"drop 1.5":        p.SetDrop(1.5),
		"drop -0.1":       p.SetDrop(-0.1),
		"negative delay":  p.SetDelay(-time.Second, 0),
		"negative jitter": p.SetDelay(0, -time.Second),
		"negative rate":   p.SetBandwidth(-1),
		"mode 0":          p.Partition(0),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if p.Partitioned() != 0 {
		t.Errorf("a refused Partition changed the mode to %v", p.Partitioned())
	}
}

func TestLimiterPacesPieces(t *testing.T) {
	var l limiter
	now := time.Unix(0, 0)
	if k, until := l.take(1000, now); k != 1000 || !until.IsZero() {
		t.Fatalf("unlimited take = %d, %v", k, until)
	}
	l.set(1000) // 1000 B/s: pieces of 50 bytes, 50 ms each
	var until time.Time
	total := 0
	for total < 1000 {
		var k int
		k, until = l.take(1000-total, now)
		if k != 50 {
			t.Fatalf("piece of %d bytes, want 50", k)
		}
		total += k
	}
	if got := until.Sub(now); got != time.Second {
		t.Fatalf("1000 bytes at 1000 B/s released after %v, want 1s", got)
	}
}
