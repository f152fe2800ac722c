// Package node is the contract between the rbee core and a runtime.
//
// Every component of the core is a Node: a state machine that reacts to one input at a time
// (start-up, a message from a peer, or one of its own timers firing) and acts on the world only
// through the Env it is handed. A runtime (the simulator in sim/, the real runtime in real/)
// implements Env and drives Nodes; the core never knows which.
//
// Callers' duties: a runtime calls Start once per incarnation before any Handle, never calls a
// Node from two goroutines at once, and throws the Node value away when its process crashes.
package node

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// Addr names a process in the cluster: "queen-1", "hive-ws", "keeper-3", "hub".
type Addr string

// Msg is anything one node sends another or a timer hands back.
//
// Messages are plain values: no pointers, channels or functions inside, so that the simulator
// can print them in a canonical form for its trace and the real runtime can encode them as JSON.
// MsgName is the stable wire name of the type ("registry.register").
type Msg interface {
	MsgName() string
}

// PeerGone is what a runtime tells a node when a stream connection to Peer broke: the peer
// process died or went away (an HTTP/SSE connection reset in the real runtime; in the
// simulator, a message on a stream link that found its target down). A node uses it to stop
// work nobody will read, such as a request whose client went away.
type PeerGone struct {
	Peer Addr `json:"peer"`
}

// MsgName implements Msg.
func (PeerGone) MsgName() string { return "node.peer_gone" }

// TimerID names a timer set with Env.After. Zero is never a valid ID.
type TimerID uint64

// Env is everything a Node may touch. It is only valid during the Start or Handle call it was
// passed to; a Node must not keep it for later.
type Env interface {
	// Self is this node's own address.
	Self() Addr
	// Now is this machine's wall clock. It may be skewed, drift, and jump (even backwards) as a
	// real machine's clock does: use it for timestamps, never to measure durations; measure
	// durations with After.
	Now() time.Time
	// Send queues m for delivery to another node. Delivery is not guaranteed: the message may
	// be delayed, lost, duplicated or reordered, and the peer may be down.
	Send(to Addr, m Msg)
	// After arranges for m to come back to this node (with from == Self()) once d has passed on
	// this machine's clock. Timers die with the process.
	After(d time.Duration, m Msg) TimerID
	// Cancel stops a timer; cancelling a fired, cancelled or unknown timer is a no-op.
	Cancel(id TimerID)
	// Rand is this node's own deterministic random stream.
	Rand() *rand.Rand
	// Disk is this machine's durable storage, shared by every process on the machine.
	Disk() Disk
	// Log is this node's structured logger.
	Log() *slog.Logger
	// Observe reports something the node did that checkers and reports care about: an internal
	// state change of a replicated object (for linearizability histories) or a coverage mark.
	// It has no effect on the node.
	Observe(o Observation)
}

// Observation is a typed fact a node reports through Env.Observe. Coverage marks are Mark
// values; other observations are defined next to the component that reports them.
type Observation interface {
	ObservationName() string
}

// Mark is a coverage mark: a named rare path the core reached ("registry full", "worker
// expired after grace"). Harnesses count marks per run to show a path was really exercised.
type Mark string

// ObservationName implements Observation.
func (m Mark) ObservationName() string { return "mark" }

// Node is one component of the core: a queen, a hive, a keeper.
type Node interface {
	// Start boots the node, or restarts it after a crash: it recovers what it can from
	// env.Disk() and sets its first timers.
	Start(env Env)
	// Handle reacts to one message from a peer, or to one of its own timers (from == env.Self()).
	Handle(env Env, from Addr, m Msg)
}
