package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Stream numbers for the kernel's own random streams. Each subsystem has its own stream so a
// new draw in one never shifts the draws of another.
const (
	streamNetwork uint64 = 1
	streamKernel  uint64 = 2
	// streamDisk tears the writes of power failures (Sim.PowerFail).
	streamDisk uint64 = 5
	// StreamFaults and StreamWorkload are for the harness's fault schedule and workload.
	StreamFaults   uint64 = 3
	StreamWorkload uint64 = 4
	// StreamDiskFaults is for the random choices disk faults make when they are injected.
	StreamDiskFaults uint64 = 6
)

// Hooks let a harness watch a run without changing it. Every hook is optional. Hooks run on the
// simulation's goroutine, between or during events; they must not schedule events or change
// nodes.
type Hooks struct {
	// Sent is called when a node sends a message, before the network decides its fate.
	Sent func(at time.Duration, from, to node.Addr, m node.Msg)
	// Delivered is called just before a message is handed to its target.
	Delivered func(at time.Duration, from, to node.Addr, m node.Msg)
	// Observed is called for every observation a node reports, marks included.
	Observed func(at time.Duration, from node.Addr, o node.Observation)
	// AfterEvent is called after every event (delivery, timer, start, action).
	AfterEvent func(at time.Duration)
}

// Sim is one deterministic simulation.
type Sim struct {
	seed    uint64
	now     time.Duration
	seq     uint64
	queue   eventQueue
	procs   map[node.Addr]*proc
	order   []*proc // sorted by address
	disks   map[string]*Disk
	net     *Network
	trace   *Trace
	rng     *rand.Rand
	diskRng *rand.Rand // tears writes at power failures
	hooks   Hooks
	marks   map[string]int
	resets  map[resetKey]bool // stream resets told (see resetStream)
	logOut  slog.Handler
	stopped bool
}

// Options configure a Sim.
type Options struct {
	// Seed is the run seed every random stream derives from.
	Seed uint64
	// Log receives the nodes' logs with simulated times; nil discards them.
	Log slog.Handler
	// KeepTraceLines keeps the canonical text of every event, for FirstDivergence.
	KeepTraceLines bool
}

// New returns an empty simulation at time zero.
func New(o Options) *Sim {
	s := &Sim{
		seed:   o.Seed,
		procs:  map[node.Addr]*proc{},
		disks:  map[string]*Disk{},
		trace:  newTrace(),
		marks:  map[string]int{},
		resets: map[resetKey]bool{},
		logOut: o.Log,
	}
	s.trace.keep = o.KeepTraceLines
	s.net = newNetwork(s.Stream(streamNetwork))
	s.rng = s.Stream(streamKernel)
	s.diskRng = s.Stream(streamDisk)
	if s.logOut == nil {
		s.logOut = slog.DiscardHandler
	} else {
		s.logOut = simTimeHandler{s.logOut, s}
	}
	return s
}

// Stream returns a new random stream derived from the run seed; distinct stream numbers give
// independent streams. Streams 1 to 15 are reserved for sim's own use and its Stream* constants.
func (s *Sim) Stream(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.seed, stream))
}

func addrStream(a node.Addr) uint64 {
	h := fnv.New64a()
	h.Write([]byte(a))
	return h.Sum64() | 1<<63 // never collides with the small reserved stream numbers
}

// Seed is the run seed.
func (s *Sim) Seed() uint64 { return s.seed }

// Now is the true simulated time since the start of the run.
func (s *Sim) Now() time.Duration { return s.now }

// Network is the simulation's network.
func (s *Sim) Network() *Network { return s.net }

// Trace is the simulation's trace.
func (s *Sim) Trace() *Trace { return s.trace }

// SetHooks installs the harness's hooks.
func (s *Sim) SetHooks(h Hooks) { s.hooks = h }

// Marks returns how often each coverage mark was reached.
func (s *Sim) Marks() map[string]int { return s.marks }

// Disk returns the disk of a machine, creating it on first use.
func (s *Sim) Disk(machine string) *Disk {
	d, ok := s.disks[machine]
	if !ok {
		d = NewDisk()
		s.disks[machine] = d
	}
	return d
}

