package faults

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// hubFault is a fault of the simulated model hub: the next Value requests (or, for resets,
// every download after Value bytes) misbehave, until the hub has counted them down or the
// fault ends (For, or the end of the run's chaos): a fault never outlives the chaos phase.
// They do nothing when the hub is down.
type hubFault struct {
	name, doc string
	// valueMax bounds Value; withFor says For is used (the Retry-After of a 429).
	valueMax int64
	withFor  bool
	set      func(h *sim.Hub, f Fault)
	// unset, when set, makes the fault last For and ends it (resets stop after their For).
	unset func(h *sim.Hub)
}

// hubKinds are the hub's faults, in catalogue order.
var hubKinds = []hubFault{
	{name: "hub-5xx", valueMax: 20, doc: "Targets [hub]: the next Value requests get 503 (a transient server error; clients retry with backoff).",
		set: func(h *sim.Hub, f Fault) { h.ServerErrorNext(int(f.Value), 503) }, unset: func(h *sim.Hub) { h.ServerErrorNext(0, 503) }},
	{name: "hub-corrupt", valueMax: 5, doc: "Targets [hub]: the next Value downloads carry one flipped byte (the sha256 check must catch it).",
		set: func(h *sim.Hub, f Fault) { h.CorruptNext(int(f.Value)) }, unset: func(h *sim.Hub) { h.CorruptNext(0) }},
	{name: "hub-hang", valueMax: 5, doc: "Targets [hub]: the next Value requests are never answered (clients must time out).",
		set: func(h *sim.Hub, f Fault) { h.HangNext(int(f.Value)) }, unset: func(h *sim.Hub) { h.HangNext(0) }},
	{name: "hub-ignore-range", valueMax: 5, doc: "Targets [hub]: the next Value ranged GETs are answered 200 with the whole file (the client must start over).",
		set: func(h *sim.Hub, f Fault) { h.IgnoreRangeNext(int(f.Value)) }, unset: func(h *sim.Hub) { h.IgnoreRangeNext(0) }},
	{name: "hub-rate-limit", valueMax: 20, withFor: true, doc: "Targets [hub]: during For, the next Value requests get 429 with a Retry-After of a quarter of For, between 1 and 15 s; no client may ask again before it passes.",
		set: func(h *sim.Hub, f Fault) { h.RateLimitNext(int(f.Value), retryAfterOf(f)) }, unset: func(h *sim.Hub) { h.RateLimitNext(0, 0) }},
	{name: "hub-reset", valueMax: 1 << 20, withFor: true, doc: "Targets [hub]: for For, every download, running or next, is reset after sending Value more bytes (dropped connections; clients resume with Range).",
		set: func(h *sim.Hub, f Fault) { h.ResetAfter(f.Value) }, unset: func(h *sim.Hub) { h.ResetAfter(0) }},
}

func (k hubFault) Name() string              { return k.name }
func (k hubFault) Doc() string               { return k.doc }
func (k hubFault) Available(t Topology) bool { return t.Hub != "" }

// lasting: every hub fault ends after its For, when its count has not run out first.
func (k hubFault) lasting() bool                          { return k.unset != nil }
func (k hubFault) describe(f Fault) string                { return fmt.Sprintf("%s value %d", one(f), f.Value) }
func (k hubFault) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }

func (k hubFault) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	f := Fault{Kind: k.name, At: at, Targets: []node.Addr{t.Hub}, Value: 1 + rng.Int64N(min(k.valueMax, 5))}
	if k.name == "hub-reset" {
		f.Value = 1024 + rng.Int64N(64*1024)
	}
	f.For = time.Duration(1+rng.Int64N(int64(max(1, min(maxFor, 30*time.Second)/time.Second)))) * time.Second
	return f
}

func (k hubFault) check(t Topology, f Fault) error {
	used := fTargets | fValue | fFor
	return firstErr(unused(f, used), targets(f, 1, role{"hub", func(a node.Addr) bool { return t.Hub != "" && a == t.Hub }}),
		valueIn(f, 1, k.valueMax, "(requests, or bytes for hub-reset)"))
}

// apply sets the hub for f. Overlapping faults of one kind stack: the latest sets the hub, and
// when it ends the latest one still active is set again, so a short fault never cancels a
// longer one that began before it.
func (k hubFault) apply(st *state, f Fault) func() {
	id := st.id()
	st.hub[k.name] = append(st.hub[k.name], hubEntry{id: id, f: f})
	k.setHub(st, f.Targets[0], &f)
	if k.unset == nil {
		return nil
	}
	return func() {
		active := st.hub[k.name][:0]
		for _, e := range st.hub[k.name] {
			if e.id != id {
				active = append(active, e)
			}
		}
		st.hub[k.name] = active
		if len(active) == 0 {
			k.setHub(st, f.Targets[0], nil)
			return
		}
		latest := active[len(active)-1].f
		k.setHub(st, f.Targets[0], &latest)
	}
}

// setHub applies f to the hub at addr, or clears the kind's setting when f is nil.
func (k hubFault) setHub(st *state, addr node.Addr, f *Fault) {
	h, ok := st.s.Node(addr).(*sim.Hub)
	switch {
	case !ok:
	case f != nil:
		k.set(h, *f)
	case k.unset != nil:
		k.unset(h)
	}
}

// retryAfterOf is the Retry-After a hub-rate-limit fault sends: a quarter of its For, at least
// a second and at most 15.
func retryAfterOf(f Fault) time.Duration {
	return min(max(f.For/4, time.Second), 15*time.Second)
}
