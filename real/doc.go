// Package real runs core nodes (node.Node) for real, inside one OS process.
//
// A Runtime gives every node one goroutine and one unbounded mailbox, so a node stays
// single-threaded as the node contract requires, while different nodes run in parallel.
// Messages between nodes of one Runtime are passed in memory; timers run on a
// github.com/benbjohnson/clock Clock (the wall clock by default); each machine's durable files
// live in a folder on the OS (see OSDisk). External systems (the inference engine, the process
// table, the model hub) are Ports at an address (port.go). Messages to addresses of other OS
// processes go to Config.Remote: the HTTP transport of real/transport. The sub-packages hold
// the rest of the real runtime: real/daemon (what every binary shares), real/engine,
// real/proc, real/hub, real/gpu, real/gateway (the public API), real/chaos (real faults),
// real/record and real/cluster (real-mode runs). The Env the core sees is the same as in the
// simulator.
//
// Delivery between nodes of one Runtime is reliable and in order per sender-receiver pair while
// both are up; a message to an unknown or crashed node is dropped, as the network would lose
// it. Crash throws a node away with its mailbox and timers; Restart builds a new one with the
// factory on the same disk.
//
// Callers' duties:
//   - Add every node before it is started or sent to; addresses are unique per Runtime.
//   - Call Stop when done, so that every node goroutine exits (tests that use testing/synctest
//     must do so inside the bubble).
//   - Never call Crash, Restart or Stop from inside an Inspect function: they wait for the node's
//     goroutine, which is the one running the function.
//   - Messages are handed over in memory, not copied: a node must not change a slice or map it
//     has sent (the node contract already asks for plain values).
//   - Config.Observe and Config.Logger are called from many node goroutines at once.
package real
