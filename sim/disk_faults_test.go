package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// tornModel is what a file should hold after a torn power failure: its content at the last
// sync and the changes made since, in order.
type tornModel struct {
	durable []byte
	ops     []pendingOp
}

// candidate is one content a torn power failure may leave, and whether it tears a write.
type candidate struct {
	img  []byte
	torn bool
}

// candidates is every content a torn power failure may leave: the durable image with the first
// k changes made, for every k, and with the next write's first j sector pieces made too.
func (m tornModel) candidates() []candidate {
	var out []candidate
	img := slices.Clone(m.durable)
	for k := 0; ; k++ {
		out = append(out, candidate{img: slices.Clone(img)})
		if k == len(m.ops) {
			return out
		}
		op := m.ops[k]
		if !op.trunc && len(op.data) > 0 {
			for end := (op.off/SectorSize + 1) * SectorSize; end < op.off+int64(len(op.data)); end += SectorSize {
				out = append(out, candidate{writeInto(slices.Clone(img), op.off, op.data[:end-op.off]), true})
			}
		}
		img = op.apply(img)
	}
}

// outcome names what a torn power failure left, given the candidates it matched: "torn" only
// when no untorn candidate has the same content.
func outcome(matched []candidate, all []candidate) string {
	switch {
	case len(matched) == 0:
		return ""
	case !slices.ContainsFunc(matched, func(c candidate) bool { return !c.torn }):
		return "torn"
	case bytes.Equal(matched[0].img, all[0].img):
		return "none"
	case bytes.Equal(matched[0].img, all[len(all)-1].img):
		return "all"
	}
	return "some"
}

// randomChanges makes random writes (up to three sectors long, at any offset) and truncations
// of f, with a sync at a random point, and returns the model of what may survive.
func randomChanges(t *testing.T, rng *rand.Rand, f node.File) tornModel {
	t.Helper()
	var m tornModel
	var volatile []byte
	n := 1 + rng.IntN(8)
	syncAt := rng.IntN(n)
	for i := range n {
		if rng.IntN(5) == 0 {
			size := int64(rng.IntN(len(volatile) + 700))
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			volatile = resize(volatile, size)
			m.ops = append(m.ops, pendingOp{trunc: true, off: size})
		} else {
			off := int64(rng.IntN(len(volatile) + 600))
			p := make([]byte, 1+rng.IntN(3*SectorSize))
			for j := range p {
				p[j] = byte(1 + rng.IntN(255)) // never zero, so a hole is never mistaken for data
			}
			if _, err := f.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			volatile = writeInto(volatile, off, p)
			m.ops = append(m.ops, pendingOp{off: off, data: p})
		}
		if i == syncAt {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			m.durable, m.ops = slices.Clone(volatile), nil
		}
	}
	return m
}

// TestPowerFailTornKeepsDurablePlusAPrefixOfTheWrites: over many seeds, what survives is
// always the last synced content plus a prefix of the later writes, the last torn at a sector
// boundary; nothing else. Every kind of outcome happens.
func TestPowerFailTornKeepsDurablePlusAPrefixOfTheWrites(t *testing.T) {
	seen := map[string]int{}
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := NewDisk()
		f, _ := d.Open("f", true)
		m := randomChanges(t, rng, f)
		never, _ := d.Open("never-synced", true)
		never.WriteAt([]byte("gone"), 0)
		d.PowerFailTorn(rand.New(rand.NewPCG(seed, 2)))
		got, err := node.ReadFile(d, "f")
		if err != nil {
			t.Fatal(err)
		}
		cands := m.candidates()
		var matched []candidate
		for _, c := range cands {
			if bytes.Equal(c.img, got) {
				matched = append(matched, c)
			}
		}
		o := outcome(matched, cands)
		if o == "" {
			t.Fatalf("seed %d: after a torn power failure the file holds %d bytes that are not the durable "+
				"image plus a prefix of the %d unsynced changes", seed, len(got), len(m.ops))
		}
		seen[o]++
		if slices.Contains(d.Files(), "never-synced") {
			t.Fatalf("seed %d: a file never synced survived", seed)
		}
		checkDurable(t, d, "f", got)
	}
	for _, o := range []string{"none", "some", "all", "torn"} {
		if seen[o] == 0 {
			t.Fatalf("outcomes %v: never %q", seen, o)
		}
	}
}

