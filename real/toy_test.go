package real

import (
	"bytes"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Messages of the toy nodes.
type (
	kick  struct{ N int }        // tells a pinger to send N pings
	ping  struct{ Seq int }      // pinger -> ponger
	pong  struct{ Seq int }      // ponger -> pinger
	tick  struct{ Gen int }      // a timer set by incarnation Gen
	beat  struct{}               // a heartbeat timer
	hello struct{ At time.Time } // a heartbeat to the counter
	block struct {               // makes the handler wait for Gate (tests only)
		Gate   chan struct{}
		Cancel bool // then cancel the last timer set
	}
	write    struct{ Name, Data string } // writes a file atomically
	read     struct{ Name string }       // reads a file into lastRead, lastErr
	mark     struct{}                    // observes node.Mark("toy")
	setTimer struct{ D time.Duration }   // sets a timer of the given length
	cancel   struct{}                    // cancels the last timer set
	sendTo   struct{ To node.Addr }      // sends a ping to To
)

func (kick) MsgName() string     { return "test.kick" }
func (ping) MsgName() string     { return "test.ping" }
func (pong) MsgName() string     { return "test.pong" }
func (tick) MsgName() string     { return "test.tick" }
func (beat) MsgName() string     { return "test.beat" }
func (hello) MsgName() string    { return "test.hello" }
func (block) MsgName() string    { return "test.block" }
func (setTimer) MsgName() string { return "test.set_timer" }
func (cancel) MsgName() string   { return "test.cancel" }
func (sendTo) MsgName() string   { return "test.send_to" }
func (write) MsgName() string    { return "test.write" }
func (read) MsgName() string     { return "test.read" }
func (mark) MsgName() string     { return "test.mark" }

// toy is a node for the runtime's tests: it pings its peer when kicked, answers pings with
// pongs, and records everything it receives.
type toy struct {
	gen        int // incarnation number given by the factory
	peer       node.Addr
	startTimer time.Duration // if set, Start sets a timer of this length
	lastRead   string
	lastErr    error
	started    bool
	startedAt  time.Time
	got        []node.Msg
	from       []node.Addr
	lastTimer  node.TimerID
	rand       uint64
	sink       *record // shared with the test, survives crashes; may be nil
}

func (n *toy) Start(env node.Env) {
	n.started = true
	n.startedAt = env.Now()
	n.rand = env.Rand().Uint64()
	if n.startTimer > 0 {
		n.lastTimer = env.After(n.startTimer, tick{Gen: n.gen})
	}
}

func (n *toy) Handle(env node.Env, from node.Addr, m node.Msg) {
	n.got = append(n.got, m)
	n.from = append(n.from, from)
	n.sink.add(n.gen, m)
	switch m := m.(type) {
	case kick:
		for i := range m.N {
			env.Send(n.peer, ping{Seq: i + 1})
		}
	case ping:
		env.Send(from, pong(m))
	case block:
		<-m.Gate
		if m.Cancel {
			env.Cancel(n.lastTimer)
		}
	default:
		n.handleMore(env, m)
	}
}

func (n *toy) handleMore(env node.Env, m node.Msg) {
	switch m := m.(type) {
	case setTimer:
		n.lastTimer = env.After(m.D, tick{Gen: n.gen})
	case cancel:
		env.Cancel(n.lastTimer)
	case sendTo:
		env.Send(m.To, ping{Seq: -1})
	case write:
		n.lastErr = node.WriteFileAtomic(env.Disk(), m.Name, []byte(m.Data))
	case read:
		b, err := node.ReadFile(env.Disk(), m.Name)
		n.lastRead, n.lastErr = string(b), err
	case mark:
		env.Observe(node.Mark("toy"))
	}
}

func (n *toy) count(name string) int {
	c := 0
	for _, m := range n.got {
		if m.MsgName() == name {
			c++
		}
	}
	return c
}

// toyFactory returns a factory of toys that talk to peer and number their incarnations; the
// first incarnation sets a timer of startTimer in Start if it is not zero.
func toyFactory(peer node.Addr, sink *record, startTimer time.Duration) func() node.Node {
	gen := 0
	return func() node.Node {
		gen++
		t := &toy{gen: gen, peer: peer, sink: sink}
		if gen == 1 {
			t.startTimer = startTimer
		}
		return t
	}
}

// record is a concurrency-safe log of (incarnation, message) that outlives crashes.
type record struct {
	mu  sync.Mutex
	got []string
}

func (r *record) add(gen int, m node.Msg) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(rune('0'+gen))+":"+m.MsgName())
}

func (r *record) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// heart sends a hello to its counter every 15 s of its clock.
type heart struct{ counter node.Addr }

const heartbeatInterval = 15 * time.Second

func (h *heart) Start(env node.Env) { env.After(heartbeatInterval, beat{}) }

func (h *heart) Handle(env node.Env, from node.Addr, m node.Msg) {
	if _, ok := m.(beat); ok && from == env.Self() {
		env.Send(h.counter, hello{At: env.Now()})
		env.After(heartbeatInterval, beat{})
	}
}

// counter counts hellos and remembers when they were sent.
type counter struct{ at []time.Time }

func (c *counter) Start(node.Env) {}

func (c *counter) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	if h, ok := m.(hello); ok {
		c.at = append(c.at, h.At)
	}
}

// lockedBuffer is a bytes.Buffer safe for the loggers of many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
