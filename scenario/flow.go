package scenario

import (
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// flowMonitor watches the traffic of downloads: the bytes each hive receives from the hub
// (bandwidth), the heartbeat round trips of the hives (control traffic not starved) and the
// progress events clients receive.
type flowMonitor struct{}

func (m *flowMonitor) sent(at time.Duration, from, to node.Addr, msg node.Msg)      {}
func (m *flowMonitor) delivered(at time.Duration, from, to node.Addr, msg node.Msg) {}

// flowChecks judges the download traffic.
func (r *run) flowChecks() []CheckerResult { return nil }
