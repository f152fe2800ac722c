// Package transport carries core messages between OS processes over HTTP: it is what a
// real.Runtime's Config.Remote calls for a message whose destination is not in that Runtime,
// and what serves the messages other processes send to this one.
//
// # Wire
//
// A sender POSTs batches to <peer base URL>/rbee/v1/envelopes with "Authorization: Bearer
// <key>" (no header in keyless dev mode):
//
//	{"from_url": "http://10.0.0.5:7833", "from_boot": 1718000000000000000,
//	 "routes": {"hive-ws": {"url": "http://10.0.0.7:7833", "boot": 1718000000000000001}},
//	 "envelopes": [{"from": "queen-1", "to": "hive-ws", "msg": "registry.heartbeat", "body": {...}}, ...]}
//
// envelopes are wire.Envelope values in send order; routes is the route gossip (below);
// from_url and from_boot say where the sender listens and when it booted. The receiver answers
// 200 with {"boot": <its boot>, "delivered": n, "not_here": [addresses it does not have]}.
// GET /rbee/v1/health answers {"status": "ok", "boot": ...} without authentication.
//
// # Guarantees
//
//   - Order: messages from this process to one peer process (one base URL) leave in one FIFO
//     queue through one sender goroutine with at most one POST in flight, and the receiver
//     hands each batch's messages to Deliver in order before it answers; so messages from one
//     sender to one receiver arrive in the order they were sent, unless some are lost between
//     them.
//   - Loss: delivery is best effort, as the node contract says (node.Env.Send). A POST that
//     fails (connection refused or reset, timeout, 408, 429 or 5xx) is tried up to three times
//     within about 300 ms; then its batch is dropped, counted (Stats.Dropped) and logged at
//     warn once per outage, not per message. While the peer stays unreachable each later
//     batch gets a single try. A message with no route, one that cannot be encoded, or one
//     that finds its peer's queue full (65,536 messages or 64 MiB) is dropped and counted too.
//     The core's own retries recover from all of these.
//   - Duplicates: a batch whose POST reached the peer but whose answer was lost is sent
//     again, so a message may arrive twice; the core tolerates duplicates.
//   - PeerGone: when a batch is dropped because its peer did not take it (unreachable after
//     the retries, 401 or 403, or another refusal of the whole batch), every local sender of a
//     message in it gets node.PeerGone{Peer: <the destination address>}, once per outage per
//     (sender, destination) pair; a POST that the peer accepts ends the outage and re-arms
//     it. This is how a queen learns that a streaming client went away.
//   - Refused messages: the receiver decodes every envelope of a batch before it delivers
//     any. One it cannot decode (an unknown message name: the sender runs a newer version; or
//     a malformed body) makes it refuse the whole batch, delivering nothing, with 400, the
//     standard error body (wire.ErrorBody) naming the message, and the envelope's index in
//     the Rbee-Refused-Envelope header. The sender then drops that one envelope (logged at
//     warn once per peer and message name, counted in Stats.Refused) and sends the rest of
//     the batch again, so one bad message never takes good ones with it.
//   - Misrouted messages: an envelope for an address that is not local to the receiver is
//     dropped there (never forwarded, so routes can never loop) and named in not_here; the
//     sender forgets the learned route that sent it there.
//
// # Routes
//
// A message to address A goes to the base URL of A's route. Routes come from Config.Peers
// (static: they win over every other source and are never replaced), from Learn, and from
// gossip: every batch carries the routes its destination has not been sent yet (this process's
// own addresses, from Config.Addrs, at Config.Advertise, and every route it knows), and the
// receiver learns them; it also learns that each envelope's sender lives at the batch's
// from_url. A route is stamped with the boot time of the process that announced it (its
// from_boot): a route with a newer stamp replaces an older one whatever path it came by, so
// a process that restarts at a new URL wins everywhere, and an old route relayed late cannot
// bring a stale URL back. Routes relayed from static configuration or Learn carry stamp 0 and
// give way to any announcement of the address's own process. A peer's restart (a new boot
// in its answer) makes this process send it every route again. Routes to addresses local to
// this process, and routes to this process's own URL, are ignored.
//
// Every holder of a valid key is trusted with routes: an authenticated peer can redirect any
// remote address. A process without Advertise can send, but nobody can answer it.
//
// # Callers' duties
//
// Serve Handler on the listener whose URL is Config.Advertise (auth.Policy.CheckBind first);
// wire Runtime.Deliver into Config.Deliver and Transport.Send into the Runtime's
// Config.Remote (they refer to each other: a closure over a variable set before the first
// node starts does it); call Close when done, after the Runtime is stopped.
package transport
