package faults

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// pageSize is the page a random disk-flip hits the first byte of: SQLite's default page.
const pageSize = 4096

// Ranges of the disk faults' values.
const (
	maxClobber    = 1 << 20
	maxSyncFails  = 1000
	maxFreeBytes  = 1 << 50
	maxSlowPerOp  = int64(time.Minute)
	drawnClobber  = 100 // bytes: the SQLite header
	drawnSyncFail = 5
	drawnFree     = 64 << 10
)

// diskAvailable reports whether some hive has a file for disk faults to target.
func diskAvailable(t Topology) bool { return len(t.hivesWith(t.Files)) > 0 }

// drawDisk draws a disk fault on a random hive with files and one of its files, with value v.
func drawDisk(rng *rand.Rand, k Kind, t Topology, at time.Duration, v int64) Fault {
	mustAvailable(k, t)
	h := pick(rng, t.hivesWith(t.Files))
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{h}, File: pick(rng, sortedStrings(t.Files[h])), Value: v}
}

// checkDisk is the check of the disk kinds: Targets [hive], a File, Value in [lo, hi], and For
// only for kinds that last.
func checkDisk(t Topology, f Fault, lasting bool, lo, hi int64, unit string) error {
	used := fTargets | fFile | fValue
	if lasting {
		used |= fFor
	}
	return firstErr(unused(f, used), targets(f, 1, hive(t)), fileSet(f), valueIn(f, lo, hi, unit))
}

// fileSet checks that a disk fault names its file.
func fileSet(f Fault) error {
	if f.File == "" {
		return fmt.Errorf("file: %s needs a file on the hive's machine (see Topology.Files)", f.Kind)
	}
	return nil
}

// targetFile is the disk of the machine of f's hive and the size of f.File on it; ok is false
// when the file does not exist.
func targetFile(st *state, f Fault) (d *sim.Disk, size int64, ok bool) {
	d = st.s.Disk(st.t.machine(f.Targets[0]))
	file, err := d.Open(f.File, false)
	if err != nil {
		return d, 0, false
	}
	size, _ = file.Size()
	return d, size, true
}

// faultRand is the random stream of one disk fault's choices at injection: derived from the
// run seed and the fault itself, so a fault chooses the same whatever other faults run.
func faultRand(s *sim.Sim, f Fault) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d|%v|%s|%d", f.Kind, f.At, f.Targets, f.File, f.Value)
	return rand.New(rand.NewPCG(s.Seed()^h.Sum64(), sim.StreamDiskFaults))
}

// diskSetting names one setting of one machine's disk that lasting disk faults change.
type diskSetting struct{ machine, what string }

// diskStack is the active faults of one disk setting over the value it had before them; the
// latest one that is still active wins.
type diskStack struct {
	base   int64
	layers []diskLayer
}

type diskLayer struct {
	id uint64
	v  int64
}

// pushDisk sets a disk setting to v for one fault and returns its end.
func (st *state) pushDisk(key diskSetting, get func() int64, set func(int64), v int64) (end func()) {
	ds := st.disk[key]
	if ds == nil {
		ds = &diskStack{base: get()}
		st.disk[key] = ds
	}
	id := st.id()
	ds.layers = append(ds.layers, diskLayer{id, v})
	set(v)
	return func() {
		ds.layers = slices.DeleteFunc(ds.layers, func(l diskLayer) bool { return l.id == id })
		if n := len(ds.layers); n > 0 {
			set(ds.layers[n-1].v)
			return
		}
		set(ds.base)
		delete(st.disk, key)
	}
}

// diskFlip flips one byte of a file: media corruption.
type diskFlip struct{}

