package transport_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

const (
	queenAddr  node.Addr = "queen-1"
	clientAddr node.Addr = "bench-client"
	benchHive  node.Addr = "hive-bench"
	benchPool            = 64 // workers the registry operations cycle over
)

// regClient is a port that sends registry requests to the queen and waits for their answers.
type regClient struct {
	send real.Send
	next atomic.Uint64
	mu   sync.Mutex
	wait map[uint64]chan api.RegistryResp
}

func (c *regClient) Deliver(_ node.Addr, m node.Msg) {
	r, ok := m.(api.RegistryResp)
	if !ok {
		return
	}
	c.mu.Lock()
	ch := c.wait[r.ReqID]
	delete(c.wait, r.ReqID)
	c.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

func (c *regClient) Close() error { return nil }

// call sends the request made for a fresh ReqID and waits for its answer.
func (c *regClient) call(mk func(id uint64) node.Msg) (api.RegistryResp, error) {
	id := c.next.Add(1)
	ch := make(chan api.RegistryResp, 1)
	c.mu.Lock()
	c.wait[id] = ch
	c.mu.Unlock()
	req := mk(id)
	c.send(queenAddr, req)
	select {
	case r := <-ch:
		if !r.Err.OK() {
			return r, fmt.Errorf("%s: %v", req.MsgName(), r.Err)
		}
		return r, nil
	case <-time.After(30 * time.Second):
		return api.RegistryResp{}, fmt.Errorf("%s %d: no answer in 30s", req.MsgName(), id)
	}
}

func benchWorker(i int) string { return fmt.Sprintf("w%03d", i%benchPool) }

// op is registry operation i: a registration (a confirmation: the worker is already
// registered under the same incarnation), a read, or a heartbeat, in turn.
func op(i int) func(id uint64) node.Msg {
	w := benchWorker(i / 3)
	switch i % 3 {
	case 0:
		return func(id uint64) node.Msg {
			return api.RegisterReq{ReqID: id, State: api.StateIdle,
				Spec: api.WorkerSpec{ID: w, Hive: benchHive, Incarnation: 1, Model: "hf:a/b", Capability: "cpu", Slots: 1}}
		}
	case 1:
		return func(id uint64) node.Msg { return api.GetReq{ReqID: id, Worker: w} }
	default:
		return func(id uint64) node.Msg { return api.HeartbeatReq{ReqID: id, Worker: w, Incarnation: 1} }
	}
}

// queenOverHTTP starts a queen (default config, its disk in a temporary folder) in one
// Runtime and a registry client port in another, joined by two Transports on loopback, and
// registers the pool of workers.
func queenOverHTTP(b *testing.B) *regClient {
	q := newSide(b, "Q", nil, sideOpts{reg: wire.Default, setup: func(rt *real.Runtime) error {
		return rt.Add(queenAddr, "queen", func() node.Node { return queen.New(queen.DefaultConfig()) })
	}})
	client := &regClient{wait: map[uint64]chan api.RegistryResp{}}
	newSide(b, "K", nil, sideOpts{reg: wire.Default, peers: map[node.Addr]string{queenAddr: q.url}, setup: func(rt *real.Runtime) error {
		return rt.AddPort(clientAddr, func(send real.Send) real.Port { client.send = send; return client })
	}})
	for i := range benchPool {
		if _, err := client.call(op(3 * i)); err != nil {
			b.Fatal(err)
		}
	}
	return client
}

// BenchmarkRegistryOverHTTP measures registry operations (register, get, heartbeat in turn)
// from a client process to a queen process over the HTTP transport: one request at a time
// (each a full round trip: two POSTs, one each way), and with 32 requests in flight.
func BenchmarkRegistryOverHTTP(b *testing.B) {
	b.Run("one-at-a-time", func(b *testing.B) {
		client := queenOverHTTP(b)
		b.ResetTimer()
		for i := range b.N {
			if _, err := client.call(op(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("32-in-flight", func(b *testing.B) {
		client := queenOverHTTP(b)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		b.ResetTimer()
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					if _, err := client.call(op(i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

// sink is a port that counts what it receives.
type sink struct{ n atomic.Int64 }

func (s *sink) Deliver(node.Addr, node.Msg) { s.n.Add(1) }
func (s *sink) Close() error                { return nil }

// BenchmarkOneWay measures raw message throughput from a port in one process to a port in
// another: b.N pings, sent in windows of 8192 (well under a peer queue's limit) as fast as
// Send takes them.
func BenchmarkOneWay(b *testing.B) {
	dst := &sink{}
	to := newSide(b, "B", nil, sideOpts{setup: func(rt *real.Runtime) error {
		return rt.AddPort("sink", func(real.Send) real.Port { return dst })
	}})
	var send real.Send
	from := newSide(b, "A", nil, sideOpts{peers: map[node.Addr]string{"sink": to.url}, setup: func(rt *real.Runtime) error {
		return rt.AddPort("source", func(s real.Send) real.Port { send = s; return &sink{} })
	}})
	const window = 8192
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(window, b.N-sent)
		for i := range n {
			send("sink", ping{Seq: sent + i})
		}
		sent += n
		waitFor(b, "the window to arrive", func() bool { return dst.n.Load() == int64(sent) })
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	s := from.tr.Stats()
	b.ReportMetric(float64(s.Sent)/float64(max(s.Batches, 1)), "msgs/batch")
}
