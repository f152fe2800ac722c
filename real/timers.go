package real

import (
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// pendingTimer is a timer that was set and neither delivered nor cancelled yet.
type pendingTimer struct {
	clock *clock.Timer
	msg   node.Msg
}

// After implements node.Env. When the clock timer fires, its ID goes into the mailbox; the
// message is handed to the node only if the timer is still pending then, so a timer cancelled
// after it fired but before it was handled is never delivered, and a timer of a crashed
// incarnation never reaches the next one (the next one has a new mailbox).
func (inc *incarnation) After(d time.Duration, m node.Msg) node.TimerID {
	inc.tmu.Lock()
	defer inc.tmu.Unlock()
	inc.lastTimer++
	id := inc.lastTimer
	if inc.killed { // crashing while handling: the timer dies with the process
		return id
	}
	t := inc.rt.cfg.Clock.AfterFunc(d, func() { inc.fire(id) })
	inc.timers[id] = pendingTimer{clock: t, msg: m}
	return id
}

// Cancel implements node.Env.
func (inc *incarnation) Cancel(id node.TimerID) {
	inc.tmu.Lock()
	defer inc.tmu.Unlock()
	if t, ok := inc.timers[id]; ok {
		t.clock.Stop()
		delete(inc.timers, id)
	}
}

// fire runs on the clock's goroutine when timer id falls due.
func (inc *incarnation) fire(id node.TimerID) {
	inc.box.push(envelope{from: inc.addr, timer: id})
}

// takeTimer returns the message of timer id and forgets the timer, or ok == false if it was
// cancelled (or its incarnation killed) since it fired.
func (inc *incarnation) takeTimer(id node.TimerID) (m node.Msg, ok bool) {
	inc.tmu.Lock()
	defer inc.tmu.Unlock()
	t, ok := inc.timers[id]
	delete(inc.timers, id)
	return t.msg, ok
}