// checkDurable: after a power failure, what a file holds is durable: another failure keeps it.
func checkDurable(t *testing.T, d *Disk, name string, want []byte) {
	t.Helper()
	d.PowerFailTorn(rand.New(rand.NewPCG(7, 7)))
	if got, _ := node.ReadFile(d, name); !bytes.Equal(got, want) {
		t.Fatalf("%s changed at a second power failure with nothing unsynced", name)
	}
}

// TestPowerFailTornTearsAtSectorBoundaries: one big unsynced write over a synced file either
// reaches the platter in whole sectors or not at all.
func TestPowerFailTornTearsAtSectorBoundaries(t *testing.T) {
	old := bytes.Repeat([]byte{'o'}, 8*SectorSize)
	tears := map[int]bool{}
	for seed := range uint64(300) {
		d := NewDisk()
		f, _ := d.Open("f", true)
		f.WriteAt(old, 0)
		f.Sync()
		f.WriteAt(bytes.Repeat([]byte{'n'}, 6*SectorSize), SectorSize)
		d.PowerFailTorn(rand.New(rand.NewPCG(seed, 3)))
		got, _ := node.ReadFile(d, "f")
		n := bytes.Count(got, []byte{'n'})
		want := slices.Concat(old[:SectorSize], bytes.Repeat([]byte{'n'}, n), old[SectorSize+n:])
		if n%SectorSize != 0 || !bytes.Equal(got, want) {
			t.Fatalf("seed %d: %d new bytes survived, not whole sectors from the write's start", seed, n)
		}
		tears[n/SectorSize] = true
	}
	if len(tears) != 7 {
		t.Fatalf("sectors that survived over 300 seeds: %v, want every count 0 to 6", tears)
	}
}

// TestPowerFailTornDropsAllPastTheLogBounds: a file with more unsynced writes than the log keeps
// falls back to its durable image.
func TestPowerFailTornDropsAllPastTheLogBounds(t *testing.T) {
	d := NewDisk()
	f, _ := d.Open("f", true)
	f.WriteAt([]byte("synced"), 0)
	f.Sync()
	for i := range maxPendingWrites + 1 {
		f.WriteAt([]byte{'x'}, int64(i))
	}
	for seed := range uint64(20) {
		d.PowerFailTorn(rand.New(rand.NewPCG(seed, 4)))
		if got, _ := node.ReadFile(d, "f"); string(got) != "synced" {
			t.Fatalf("seed %d: an overflowed log left %q, want the synced %q", seed, got, "synced")
		}
	}
	f.WriteAt(make([]byte, maxPendingBytes+1), 0)
	d.PowerFailTorn(rand.New(rand.NewPCG(1, 4)))
	if got, _ := node.ReadFile(d, "f"); string(got) != "synced" {
		t.Fatalf("a write past 64 MiB unsynced left %d bytes, want the synced %q", len(got), "synced")
	}
}

// TestSimPowerFailTearsFromTheRunSeed: the same seed tears the same way; other seeds differ.
func TestSimPowerFailTearsFromTheRunSeed(t *testing.T) {
	run := func(seed uint64) string {
		s := New(Options{Seed: seed})
		f, _ := s.Disk("m").Open("f", true)
		f.Sync()
		for i := range 20 {
			f.WriteAt(bytes.Repeat([]byte{byte('a' + i)}, 700), int64(i*300))
		}
		s.PowerFail("m")
		got, _ := node.ReadFile(s.Disk("m"), "f")
		return string(got)
	}
	distinct := map[string]bool{}
	for seed := range uint64(10) {
		a := run(seed)
		if b := run(seed); a != b {
			t.Fatalf("seed %d: two power failures left different files", seed)
		}
		distinct[a] = true
	}
	if len(distinct) < 5 {
		t.Fatalf("10 seeds left only %d distinct files", len(distinct))
	}
}

// syncedFile makes a disk with one synced file name holding content.
func syncedFile(t *testing.T, name, content string) *Disk {
	t.Helper()
	d := NewDisk()
	f, _ := d.Open(name, true)
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return d
}

