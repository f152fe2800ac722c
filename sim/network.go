package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// LinkConfig describes how a directed link behaves. The zero value is a perfect link with no
// delay.
type LinkConfig struct {
	// Latency is the fixed part of a message's delay.
	Latency time.Duration `json:"latency"`
	// Jitter is the mean of an exponentially distributed extra delay; zero means none.
	Jitter time.Duration `json:"jitter"`
	// Loss is the probability, 0 to 1, that a message is dropped.
	Loss float64 `json:"loss"`
	// Duplicate is the probability, 0 to 1, that a message is delivered twice.
	Duplicate float64 `json:"duplicate"`
	// Reorder is the probability, 0 to 1, that a message gets an extra delay of up to
	// ReorderDelay, so later messages overtake it.
	Reorder      float64       `json:"reorder"`
	ReorderDelay time.Duration `json:"reorder_delay"`
	// Stream makes the link a connection (TCP, an SSE stream): a message on it that finds its
	// target down tells the sender node.PeerGone, once per incarnation of the target, as a
	// connection reset does.
	Stream bool `json:"stream,omitempty"`
}

// Validate checks that probabilities are within [0, 1] and durations are not negative.
func (c LinkConfig) Validate() error {
	for name, p := range map[string]float64{"loss": c.Loss, "duplicate": c.Duplicate, "reorder": c.Reorder} { //det:sorted
		if p < 0 || p > 1 || math.IsNaN(p) {
			return fmt.Errorf("link %s probability %v is outside [0, 1]", name, p)
		}
	}
	if c.Latency < 0 || c.Jitter < 0 || c.ReorderDelay < 0 {
		return fmt.Errorf("link durations must not be negative (latency %v, jitter %v, reorder delay %v)",
			c.Latency, c.Jitter, c.ReorderDelay)
	}
	return nil
}

// DefaultLink is a LAN link: 0.5 ms latency plus 0.2 ms mean jitter, nothing lost.
var DefaultLink = LinkConfig{Latency: 500 * time.Microsecond, Jitter: 200 * time.Microsecond}

type link struct{ from, to node.Addr }

// Network decides the fate of every message: its delay, loss, duplication, and whether a
// partition blocks it. Blocks are directed; a symmetric partition blocks both directions.
type Network struct {
	def       LinkConfig
	links     map[link]LinkConfig
	blocked   map[link]bool
	downlinks map[string]*downlink
	rng       *rand.Rand
}

// downlink is a machine's inbound link of limited capacity: messages from other machines
// cross it one after another, each taking its wire size over the capacity.
type downlink struct {
	bytesPerSec int64
	// freeAt is when the link has sent everything queued so far.
	freeAt time.Duration
	stats  DownlinkStats
}

// DownlinkStats describe what crossed a machine's downlink.
type DownlinkStats struct {
	// Bytes is every byte that crossed it.
	Bytes int64
	// MaxWait is the longest time a message waited in its queue.
	MaxWait time.Duration
	// MaxControlWait is the longest wait of a control message (one without a WireSize), and
	// ControlWaitAt when that message reached the link.
	MaxControlWait time.Duration
	ControlWaitAt  time.Duration
}

func newNetwork(rng *rand.Rand) *Network {
	return &Network{def: DefaultLink, links: map[link]LinkConfig{}, blocked: map[link]bool{},
		downlinks: map[string]*downlink{}, rng: rng}
}

// WireSizer is implemented by messages whose size on the wire matters (bodies of downloads).
// Other messages count as DefaultWireSize bytes.
type WireSizer interface{ WireSize() int }

// DefaultWireSize is the wire size of a message that does not implement WireSizer: a small
// control message with its framing.
const DefaultWireSize = 256

// wireSize is m's size on the wire, and whether it is a control message (no WireSize).
func wireSize(m node.Msg) (int64, bool) {
	if w, ok := m.(WireSizer); ok {
		return int64(w.WireSize()), false
	}
	return DefaultWireSize, true
}

