package faults

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// ping is what toy nodes send each other.
type ping struct{ N int }

func (ping) MsgName() string { return "test.ping" }

// kick tells a toy node to send ping{N} to To.
type kick struct {
	To node.Addr
	N  int
}

func (kick) MsgName() string { return "test.kick" }

// stamp makes a toy node record its Env.Now.
type stamp struct{}

func (stamp) MsgName() string { return "test.stamp" }

// recv is one message a toy node handled.
type recv struct {
	from node.Addr
	msg  node.Msg
	at   time.Duration // true time
	now  time.Time     // the node's clock
}

// toy is a tiny node: it records what it handles and, on a kick, sends a ping. The same value
// survives restarts so a test can count starts.
type toy struct {
	s      *sim.Sim
	starts int
	got    []recv
}

func (n *toy) Start(node.Env) { n.starts++ }

func (n *toy) Handle(env node.Env, from node.Addr, m node.Msg) {
	n.got = append(n.got, recv{from, m, n.s.Now(), env.Now()})
	if k, ok := m.(kick); ok {
		env.Send(k.To, ping{k.N})
	}
}

// pings is the N of every ping the node handled, in order.
func (n *toy) pings() []int {
	var out []int
	for _, r := range n.got {
		if p, ok := r.msg.(ping); ok {
			out = append(out, p.N)
		}
	}
	return out
}

// cluster is a small simulated cluster of toy nodes.
type cluster struct {
	s     *sim.Sim
	t     Topology
	nodes map[node.Addr]*toy
	inj   *Injector
}

const linkLatency = time.Millisecond

// testTopology: queen-1 and client-1 on their own machines, hive-1 and hive-2 on rack-1;
// disk faults may target two files of hive-1.
func testTopology() Topology {
	return Topology{
		Hub:      "hub",
		Queens:   []node.Addr{"queen-1"},
		Hives:    []node.Addr{"hive-1", "hive-2"},
		Clients:  []node.Addr{"client-1"},
		Machines: map[node.Addr]string{"hive-1": "rack-1", "hive-2": "rack-1"},
		Devices:  map[node.Addr][]string{"hive-1": {"cuda:1", "cuda:0"}},
		Workers:  map[node.Addr][]string{"hive-1": {"w-1"}, "hive-2": {"w-2", "w-3"}},
		Files:    map[node.Addr][]string{"hive-1": {"models/a.gguf", "catalog.db"}},
		Engines:  []node.Addr{"w-1-engine"},
	}
}

// newCluster starts every node of testTopology at time zero on a 1ms link with no jitter.
func newCluster(seed uint64) *cluster {
	s := sim.New(sim.Options{Seed: seed, KeepTraceLines: true})
	s.Network().SetDefault(sim.LinkConfig{Latency: linkLatency})
	c := &cluster{s: s, t: testTopology(), nodes: map[node.Addr]*toy{}}
	for _, a := range c.t.nodes() {
		c.add(a, c.t.machine(a), 0)
	}
	for _, a := range c.t.Engines {
		c.add(a, "rack-1", 0)
	}
	c.inj = NewInjector(s, c.t)
	return c
}

func (c *cluster) add(a node.Addr, machine string, startAt time.Duration) *toy {
	n := &toy{s: c.s}
	c.nodes[a] = n
	c.s.Add(a, machine, startAt, func() node.Node { return n })
	return n
}

// kickAt makes from send ping{n} to to at true time at.
func (c *cluster) kickAt(at time.Duration, from, to node.Addr, n int) {
	c.s.At(at, "test kick", func() { c.s.Inject("test", from, kick{to, n}) })
}

// stampAt makes a record its clock at true time at.
func (c *cluster) stampAt(at time.Duration, a node.Addr) {
	c.s.At(at, "test stamp", func() { c.s.Inject("test", a, stamp{}) })
}

// stamps are the clock readings a recorded, as offsets from sim.Epoch.
func (c *cluster) stamps(a node.Addr) []time.Duration {
	var out []time.Duration
	for _, r := range c.nodes[a].got {
		if _, ok := r.msg.(stamp); ok {
			out = append(out, r.now.Sub(sim.Epoch))
		}
	}
	return out
}

// checkAt runs fn at true time at, failing the test with its error.
func (c *cluster) checkAt(t *testing.T, at time.Duration, fn func() string) {
	t.Helper()
	c.s.At(at, "test check", func() {
		if msg := fn(); msg != "" {
			t.Errorf("at %v: %s", at, msg)
		}
	})
}