// read returns the content of name, failing the test when it cannot.
func read(t *testing.T, d *Disk, name string) string {
	t.Helper()
	b, err := node.ReadFile(d, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFaultMethodsNameAMissingFile: every fault method fails on a missing file, naming it.
func TestFaultMethodsNameAMissingFile(t *testing.T) {
	d := NewDisk()
	for what, err := range map[string]error{ //det:sorted (each case on its own)
		"FlipByte":      d.FlipByte("nope.db", 0, 1),
		"ClobberHeader": d.ClobberHeader("nope.db", 10, 1),
		"TruncateTo":    d.TruncateTo("nope.db", 0),
	} {
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.db") {
			t.Errorf("%s on a missing file: %v", what, err)
		}
	}
}

// TestFlipByteCorruptsBothImages: the flip is seen now and survives a power failure.
func TestFlipByteCorruptsBothImages(t *testing.T) {
	d := syncedFile(t, "f", "abcd")
	if err := d.FlipByte("f", 2, 0x20); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "f"); got != "abCd" {
		t.Fatalf("after the flip: %q", got)
	}
	d.PowerFail()
	if got := read(t, d, "f"); got != "abCd" {
		t.Fatalf("after a power failure: %q, want the flip to stay", got)
	}
	if err := d.FlipByte("f", 4, 1); err == nil || !strings.Contains(err.Error(), "outside the file") {
		t.Fatalf("a flip past the end: %v", err)
	}
}

// TestClobberHeaderOverwritesTheStartWithSeededGarbage.
func TestClobberHeaderOverwritesTheStartWithSeededGarbage(t *testing.T) {
	content := strings.Repeat("SQLite format 3\x00", 10)
	a, b := syncedFile(t, "f", content), syncedFile(t, "f", content)
	a.ClobberHeader("f", 100, 42)
	b.ClobberHeader("f", 100, 42)
	got := read(t, a, "f")
	if got != read(t, b, "f") || got[100:] != content[100:] || got[:100] == content[:100] || len(got) != len(content) {
		t.Fatalf("clobbered %q (the same seed gave %q)", got, read(t, b, "f"))
	}
	a.PowerFail()
	if read(t, a, "f") != got {
		t.Fatal("a power failure undid the clobbered header")
	}
	short := syncedFile(t, "s", "abc")
	short.ClobberHeader("s", 100, 1)
	if n := len(read(t, short, "s")); n != 3 {
		t.Fatalf("clobbering a 3-byte file made it %d bytes", n)
	}
}

// TestTruncateToCutsBothImages.
func TestTruncateToCutsBothImages(t *testing.T) {
	d := syncedFile(t, "f", "hello world")
	if err := d.TruncateTo("f", 5); err != nil {
		t.Fatal(err)
	}
	d.PowerFail()
	if got := read(t, d, "f"); got != "hello" {
		t.Fatalf("after TruncateTo(5) and a power failure: %q", got)
	}
	if err := d.TruncateTo("f", -1); err == nil {
		t.Fatal("a negative size was accepted")
	}
}

// TestFailSyncsKeepsDataVolatile: the next n syncs fail with EIO, the data stays unsynced and a
// power failure loses it; the sync after them works.
func TestFailSyncsKeepsDataVolatile(t *testing.T) {
	d := syncedFile(t, "f", "old")
	f, _ := d.Open("f", false)
	f.WriteAt([]byte("new"), 0)
	d.FailSyncs(2)
	for i := range 2 {
		err := f.Sync()
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "simulated fsync failure") {
			t.Fatalf("sync %d: %v, want a simulated EIO", i, err)
		}
	}
	if d.SyncFailuresLeft() != 0 || read(t, d, "f") != "new" {
		t.Fatalf("failures left %d, content %q", d.SyncFailuresLeft(), read(t, d, "f"))
	}
	d.PowerFail()
	if got := read(t, d, "f"); got != "old" {
		t.Fatalf("after failed syncs and a power failure: %q, want %q", got, "old")
	}
	f.WriteAt([]byte("new"), 0)
	if err := f.Sync(); err != nil {
		t.Fatalf("the sync after the failures: %v", err)
	}
	d.PowerFail()
	if got := read(t, d, "f"); got != "new" {
		t.Fatalf("after a good sync and a power failure: %q", got)
	}
}

