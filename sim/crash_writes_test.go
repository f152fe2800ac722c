package sim

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// TestWritesSoFarCountsEveryMutatingCall: WriteAt, Truncate, Sync, Rename and Remove count one
// each, through a file or the Disk, failed or not, armed or not; reads, opens and lists do not.
func TestWritesSoFarCountsEveryMutatingCall(t *testing.T) {
	d := NewDisk()
	f, _ := d.Open("a", true)
	steps := []struct {
		name  string
		do    func()
		count int
	}{
		{"open", func() { d.Open("b", true) }, 0},
		{"write", func() { f.WriteAt([]byte("hello"), 0) }, 1},
		{"read", func() { f.ReadAt(make([]byte, 3), 0) }, 1},
		{"size", func() { f.Size() }, 1},
		{"truncate", func() { f.Truncate(2) }, 2},
		{"sync", func() { f.Sync() }, 3},
		{"list", func() { d.List("") }, 3},
		{"rename", func() { d.Rename("a", "c") }, 4},
		{"write to a renamed name", func() { f.WriteAt([]byte("x"), 0) }, 5}, // fails: "a" is gone
		{"remove", func() { d.Remove("b") }, 6},
		{"remove a missing file", func() { d.Remove("b") }, 7},
		{"arm far away", func() { d.CrashAfterWrites(100, func() {}) }, 7},
		{"sync while armed", func() { f.Sync() }, 8},
	}
	for _, st := range steps {
		st.do()
		if got := d.WritesSoFar(); got != st.count {
			t.Fatalf("after %s: WritesSoFar %d, want %d", st.name, got, st.count)
		}
	}
}

// op is one mutating operation on a disk, for enumerating crash points.
type op func(d *Disk) error

// fileOp runs fn on file name, opened (created) first.
func fileOp(name string, fn func(f node.File) error) op {
	return func(d *Disk) error {
		f, err := d.Open(name, true)
		if err != nil {
			return err
		}
		return fn(f)
	}
}

// atomicReplace is a typical durable update: write a temp file, sync it, rename it over the
// target, truncate a log and sync it, remove a stale file. Seven mutating operations.
var atomicReplace = []op{
	fileOp("db.tmp", func(f node.File) error { _, err := f.WriteAt([]byte("new content"), 0); return err }),
	fileOp("db.tmp", func(f node.File) error { return f.Sync() }),
	func(d *Disk) error { return d.Rename("db.tmp", "db") },
	fileOp("log", func(f node.File) error { return f.Truncate(3) }),
	fileOp("log", func(f node.File) error { return f.Sync() }),
	func(d *Disk) error { return d.Remove("stale") },
	fileOp("log", func(f node.File) error { _, err := f.WriteAt([]byte("!"), 3); return err }),
}