func (diskFlip) Name() string { return "disk-flip" }
func (diskFlip) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine. One byte of the file is XORed " +
		"with a random non-zero mask in both its cached and durable images (media corruption, " +
		"which survives power failures): the byte at offset Value, or with Value -1 the first " +
		"byte of a random 4096-byte page of the file. Instant. Nothing happens when the file " +
		"does not exist or ends before the offset."
}
func (diskFlip) Available(t Topology) bool { return diskAvailable(t) }
func (k diskFlip) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	return drawDisk(rng, k, t, at, -1)
}
func (k diskFlip) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskFlip) check(t Topology, f Fault) error {
	return checkDisk(t, f, false, -1, math.MaxInt64, "(a byte offset, or -1 for a random page)")
}
func (diskFlip) apply(st *state, f Fault) func() {
	d, size, ok := targetFile(st, f)
	if !ok || size == 0 {
		return nil
	}
	rng := faultRand(st.s, f)
	off := f.Value
	if off < 0 {
		off = rng.Int64N((size+pageSize-1)/pageSize) * pageSize
	}
	if off < size {
		_ = d.FlipByte(f.File, off, byte(1+rng.IntN(255))) // cannot fail: the byte exists
	}
	return nil
}
func (diskFlip) lasting() bool { return false }
func (diskFlip) describe(f Fault) string {
	if f.Value < 0 {
		return fmt.Sprintf("%s %s at a random page", one(f), f.File)
	}
	return fmt.Sprintf("%s %s at byte %d", one(f), f.File, f.Value)
}

// diskClobberHeader overwrites the start of a file with garbage.
type diskClobberHeader struct{}

func (diskClobberHeader) Name() string { return "disk-clobber-header" }
func (diskClobberHeader) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine. The first Value bytes of the " +
		"file (1 to 1 MiB; fewer if it is shorter) are overwritten with random garbage in both " +
		"its cached and durable images, as by a stray write. Instant. Nothing happens when the " +
		"file does not exist."
}
func (diskClobberHeader) Available(t Topology) bool { return diskAvailable(t) }
func (k diskClobberHeader) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	f := drawDisk(rng, k, t, at, 0)
	f.Value = drawIn(rng, 1, drawnClobber)
	return f
}
func (k diskClobberHeader) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskClobberHeader) check(t Topology, f Fault) error {
	return checkDisk(t, f, false, 1, maxClobber, "bytes")
}
func (diskClobberHeader) apply(st *state, f Fault) func() {
	if d, _, ok := targetFile(st, f); ok {
		_ = d.ClobberHeader(f.File, int(f.Value), faultRand(st.s, f).Uint64()) // the file exists
	}
	return nil
}
func (diskClobberHeader) lasting() bool { return false }
func (diskClobberHeader) describe(f Fault) string {
	return fmt.Sprintf("%s %s first %d bytes", one(f), f.File, f.Value)
}

// diskTruncate cuts a file short.
type diskTruncate struct{}

func (diskTruncate) Name() string { return "disk-truncate" }
func (diskTruncate) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine. The file is cut to Value bytes " +
		"(grown with zeros if longer), or with Value -1 to a random size below its current one, " +
		"in both its cached and durable images, as by a file system that lost its tail. " +
		"Instant. Nothing happens when the file does not exist, or is empty and Value is -1."
}
func (diskTruncate) Available(t Topology) bool { return diskAvailable(t) }
func (k diskTruncate) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	return drawDisk(rng, k, t, at, -1)
}
func (k diskTruncate) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskTruncate) check(t Topology, f Fault) error {
	return checkDisk(t, f, false, -1, math.MaxInt64, "bytes (a size, or -1 for a random one)")
}
func (diskTruncate) apply(st *state, f Fault) func() {
	d, size, ok := targetFile(st, f)
	if !ok || (f.Value < 0 && size == 0) {
		return nil
	}
	to := f.Value
	if to < 0 {
		to = faultRand(st.s, f).Int64N(size)
	}
	_ = d.TruncateTo(f.File, to) // cannot fail: the file exists and to is not negative
	return nil
}
func (diskTruncate) lasting() bool { return false }
func (diskTruncate) describe(f Fault) string {
	if f.Value < 0 {
		return fmt.Sprintf("%s %s to a random size", one(f), f.File)
	}
	return fmt.Sprintf("%s %s to %d bytes", one(f), f.File, f.Value)
}

// diskFsyncFail makes the next syncs of a disk fail.
type diskFsyncFail struct{}

