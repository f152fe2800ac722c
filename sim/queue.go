package sim

import (
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

type eventKind uint8

const (
	evDeliver eventKind = iota + 1
	evTimer
	evStart
	evAction
	evCross // a message reaches its target machine's downlink (see Network.SetDownlink)
)

func (k eventKind) String() string {
	switch k {
	case evDeliver:
		return "deliver"
	case evTimer:
		return "timer"
	case evStart:
		return "start"
	case evCross:
		return "cross"
	case evAction:
		return "action"
	}
	return "?"
}

// event is one entry of the queue. Events are ordered by (at, seq); seq is unique, so the
// order is total and never depends on the heap's internals.
type event struct {
	at    time.Duration
	seq   uint64
	kind  eventKind
	to    *proc
	inc   uint64 // the target's incarnation when scheduled; a crash makes the event void
	from  node.Addr
	msg   node.Msg
	timer node.TimerID
	name  string // action name, for the trace
	fn    func()
}

func (e *event) less(o *event) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.seq < o.seq
}

// eventQueue is a binary min-heap of events by value (no interface boxing on the hot path).
type eventQueue struct {
	items []event
}

func (q *eventQueue) Len() int { return len(q.items) }

func (q *eventQueue) push(e event) {
	q.items = append(q.items, e)
	i := len(q.items) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !q.items[i].less(&q.items[parent]) {
			break
		}
		q.items[i], q.items[parent] = q.items[parent], q.items[i]
		i = parent
	}
}

func (q *eventQueue) peek() *event { return &q.items[0] }

func (q *eventQueue) pop() event {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = event{}
	q.items = q.items[:last]
	i, n := 0, last
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.items[r].less(&q.items[l]) {
			m = r
		}
		if !q.items[m].less(&q.items[i]) {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
