package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// logWriter appends "N;" to its log and syncs it on every ping: two writes a ping. The same
// value survives restarts; results holds the error of every write, in order.
type logWriter struct {
	starts  int
	results []error
}

func (w *logWriter) Start(node.Env) { w.starts++ }

func (w *logWriter) Handle(env node.Env, _ node.Addr, m node.Msg) {
	p, ok := m.(ping)
	if !ok {
		return
	}
	f, err := env.Disk().Open("writer.log", true)
	if err != nil {
		panic(err)
	}
	size, _ := f.Size()
	_, err = f.WriteAt(fmt.Appendf(nil, "%d;", p.N), size)
	w.results = append(w.results, err, f.Sync())
}

// writerCluster is newCluster plus a logWriter, "writer", on hive-1's machine (rack-1), not in
// the topology, pinged with N at each of times.
func writerCluster(seed uint64, times ...time.Duration) (*cluster, *logWriter) {
	c := newCluster(seed)
	w := &logWriter{}
	c.s.Add("writer", hiveDisk, 0, func() node.Node { return w })
	for i, at := range times {
		c.s.At(at, "test ping", func() { c.s.Inject("test", "writer", ping{i + 1}) })
	}
	return c, w
}

func crashPoint(at time.Duration, k int64, restart time.Duration) Fault {
	return Fault{Kind: "power-fail-at-write", At: at, Targets: []node.Addr{"hive-1"}, Value: k, For: restart}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func (c *cluster) traceHas(name string) bool {
	return slices.ContainsFunc(c.s.Trace().Lines(), func(l string) bool { return strings.Contains(l, name) })
}

// TestPowerFailAtWriteCrashesTheMachineAtTheKthWrite: writes before the fault starts do not
// count; the k-th write after it fails, the machine powers off when that event ends, what was
// synced before survives, everything on the machine restarts For later and writes work again.
func TestPowerFailAtWriteCrashesTheMachineAtTheKthWrite(t *testing.T) {
	c, w := writerCluster(1, ms(500), ms(1100), ms(1200), ms(1300), ms(1400), ms(4000))
	c.inj.Schedule(Schedule{crashPoint(time.Second, 5, 2*time.Second)})
	c.checkAt(t, ms(1299), c.wantUp(true, "hive-1", "hive-2", "writer"))
	c.checkAt(t, ms(1301), c.wantUp(false, "hive-1", "hive-2", "writer"))
	c.checkAt(t, ms(1301), c.wantUp(true, "queen-1", "client-1"))
	c.checkAt(t, ms(3299), c.wantUp(false, "hive-1", "hive-2", "writer"))
	c.checkAt(t, ms(3301), c.wantUp(true, "hive-1", "hive-2", "writer"))
	c.s.Run(5 * time.Second)

	// Ping 1 before the fault (writes 1-2 of the disk, not counted), pings 2 and 3 (crash-point
	// writes 1-4), ping 4: its write is the 5th and fails, so does its sync; ping 5 is lost.
	if len(w.results) != 10 {
		t.Fatalf("writer made %d writes, want 10: %v", len(w.results), w.results)
	}
	for i, err := range w.results {
		failed := i == 6 || i == 7
		if failed != (err != nil) || failed && (!errors.Is(err, syscall.EIO) ||
			!strings.Contains(err.Error(), "simulated power failure at write 5")) {
			t.Fatalf("write %d: %v", i+1, err)
		}
	}
	if got := string(fileOf(t, c, hiveDisk, "writer.log")); got != "1;2;3;6;" {
		t.Fatalf("log %q, want 1;2;3;6;", got)
	}
	if w.starts != 2 || c.nodes["hive-1"].starts != 2 || c.s.Crashes("queen-1") != 0 {
		t.Fatalf("starts: writer %d hive-1 %d; queen-1 crashed %d", w.starts, c.nodes["hive-1"].starts, c.s.Crashes("queen-1"))
	}
	for _, name := range []string{"fault power-fail-at-write start hive-1", "power-fail at write 5 rack-1",
		"fault power-fail-at-write end hive-1"} {
		if !c.traceHas(name) {
			t.Errorf("no action %q in the trace", name)
		}
	}
	if got := c.inj.Activated(); !reflect.DeepEqual(got, map[string]int{"power-fail-at-write": 1}) {
		t.Fatalf("activated %v", got)
	}
}

// TestPowerFailAtWriteKeepsOverlappingCrashesDown: a process held down by a crash-restart when
// the power fails restarts when that fault ends, not with the machine.
func TestPowerFailAtWriteKeepsOverlappingCrashesDown(t *testing.T) {
	c, _ := writerCluster(1, ms(1100))
	c.inj.Schedule(Schedule{
		{Kind: "crash-restart", At: ms(500), For: 10 * time.Second, Targets: []node.Addr{"hive-2"}},
		crashPoint(time.Second, 1, time.Second),
	})
	c.checkAt(t, ms(2200), c.wantUp(true, "hive-1", "writer"))
	c.checkAt(t, ms(2200), c.wantUp(false, "hive-2"))
	c.checkAt(t, ms(10600), c.wantUp(true, "hive-2"))
	c.s.Run(11 * time.Second)
	if c.nodes["hive-2"].starts != 2 || c.s.Crashes("hive-2") != 1 {
		t.Fatalf("hive-2 started %d times, crashed %d", c.nodes["hive-2"].starts, c.s.Crashes("hive-2"))
	}
}

// TestPowerFailAtWriteHealAll: HealAll disarms a crash point not reached, and restarts at once
// what one crashed (its scheduled restart then does nothing).
func TestPowerFailAtWriteHealAll(t *testing.T) {
	c, w := writerCluster(1)
	c.inj.Schedule(Schedule{crashPoint(time.Second, 3, time.Minute)})
	c.s.Run(2 * time.Second)
	c.inj.HealAll()
	d := c.s.Disk(hiveDisk)
	f, _ := d.Open("x", true)
	for range 10 {
		if err := f.Sync(); err != nil {
			t.Fatalf("a disarmed crash point sprang: %v", err)
		}
	}

	c, w = writerCluster(1, ms(1100), ms(1200), ms(2500))
	c.inj.Schedule(Schedule{crashPoint(time.Second, 3, time.Minute)})
	c.s.Run(2 * time.Second)
	if c.s.Up("writer") || c.s.Up("hive-1") {
		t.Fatal("the crash point at write 3 did not power the machine off")
	}
	c.inj.HealAll()
	c.s.Run(3 * time.Minute)
	checkHealed(t, c, Fault{Kind: "heal-all"})
	if w.starts != 2 || c.nodes["hive-1"].starts != 2 || len(w.results) != 6 || w.results[5] != nil {
		t.Fatalf("writer started %d times, hive-1 %d; writes %v", w.starts, c.nodes["hive-1"].starts, w.results)
	}
}

// TestPowerFailAtWriteReplacesAnArmedOne: a later fault on the same machine replaces a crash
// point not reached; the end of the replaced one leaves the new one armed, and the new one's
// end (by HealAll) disarms it.
func TestPowerFailAtWriteReplacesAnArmedOne(t *testing.T) {
	c, w := writerCluster(1, ms(1100), ms(1200), ms(1300))
	c.s.At(time.Second, "arm both, end the first", func() {
		end := powerFailAtWrite{}.apply(c.inj.st, crashPoint(0, 1, time.Second))
		powerFailAtWrite{}.apply(c.inj.st, Fault{Kind: "power-fail-at-write", Targets: []node.Addr{"hive-2"}, Value: 4, For: time.Second})
		end()
	})
	c.s.Run(2 * time.Second)
	if len(w.results) != 4 || w.results[2] != nil || w.results[3] == nil || !c.traceHas("power-fail at write 4 rack-1") {
		t.Fatalf("writes %v, want the 4th after the second fault to fail", w.results)
	}

	c, w = writerCluster(1, ms(1100), ms(1200), ms(1300))
	c.inj.Schedule(Schedule{
		crashPoint(time.Second, 1, time.Second),
		{Kind: "power-fail-at-write", At: ms(1050), Targets: []node.Addr{"hive-2"}, Value: 4, For: time.Second},
	})
	c.s.Run(ms(1150))
	c.inj.HealAll()
	c.s.Run(2 * time.Second)
	if len(w.results) != 6 || slices.ContainsFunc(w.results, func(err error) bool { return err != nil }) {
		t.Fatalf("writes %v, want six that succeed", w.results)
	}
}

// TestPowerFailAtWriteInjectArmsNow: Kind.Inject arms the crash point at once; For counts
// from the power failure, not from the injection.
func TestPowerFailAtWriteInjectArmsNow(t *testing.T) {
	c, w := writerCluster(1, ms(3000))
	k, _ := Lookup("power-fail-at-write")
	c.s.At(time.Second, "inject", func() { k.Inject(c.s, c.t, crashPoint(0, 2, time.Second)) })
	c.checkAt(t, ms(3500), c.wantUp(false, "writer", "hive-1"))
	c.checkAt(t, ms(4001), c.wantUp(true, "writer", "hive-1"))
	c.s.Run(5 * time.Second)
	if len(w.results) != 2 || w.results[0] != nil || !errors.Is(w.results[1], syscall.EIO) {
		t.Fatalf("writes %v", w.results)
	}
}

// TestPowerFailAtWriteValidatesAndSummarises.
func TestPowerFailAtWriteValidatesAndSummarises(t *testing.T) {
	topo := testTopology()
	topo.Hives = append(topo.Hives, "hive-3")
	topo.Machines["hive-3"], topo.Machines["client-1"] = "shared", "shared"
	bad := []struct {
		f    Fault
		want string
	}{
		{crashPoint(0, 0, 0), "value: 0 is outside [1, 10000]"},
		{crashPoint(0, 10001, 0), "value: 10001 is outside [1, 10000]"},
		{Fault{Kind: "power-fail-at-write", Targets: []node.Addr{"queen-1"}, Value: 1}, `targets[0]: "queen-1" is not a hive`},
		{Fault{Kind: "power-fail-at-write", Targets: []node.Addr{"hive-1", "hive-2"}, Value: 1}, "needs 1 target(s), got 2"},
		{Fault{Kind: "power-fail-at-write", Targets: []node.Addr{"hive-1"}, Value: 1, File: "x"}, "does not use file"},
		{Fault{Kind: "power-fail-at-write", Targets: []node.Addr{"hive-3"}, Value: 1}, `also runs client "client-1"`},
	}
	for _, tc := range bad {
		if err := (Schedule{tc.f}).Validate(topo); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.f, err, tc.want)
		}
	}
	if err := (Schedule{crashPoint(time.Second, 10000, 0), crashPoint(0, 1, time.Hour)}).Validate(topo); err != nil {
		t.Fatal(err)
	}
	k, _ := Lookup("power-fail-at-write")
	if k.Available(Topology{Queens: []node.Addr{"q"}}) || !k.Available(topo) {
		t.Fatal("Available: wants a hive on a machine without a client")
	}
	for seed := range uint64(200) {
		f := k.Draw(rand.New(rand.NewPCG(seed, 0)), topo, 0, time.Minute)
		if f.Value < 1 || f.Value > drawnCrashWrite || f.Targets[0] == "hive-3" {
			t.Fatalf("drew %+v", f)
		}
	}
	want := "1s power-fail-at-write hive-1's machine at write 17 for 5s"
	if got := (Schedule{crashPoint(time.Second, 17, 5*time.Second)}).Summary(); got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
}

// TestPowerFailAtWriteAfterTheRunChangesNoTrace: a run with the fault scheduled after its end
// has the trace of a run without it.
func TestPowerFailAtWriteAfterTheRunChangesNoTrace(t *testing.T) {
	run := func(sch Schedule) uint64 {
		c, _ := writerCluster(3, ms(100), ms(200), ms(300))
		c.kickAt(ms(150), "queen-1", "hive-1", 1)
		c.inj.Schedule(sch)
		c.s.Run(time.Second)
		return c.s.Trace().Hash()
	}
	without := run(nil)
	if got := run(Schedule{crashPoint(time.Hour, 1, time.Second)}); got != without {
		t.Fatalf("a fault after the run changed the hash: %#x, want %#x", got, without)
	}
	if run(Schedule{crashPoint(ms(50), 3, time.Second)}) == without {
		t.Fatal("a crash point reached during the run changed nothing")
	}
}
