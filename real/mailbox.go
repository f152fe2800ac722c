package real

import (
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// envelope is one mailbox entry: a message from a peer (or Inject), a timer that fell due, or
// an Inspect function. Exactly one of msg, timer and inspect is set.
type envelope struct {
	from    node.Addr
	msg     node.Msg
	timer   node.TimerID
	inspect func(node.Node)
	done    chan struct{} // closed after inspect ran
}

// mailbox is an unbounded FIFO queue of envelopes with one reader. Unbounded, so that two
// nodes sending to each other never block each other; closing it drops what it holds.
type mailbox struct {
	mu     sync.Mutex
	cond   sync.Cond
	queue  []envelope
	closed bool
}

func newMailbox() *mailbox {
	b := &mailbox{}
	b.cond.L = &b.mu
	return b
}

// push appends e and reports whether the mailbox was still open; a closed mailbox drops it.
func (b *mailbox) push(e envelope) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.queue = append(b.queue, e)
	b.cond.Signal()
	return true
}

// pop waits for the next envelope; ok is false once the mailbox is closed.
func (b *mailbox) pop() (e envelope, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) == 0 && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return envelope{}, false
	}
	e = b.queue[0]
	b.queue[0] = envelope{} // let the message be collected
	b.queue = b.queue[1:]
	return e, true
}

// close drops every queued envelope and wakes the reader; later pushes are dropped.
func (b *mailbox) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.queue = nil
	b.cond.Broadcast()
}
