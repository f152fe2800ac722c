package sim

import (
	"strconv"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

type ping struct{ N int }

func (ping) MsgName() string { return "test.ping" }
func (p ping) AppendCanonical(b []byte) []byte {
	return strconv.AppendInt(b, int64(p.N), 10)
}

type tick struct{}

func (tick) MsgName() string { return "test.tick" }

// echo sends every ping back with N+1 until N reaches limit, and counts what it saw.
type echo struct {
	peer    node.Addr
	limit   int
	got     []int
	ticks   []time.Duration
	started int
	every   time.Duration
	s       *Sim
}

func (e *echo) Start(env node.Env) {
	e.started++
	if e.every > 0 {
		env.After(e.every, tick{})
	}
}

func (e *echo) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case ping:
		e.got = append(e.got, m.N)
		if m.N < e.limit {
			env.Send(from, ping{m.N + 1})
		}
	case tick:
		e.ticks = append(e.ticks, e.s.Now())
		env.After(e.every, tick{})
	}
}

type kick struct {
	to node.Addr
}

func (kick) MsgName() string { return "test.kick" }

func TestRunOrdersEventsByTimeThenSequence(t *testing.T) {
	s := New(Options{Seed: 1})
	var order []string
	s.At(2*time.Second, "b", func() { order = append(order, "b") })
	s.At(1*time.Second, "a", func() { order = append(order, "a") })
	s.At(2*time.Second, "c", func() { order = append(order, "c") })
	s.Run(time.Minute)
	if got := order; len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("order = %v, want [a b c]", got)
	}
	if s.Now() != time.Minute {
		t.Fatalf("Now = %v after Run(1m)", s.Now())
	}
}

func newPair(s *Sim, limit int) (*echo, *echo) {
	a := &echo{peer: "b", limit: limit, s: s}
	b := &echo{peer: "a", limit: limit, s: s}
	s.Add("a", "m-a", 0, func() node.Node { return a })
	s.Add("b", "m-b", 0, func() node.Node { return b })
	return a, b
}

func TestCrashDropsUndeliveredMessagesAndTimers(t *testing.T) {
	s := New(Options{Seed: 1})
	s.Network().SetDefault(LinkConfig{Latency: time.Second})
	a, b := newPair(s, 100)
	b.every = 10 * time.Second
	s.At(0, "send", func() { s.send(s.procs["a"], "b", ping{1}) })
	s.At(500*time.Millisecond, "crash b", func() { s.Crash("b") })
	s.Run(30 * time.Second)
	if len(b.got) != 0 || len(b.ticks) != 0 {
		t.Fatalf("crashed node got %v and ticks %v", b.got, b.ticks)
	}
	if len(a.got) != 0 {
		t.Fatalf("a got replies %v from a crashed node", a.got)
	}
	s.Restart("b", time.Second)
	s.Run(45 * time.Second)
	if b.started != 2 {
		t.Fatalf("b started %d times, want 2", b.started)
	}
	if len(b.ticks) != 1 || b.ticks[0] != 41*time.Second {
		t.Fatalf("ticks after restart = %v, want [41s]", b.ticks)
	}
}

func TestPauseHoldsThenResumeDeliversInOrder(t *testing.T) {
	s := New(Options{Seed: 1})
	s.Network().SetDefault(LinkConfig{Latency: time.Millisecond})
	_, b := newPair(s, 0)
	s.At(time.Second, "pause", func() { s.Pause("b") })
	for i := 1; i <= 3; i++ {
		s.At(2*time.Second, "send", func() { s.send(s.procs["a"], "b", ping{i}) })
	}
	s.Run(5 * time.Second)
	if len(b.got) != 0 {
		t.Fatalf("paused node handled %v", b.got)
	}
	s.Resume("b")
	s.Run(6 * time.Second)
	if len(b.got) != 3 || b.got[0] != 1 || b.got[2] != 3 {
		t.Fatalf("after resume got %v, want [1 2 3]", b.got)
	}
}

func TestPartitionBlocksAndHealRestores(t *testing.T) {
	s := New(Options{Seed: 1})
	a, b := newPair(s, 4)
	s.At(0, "block", func() { s.Network().Block("a", "b") })
	s.At(time.Second, "send", func() { s.send(s.procs["a"], "b", ping{1}) })
	s.At(2*time.Second, "send back", func() { s.send(s.procs["b"], "a", ping{1}) })
	s.Run(3 * time.Second)
	if len(b.got) != 0 {
		t.Fatalf("b got %v through a one-way partition", b.got)
	}
	if len(a.got) != 1 {
		t.Fatalf("a got %v; the other direction must still work", a.got)
	}
	s.Network().Heal()
	s.At(4*time.Second, "send", func() { s.send(s.procs["a"], "b", ping{1}) })
	s.Run(5 * time.Second)
	if len(b.got) != 2 || b.got[0] != 1 || b.got[1] != 3 {
		t.Fatalf("after heal b got %v, want [1 3]", b.got)
	}
}

