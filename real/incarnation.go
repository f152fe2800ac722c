package real

import (
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// incarnation is one life of a node, from Start to crash. It is the node's node.Env: every
// method but fire and kill runs on the node's goroutine.
type incarnation struct {
	rt   *Runtime
	addr node.Addr
	disk *OSDisk
	rng  *rand.Rand
	log  *slog.Logger
	box  *mailbox
	dead chan struct{} // closed when the goroutine has exited

	tmu       sync.Mutex // guards the fields below; clock callbacks touch them too
	timers    map[node.TimerID]pendingTimer
	lastTimer node.TimerID
	killed    bool
}

var _ node.Env = (*incarnation)(nil)

func newIncarnation(rt *Runtime, p *proc) *incarnation {
	return &incarnation{
		rt:     rt,
		addr:   p.addr,
		disk:   p.disk,
		rng:    rand.New(rand.NewPCG(rt.cfg.Seed, streamOf(p.addr, p.incarnations))),
		log:    rt.cfg.Logger.With("node", p.addr),
		box:    newMailbox(),
		dead:   make(chan struct{}),
		timers: map[node.TimerID]pendingTimer{},
	}
}

// streamOf is the PCG stream of a node's incarnation: the FNV-1a hash of its address and
// incarnation number, so every node and every life of it draws its own numbers.
func streamOf(addr node.Addr, incarnation uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(addr))
	h.Write(binary.LittleEndian.AppendUint64(nil, incarnation))
	return h.Sum64()
}

// run is the node's goroutine: it builds the Node, starts it, then handles one mailbox entry
// at a time until the mailbox is closed by kill.
func (inc *incarnation) run(factory func() node.Node) {
	defer close(inc.dead)
	n := factory()
	n.Start(inc)
	for {
		e, ok := inc.box.pop()
		if !ok {
			return
		}
		inc.dispatch(n, e)
	}
}

// dispatch hands one mailbox entry to the node.
func (inc *incarnation) dispatch(n node.Node, e envelope) {
	switch {
	case e.inspect != nil:
		e.inspect(n)
		close(e.done)
	case e.timer != 0:
		if m, ok := inc.takeTimer(e.timer); ok {
			n.Handle(inc, inc.addr, m)
		}
	default:
		if tr := inc.rt.cfg.Trace; tr != nil {
			tr(TraceEvent{At: inc.rt.cfg.Clock.Now(), Kind: "deliver", From: e.from, To: inc.addr, Msg: e.msg})
		}
		n.Handle(inc, e.from, e.msg)
	}
}

// kill stops every timer and closes the mailbox; the goroutine exits after the entry it is
// handling, if any. Called by Crash and Stop, never on the node's goroutine.
func (inc *incarnation) kill() {
	inc.tmu.Lock()
	inc.killed = true
	for id, t := range inc.timers {
		t.clock.Stop()
		delete(inc.timers, id)
	}
	inc.tmu.Unlock()
	inc.box.close()
}

// Self implements node.Env.
func (inc *incarnation) Self() node.Addr { return inc.addr }

// Now implements node.Env: the Runtime's clock.
func (inc *incarnation) Now() time.Time { return inc.rt.cfg.Clock.Now() }

// Send implements node.Env: m goes into to's mailbox, or is dropped if to is unknown or down.
func (inc *incarnation) Send(to node.Addr, m node.Msg) { inc.rt.send(inc.addr, to, m) }

// Rand implements node.Env.
func (inc *incarnation) Rand() *rand.Rand { return inc.rng }

// Disk implements node.Env: the machine's OSDisk.
func (inc *incarnation) Disk() node.Disk { return inc.disk }

// Log implements node.Env.
func (inc *incarnation) Log() *slog.Logger { return inc.log }

// Observe implements node.Env: it calls Config.Observe.
func (inc *incarnation) Observe(o node.Observation) {
	if tr := inc.rt.cfg.Trace; tr != nil {
		tr(TraceEvent{At: inc.rt.cfg.Clock.Now(), Kind: "observe", From: inc.addr, Obs: o})
	}
	inc.rt.cfg.Observe(inc.addr, o)
}
