package real

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// newTestRuntime returns a Runtime in a fresh temporary folder, stopped at the end of the test.
func newTestRuntime(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	cfg.DataDir = t.TempDir()
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Stop)
	return rt
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot returns a copy of the toy at addr, read on its own goroutine.
func snapshot(t *testing.T, rt *Runtime, addr node.Addr) toy {
	t.Helper()
	var c toy
	mustDo(t, rt.Inspect(addr, func(n node.Node) {
		c = *n.(*toy)
		c.got = slices.Clone(c.got)
		c.from = slices.Clone(c.from)
	}))
	return c
}

// addPair adds toys "a" and "b" on machine "m1", each the other's peer, and starts them.
func addPair(t *testing.T, rt *Runtime, sink *record) {
	t.Helper()
	mustDo(t, rt.Add("a", "m1", toyFactory("b", sink, 0)))
	mustDo(t, rt.Add("b", "m1", toyFactory("a", sink, 0)))
	mustDo(t, rt.StartAll())
}

func TestPingPongRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		addPair(t, rt, nil)
		rt.Inject("test", "a", kick{N: 3})
		synctest.Wait()

		a, b := snapshot(t, rt, "a"), snapshot(t, rt, "b")
		wantA := []node.Msg{kick{N: 3}, pong{Seq: 1}, pong{Seq: 2}, pong{Seq: 3}}
		if !slices.Equal(a.got, wantA) || !slices.Equal(a.from, []node.Addr{"test", "b", "b", "b"}) {
			t.Errorf("a got %v from %v, want %v from test, b, b, b", a.got, a.from, wantA)
		}
		wantB := []node.Msg{ping{Seq: 1}, ping{Seq: 2}, ping{Seq: 3}}
		if !slices.Equal(b.got, wantB) {
			t.Errorf("b got %v, want %v", b.got, wantB)
		}
	})
}

// A crash waits for the message being handled, then drops the queued messages (including a
// timer that already fired) and the pending timers; the restarted node sees none of them.
func TestCrashDropsMailboxAndTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &record{}
		rt := newTestRuntime(t, Config{})
		mustDo(t, rt.Add("a", "m1", toyFactory("b", rec, 10*time.Second)))
		mustDo(t, rt.Start("a"))
		gate := make(chan struct{})
		rt.Inject("test", "a", setTimer{D: time.Second})
		rt.Inject("test", "a", block{Gate: gate})
		rt.Inject("test", "a", ping{Seq: 1})
		time.Sleep(2 * time.Second) // the 1 s timer fires into the mailbox, behind the ping
		synctest.Wait()

		crashed := make(chan error)
		go func() { crashed <- rt.Crash("a") }()
		synctest.Wait()
		select {
		case err := <-crashed:
			t.Fatalf("Crash returned (%v) while a message was still being handled", err)
		default:
		}
		close(gate)
		mustDo(t, <-crashed)

		rt.Inject("test", "a", ping{Seq: 2}) // a is down: lost
		mustDo(t, rt.Restart("a"))
		time.Sleep(20 * time.Second) // past the first incarnation's 10 s start timer
		synctest.Wait()

		want := []string{"1:test.set_timer", "1:test.block"}
		if got := rec.list(); !slices.Equal(got, want) {
			t.Errorf("handled %v, want only %v", got, want)
		}
		if a := snapshot(t, rt, "a"); a.gen != 2 || !a.started || len(a.got) != 0 {
			t.Errorf("after restart: incarnation %d, started %v, got %v; want 2, true, nothing",
				a.gen, a.started, a.got)
		}
	})
}

func TestRestartCallsStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		addPair(t, rt, nil)
		time.Sleep(time.Minute)
		mustDo(t, rt.Restart("a")) // running: crashed first, then started
		a := snapshot(t, rt, "a")
		if a.gen != 2 || !a.started || !a.startedAt.Equal(time.Now()) {
			t.Errorf("incarnation %d, started %v at %v; want 2, true at %v", a.gen, a.started, a.startedAt, time.Now())
		}
		mustDo(t, rt.Crash("a"))
		if err := rt.Inspect("a", func(node.Node) {}); !errors.Is(err, ErrNodeDown) {
			t.Errorf("Inspect of a crashed node: %v, want ErrNodeDown", err)
		}
		mustDo(t, rt.Restart("a")) // down: just started
		if a := snapshot(t, rt, "a"); a.gen != 3 || !a.started {
			t.Errorf("incarnation %d, started %v; want 3, true", a.gen, a.started)
		}
	})
}

// Messages to an unknown or crashed node are lost, with a debug log, and nothing breaks.
func TestSendToUnknownOrDownIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedBuffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		rt := newTestRuntime(t, Config{Logger: logger})
		addPair(t, rt, nil)
		rt.Inject("test", "a", sendTo{To: "nobody"})
		rt.Inject("test", "a", kick{N: 1})
		synctest.Wait()
		if b := snapshot(t, rt, "b"); b.count("test.ping") != 1 {
			t.Errorf("b got %v, want one ping", b.got)
		}
		if !strings.Contains(logs.String(), "to=nobody") {
			t.Errorf("no debug log of the dropped message; logs:\n%s", logs.String())
		}

		mustDo(t, rt.Crash("b"))
		rt.Inject("test", "a", kick{N: 1})
		synctest.Wait()
		mustDo(t, rt.Start("b"))
		if b := snapshot(t, rt, "b"); len(b.got) != 0 {
			t.Errorf("restarted b got %v, want nothing", b.got)
		}
	})
}