func TestClockDriftSkewAndJump(t *testing.T) {
	var c Clock
	c.SetSkew(0, 5*time.Second)
	c.SetDrift(0, 100_000) // 10% fast
	if got := c.Local(10 * time.Second); got != 16*time.Second {
		t.Fatalf("local(10s) = %v, want 16s", got)
	}
	if got := c.TrueDelay(11 * time.Second); got != 10*time.Second {
		t.Fatalf("true delay of 11s local = %v, want 10s", got)
	}
	c.Jump(10*time.Second, -time.Minute)
	if got := c.Local(10 * time.Second); got != 16*time.Second-time.Minute {
		t.Fatalf("after jump local = %v", got)
	}
	s := New(Options{Seed: 1})
	_, b := newPair(s, 0)
	b.every = 11 * time.Second
	s.Clock("b").SetDrift(0, 100_000)
	s.Run(25 * time.Second)
	if len(b.ticks) != 2 || b.ticks[0] != 10*time.Second || b.ticks[1] != 20*time.Second {
		t.Fatalf("fast clock ticks = %v, want [10s 20s]", b.ticks)
	}
}

func lossyRun(seed uint64) (uint64, uint64) {
	s := New(Options{Seed: seed})
	s.Network().SetDefault(LinkConfig{Latency: time.Millisecond, Jitter: time.Millisecond, Loss: 0.05,
		Duplicate: 0.05, Reorder: 0.1, ReorderDelay: 5 * time.Millisecond})
	newPair(s, 1_000_000)
	for i := 0; i < 20; i++ {
		s.At(time.Duration(i)*time.Millisecond, "kick", func() { s.send(s.procs["a"], "b", ping{i}) })
	}
	s.Run(time.Second)
	return s.Trace().Hash(), s.Trace().Events()
}

func TestSameSeedSameHashOtherSeedOtherHash(t *testing.T) {
	h1, n1 := lossyRun(7)
	h2, n2 := lossyRun(7)
	if h1 != h2 || n1 != n2 {
		t.Fatalf("same seed: hashes %x/%x events %d/%d", h1, h2, n1, n2)
	}
	h3, _ := lossyRun(8)
	if h3 == h1 {
		t.Fatalf("seeds 7 and 8 gave the same hash %x", h1)
	}
	if n1 < 1000 {
		t.Fatalf("only %d events: the workload did not run", n1)
	}
}

func TestFirstDivergenceNamesTheEvent(t *testing.T) {
	i, a, b := FirstDivergence([]string{"x", "y", "z"}, []string{"x", "q"})
	if i != 1 || a != "y" || b != "q" {
		t.Fatalf("got %d %q %q", i, a, b)
	}
	if i, _, _ := FirstDivergence([]string{"x"}, []string{"x"}); i != -1 {
		t.Fatalf("equal traces diverge at %d", i)
	}
}

func TestDiskPowerFailLosesUnsyncedWrites(t *testing.T) {
	d := NewDisk()
	f, _ := d.Open("a", true)
	f.WriteAt([]byte("hello"), 0)
	f.Sync()
	f.WriteAt([]byte("HELLO world"), 0)
	g, _ := d.Open("never-synced", true)
	g.WriteAt([]byte("x"), 0)
	d.PowerFail()
	got, err := node.ReadFile(d, "a")
	if err != nil || string(got) != "hello" {
		t.Fatalf("after power failure a = %q, %v; want the synced %q", got, err, "hello")
	}
	if _, err := d.Open("never-synced", false); !node.IsNotExist(err) {
		t.Fatalf("a file never synced survived a power failure: %v", err)
	}
	if err := node.WriteFileAtomic(d, "b", []byte("new")); err != nil {
		t.Fatal(err)
	}
	d.PowerFail()
	if got, _ := node.ReadFile(d, "b"); string(got) != "new" {
		t.Fatalf("atomic write lost: %q", got)
	}
	d.FailWrites = true
	if err := node.WriteFileAtomic(d, "b", []byte("newer")); err == nil {
		t.Fatal("write on a failed disk succeeded")
	}
}

// TestDiskSyncMatchesFullCopy: whatever mix of writes, truncations and syncs, a power failure
// leaves exactly the content of the last sync (the incremental Sync against a naive model).
func TestDiskSyncMatchesFullCopy(t *testing.T) {
	rng := New(Options{Seed: 9}).Stream(99)
	for round := 0; round < 200; round++ {
		d := NewDisk()
		f, _ := d.Open("f", true)
		var volatile, synced []byte
		for op := 0; op < 30; op++ {
			switch rng.IntN(4) {
			case 0, 1:
				off := rng.IntN(len(volatile) + 8)
				p := []byte{byte(rng.IntN(256)), byte(rng.IntN(256))}
				f.WriteAt(p, int64(off))
				for len(volatile) < off+len(p) {
					volatile = append(volatile, 0)
				}
				copy(volatile[off:], p)
			case 2:
				size := rng.IntN(len(volatile) + 4)
				f.Truncate(int64(size))
				for len(volatile) < size {
					volatile = append(volatile, 0)
				}
				volatile = volatile[:size]
			case 3:
				f.Sync()
				synced = append([]byte{}, volatile...)
			}
		}
		f.Sync()
		synced = append([]byte{}, volatile...)
		f.WriteAt([]byte("tail"), int64(len(volatile)))
		d.PowerFail()
		got, _ := node.ReadFile(d, "f")
		if string(got) != string(synced) {
			t.Fatalf("round %d: after power failure %x, last sync had %x", round, got, synced)
		}
	}
}
