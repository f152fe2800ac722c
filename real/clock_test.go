package real

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// addHeart adds a heart on machine m1 that heartbeats to a counter, and starts both.
func addHeart(t *testing.T, rt *Runtime) {
	t.Helper()
	mustDo(t, rt.Add("heart", "m1", func() node.Node { return &heart{counter: "counter"} }))
	mustDo(t, rt.Add("counter", "m1", func() node.Node { return &counter{} }))
	mustDo(t, rt.StartAll())
}

// hellos returns when the counter's hellos were sent.
func hellos(t *testing.T, rt *Runtime) []time.Time {
	t.Helper()
	var at []time.Time
	mustDo(t, rt.Inspect("counter", func(n node.Node) { at = append(at, n.(*counter).at...) }))
	return at
}

// checkEvery fails unless at holds exactly one time per interval after start.
func checkEvery(t *testing.T, at []time.Time, start time.Time, interval time.Duration, want int) {
	t.Helper()
	if len(at) != want {
		t.Fatalf("%d heartbeats, want %d: %v", len(at), want, at)
	}
	for i, a := range at {
		if d := a.Sub(start); d != time.Duration(i+1)*interval {
			t.Errorf("heartbeat %d sent at +%v, want +%v", i+1, d, time.Duration(i+1)*interval)
		}
	}
}

// With the default clock inside a synctest bubble, two minutes of heartbeats every 15 s give
// exactly 8 heartbeats, at the right fake times, in milliseconds of real time.
func TestHeartbeatsInFakeTime(t *testing.T) {
	realStart := time.Now()
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		start := time.Now()
		addHeart(t, rt)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		checkEvery(t, hellos(t, rt), start, heartbeatInterval, 8)
	})
	t.Logf("2 minutes of fake time took %v of real time", time.Since(realStart))
}

// With clock.NewMock, timers fire on the goroutine that calls Add, and the timer's message
// reaches the node asynchronously. So the test advances one heartbeat interval at a time and
// waits until the heartbeat arrived and the heart handled its timer (and so re-armed it)
// before it advances again; advancing two minutes at once would lose heartbeats.
func TestHeartbeatsOnMockClock(t *testing.T) {
	mock := clock.NewMock()
	start := mock.Now()
	rt := newTestRuntime(t, Config{Clock: mock})
	addHeart(t, rt)
	mustDo(t, rt.Inspect("heart", func(node.Node) {})) // Start has set the first timer
	const beats = 8
	for i := 1; i <= beats; i++ {
		mock.Add(heartbeatInterval)
		waitFor(t, func() bool { return len(hellos(t, rt)) == i })
		mustDo(t, rt.Inspect("heart", func(node.Node) {})) // the beat's handler re-armed
	}
	checkEvery(t, hellos(t, rt), start, heartbeatInterval, beats)
}

// waitFor polls cond in real time, for at most 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