// Add registers a process at addr on machine, built by factory at every (re)start. It is
// started at true time startAt. Adding an address twice panics.
func (s *Sim) Add(addr node.Addr, machine string, startAt time.Duration, factory func() node.Node) {
	if _, dup := s.procs[addr]; dup {
		panic(fmt.Sprintf("sim: node %q added twice", addr))
	}
	p := &proc{addr: addr, machine: machine, disk: s.Disk(machine), factory: factory,
		rng: s.Stream(addrStream(addr)), timers: map[node.TimerID]struct{}{}}
	p.log = slog.New(s.logOut).With("node", string(addr))
	s.procs[addr] = p
	s.order = append(s.order, p)
	sort.Slice(s.order, func(i, j int) bool { return s.order[i].addr < s.order[j].addr })
	s.schedule(event{at: startAt, kind: evStart, to: p, inc: p.inc})
}

// AddAgain is Add for an address that may have existed before: a new program starting at
// addr on machine at true time startAt, as a process spawned at runtime. An unknown address is
// simply added. A known one must be down (crashed or Exit); it gets the new machine and
// factory, is no longer gone, loses its crash hook, and any start scheduled for it before is
// void. Its random stream, clock and crash count carry on. AddAgain on a running process
// panics: two processes never share an address.
func (s *Sim) AddAgain(addr node.Addr, machine string, startAt time.Duration, factory func() node.Node) {
	p, ok := s.procs[addr]
	if !ok {
		s.Add(addr, machine, startAt, factory)
		return
	}
	if p.up {
		panic(fmt.Sprintf("sim: AddAgain(%q) while the process there is running", addr))
	}
	p.machine, p.disk, p.factory = machine, s.Disk(machine), factory
	p.gone, p.onCrash = false, nil
	p.inc++
	s.schedule(event{at: startAt, kind: evStart, to: p, inc: p.inc})
}

// Addrs returns every process address, sorted.
func (s *Sim) Addrs() []node.Addr {
	out := make([]node.Addr, len(s.order))
	for i, p := range s.order {
		out[i] = p.addr
	}
	return out
}

// Node returns the live Node at addr, or nil if it is down. For monitors: read only.
func (s *Sim) Node(addr node.Addr) node.Node {
	if p := s.procs[addr]; p != nil && p.up {
		return p.node
	}
	return nil
}

// Clock returns the clock of the process at addr.
func (s *Sim) Clock(addr node.Addr) *Clock { return &s.mustProc(addr).clock }

// At schedules a harness action at true time t (not before now). Its name goes into the trace.
func (s *Sim) At(t time.Duration, name string, fn func()) {
	if t < s.now {
		t = s.now
	}
	s.schedule(event{at: t, kind: evAction, name: name, fn: fn})
}

// Stop ends Run after the current event.
func (s *Sim) Stop() { s.stopped = true }

func (s *Sim) schedule(e event) {
	s.seq++
	e.seq = s.seq
	s.queue.push(e)
}

func (s *Sim) mustProc(addr node.Addr) *proc {
	p, ok := s.procs[addr]
	if !ok {
		panic(fmt.Sprintf("sim: no node %q", addr))
	}
	return p
}

// Run processes events in order until none is left at or before until, or Stop is called. On
// return, Now is until (or the time of the last event, if stopped).
func (s *Sim) Run(until time.Duration) {
	s.stopped = false
	for s.queue.Len() > 0 && !s.stopped {
		if s.queue.peek().at > until {
			break
		}
		e := s.queue.pop()
		s.now = e.at
		s.dispatch(e)
		if s.hooks.AfterEvent != nil {
			s.hooks.AfterEvent(s.now)
		}
	}
	if !s.stopped && s.now < until {
		s.now = until
	}
}

// Pending is the number of events in the queue.
func (s *Sim) Pending() int { return s.queue.Len() }

func (s *Sim) dispatch(e event) {
	switch e.kind {
	case evAction:
		s.trace.record(s.now, "action", "", "", e.name, nil)
		e.fn()
	case evStart:
		s.start(e)
	case evDeliver, evTimer:
		s.deliver(e)
	case evCross:
		e.kind, e.at = evDeliver, s.net.cross(e.to.machine, s.now, e.msg)
		s.schedule(e)
	}
}

func (s *Sim) start(e event) {
	p := e.to
	if p.inc != e.inc || p.up || p.gone {
		return
	}
	p.up = true
	p.node = p.factory()
	s.trace.record(s.now, "start", "", p.addr, "", nil)
	s.chargeIOStart(p)
	p.node.Start(&env{s: s, p: p})
	s.chargeIOEnd(p)
}

