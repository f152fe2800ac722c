package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// BenchmarkKernelEvents measures the kernel's raw event rate: 64 nodes bouncing pings over a
// jittery network, each delivery hashed into the trace.
func BenchmarkKernelEvents(b *testing.B) {
	const nodes = 64
	var events uint64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		s := New(Options{Seed: uint64(i)})
		s.Network().SetDefault(LinkConfig{Latency: time.Millisecond, Jitter: time.Millisecond})
		for n := 0; n < nodes; n++ {
			addr := node.Addr(fmt.Sprintf("n%02d", n))
			peer := node.Addr(fmt.Sprintf("n%02d", (n+1)%nodes))
			e := &echo{peer: peer, limit: 1 << 30, s: s}
			s.Add(addr, string(addr), 0, func() node.Node { return e })
			s.At(0, "kick", func() { s.send(s.procs[addr], peer, ping{0}) })
		}
		s.Run(10 * time.Second)
		events += s.Trace().Events()
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
}
