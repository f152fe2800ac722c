package sim

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// SectorSize is the unit a disk writes atomically: a write torn by a power failure is torn at
// a multiple of SectorSize bytes from the start of the file.
const SectorSize = 512

// Bounds of the log of unsynced writes a file keeps for torn power failures. Past either, the
// file stops logging until its next Sync, and a power failure drops all its unsynced writes.
const (
	maxPendingWrites = 4096
	maxPendingBytes  = 64 << 20
)

// Disk is a machine's simulated disk. Each file has a volatile image (what reads see) and a
// durable image (what survives a power failure). Sync copies volatile to durable; PowerFail
// throws every volatile change away, PowerFailTorn keeps a random prefix of them. Rename and
// Remove are durable at once; a file that was never synced does not survive a power failure.
//
// Faults: FlipByte, ClobberHeader and TruncateTo change a file's content in both images (media
// corruption); FailSyncs makes syncs fail; SetSpaceBudget makes writes fail with ENOSPC (and
// FreeBytes reports the room left); and SetSlowIO makes every read, write and sync cost the
// process that does it simulated time.
//
// Crash points: every mutating operation (WriteAt, Truncate, Sync, Rename, Remove) is counted
// (WritesSoFar), and CrashAfterWrites freezes the disk at the k-th one from now, so a test can
// cut the power at each write of an operation in turn.
type Disk struct {
	files map[string]*simFile
	// FailWrites, when set, makes every WriteAt, Truncate and Sync fail: a dead disk.
	FailWrites bool
	failSyncs  int           // how many of the next syncs fail
	budget     int64         // the most bytes of volatile data; 0 is unlimited
	slowIO     time.Duration // what one read, write or sync costs
	debt       time.Duration // the I/O time owed by the process running now
	// Crash points (CrashAfterWrites): writes counts every mutating call; trapAt is the count
	// at which the armed trap springs (0: none), trapK its k and crash its callback; frozen is
	// the k of the trap that froze the disk (0: not frozen).
	writes int
	trapAt int
	trapK  int
	crash  func()
	frozen int
}

type simFile struct {
	volatile []byte
	durable  []byte
	// synced is false while volatile differs from durable; then dirtyFrom is the lowest
	// offset where they may differ, so Sync copies only the changed tail (logs append).
	synced    bool
	dirtyFrom int64
	// exists is false for a file created but never synced: a power failure removes it.
	durableExists bool
	// pending is every write and truncate since the last sync, in order, for PowerFailTorn;
	// overflow is set (and pending dropped) when it grew past its bounds.
	pending      []pendingOp
	pendingBytes int64
	overflow     bool
}

// pendingOp is one unsynced change of a file.
type pendingOp struct {
	trunc bool
	off   int64  // where a write starts, or the size a truncate sets
	data  []byte // what a write wrote (a copy)
}

// NewDisk returns an empty disk.
func NewDisk() *Disk { return &Disk{files: map[string]*simFile{}} }

var _ node.Disk = (*Disk)(nil)

// Open implements node.Disk.
func (d *Disk) Open(name string, create bool) (node.File, error) {
	if _, ok := d.files[name]; !ok {
		if !create {
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		}
		d.files[name] = &simFile{synced: false}
	}
	return &diskFile{d: d, name: name}, nil
}

// Remove implements node.Disk.
func (d *Disk) Remove(name string) error {
	if err := d.mutate("remove", name); err != nil {
		return err
	}
	if _, ok := d.files[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, fs.ErrNotExist)
	}
	delete(d.files, name)
	return nil
}

// Rename implements node.Disk. The renamed file keeps its volatile and durable images.
func (d *Disk) Rename(oldName, newName string) error {
	if err := d.mutate("rename", oldName); err != nil {
		return err
	}
	f, ok := d.files[oldName]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldName, fs.ErrNotExist)
	}
	delete(d.files, oldName)
	d.files[newName] = f
	return nil
}