// replaceDisk is the disk atomicReplace starts from: db, log and stale, all synced.
func replaceDisk(t *testing.T) *Disk {
	t.Helper()
	d := NewDisk()
	for name, content := range map[string]string{"db": "old content", "log": "log records", "stale": "x"} { //det:sorted (independent files)
		f, _ := d.Open(name, true)
		if _, err := f.WriteAt([]byte(content), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// snapshot is every file's content as reads see it.
func snapshot(d *Disk) map[string]string {
	out := map[string]string{}
	for _, name := range d.Files() {
		b, _ := node.ReadFile(d, name)
		out[name] = string(b)
	}
	return out
}

// TestCrashAfterWritesFreezesTheDiskAtEachCrashPoint counts the writes of an operation, then
// crashes at each of them in turn: the ops before succeed, the k-th and later fail with EIO
// and change nothing, crash runs once from inside the k-th, and a power failure thaws the disk.
func TestCrashAfterWritesFreezesTheDiskAtEachCrashPoint(t *testing.T) {
	d := replaceDisk(t)
	before := d.WritesSoFar()
	for _, o := range atomicReplace {
		if err := o(d); err != nil {
			t.Fatal(err)
		}
	}
	n := d.WritesSoFar() - before
	if n != len(atomicReplace) {
		t.Fatalf("the operation made %d writes, want %d", n, len(atomicReplace))
	}
	for k := 1; k <= n; k++ {
		d := replaceDisk(t)
		d.WritesSoFar() // arming counts from now, not from the disk's first write
		crashes := 0
		var frozenAt map[string]string
		d.CrashAfterWrites(k, func() {
			crashes++
			frozenAt = snapshot(d)
			if !d.Frozen() {
				t.Errorf("k=%d: the disk is not frozen when crash runs", k)
			}
		})
		for i, o := range atomicReplace {
			err := o(d)
			if i+1 < k {
				if err != nil || crashes != 0 {
					t.Fatalf("k=%d: op %d before the crash point: err %v, crashes %d", k, i+1, err, crashes)
				}
				continue
			}
			want := fmt.Sprintf("simulated power failure at write %d", k)
			if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), want) {
				t.Fatalf("k=%d: op %d: err %v, want EIO with %q", k, i+1, err, want)
			}
			if crashes != 1 {
				t.Fatalf("k=%d: op %d: crash ran %d times, want once", k, i+1, crashes)
			}
			if got := snapshot(d); !maps.Equal(got, frozenAt) {
				t.Fatalf("k=%d: op %d changed a frozen disk: %v, was %v", k, i+1, got, frozenAt)
			}
		}
		// What survives: the synced files as they were before the crash point; thawed after.
		d.PowerFail()
		if d.Frozen() {
			t.Fatalf("k=%d: still frozen after a power failure", k)
		}
		got := snapshot(d)
		wantDB := "old content"
		if k > 3 {
			wantDB = "new content" // synced at write 2 and renamed at write 3
		}
		wantLog := "log records"
		if k > 5 {
			wantLog = "log"
		}
		if got["db"] != wantDB || got["log"] != wantLog || (got["stale"] == "x") != (k <= 6) {
			t.Fatalf("k=%d: after the power failure %v", k, got)
		}
		if _, tmp := got["db.tmp"]; tmp != (k == 3) {
			t.Fatalf("k=%d: db.tmp present %v, want %v: %v", k, tmp, k == 3, got)
		}
		if f, _ := d.Open("log", false); f == nil {
			t.Fatalf("k=%d: no log", k)
		} else if _, err := f.WriteAt([]byte("ok"), 0); err != nil || f.Sync() != nil {
			t.Fatalf("k=%d: a write after the power failure failed: %v", k, err)
		}
		if crashes != 1 {
			t.Fatalf("k=%d: crash ran %d times", k, crashes)
		}
	}
}

// TestCrashAfterWritesDisarms: k <= 0 disarms a trap not sprung yet, a later call replaces
// one, and k counts from the call.
func TestCrashAfterWritesDisarms(t *testing.T) {
	d := replaceDisk(t)
	f, _ := d.Open("log", false)
	called := 0
	d.CrashAfterWrites(1, func() { called++ })
	d.CrashAfterWrites(0, nil)
	for range 3 {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	d.CrashAfterWrites(5, func() { t.Error("a replaced trap sprang") })
	d.CrashAfterWrites(2, func() { called++ })
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) || called != 1 {
		t.Fatalf("second sync after arming at 2: err %v, crash ran %d times", err, called)
	}
	for range 5 {
		f.Sync()
	}
	if called != 1 {
		t.Fatalf("crash ran %d times", called)
	}
}

// record is the fixed-size record a syncWriter appends for message n.
func record(n int) []byte { return fmt.Appendf(nil, "rec%04d;", n) }

// syncWriter appends a record to "log" and syncs it on every ping: two writes a message. It
// notes the result of every write it makes, in order.
type syncWriter struct {
	starts  int
	results *[]error
}

func (w *syncWriter) Start(node.Env) { w.starts++ }

func (w *syncWriter) Handle(env node.Env, _ node.Addr, m node.Msg) {
	p, ok := m.(ping)
	if !ok {
		return
	}
	f, err := env.Disk().Open("log", true)
	if err != nil {
		panic(err)
	}
	size, _ := f.Size()
	_, err = f.WriteAt(record(p.N), size)
	*w.results = append(*w.results, err)
	*w.results = append(*w.results, f.Sync())
}

// crashPointRun runs syncWriter w and idle x on machine m and idle y on m2; ten pings to w,
// 10 ms apart from 10 ms, with a crash point at write k (k <= 0: none) restarting after 1s,
// then pings 11 and 12 at 2s. late, on m, starts at 5s.
func crashPointRun(k int) (s *Sim, w, late *syncWriter) {
	s = New(Options{Seed: 7, KeepTraceLines: true})
	w, late = &syncWriter{results: new([]error)}, &syncWriter{results: new([]error)}
	s.Add("w", "m", 0, func() node.Node { return w })
	s.Add("x", "m", 0, func() node.Node { return &syncWriter{results: new([]error)} })
	s.Add("y", "m2", 0, func() node.Node { return &syncWriter{results: new([]error)} })
	s.Add("late", "m", 5*time.Second, func() node.Node { return late })
	if k > 0 {
		s.PowerFailAtWrite("m", k, time.Second)
	}
	for i := 1; i <= 10; i++ {
		s.At(time.Duration(i)*10*time.Millisecond, "ping", func() { s.Inject("client", "w", ping{i}) })
	}
	for i := 11; i <= 12; i++ {
		s.At(2*time.Second+time.Duration(i)*time.Millisecond, "ping", func() { s.Inject("client", "w", ping{i}) })
	}
	return s, w, late
}

// TestPowerFailAtWriteCrashesAtTheKthWrite: for every crash point in ten messages, the k-th
// write is the first to fail, the machine's processes that were up crash once when the event
// ends and restart after the delay, the log holds the records synced before the crash point
// (plus at most a prefix of the record whose sync failed), and writes work after the restart.
func TestPowerFailAtWriteCrashesAtTheKthWrite(t *testing.T) {
	for k := 1; k <= 20; k++ {
		s, w, late := crashPointRun(k)
		j := (k + 1) / 2 // the message whose write or sync is the k-th write
		at := time.Duration(j) * 10 * time.Millisecond
		s.Run(at)
		res := *w.results
		if len(res) != 2*j {
			t.Fatalf("k=%d: %d writes by the end of message %d", k, len(res), j)
		}
		for i, err := range res {
			want := fmt.Sprintf("simulated power failure at write %d", k)
			if i+1 < k && err != nil {
				t.Fatalf("k=%d: write %d failed before the crash point: %v", k, i+1, err)
			}
			if i+1 >= k && (!errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), want)) {
				t.Fatalf("k=%d: write %d: %v, want EIO %q", k, i+1, err, want)
			}
		}
		if s.Up("w") || s.Up("x") || !s.Up("y") || s.Crashes("w") != 1 || s.Crashes("x") != 1 || s.Crashes("late") != 0 {
			t.Fatalf("k=%d: after the crash point: up w %v x %v y %v, crashes w %d x %d late %d", k,
				s.Up("w"), s.Up("x"), s.Up("y"), s.Crashes("w"), s.Crashes("x"), s.Crashes("late"))
		}
		lines := s.Trace().Lines()
		action := fmt.Sprintf("power-fail at write %d m", k)
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, action) }) {
			t.Fatalf("k=%d: no action %q in the trace", k, action)
		}
		var synced []byte
		for n := 1; n < j; n++ {
			synced = append(synced, record(n)...)
		}
		got, err := node.ReadFile(s.Disk("m"), "log")
		if j == 1 {
			if !node.IsNotExist(err) {
				t.Fatalf("k=%d: the log was never synced, yet it is there: %q %v", k, got, err)
			}
		} else if !bytes.HasPrefix(got, synced) || !bytes.HasPrefix(append(synced, record(j)...), got) ||
			(k%2 == 1 && len(got) != len(synced)) {
			t.Fatalf("k=%d: log %q, want %q plus at most a prefix of %q", k, got, synced, record(j))
		}
		s.Run(1900 * time.Millisecond)
		if !s.Up("w") || !s.Up("x") || w.starts != 2 || late.starts != 0 || s.Disk("m").Frozen() {
			t.Fatalf("k=%d: after the restart: up w %v x %v, starts w %d late %d, frozen %v", k,
				s.Up("w"), s.Up("x"), w.starts, late.starts, s.Disk("m").Frozen())
		}
		recovered, _ := node.ReadFile(s.Disk("m"), "log")
		s.Run(3 * time.Second)
		res = *w.results
		if len(res) != 2*j+4 || slices.ContainsFunc(res[2*j:], func(err error) bool { return err != nil }) {
			t.Fatalf("k=%d: writes after the restart: %v", k, res[2*j:])
		}
		got, _ = node.ReadFile(s.Disk("m"), "log")
		if want := slices.Concat(recovered, record(11), record(12)); !bytes.Equal(got, want) {
			t.Fatalf("k=%d: log after the restart %q, want %q", k, got, want)
		}
		s.Run(6 * time.Second)
		if late.starts != 1 {
			t.Fatalf("k=%d: late started %d times", k, late.starts)
		}
	}
}