// A timer cancelled after it fired, while its message waits in the mailbox, is not delivered.
func TestCancelAfterFireIsNotDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		addPair(t, rt, nil)
		gate := make(chan struct{})
		rt.Inject("test", "a", setTimer{D: time.Second})
		rt.Inject("test", "a", block{Gate: gate, Cancel: true})
		time.Sleep(2 * time.Second)
		synctest.Wait()
		close(gate)
		rt.Inject("test", "a", setTimer{D: time.Second}) // a second timer, not cancelled
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a := snapshot(t, rt, "a"); a.count("test.tick") != 1 || a.from[len(a.from)-1] != "a" {
			t.Errorf("a got %v from %v, want exactly one tick, from itself", a.got, a.from)
		}
	})
}

func TestObserveAndRandPerNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		observe := func(from node.Addr, o node.Observation) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, string(from)+":"+string(o.(node.Mark)))
		}
		rt1 := newTestRuntime(t, Config{Seed: 7, Observe: observe})
		rt2 := newTestRuntime(t, Config{Seed: 7})
		addPair(t, rt1, nil)
		addPair(t, rt2, nil)
		rt1.Inject("test", "b", mark{})
		synctest.Wait()
		mu.Lock()
		if !slices.Equal(seen, []string{"b:toy"}) {
			t.Errorf("observed %v, want [b:toy]", seen)
		}
		mu.Unlock()

		a1, a2, b1 := snapshot(t, rt1, "a").rand, snapshot(t, rt2, "a").rand, snapshot(t, rt1, "b").rand
		if a1 != a2 || a1 == b1 {
			t.Errorf("first draws: a %d and %d with the same seed, b %d; want equal a, different b", a1, a2, b1)
		}
		mustDo(t, rt1.Restart("a"))
		if again := snapshot(t, rt1, "a").rand; again == a1 {
			t.Errorf("a restarted drew %d again; want a new stream per incarnation", again)
		}
	})
}

// Nodes on one machine share its disk, a folder under DataDir; other machines do not see it.
func TestMachinesShareADisk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		addPair(t, rt, nil)
		mustDo(t, rt.Add("c", "m2", toyFactory("a", nil, 0)))
		mustDo(t, rt.Start("c"))
		rt.Inject("test", "a", write{Name: "x/y", Data: "hello"})
		synctest.Wait()
		rt.Inject("test", "b", read{Name: "x/y"})
		rt.Inject("test", "c", read{Name: "x/y"})
		synctest.Wait()
		if b := snapshot(t, rt, "b"); b.lastRead != "hello" || b.lastErr != nil {
			t.Errorf("b on the same machine read %q, %v; want hello", b.lastRead, b.lastErr)
		}
		if c := snapshot(t, rt, "c"); !node.IsNotExist(c.lastErr) {
			t.Errorf("c on another machine read %q, %v; want not-exist", c.lastRead, c.lastErr)
		}
		data, err := os.ReadFile(filepath.Join(rt.cfg.DataDir, "m1", "x", "y"))
		if string(data) != "hello" || err != nil {
			t.Errorf("DataDir/m1/x/y holds %q, %v; want hello", data, err)
		}
	})
}

func TestConfigAndControlErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New with no DataDir succeeded")
	}
	rt := newTestRuntime(t, Config{})
	f := toyFactory("b", nil, 0)
	mustDo(t, rt.Add("a", "m1", f))
	for _, c := range []struct {
		addr, machine string
		factory       func() node.Node
	}{{"a", "m1", f}, {"", "m1", f}, {"x", "m1", nil}, {"x", "", f}, {"x", "..", f}, {"x", "m/1", f}} {
		if err := rt.Add(node.Addr(c.addr), c.machine, c.factory); err == nil {
			t.Errorf("Add(%q, %q, factory nil %v) succeeded", c.addr, c.machine, c.factory == nil)
		}
	}
	checkErr(t, "Start unknown", rt.Start("zz"), ErrUnknownNode)
	checkErr(t, "Crash down", rt.Crash("a"), ErrNodeDown)
	mustDo(t, rt.Start("a"))
	checkErr(t, "Start running", rt.Start("a"), ErrNodeRunning)
	checkErr(t, "Inspect unknown", rt.Inspect("zz", func(node.Node) {}), ErrNodeDown)
	rt.Stop()
	rt.Stop()
	checkErr(t, "Inspect after Stop", rt.Inspect("a", func(node.Node) {}), ErrNodeDown)
	checkErr(t, "Start after Stop", rt.Start("a"), ErrStopped)
}

func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}
