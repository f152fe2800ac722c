package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// hiveDisk is the disk of hive-1's machine in testTopology.
const hiveDisk = "rack-1"

// content is a synced file of 3 pages and a bit, every byte non-zero.
var content = bytes.Repeat([]byte("rbee-catalog-data"), 3*pageSize/16)

// withFile puts content, synced, in file name on machine's disk.
func withFile(t *testing.T, c *cluster, machine, name string) {
	t.Helper()
	f, err := c.s.Disk(machine).Open(name, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// fileOf reads a file on a machine's disk.
func fileOf(t *testing.T, c *cluster, machine, name string) []byte {
	t.Helper()
	b, err := node.ReadFile(c.s.Disk(machine), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// diskFault is a fault of kind on hive-1's catalog.db at 1s.
func diskFault(kind string, value int64, dur time.Duration) Fault {
	return Fault{Kind: kind, At: time.Second, For: dur, Targets: []node.Addr{"hive-1"}, File: "catalog.db", Value: value}
}

// injectNow runs f on a fresh cluster whose hive-1 machine holds catalog.db.
func injectNow(t *testing.T, seed uint64, f Fault) *cluster {
	t.Helper()
	c := newCluster(seed)
	withFile(t, c, hiveDisk, "catalog.db")
	c.inj.Schedule(Schedule{f})
	c.s.Run(f.At)
	return c
}

// diffs lists the offsets where a and b differ (over a's length).
func diffs(a, b []byte) []int {
	var out []int
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}

// TestDiskFlipFlipsOneByteThatSurvivesPowerFailure: at the given offset, or at the start of a
// random page, chosen the same way for the same seed.
func TestDiskFlipFlipsOneByteThatSurvivesPowerFailure(t *testing.T) {
	c := injectNow(t, 1, diskFault("disk-flip", 100, 0))
	c.s.PowerFail(hiveDisk)
	if d := diffs(content, fileOf(t, c, hiveDisk, "catalog.db")); !slices.Equal(d, []int{100}) {
		t.Fatalf("disk-flip at 100 changed bytes %v", d)
	}
	pages := map[int]bool{}
	for seed := range uint64(40) {
		got := fileOf(t, injectNow(t, seed, diskFault("disk-flip", -1, 0)), hiveDisk, "catalog.db")
		again := fileOf(t, injectNow(t, seed, diskFault("disk-flip", -1, 0)), hiveDisk, "catalog.db")
		d := diffs(content, got)
		if len(d) != 1 || d[0]%pageSize != 0 || !bytes.Equal(got, again) {
			t.Fatalf("seed %d: a random disk-flip changed bytes %v (the same seed again: %v)", seed, d, diffs(content, again))
		}
		pages[d[0]/pageSize] = true
	}
	if len(pages) != 4 {
		t.Fatalf("random flips hit pages %v of the 4", pages)
	}
	c = injectNow(t, 1, diskFault("disk-flip", int64(len(content)), 0))
	if !bytes.Equal(fileOf(t, c, hiveDisk, "catalog.db"), content) {
		t.Fatal("a flip past the end of the file changed it")
	}
}

// TestDiskClobberHeaderOverwritesTheStart.
func TestDiskClobberHeaderOverwritesTheStart(t *testing.T) {
	c := injectNow(t, 1, diskFault("disk-clobber-header", 100, 0))
	c.s.PowerFail(hiveDisk)
	got := fileOf(t, c, hiveDisk, "catalog.db")
	if d := diffs(content, got); len(d) < 90 || d[len(d)-1] >= 100 || len(got) != len(content) {
		t.Fatalf("clobbering 100 bytes changed %d bytes, the last at %d, size %d", len(d), d[len(d)-1], len(got))
	}
}

// TestDiskTruncateCutsTheFile: to Value, or to a random size below the current one.
func TestDiskTruncateCutsTheFile(t *testing.T) {
	c := injectNow(t, 1, diskFault("disk-truncate", 10, 0))
	c.s.PowerFail(hiveDisk)
	if got := fileOf(t, c, hiveDisk, "catalog.db"); !bytes.Equal(got, content[:10]) {
		t.Fatalf("disk-truncate to 10 left %d bytes", len(got))
	}
	sizes := map[int]bool{}
	for seed := range uint64(20) {
		got := fileOf(t, injectNow(t, seed, diskFault("disk-truncate", -1, 0)), hiveDisk, "catalog.db")
		if len(got) >= len(content) || !bytes.Equal(got, content[:len(got)]) {
			t.Fatalf("seed %d: a random truncate left %d bytes of %d, or not a prefix", seed, len(got), len(content))
		}
		sizes[len(got)] = true
	}
	if len(sizes) < 10 {
		t.Fatalf("20 random truncations gave only sizes %v", sizes)
	}
}

// TestDiskFsyncFailFailsTheNextSyncsAndAddsUp.
func TestDiskFsyncFailFailsTheNextSyncsAndAddsUp(t *testing.T) {
	c := newCluster(1)
	withFile(t, c, hiveDisk, "catalog.db")
	c.inj.Schedule(Schedule{diskFault("disk-fsync-fail", 2, 0), diskFault("disk-fsync-fail", 1, 0)})
	c.s.Run(2 * time.Second)
	f, _ := c.s.Disk(hiveDisk).Open("catalog.db", false)
	f.WriteAt([]byte("NEW"), 0)
	for i := range 3 {
		if err := f.Sync(); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "simulated fsync failure") {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	c.s.PowerFail(hiveDisk)
	if got := fileOf(t, c, hiveDisk, "catalog.db"); !bytes.Equal(got, content) {
		t.Fatal("data whose syncs failed survived a power failure")
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("the fourth sync: %v", err)
	}
}

// TestDiskFullFailsGrowingWritesUntilItEnds: overlapping faults end independently and the
// budget found before them comes back.
func TestDiskFullFailsGrowingWritesUntilItEnds(t *testing.T) {
	c := newCluster(1)
	withFile(t, c, hiveDisk, "catalog.db")
	d := c.s.Disk(hiveDisk)
	used := d.Used()
	c.inj.Schedule(Schedule{diskFault("disk-full", 10, 5*time.Second), diskFault("disk-full", 100, time.Second)})
	grow := func(n int) func() string {
		return func() string {
			f, _ := d.Open("catalog.db", false)
			size, _ := f.Size()
			_, err := f.WriteAt(make([]byte, n), size)
			if err != nil && !errors.Is(err, syscall.ENOSPC) {
				return err.Error()
			}
			return fmt.Sprintf("%v", err != nil)
		}
	}
	want := func(fn func() string, w string) func() string {
		return func() string {
			if got := fn(); got != w {
				return fmt.Sprintf("write failed: %s, want %s (budget %d, used %d)", got, w, d.SpaceBudget(), d.Used())
			}
			return ""
		}
	}
	c.checkAt(t, 1500*time.Millisecond, want(grow(50), "false")) // the 100-byte fault is the latest
	c.checkAt(t, 1500*time.Millisecond, want(grow(60), "true"))
	c.checkAt(t, 3*time.Second, want(grow(1), "true")) // back to the 10-byte fault: over it already
	c.checkAt(t, 7*time.Second, want(grow(1<<20), "false"))
	c.s.Run(8 * time.Second)
	if d.SpaceBudget() != 0 || d.Used() != used+50+1<<20 {
		t.Fatalf("after both ended: budget %d, used %d", d.SpaceBudget(), d.Used())
	}
}

// ioToy writes to catalog.db on every message and notes when it handled each.
type ioToy struct {
	s   *sim.Sim
	got []time.Duration
}

func (n *ioToy) Start(node.Env) {}

func (n *ioToy) Handle(env node.Env, _ node.Addr, _ node.Msg) {
	n.got = append(n.got, n.s.Now())
	f, _ := env.Disk().Open("catalog.db", false)
	f.WriteAt([]byte("x"), 0)
	f.Sync()
}

// TestDiskSlowHoldsProcessesOnTheMachineUntilItEnds: each event costs a process on the machine
// two operations at Value; after the fault (or HealAll) I/O is free again.
func TestDiskSlowHoldsProcessesOnTheMachineUntilItEnds(t *testing.T) {
	for _, heal := range []bool{false, true} {
		c := newCluster(1)
		withFile(t, c, hiveDisk, "catalog.db")
		n := &ioToy{s: c.s}
		c.s.Add("io-1", hiveDisk, 0, func() node.Node { return n })
		c.inj.Schedule(Schedule{diskFault("disk-slow", int64(10*time.Millisecond), 10*time.Second)})
		for _, at := range []time.Duration{2 * time.Second, 2*time.Second + time.Millisecond, 20 * time.Second, 20*time.Second + time.Millisecond} {
			c.s.At(at, "test ping", func() { c.s.Inject("test", "io-1", ping{}) })
		}
		if heal {
			c.s.At(5*time.Second, "heal", c.inj.HealAll)
		}
		c.s.Run(30 * time.Second)
		want := []time.Duration{2 * time.Second, 2*time.Second + 20*time.Millisecond, 20 * time.Second, 20*time.Second + time.Millisecond}
		if !slices.Equal(n.got, want) || c.s.Disk(hiveDisk).SlowIO() != 0 {
			t.Fatalf("heal %v: handled at %v, want %v; slow I/O after %v", heal, n.got, want, c.s.Disk(hiveDisk).SlowIO())
		}
	}
}

// TestDiskFaultsOnAMissingFileDoNothingButCount.
func TestDiskFaultsOnAMissingFileDoNothingButCount(t *testing.T) {
	c := newCluster(1)
	var sch Schedule
	for _, k := range []string{"disk-clobber-header", "disk-flip", "disk-fsync-fail", "disk-full", "disk-slow", "disk-truncate"} {
		f := diskFault(k, 1, 0)
		if mustLookup(k).lasting() {
			f.For = time.Minute
		}
		sch = append(sch, f)
	}
	c.inj.Schedule(sch)
	c.s.Run(2 * time.Second)
	d := c.s.Disk(hiveDisk)
	if len(d.Files()) != 0 || d.SpaceBudget() != 0 || d.SlowIO() != 0 || d.SyncFailuresLeft() != 0 {
		t.Fatalf("faults on a missing file changed the disk: files %v budget %d slow %v sync failures %d",
			d.Files(), d.SpaceBudget(), d.SlowIO(), d.SyncFailuresLeft())
	}
	for _, f := range sch {
		if c.inj.Activated()[f.Kind] != 1 {
			t.Fatalf("activated %v: %s not counted", c.inj.Activated(), f.Kind)
		}
	}
}

// TestDiskFaultsUseTheHivesMachineOrItsAddress: a hive with no machine is its own machine.
func TestDiskFaultsUseTheHivesMachineOrItsAddress(t *testing.T) {
	c := newCluster(1)
	delete(c.t.Machines, "hive-1")
	c.inj = NewInjector(c.s, c.t)
	withFile(t, c, "hive-1", "catalog.db")
	withFile(t, c, hiveDisk, "catalog.db")
	c.inj.Schedule(Schedule{diskFault("disk-truncate", 3, 0)})
	c.s.Run(2 * time.Second)
	if len(fileOf(t, c, "hive-1", "catalog.db")) != 3 || len(fileOf(t, c, hiveDisk, "catalog.db")) != len(content) {
		t.Fatal("disk-truncate did not cut the file on the hive's own machine only")
	}
}

// TestDiskKindsDrawAFileOfAHiveWithFiles, and are not available without files.
func TestDiskKindsDrawAFileOfAHiveWithFiles(t *testing.T) {
	topo := testTopology()
	topo.Files["hive-2"] = []string{"other.db"}
	files := map[string]bool{}
	for _, name := range []string{"disk-clobber-header", "disk-flip", "disk-fsync-fail", "disk-full", "disk-slow", "disk-truncate"} {
		k, _ := Lookup(name)
		for seed := range uint64(30) {
			f := k.Draw(rand.New(rand.NewPCG(seed, 5)), topo, time.Second, time.Minute)
			if err := (Schedule{f}).Validate(topo); err != nil || !slices.Contains(topo.Files[one(f)], f.File) {
				t.Fatalf("%s drew %+v: %v", name, f, err)
			}
			files[string(one(f))+":"+f.File] = true
		}
		if k.Available(Topology{Hives: topo.Hives}) {
			t.Fatalf("%s is available on a topology without files", name)
		}
	}
	if len(files) != 3 {
		t.Fatalf("draws hit %v, want every file of every hive", files)
	}
}

// TestValidateChecksDiskFaults: a file is needed, only disk kinds take one, values in range.
func TestValidateChecksDiskFaults(t *testing.T) {
	cases := []struct {
		f    Fault
		want string
	}{
		{Fault{Kind: "disk-flip", Targets: []node.Addr{"hive-1"}}, "file: disk-flip needs a file"},
		{Fault{Kind: "disk-flip", Targets: []node.Addr{"queen-1"}, File: "a"}, `"queen-1" is not a hive`},
		{Fault{Kind: "disk-flip", Targets: []node.Addr{"hive-1"}, File: "a", Value: -2}, "value: -2 is outside"},
		{Fault{Kind: "disk-flip", Targets: []node.Addr{"hive-1"}, File: "a", For: time.Second}, "for: disk-flip does not use for"},
		{Fault{Kind: "disk-fsync-fail", Targets: []node.Addr{"hive-1"}, File: "a"}, "value: 0 is outside [1, 1000] syncs"},
		{Fault{Kind: "disk-full", Targets: []node.Addr{"hive-1"}, File: "a"}, "value: 0 is outside [1,"},
		{Fault{Kind: "disk-slow", Targets: []node.Addr{"hive-1"}, File: "a", Value: int64(time.Hour)}, "value: 3600000000000 is outside"},
		{Fault{Kind: "pause", Targets: []node.Addr{"hive-1"}, File: "a"}, `file: pause does not use file (got a)`},
	}
	for _, tc := range cases {
		err := Schedule{tc.f}.Validate(testTopology())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.f, err, tc.want)
		}
	}
	good := Schedule{diskFault("disk-full", 1, time.Second), diskFault("disk-truncate", 0, 0), diskFault("disk-flip", -1, 0)}
	if err := good.Validate(testTopology()); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFaultsInJSONAndSummary: the file is "file" in JSON and named in the summary and trace.
func TestDiskFaultsInJSONAndSummary(t *testing.T) {
	f := diskFault("disk-slow", int64(5*time.Millisecond), time.Second)
	b, _ := json.Marshal(f)
	var back Fault
	if err := json.Unmarshal(b, &back); err != nil || !strings.Contains(string(b), `"file":"catalog.db"`) || back.File != f.File {
		t.Fatalf("JSON %s, back %+v, %v", b, back, err)
	}
	if got, want := (Schedule{f}).Summary(), "1s disk-slow hive-1's disk (catalog.db) +5ms per operation for 1s"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	if got := f.action("start"); got != "fault disk-slow start hive-1 catalog.db" {
		t.Fatalf("action %q", got)
	}
}