// TestSpaceBudgetFailsWritesWithENOSPCAndChangesNothing.
func TestSpaceBudgetFailsWritesWithENOSPCAndChangesNothing(t *testing.T) {
	d := syncedFile(t, "a", "0123456789")
	g, _ := d.Open("b", true)
	g.WriteAt([]byte("xyz"), 0)
	if d.Used() != 13 || !slices.Equal(d.Files(), []string{"a", "b"}) {
		t.Fatalf("used %d files %v", d.Used(), d.Files())
	}
	d.SetSpaceBudget(15)
	f, _ := d.Open("a", false)
	if _, err := f.WriteAt([]byte("abcdefg"), 8); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write past the budget: %v", err)
	}
	if err := f.Truncate(20); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "a:") {
		t.Fatalf("a truncate past the budget: %v", err)
	}
	if got := read(t, d, "a"); got != "0123456789" {
		t.Fatalf("a failed write changed the file: %q", got)
	}
	if _, err := f.WriteAt([]byte("ab"), 10); err != nil {
		t.Fatalf("a write within the budget: %v", err)
	}
	if err := f.Truncate(2); err != nil {
		t.Fatalf("shrinking a file: %v", err)
	}
	d.SetSpaceBudget(0)
	if _, err := f.WriteAt(make([]byte, 1000), 0); err != nil {
		t.Fatalf("a write with no budget: %v", err)
	}
}

// ioNode does a write, a sync and a read on every message, and notes when it handled each.
type ioNode struct {
	s   *Sim
	got []time.Duration
}

func (n *ioNode) Start(node.Env) {}

func (n *ioNode) Handle(env node.Env, _ node.Addr, m node.Msg) {
	n.got = append(n.got, n.s.Now())
	if _, ok := m.(tick); ok {
		return
	}
	f, _ := env.Disk().Open("log", true)
	f.WriteAt([]byte("x"), 0)
	f.Sync()
	f.ReadAt(make([]byte, 1), 0)
}

// slowRun runs an ioNode on a disk costing perOp an operation, pinged at 1s and 1.001s, with a
// tick due at 1.002s; act runs at 1.0005s.
func slowRun(perOp time.Duration, act func(s *Sim)) (*Sim, *ioNode) {
	s := New(Options{Seed: 1, KeepTraceLines: true})
	n := &ioNode{s: s}
	s.Add("a", "m", 0, func() node.Node { return n })
	s.Disk("m").SetSlowIO(perOp)
	s.At(time.Second, "ping", func() { s.Inject("x", "a", ping{1}) })
	s.At(time.Second+time.Millisecond, "ping", func() { s.Inject("x", "a", ping{2}) })
	s.At(time.Second, "tick", func() { s.Inject("a", "a", tick{}) })
	if act != nil {
		s.At(time.Second+500*time.Microsecond, "act", func() { act(s) })
	}
	s.Run(10 * time.Second)
	return s, n
}

// TestSlowIODelaysTheNodesNextMessageByItsDebt: three operations at 10ms hold the node 30ms.
func TestSlowIODelaysTheNodesNextMessageByItsDebt(t *testing.T) {
	sec := time.Second
	_, n := slowRun(0, nil)
	if want := []time.Duration{sec, sec, sec + time.Millisecond}; !slices.Equal(n.got, want) {
		t.Fatalf("with free I/O handled at %v, want %v", n.got, want)
	}
	s, n := slowRun(10*time.Millisecond, nil)
	// ping 1 at 1s costs 30ms; the tick (no I/O) waits until 1.030s, ping 2 comes after it.
	want := []time.Duration{sec, sec + 30*time.Millisecond, sec + 30*time.Millisecond}
	if !slices.Equal(n.got, want) {
		t.Fatalf("with 10ms I/O handled at %v, want %v", n.got, want)
	}
	if !slices.ContainsFunc(s.Trace().Lines(), func(l string) bool { return strings.Contains(l, "busy >a 30ms") }) {
		t.Fatalf("no busy line in the trace:\n%s", strings.Join(s.Trace().Lines(), "\n"))
	}
}

// TestSlowIOAndPauseEachHoldUntilBothEnd: a pause that ends during a busy spell releases
// nothing early, and a busy spell that ends during a pause releases nothing; a crash ends both.
func TestSlowIOAndPauseEachHoldUntilBothEnd(t *testing.T) {
	sec := time.Second
	_, n := slowRun(10*time.Millisecond, func(s *Sim) {
		s.Pause("a")
		s.At(sec+2*time.Millisecond, "resume", func() { s.Resume("a") })
	})
	if want := []time.Duration{sec, sec + 30*time.Millisecond, sec + 30*time.Millisecond}; !slices.Equal(n.got, want) {
		t.Fatalf("pause inside a busy spell: handled at %v, want %v", n.got, want)
	}
	_, n = slowRun(10*time.Millisecond, func(s *Sim) {
		s.Pause("a")
		s.At(sec+50*time.Millisecond, "resume", func() { s.Resume("a") })
	})
	if want := []time.Duration{sec, sec + 50*time.Millisecond, sec + 50*time.Millisecond}; !slices.Equal(n.got, want) {
		t.Fatalf("busy spell inside a pause: handled at %v, want %v", n.got, want)
	}
	_, n = slowRun(10*time.Millisecond, func(s *Sim) {
		s.Crash("a")
		s.Restart("a", time.Millisecond)
		s.At(sec+5*time.Millisecond, "ping", func() { s.Inject("x", "a", tick{}) })
	})
	if want := []time.Duration{sec, sec + 5*time.Millisecond}; !slices.Equal(n.got, want) {
		t.Fatalf("crash during a busy spell: handled at %v, want %v (the new incarnation is not busy)", n.got, want)
	}
}