// SetDownlink gives machine an inbound link of bytesPerSec, shared by every process on it: a
// message from another machine reaches it after its network delay, then waits for the messages
// that reached it before (first come, first served), then takes its wire size over the
// capacity. Traffic between processes of one machine does not cross it.
// 0 or less removes the limit. A saturated link delays control messages behind download
// bodies, as a full NIC queue does.
func (n *Network) SetDownlink(machine string, bytesPerSec int64) {
	if bytesPerSec <= 0 {
		delete(n.downlinks, machine)
		return
	}
	n.downlinks[machine] = &downlink{bytesPerSec: bytesPerSec}
}

func (n *Network) hasDownlink(machine string) bool { _, ok := n.downlinks[machine]; return ok }

// Downlink reports what crossed a machine's downlink; zero without one.
func (n *Network) Downlink(machine string) DownlinkStats {
	if d, ok := n.downlinks[machine]; ok {
		return d.stats
	}
	return DownlinkStats{}
}

// cross returns when m, reaching machine's downlink at arrive, has crossed it.
func (n *Network) cross(machine string, arrive time.Duration, m node.Msg) time.Duration {
	d, ok := n.downlinks[machine]
	if !ok {
		return arrive
	}
	size, control := wireSize(m)
	start := max(arrive, d.freeAt)
	wait := start - arrive
	d.stats.MaxWait = max(d.stats.MaxWait, wait)
	if control && wait > d.stats.MaxControlWait {
		d.stats.MaxControlWait, d.stats.ControlWaitAt = wait, arrive
	}
	d.freeAt = start + time.Duration(float64(size)/float64(d.bytesPerSec)*float64(time.Second))
	d.stats.Bytes += size
	return d.freeAt
}

// SetDefault sets the configuration of every link without its own.
func (n *Network) SetDefault(c LinkConfig) { n.def = c }

// Default is the configuration of every link without its own.
func (n *Network) Default() LinkConfig { return n.def }

// SetLink sets the configuration of the directed link from -> to.
func (n *Network) SetLink(from, to node.Addr, c LinkConfig) { n.links[link{from, to}] = c }

// ClearLinks drops every per-link configuration.
func (n *Network) ClearLinks() { clear(n.links) }

// Block cuts the directed link from -> to (a one-way partition).
func (n *Network) Block(from, to node.Addr) { n.blocked[link{from, to}] = true }

// Blocked reports whether from -> to is cut.
func (n *Network) Blocked(from, to node.Addr) bool { return n.blocked[link{from, to}] }

// Heal removes every partition.
func (n *Network) Heal() { clear(n.blocked) }

// Partitioned reports whether any link is cut.
func (n *Network) Partitioned() bool { return len(n.blocked) > 0 }

func (n *Network) config(from, to node.Addr) LinkConfig {
	if c, ok := n.links[link{from, to}]; ok {
		return c
	}
	return n.def
}

// fate draws what happens to one message: how many copies arrive (0, 1 or 2) and their delays.
func (n *Network) fate(from, to node.Addr) (copies int, d1, d2 time.Duration) {
	c := n.config(from, to)
	if c.Loss > 0 && n.rng.Float64() < c.Loss {
		return 0, 0, 0
	}
	d1 = n.delay(c)
	if c.Duplicate > 0 && n.rng.Float64() < c.Duplicate {
		return 2, d1, n.delay(c)
	}
	return 1, d1, 0
}

func (n *Network) delay(c LinkConfig) time.Duration {
	d := c.Latency
	if c.Jitter > 0 {
		d += time.Duration(n.rng.ExpFloat64() * float64(c.Jitter))
	}
	if c.Reorder > 0 && c.ReorderDelay > 0 && n.rng.Float64() < c.Reorder {
		d += time.Duration(n.rng.Int64N(int64(c.ReorderDelay)) + 1)
	}
	return d
}