func (diskFsyncFail) Name() string { return "disk-fsync-fail" }
func (diskFsyncFail) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine, which must exist. The next " +
		"Value (1 to 1000) syncs of any file on that machine's disk fail with EIO (\"simulated " +
		"fsync failure\") and leave their data unsynced, so a power failure loses it. Added to " +
		"failures still pending. Instant: the failures are used up by syncs, not healed."
}
func (diskFsyncFail) Available(t Topology) bool { return diskAvailable(t) }
func (k diskFsyncFail) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	f := drawDisk(rng, k, t, at, 0)
	f.Value = drawIn(rng, 1, drawnSyncFail)
	return f
}
func (k diskFsyncFail) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskFsyncFail) check(t Topology, f Fault) error {
	return checkDisk(t, f, false, 1, maxSyncFails, "syncs")
}
func (diskFsyncFail) apply(st *state, f Fault) func() {
	if d, _, ok := targetFile(st, f); ok {
		d.FailSyncs(d.SyncFailuresLeft() + int(f.Value))
	}
	return nil
}
func (diskFsyncFail) lasting() bool { return false }
func (diskFsyncFail) describe(f Fault) string {
	return fmt.Sprintf("%s's disk (%s) %d syncs", one(f), f.File, f.Value)
}

// diskFull fills a disk for a while.
type diskFull struct{}

func (diskFull) Name() string { return "disk-full" }
func (diskFull) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine, which must exist. For For, the " +
		"machine's disk has only Value more bytes of room (at least 1) than it uses at the " +
		"start: a write or truncate that would pass that fails with ENOSPC and changes nothing. " +
		"Then the budget it found is restored; the latest of overlapping faults wins."
}
func (diskFull) Available(t Topology) bool { return diskAvailable(t) }
func (k diskFull) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	f := drawDisk(rng, k, t, at, 0)
	f.Value, f.For = drawIn(rng, 1, drawnFree), drawFor(rng, maxFor)
	return f
}
func (k diskFull) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskFull) check(t Topology, f Fault) error {
	return checkDisk(t, f, true, 1, maxFreeBytes, "bytes")
}
func (diskFull) apply(st *state, f Fault) func() {
	d, _, ok := targetFile(st, f)
	if !ok {
		return nil
	}
	key := diskSetting{st.t.machine(f.Targets[0]), "space"}
	return st.pushDisk(key, d.SpaceBudget, d.SetSpaceBudget, d.Used()+f.Value)
}
func (diskFull) lasting() bool { return true }
func (diskFull) describe(f Fault) string {
	return fmt.Sprintf("%s's disk (%s) %d bytes free", one(f), f.File, f.Value)
}

// diskSlow makes a disk slow for a while.
type diskSlow struct{}

func (diskSlow) Name() string { return "disk-slow" }
func (diskSlow) Doc() string {
	return "Targets [hive]; File: a file on the hive's machine, which must exist. For For, " +
		"every read, write and sync on the machine's disk costs Value nanoseconds (1ns to 1m): " +
		"after each event, a process is held busy for the I/O it did, its messages and timers " +
		"waiting as for a pause. Then the speed it found is restored; the latest of " +
		"overlapping faults wins."
}
func (diskSlow) Available(t Topology) bool { return diskAvailable(t) }
func (k diskSlow) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	f := drawDisk(rng, k, t, at, 0)
	f.Value = drawIn(rng, int64(100*time.Microsecond), int64(10*time.Millisecond))
	f.For = drawFor(rng, maxFor)
	return f
}
func (k diskSlow) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (diskSlow) check(t Topology, f Fault) error {
	return checkDisk(t, f, true, 1, maxSlowPerOp, "ns per operation")
}
func (diskSlow) apply(st *state, f Fault) func() {
	d, _, ok := targetFile(st, f)
	if !ok {
		return nil
	}
	key := diskSetting{st.t.machine(f.Targets[0]), "slow"}
	get := func() int64 { return int64(d.SlowIO()) }
	set := func(v int64) { d.SetSlowIO(time.Duration(v)) }
	return st.pushDisk(key, get, set, f.Value)
}
func (diskSlow) lasting() bool { return true }
func (diskSlow) describe(f Fault) string {
	return fmt.Sprintf("%s's disk (%s) +%v per operation", one(f), f.File, time.Duration(f.Value))
}