// List implements node.Disk.
func (d *Disk) List(prefix string) ([]string, error) {
	var names []string
	for n := range d.files { //det:sorted
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Files returns the name of every file on the disk, sorted.
func (d *Disk) Files() []string {
	names, _ := d.List("")
	return names
}

// PowerFail loses every write that was not synced, as a machine losing power does. It thaws a
// disk frozen by CrashAfterWrites (a trap still armed stays armed).
func (d *Disk) PowerFail() {
	d.frozen = 0
	for name, f := range d.files { //det:sorted (each file is handled on its own)
		if !f.durableExists {
			delete(d.files, name)
			continue
		}
		f.restore(f.durable)
	}
}

// PowerFailTorn is a power failure that tears writes. Each file's unsynced writes and
// truncations since its last sync were issued in order; a random prefix of them (drawn from
// rng, possibly none, possibly all) reached the platter, and the first one that did not reach
// it in full may have reached it in part: the sectors of its first j sector-aligned pieces,
// for a random j. Each file that was synced at least once keeps its durable image with that
// prefix applied; a file never synced is gone, as with PowerFail. A file whose log of unsynced
// writes outgrew its bounds (4096 writes or 64 MiB) loses all of them. Files are handled in
// name order, so the same rng state gives the same disk. Like PowerFail, it thaws a frozen disk.
func (d *Disk) PowerFailTorn(rng *rand.Rand) {
	d.frozen = 0
	for _, name := range d.Files() {
		f := d.files[name]
		if !f.durableExists {
			delete(d.files, name)
			continue
		}
		if f.overflow || len(f.pending) == 0 {
			f.restore(f.durable)
			continue
		}
		f.restore(f.tornImage(rng))
	}
}

// tornImage is the durable image with a random prefix of the pending changes applied, the
// first change left out possibly torn.
func (f *simFile) tornImage(rng *rand.Rand) []byte {
	img := slices.Clone(f.durable)
	k := rng.IntN(len(f.pending) + 1)
	for _, op := range f.pending[:k] {
		img = op.apply(img)
	}
	if k < len(f.pending) {
		img = f.pending[k].tear(img, rng)
	}
	return img
}

// restore makes img what the file holds, durably, and forgets its unsynced changes.
func (f *simFile) restore(img []byte) {
	f.durable = slices.Clone(img)
	f.volatile = slices.Clone(img)
	f.synced = true
	f.clearPending()
}

// apply returns img with the change made.
func (op pendingOp) apply(img []byte) []byte {
	if op.trunc {
		return resize(img, op.off)
	}
	return writeInto(img, op.off, op.data)
}

// tear returns img with a random prefix of the write's sector pieces made (none for a
// truncate, which is all or nothing).
func (op pendingOp) tear(img []byte, rng *rand.Rand) []byte {
	if op.trunc || len(op.data) == 0 {
		return img
	}
	first, last := op.off/SectorSize, (op.off+int64(len(op.data))-1)/SectorSize
	j := rng.Int64N(last - first + 1) // sector pieces that made it: fewer than all
	if j == 0 {
		return img
	}
	end := (first + j) * SectorSize
	return writeInto(img, op.off, op.data[:end-op.off])
}

// writeInto writes p at off in img, growing it with zeros as needed, and returns it.
func writeInto(img []byte, off int64, p []byte) []byte {
	if end := off + int64(len(p)); end > int64(len(img)) {
		img = resize(img, end)
	}
	copy(img[off:], p)
	return img
}

// resize cuts img to size or grows it with zeros.
func resize(img []byte, size int64) []byte {
	if size <= int64(len(img)) {
		return img[:size:size]
	}
	return append(img, make([]byte, size-int64(len(img)))...)
}

// Size is the total volatile size of every file, in bytes.
func (d *Disk) Size() int64 {
	var n int64
	for _, f := range d.files { //det:sorted (a sum)
		n += int64(len(f.volatile))
	}
	return n
}

// Used is the total volatile size of every file, in bytes: what SetSpaceBudget limits.
func (d *Disk) Used() int64 { return d.Size() }

// FlipByte XORs the byte at off of file name with mask, in both its volatile and durable
// images (where each is long enough): media corruption, which survives power failures. off
// must be inside the file as reads see it. Unsynced writes still pending may overwrite the
// byte on the platter at a torn power failure, as they would on a real disk.
func (d *Disk) FlipByte(name string, off int64, mask byte) error {
	f, ok := d.files[name]
	if !ok {
		return fmt.Errorf("flip a byte of %s: %w", name, fs.ErrNotExist)
	}
	if off < 0 || off >= int64(len(f.volatile)) {
		return fmt.Errorf("flip a byte of %s: offset %d is outside the file (%d bytes)", name, off, len(f.volatile))
	}
	f.volatile[off] ^= mask
	if off < int64(len(f.durable)) {
		f.durable[off] ^= mask
	}
	return nil
}

// ClobberHeader overwrites the first n bytes of file name (fewer if it is shorter) with
// garbage drawn from seed, in both images, as a stray write from another program would.
func (d *Disk) ClobberHeader(name string, n int, seed uint64) error {
	f, ok := d.files[name]
	if !ok {
		return fmt.Errorf("clobber the header of %s: %w", name, fs.ErrNotExist)
	}
	garbage := make([]byte, max(n, 0))
	rand.NewChaCha8(seedBytes(seed)).Read(garbage)
	copy(f.volatile, garbage)
	copy(f.durable, garbage)
	return nil
}

// seedBytes spreads a 64-bit seed over a ChaCha8 seed.
func seedBytes(seed uint64) (b [32]byte) {
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

// TruncateTo cuts file name to size bytes (or grows it with zeros), in both images, as a
// file system that lost the file's tail would.
func (d *Disk) TruncateTo(name string, size int64) error {
	f, ok := d.files[name]
	if !ok {
		return fmt.Errorf("truncate %s: %w", name, fs.ErrNotExist)
	}
	if size < 0 {
		return fmt.Errorf("truncate %s: size %d is negative", name, size)
	}
	f.volatile = resize(f.volatile, size)
	f.durable = resize(f.durable, size)
	return nil
}

// FailSyncs makes the next n Sync calls on this disk, of any file, fail with an I/O error
// (errors.Is(err, syscall.EIO)); the data they would have made durable stays volatile. It
// replaces the count left from an earlier call; 0 ends the failures.
func (d *Disk) FailSyncs(n int) { d.failSyncs = max(n, 0) }

// SyncFailuresLeft is how many of the next syncs will fail.
func (d *Disk) SyncFailuresLeft() int { return d.failSyncs }

// SetSpaceBudget limits the disk's total volatile size to bytes (0 or less: unlimited). A
// write or truncate that would grow the total past it fails with an error matching
// syscall.ENOSPC and changes nothing. What is already over the budget stays.
func (d *Disk) SetSpaceBudget(bytes int64) { d.budget = max(bytes, 0) }

// SpaceBudget is the disk's space budget; 0 is unlimited.
func (d *Disk) SpaceBudget() int64 { return d.budget }

// unlimitedCapacityBytes is the capacity FreeBytes reports for a disk without a space budget:
// 1 PiB, more than any simulated run writes, so a free-space check never refuses on it.
const unlimitedCapacityBytes int64 = 1 << 50

// FreeBytes is the room left on the disk, in bytes (it makes a Disk a provision.FreeSpacer):
// the space budget minus Used(), never negative; without a budget the disk is unlimited and
// reports unlimitedCapacityBytes (1 PiB) minus Used(). It never fails. Like the budget, it
// counts volatile data, so it is the room the next writes can use.
func (d *Disk) FreeBytes() (int64, error) {
	capacity := d.budget
	if capacity <= 0 {
		capacity = unlimitedCapacityBytes
	}
	return max(capacity-d.Used(), 0), nil
}

// SetSlowIO makes every read, write and sync on the disk cost perOp of simulated time (0 or
// less: free). A Sim holds a process busy, after each Start or Handle, for the I/O it did.
func (d *Disk) SetSlowIO(perOp time.Duration) { d.slowIO = max(perOp, 0) }

// SlowIO is what one read, write or sync costs.
func (d *Disk) SlowIO() time.Duration { return d.slowIO }

// CrashAfterWrites arms a power-failure trap at the k-th mutating operation on the disk from
// now on (k >= 1); k <= 0 disarms a trap not sprung yet. Each call of WriteAt, Truncate or Sync
// on any file, and of Rename or Remove on the Disk, counts as one operation, whether or not it
// would have succeeded. The k-th one and every later one fail with an error matching
// syscall.EIO ("simulated power failure at write k") and change nothing: the disk is frozen,
// and nothing after the k-th write reaches it; reads still see the cache as it was. crash is
// called once, synchronously, from inside the k-th operation, before it returns its error.
// Only PowerFail or PowerFailTorn thaw the disk. A later call replaces a trap not sprung yet.
func (d *Disk) CrashAfterWrites(k int, crash func()) {
	if k <= 0 {
		d.trapAt, d.trapK, d.crash = 0, 0, nil
		return
	}
	d.trapAt, d.trapK, d.crash = d.writes+k, k, crash
}

// WritesSoFar is how many mutating operations (WriteAt, Truncate, Sync, Rename, Remove) the
// disk has been asked for since it was made, counted whether or not a trap is armed and
// whether or not they succeeded.
func (d *Disk) WritesSoFar() int { return d.writes }

// Frozen reports whether a sprung CrashAfterWrites trap keeps the disk from changing.
func (d *Disk) Frozen() bool { return d.frozen > 0 }

// mutate counts one mutating operation, springs an armed trap at its count, and fails when
// the disk is frozen.
func (d *Disk) mutate(op, name string) error {
	d.writes++
	if d.trapAt > 0 && d.writes == d.trapAt {
		d.frozen = d.trapK
		crash := d.crash
		d.trapAt, d.trapK, d.crash = 0, 0, nil
		if crash != nil {
			crash()
		}
	}
	if d.frozen > 0 {
		return fmt.Errorf("%s %s: simulated power failure at write %d: %w", op, name, d.frozen, syscall.EIO)
	}
	return nil
}

// checkSpace fails when growing a file from oldSize to newSize would break the budget.
func (d *Disk) checkSpace(op, name string, oldSize, newSize int64) error {
	if d.budget <= 0 || newSize <= oldSize {
		return nil
	}
	used := d.Used()
	if used-oldSize+newSize <= d.budget {
		return nil
	}
	return fmt.Errorf("%s %s: simulated disk full: growing it from %d to %d bytes would pass the "+
		"disk's %d-byte budget (%d bytes used): %w", op, name, oldSize, newSize, d.budget, used, syscall.ENOSPC)
}

// takeDebt returns the I/O time owed and clears it.
func (d *Disk) takeDebt() time.Duration {
	debt := d.debt
	d.debt = 0
	return debt
}

type diskFile struct {
	d    *Disk
	name string
}

func (f *diskFile) file() (*simFile, error) {
	sf, ok := f.d.files[f.name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", f.name, fs.ErrNotExist)
	}
	return sf, nil
}

func (f *diskFile) failWrite(op string) error {
	if f.d.FailWrites {
		return fmt.Errorf("%s %s: input/output error (simulated disk failure)", op, f.name)
	}
	return nil
}

func (f *diskFile) ReadAt(p []byte, off int64) (int, error) {
	f.d.debt += f.d.slowIO
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	if off >= int64(len(sf.volatile)) {
		return 0, io.EOF
	}
	n := copy(p, sf.volatile[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	f.d.debt += f.d.slowIO
	if err := f.d.mutate("write", f.name); err != nil {
		return 0, err
	}
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	if err := f.failWrite("write"); err != nil {
		return 0, err
	}
	size := int64(len(sf.volatile))
	if err := f.d.checkSpace("write", f.name, size, max(size, off+int64(len(p)))); err != nil {
		return 0, err
	}
	sf.dirty(min(off, size))
	sf.log(pendingOp{off: off, data: p})
	sf.volatile = writeInto(sf.volatile, off, p)
	return len(p), nil
}

func (f *diskFile) Size() (int64, error) {
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	return int64(len(sf.volatile)), nil
}

func (f *diskFile) Truncate(size int64) error {
	if err := f.d.mutate("truncate", f.name); err != nil {
		return err
	}
	sf, err := f.file()
	if err != nil {
		return err
	}
	if err := f.failWrite("truncate"); err != nil {
		return err
	}
	if err := f.d.checkSpace("truncate", f.name, int64(len(sf.volatile)), size); err != nil {
		return err
	}
	sf.dirty(min(size, int64(len(sf.volatile))))
	sf.log(pendingOp{trunc: true, off: size})
	sf.volatile = resize(sf.volatile, size)
	return nil
}

func (f *diskFile) Sync() error {
	f.d.debt += f.d.slowIO
	if err := f.d.mutate("fsync", f.name); err != nil {
		return err
	}
	sf, err := f.file()
	if err != nil {
		return err
	}
	if err := f.failWrite("fsync"); err != nil {
		return err
	}
	if f.d.failSyncs > 0 {
		f.d.failSyncs--
		return fmt.Errorf("fsync %s: simulated fsync failure, the data stays unsynced: %w", f.name, syscall.EIO)
	}
	if !sf.synced || !sf.durableExists {
		from := min(sf.dirtyFrom, int64(len(sf.durable)))
		if !sf.durableExists {
			from = 0
		}
		sf.durable = append(sf.durable[:from], sf.volatile[from:]...)
		sf.synced = true
		sf.durableExists = true
	}
	sf.clearPending()
	return nil
}

// dirty notes a change at or after off.
func (sf *simFile) dirty(off int64) {
	if sf.synced {
		sf.synced, sf.dirtyFrom = false, off
		return
	}
	sf.dirtyFrom = min(sf.dirtyFrom, off)
}

// log records an unsynced change for PowerFailTorn, copying a write's data. A file never
// synced keeps no log (a power failure removes it); a log past its bounds is dropped.
func (sf *simFile) log(op pendingOp) {
	if !sf.durableExists || sf.overflow {
		return
	}
	if !op.trunc {
		op.data = slices.Clone(op.data)
	}
	sf.pending = append(sf.pending, op)
	sf.pendingBytes += int64(len(op.data))
	if len(sf.pending) > maxPendingWrites || sf.pendingBytes > maxPendingBytes {
		sf.clearPending()
		sf.overflow = true
	}
}

// clearPending forgets the log of unsynced changes.
func (sf *simFile) clearPending() {
	sf.pending, sf.pendingBytes, sf.overflow = nil, 0, false
}

func (f *diskFile) Close() error { return nil }

// chargeIOStart forgets I/O time owed on p's machine disk by anyone but p (a harness action).
func (s *Sim) chargeIOStart(p *proc) { p.disk.debt = 0 }

// chargeIOEnd holds p busy for the I/O time it owes after a Start or Handle: messages and
// timers for it wait, as for a pause, until a scheduled wake-up. Nothing owed, nothing done.
func (s *Sim) chargeIOEnd(p *proc) {
	if p.disk.debt == 0 {
		return
	}
	debt := p.disk.takeDebt()
	if !p.up || p.busy {
		return
	}
	s.trace.record(s.now, "busy", "", p.addr, debt.String(), nil)
	p.busy = true
	inc := p.inc
	s.schedule(event{at: s.now + debt, kind: evAction, name: "io-done " + string(p.addr),
		fn: func() { s.ioDone(p, inc) }})
}

// ioDone ends a busy spell of p's incarnation inc and delivers what waited, unless p is paused.
func (s *Sim) ioDone(p *proc, inc uint64) {
	if p.inc != inc || !p.busy {
		return
	}
	p.busy = false
	if !p.paused {
		s.releaseHeld(p)
	}
}
