// Package nodetest gives unit tests of core nodes a hand-driven node.Env: a manual clock,
// recorded sends and observations, timers fired on demand, and an in-memory disk.
//
// It is for tests of one node in isolation. Whole-cluster tests use the simulator (sim/).
package nodetest

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Epoch is the manual clock's starting time.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Sent is one message a node sent.
type Sent struct {
	To  node.Addr
	Msg node.Msg
}

type timer struct {
	id  node.TimerID
	at  time.Time
	msg node.Msg
}

// Env is a node.Env driven by hand. The zero value is not usable; call New.
type Env struct {
	self     node.Addr
	now      time.Time
	rng      *rand.Rand
	disk     node.Disk
	log      *slog.Logger
	nextID   node.TimerID
	timers   []timer
	Sent     []Sent
	Observed []node.Observation
}

// New returns an Env for the node at self, with a seeded random stream and the given disk
// (a fresh MemDisk when nil).
func New(self node.Addr, seed uint64, disk node.Disk) *Env {
	if disk == nil {
		disk = NewMemDisk()
	}
	return &Env{
		self: self,
		now:  Epoch,
		rng:  rand.New(rand.NewPCG(seed, 0x6e6f64657465)),
		disk: disk,
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Self implements node.Env.
func (e *Env) Self() node.Addr { return e.self }

// Now implements node.Env.
func (e *Env) Now() time.Time { return e.now }

// Send implements node.Env; the message is appended to Sent.
func (e *Env) Send(to node.Addr, m node.Msg) { e.Sent = append(e.Sent, Sent{To: to, Msg: m}) }

// After implements node.Env.
func (e *Env) After(d time.Duration, m node.Msg) node.TimerID {
	e.nextID++
	e.timers = append(e.timers, timer{id: e.nextID, at: e.now.Add(d), msg: m})
	return e.nextID
}

// Cancel implements node.Env.
func (e *Env) Cancel(id node.TimerID) {
	for i, t := range e.timers {
		if t.id == id {
			e.timers = append(e.timers[:i], e.timers[i+1:]...)
			return
		}
	}
}

// Rand implements node.Env.
func (e *Env) Rand() *rand.Rand { return e.rng }

// Disk implements node.Env.
func (e *Env) Disk() node.Disk { return e.disk }

// Log implements node.Env.
func (e *Env) Log() *slog.Logger { return e.log }

// Observe implements node.Env; the observation is appended to Observed.
func (e *Env) Observe(o node.Observation) { e.Observed = append(e.Observed, o) }

// TakeSent returns the messages sent so far and forgets them.
func (e *Env) TakeSent() []Sent {
	s := e.Sent
	e.Sent = nil
	return s
}

// PendingTimers is the number of timers set and not yet fired or cancelled.
func (e *Env) PendingTimers() int { return len(e.timers) }

// Advance moves the clock forward by d and delivers, in deadline order, every timer that is
// due to n. Timers set while firing are delivered too if they fall due within d.
func (e *Env) Advance(n node.Node, d time.Duration) {
	end := e.now.Add(d)
	for {
		sort.SliceStable(e.timers, func(i, j int) bool { return e.timers[i].at.Before(e.timers[j].at) })
		if len(e.timers) == 0 || e.timers[0].at.After(end) {
			break
		}
		t := e.timers[0]
		e.timers = e.timers[1:]
		e.now = t.at
		n.Handle(e, e.self, t.msg)
	}
	e.now = end
}