func (s *Sim) deliver(e event) {
	p := e.to
	if p.inc != e.inc || !p.up {
		// The process crashed since: its timers and undelivered messages are gone. On a
		// stream link the sender learns it, as from a connection reset.
		if e.kind == evDeliver {
			s.resetStream(e.from, p)
		}
		return
	}
	if p.paused || p.busy {
		p.held = append(p.held, e)
		return
	}
	if e.kind == evTimer {
		if _, live := p.timers[e.timer]; !live {
			return // cancelled
		}
		delete(p.timers, e.timer)
		s.trace.record(s.now, "timer", p.addr, p.addr, e.msg.MsgName(), e.msg)
	} else {
		if s.net.Blocked(e.from, p.addr) {
			s.trace.record(s.now, "drop", e.from, p.addr, e.msg.MsgName(), nil)
			return
		}
		if s.hooks.Delivered != nil {
			s.hooks.Delivered(s.now, e.from, p.addr, e.msg)
		}
		s.trace.record(s.now, "deliver", e.from, p.addr, e.msg.MsgName(), e.msg)
	}
	s.chargeIOStart(p)
	p.node.Handle(&env{s: s, p: p}, e.from, e.msg)
	s.chargeIOEnd(p)
}

// send is Env.Send: the network decides the message's fate now.
func (s *Sim) send(p *proc, to node.Addr, m node.Msg) {
	if s.hooks.Sent != nil {
		s.hooks.Sent(s.now, p.addr, to, m)
	}
	target, ok := s.procs[to]
	if !ok || s.net.Blocked(p.addr, to) {
		s.trace.record(s.now, "drop", p.addr, to, m.MsgName(), nil)
		return
	}
	copies, d1, d2 := s.net.fate(p.addr, to)
	if copies == 0 {
		s.trace.record(s.now, "drop", p.addr, to, m.MsgName(), nil)
		return
	}
	// A message for another machine with a limited downlink first reaches the link (evCross),
	// where it queues behind what arrived before it.
	kind := evDeliver
	if target.machine != p.machine && s.net.hasDownlink(target.machine) {
		kind = evCross
	}
	s.schedule(event{at: s.now + d1, kind: kind, to: target, inc: target.inc, from: p.addr, msg: m})
	if copies == 2 {
		s.trace.record(s.now, "dup", p.addr, to, m.MsgName(), nil)
		s.schedule(event{at: s.now + d2, kind: kind, to: target, inc: target.inc, from: p.addr, msg: m})
	}
}

// resetStream tells from that its stream to p broke, once per incarnation of p, after the
// link's latency back.
func (s *Sim) resetStream(from node.Addr, p *proc) {
	sender, ok := s.procs[from]
	if !ok || from == p.addr || !s.net.config(from, p.addr).Stream {
		return
	}
	k := resetKey{from: from, to: p.addr, inc: p.inc}
	if s.resets[k] {
		return
	}
	s.resets[k] = true
	s.schedule(event{at: s.now + s.net.config(p.addr, from).Latency, kind: evDeliver, to: sender, inc: sender.inc,
		from: p.addr, msg: node.PeerGone{Peer: p.addr}})
}

// resetKey names a stream reset already told: sender, target and the target's incarnation.
type resetKey struct {
	from, to node.Addr
	inc      uint64
}

// simTimeHandler stamps log records with the simulated time instead of the wall clock, so logs
// of a replay line up with its trace.
type simTimeHandler struct {
	slog.Handler
	s *Sim
}

// Handle implements slog.Handler.
func (h simTimeHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Time = Epoch.Add(h.s.now)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h simTimeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return simTimeHandler{h.Handler.WithAttrs(a), h.s}
}

// WithGroup implements slog.Handler.
func (h simTimeHandler) WithGroup(name string) slog.Handler {
	return simTimeHandler{h.Handler.WithGroup(name), h.s}
}

// Inject delivers m to the process at to as if from sent it, at the current time and without
// the network: the way ports with no node of their own (a GPU driver, an operator's shell)
// reach a node. It is dropped if the process is down.
func (s *Sim) Inject(from, to node.Addr, m node.Msg) {
	p := s.mustProc(to)
	s.schedule(event{at: s.now, kind: evDeliver, to: p, inc: p.inc, from: from, msg: m})
}

// Mark counts a coverage mark reached by the harness itself (not by a node).
func (s *Sim) Mark(name string) { s.marks[name]++ }