// diskPinger is a node that, on every ping, appends a record to its log on its machine's disk,
// syncs it, reads it back and answers with a number that depends on the log's size; it also
// ticks on a timer.
type diskPinger struct {
	limit int
}

func (n *diskPinger) Start(env node.Env) {
	env.After(700*time.Millisecond, tick{})
}

func (n *diskPinger) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case ping:
		size := n.appendLog(env, m.N)
		if m.N < n.limit {
			env.Send(from, ping{m.N + 1 + int(size%3)})
		}
	case tick:
		n.appendLog(env, -1)
		env.After(700*time.Millisecond, tick{})
	}
}

func (n *diskPinger) appendLog(env node.Env, v int) int64 {
	name := "log-" + string(env.Self())
	f, err := env.Disk().Open(name, true)
	if err != nil {
		panic(err)
	}
	size, _ := f.Size()
	rec := []byte(fmt.Sprintf("%d;", v))
	f.WriteAt(rec, size)
	f.Sync()
	buf := make([]byte, size+int64(len(rec)))
	f.ReadAt(buf, 0)
	return int64(len(buf))
}

// diskPingRun runs three disk-using nodes on two machines, with a crash and a restart, and
// returns the trace hash.
func diskPingRun(seed uint64, setup func(s *Sim)) uint64 {
	s := New(Options{Seed: seed})
	s.Network().SetDefault(LinkConfig{Latency: time.Millisecond, Jitter: 3 * time.Millisecond})
	for _, a := range []struct{ addr, machine string }{{"a", "m-1"}, {"b", "m-2"}, {"c", "m-2"}} {
		s.Add(node.Addr(a.addr), a.machine, 0, func() node.Node { return &diskPinger{limit: 200} })
	}
	if setup != nil {
		setup(s)
	}
	s.At(10*time.Millisecond, "kick", func() { s.Inject("a", "b", ping{1}) })
	s.At(20*time.Millisecond, "kick", func() { s.Inject("c", "a", ping{1}) })
	s.At(2*time.Second, "crash c", func() { s.Crash("c"); s.Restart("c", time.Second) })
	s.Run(10 * time.Second)
	return s.Trace().Hash()
}

// goldenDiskPingHashes are diskPingRun's hashes for seeds 1 to 3, taken with the kernel as it
// was before disk faults existed: with no disk fault active, a run must not change at all.
var goldenDiskPingHashes = []uint64{0x43a964717eaaa6f5, 0xe1b44ef739f89bbe, 0x48c2c1bf831c3479}

// TestZeroIODebtChangesNothing: free I/O, set explicitly or not, and a space budget never
// reached, leave the trace hash what it was before disk faults existed; slow I/O changes it.
func TestZeroIODebtChangesNothing(t *testing.T) {
	quiet := func(s *Sim) {
		for _, m := range []string{"m-1", "m-2"} {
			s.Disk(m).SetSlowIO(0)
			s.Disk(m).SetSpaceBudget(1 << 30)
			s.Disk(m).FailSyncs(0)
		}
	}
	for i, want := range goldenDiskPingHashes {
		seed := uint64(i + 1)
		if got := diskPingRun(seed, nil); got != want {
			t.Fatalf("seed %d: hash %#x, want %#x as before disk faults", seed, got, want)
		}
		if got := diskPingRun(seed, quiet); got != want {
			t.Fatalf("seed %d: free I/O set explicitly gave hash %#x, want %#x", seed, got, want)
		}
	}
	slow := func(s *Sim) { s.Disk("m-2").SetSlowIO(time.Millisecond) }
	if diskPingRun(1, slow) == goldenDiskPingHashes[0] {
		t.Fatal("slow I/O did not change the run at all")
	}
	if diskPingRun(1, slow) != diskPingRun(1, slow) {
		t.Fatal("slow I/O is not deterministic")
	}
}