// TestUnreachedCrashPointChangesNoTrace: a crash point never reached, or disarmed, leaves the
// trace hash as it was before crash points existed; one that is reached changes the run, the
// same way every time.
func TestUnreachedCrashPointChangesNoTrace(t *testing.T) {
	far := func(s *Sim) { s.PowerFailAtWrite("m-2", 1<<30, time.Second) }
	disarmed := func(s *Sim) {
		s.PowerFailAtWrite("m-1", 3, time.Second)
		s.PowerFailAtWrite("m-1", 0, 0)
	}
	for i, want := range goldenDiskPingHashes {
		seed := uint64(i + 1)
		for name, setup := range map[string]func(*Sim){"far": far, "disarmed": disarmed} { //det:sorted (independent runs)
			if got := diskPingRun(seed, setup); got != want {
				t.Fatalf("seed %d, %s crash point: hash %#x, want %#x", seed, name, got, want)
			}
		}
	}
	near := func(s *Sim) { s.PowerFailAtWrite("m-2", 40, 500*time.Millisecond) }
	if diskPingRun(1, near) == goldenDiskPingHashes[0] {
		t.Fatal("a crash point that is reached did not change the run")
	}
	if diskPingRun(1, near) != diskPingRun(1, near) {
		t.Fatal("a crash point is not deterministic")
	}
}
