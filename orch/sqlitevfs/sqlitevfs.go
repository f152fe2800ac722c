// Package sqlitevfs runs the real SQLite engine (github.com/ncruces/go-sqlite3, pure Go) on a
// node.Disk, so that a hive's catalog lives on the machine's simulated disk inside a
// simulation and survives (or not) the same crashes and faults as every other file there.
//
// Register a disk, then open the database by URI with the returned VFS name:
//
//	name := sqlitevfs.Register(disk)
//	defer sqlitevfs.Unregister(name)
//	conn, err := sqlite3.Open("file:catalog.db?vfs=" + name)
//
// (or sql.Open("sqlite3", "file:catalog.db?vfs="+name) with the driver package). Every
// SQLite file maps 1:1 to a Disk file: the database, its "-journal", and temporary files,
// which get deterministic names "sqlite-temp-<n>" and are removed when SQLite closes them.
//
// The VFS is conservative so that crash recovery is really exercised: sector size 512, no
// device characteristics (no atomic writes, no safe append, no powersafe overwrite), and
// xSync is node.File.Sync, so SQLite's rollback journal protects every transaction against a
// power failure that drops unsynced writes.
//
// Locking: SQLite's five lock levels (NONE, SHARED, RESERVED, PENDING, EXCLUSIVE) are kept
// per file in a process-wide table keyed by (disk, file name), so several connections in one
// process (several hive nodes sharing one machine's disk, each with its own VFS name or the
// same one) never write at the same time: a conflicting lock returns SQLITE_BUSY. The table
// knows only this process; a Disk must be a comparable value (a pointer) for two
// registrations of it to share locks, and a wrapper around a disk is a different disk.
// Every call this package makes on a disk holds a per-disk mutex, so connections may be used
// from several goroutines even over a Disk that is not safe for concurrent use (calls made
// on the disk by other code are not covered).
//
// Errors: a Disk error that matches syscall.ENOSPC becomes SQLITE_FULL; a missing file on
// open becomes SQLITE_CANTOPEN; any other error becomes the SQLite I/O error of the failed
// operation (SQLITE_IOERR_READ, _WRITE, _FSYNC, _TRUNCATE, ...). Match the SQLite codes
// (errors.Is(err, sqlite3.FULL), errors.Is(err, sqlite3.IOERR_FSYNC)), not the disk's error:
// the library keeps that one only until SQLite's next VFS call, so it is usually gone.
//
// Callers' duties:
//   - Use a rollback journal (journal_mode DELETE, the default, or TRUNCATE), never WAL: the
//     VFS has no shared memory.
//   - Determinism: SQLite draws the journal nonce (and random(), randomblob()) from
//     crypto/rand.Reader and reads the clock (datetime('now'), CURRENT_TIMESTAMP) from
//     time.Now. A simulation process sets crypto/rand.Reader = DeterministicRandom(seed) once
//     at start, before any SQLite call; SQL never uses 'now', CURRENT_TIMESTAMP or random():
//     pass times as parameters from the simulated clock. VFS names count registrations in
//     the process, so they depend on what ran before: keep them out of traces and events.
//   - A busy timeout sleeps in real time and, in a single-threaded simulation, can never see
//     the holder release its lock: handle SQLITE_BUSY by retrying after the simulation makes
//     progress, or avoid the conflict.
//   - To simulate a process crash, stop using its connection and call Unregister: that
//     releases the locks of every file it had open (as the OS does when a process dies), and
//     any later call on those files fails with SQLITE_IOERR.
package sqlitevfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// SectorSize is the sector size the VFS reports to SQLite.
const SectorSize = 512

// NamePrefix starts every VFS name that Register returns.
const NamePrefix = "rbee-disk-"

// tempPrefix starts the names of SQLite's temporary files on the disk.
const tempPrefix = "sqlite-temp-"

var (
	regMu sync.Mutex
	// regCount numbers registrations; names are never reused within a process.
	regCount uint64
	// regVFS are the live registrations by name.
	regVFS = map[string]*diskVFS{}
	// regDisks are the shared states of the disks with at least one live registration.
	regDisks = map[node.Disk]*diskState{}
)

// diskState is what every registration of one disk shares: the mutex around the disk's
// calls and the lock table.
type diskState struct {
	disk node.Disk
	refs int // live registrations; guarded by regMu

	mu    sync.Mutex
	locks map[string]*lockState // by file name; guarded by mu
	temp  uint64                // temp files opened so far; guarded by mu
}

// lockState is SQLite's lock of one file, across all its open handles in the process.
type lockState struct {
	handles  int  // open handles of the file
	shared   int  // handles at SHARED or above
	reserved bool // one handle holds RESERVED
	pending  bool // one handle holds PENDING
	excl     bool // one handle holds EXCLUSIVE
}

// Register makes d available to SQLite as a VFS and returns its name, for a URI such as
// "file:catalog.db?vfs=<name>". The VFS registry is process-global and names
// ("rbee-disk-<n>") are never reused. d must be comparable (normally a pointer); Register
// panics otherwise.
func Register(d node.Disk) string {
	if d == nil || !reflect.TypeOf(d).Comparable() {
		panic(fmt.Sprintf("sqlitevfs.Register: disk %T is not comparable", d))
	}
	regMu.Lock()
	defer regMu.Unlock()
	regCount++
	name := NamePrefix + strconv.FormatUint(regCount, 10)
	ds := regDisks[d]
	if ds == nil {
		ds = &diskState{disk: d, locks: map[string]*lockState{}}
		regDisks[d] = ds
	}
	ds.refs++
	v := &diskVFS{name: name, ds: ds}
	regVFS[name] = v
	vfs.Register(name, v)
	return name
}

// Unregister removes a VFS that Register returned; an unknown name is ignored. Files still
// open through it are treated as those of a dead process: their locks are released, their
// temporary files removed, and any later call on them fails with an SQLite I/O error (the
// name stays known to SQLite until the last of them is closed, so that closing an abandoned
// connection later fails cleanly instead of panicking). Close connections first, unless a
// crash is being simulated.
func Unregister(name string) {
	regMu.Lock()
	defer regMu.Unlock()
	v := regVFS[name]
	if v == nil {
		return
	}
	delete(regVFS, name)
	ds := v.ds
	ds.mu.Lock()
	v.dead = true
	for _, f := range v.files {
		f.release()
		if f.deleteOnClose {
			ds.disk.Remove(f.name) // best effort: a dead process's temp files vanish
		}
	}
	if len(v.files) == 0 {
		vfs.Unregister(name)
	}
	ds.mu.Unlock()
	if ds.refs--; ds.refs == 0 {
		delete(regDisks, ds.disk)
	}
}

// diskVFS is one registration of a disk.
type diskVFS struct {
	name  string
	ds    *diskState
	files []*file // open files; guarded by ds.mu
	dead  bool    // unregistered; guarded by ds.mu
}

var _ vfs.VFS = (*diskVFS)(nil)

// Open implements vfs.VFS.
func (v *diskVFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	ds := v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if v.dead {
		return nil, flags, sqlite3.CANTOPEN
	}
	create := flags&vfs.OPEN_CREATE != 0
	temp := false
	if name == "" {
		ds.temp++
		name = tempPrefix + strconv.FormatUint(ds.temp, 10)
		create, temp = true, true
	}
	nf, err := ds.disk.Open(name, create)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, flags, vfs.SystemError(err, sqlite3.CANTOPEN)
		}
		return nil, flags, mapErr(err, sqlite3.ExtendedErrorCode(sqlite3.CANTOPEN))
	}
	if temp {
		// A temporary file starts empty, whatever an earlier crash left under its name.
		if err := nf.Truncate(0); err != nil {
			nf.Close()
			return nil, flags, mapErr(err, sqlite3.ExtendedErrorCode(sqlite3.CANTOPEN))
		}
	}
	ls := ds.locks[name]
	if ls == nil {
		ls = &lockState{}
		ds.locks[name] = ls
	}
	ls.handles++
	f := &file{
		v:             v,
		name:          name,
		f:             nf,
		ls:            ls,
		readOnly:      flags&vfs.OPEN_READONLY != 0,
		deleteOnClose: flags&vfs.OPEN_DELETEONCLOSE != 0,
	}
	v.files = append(v.files, f)
	return f, flags, nil
}

// Delete implements vfs.VFS.
func (v *diskVFS) Delete(name string, syncDir bool) error {
	ds := v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if v.dead {
		return sqlite3.IOERR_DELETE
	}
	err := ds.disk.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return vfs.SystemError(err, sqlite3.IOERR_DELETE_NOENT)
	}
	return mapErr(err, sqlite3.IOERR_DELETE)
}

// Access implements vfs.VFS: a file is readable and writable when it exists.
func (v *diskVFS) Access(name string, flags vfs.AccessFlag) (bool, error) {
	ds := v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if v.dead {
		return false, sqlite3.IOERR_ACCESS
	}
	f, err := ds.disk.Open(name, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, mapErr(err, sqlite3.IOERR_ACCESS)
	}
	f.Close()
	return true, nil
}

// FullPathname implements vfs.VFS: disk names are flat, so a name is its own full path.
func (v *diskVFS) FullPathname(name string) (string, error) { return name, nil }

// file is an open SQLite file on the disk.
type file struct {
	v             *diskVFS
	name          string
	f             node.File // nil once closed or released
	ls            *lockState
	lock          vfs.LockLevel
	heldReserved  bool // this handle holds ls.reserved
	readOnly      bool
	deleteOnClose bool
}

var (
	_ vfs.File          = (*file)(nil)
	_ vfs.FileLockState = (*file)(nil)
)

// release drops the handle's locks and its place in the lock table, and closes the disk
// file. Called with ds.mu held.
func (f *file) release() error {
	if f.f == nil {
		return nil
	}
	f.unlockTo(vfs.LOCK_NONE)
	ds := f.v.ds
	if f.ls.handles--; f.ls.handles == 0 {
		delete(ds.locks, f.name)
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Close implements vfs.File.
func (f *file) Close() error {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if i := slices.Index(f.v.files, f); i >= 0 {
		f.v.files = slices.Delete(f.v.files, i, i+1)
		if f.v.dead && len(f.v.files) == 0 {
			vfs.Unregister(f.v.name)
		}
	}
	if f.f == nil {
		return nil
	}
	err := f.release()
	if f.deleteOnClose {
		if rerr := ds.disk.Remove(f.name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return mapErr(err, sqlite3.IOERR_CLOSE)
}

// errClosed is what a call on a file released by Unregister gets.
var errClosed = errors.New("sqlitevfs: file of an unregistered VFS")

// ReadAt implements vfs.File. A read past the end returns what it read and io.EOF, which
// SQLite turns into SQLITE_IOERR_SHORT_READ with the rest zeroed, as it expects.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return 0, vfs.SystemError(errClosed, sqlite3.IOERR_READ)
	}
	n, err := f.f.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return n, io.EOF
	}
	return n, mapErr(err, sqlite3.IOERR_READ)
}

// WriteAt implements vfs.File.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return 0, vfs.SystemError(errClosed, sqlite3.IOERR_WRITE)
	}
	n, err := f.f.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, mapErr(err, sqlite3.IOERR_WRITE)
}

// Truncate implements vfs.File.
func (f *file) Truncate(size int64) error {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return vfs.SystemError(errClosed, sqlite3.IOERR_TRUNCATE)
	}
	return mapErr(f.f.Truncate(size), sqlite3.IOERR_TRUNCATE)
}

// Sync implements vfs.File: every flag means node.File.Sync.
func (f *file) Sync(flags vfs.SyncFlag) error {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return vfs.SystemError(errClosed, sqlite3.IOERR_FSYNC)
	}
	return mapErr(f.f.Sync(), sqlite3.IOERR_FSYNC)
}

// Size implements vfs.File.
func (f *file) Size() (int64, error) {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return 0, vfs.SystemError(errClosed, sqlite3.IOERR_FSTAT)
	}
	n, err := f.f.Size()
	return n, mapErr(err, sqlite3.IOERR_FSTAT)
}

// SectorSize implements vfs.File.
func (f *file) SectorSize() int { return SectorSize }

// DeviceCharacteristics implements vfs.File: none, so SQLite assumes the worst of the disk.
func (f *file) DeviceCharacteristics() vfs.DeviceCharacteristic { return 0 }

// LockState implements vfs.FileLockState.
func (f *file) LockState() vfs.LockLevel {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return f.lock
}

// Lock implements vfs.File: it raises this handle's lock to SHARED, RESERVED or EXCLUSIVE,
// or returns SQLITE_BUSY when another handle's lock conflicts. A failed EXCLUSIVE keeps
// PENDING, which bars new readers until the writer gets through or gives up.
func (f *file) Lock(lock vfs.LockLevel) error {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return vfs.SystemError(errClosed, sqlite3.IOERR_LOCK)
	}
	if f.lock >= lock {
		return nil
	}
	if f.readOnly && lock >= vfs.LOCK_RESERVED {
		return sqlite3.IOERR_LOCK
	}
	ls := f.ls
	switch lock {
	case vfs.LOCK_SHARED:
		if ls.pending || ls.excl {
			return sqlite3.BUSY
		}
		ls.shared++
		f.lock = vfs.LOCK_SHARED
	case vfs.LOCK_RESERVED:
		if f.lock != vfs.LOCK_SHARED {
			return sqlite3.IOERR_LOCK
		}
		if ls.reserved || ls.pending || ls.excl {
			return sqlite3.BUSY
		}
		ls.reserved, f.heldReserved = true, true
		f.lock = vfs.LOCK_RESERVED
	case vfs.LOCK_EXCLUSIVE:
		if f.lock < vfs.LOCK_SHARED {
			return sqlite3.IOERR_LOCK
		}
		if f.lock < vfs.LOCK_PENDING {
			// Another handle's RESERVED or PENDING means another writer: back off.
			if ls.pending || (ls.reserved && !f.heldReserved) {
				return sqlite3.BUSY
			}
			ls.pending = true
			f.lock = vfs.LOCK_PENDING
		}
		if ls.shared > 1 {
			return sqlite3.BUSY
		}
		ls.excl = true
		f.lock = vfs.LOCK_EXCLUSIVE
	default:
		return sqlite3.IOERR_LOCK
	}
	return nil
}

// Unlock implements vfs.File: it lowers this handle's lock to SHARED or NONE.
func (f *file) Unlock(lock vfs.LockLevel) error {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return nil
	}
	f.unlockTo(lock)
	return nil
}

// unlockTo lowers the lock; called with ds.mu held.
func (f *file) unlockTo(lock vfs.LockLevel) {
	if f.lock <= lock {
		return
	}
	ls := f.ls
	if f.lock == vfs.LOCK_EXCLUSIVE {
		ls.excl = false
	}
	if f.lock >= vfs.LOCK_PENDING {
		ls.pending = false
	}
	if f.heldReserved {
		ls.reserved, f.heldReserved = false, false
	}
	if lock < vfs.LOCK_SHARED {
		ls.shared--
	}
	f.lock = lock
}

// CheckReservedLock implements vfs.File: whether any handle holds RESERVED or above.
func (f *file) CheckReservedLock() (bool, error) {
	ds := f.v.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f.f == nil {
		return false, vfs.SystemError(errClosed, sqlite3.IOERR_CHECKRESERVEDLOCK)
	}
	if f.lock >= vfs.LOCK_RESERVED {
		return true, nil
	}
	return f.ls.reserved || f.ls.pending || f.ls.excl, nil
}

// mapErr tags a disk error with the SQLite code it stands for: SQLITE_FULL for ENOSPC,
// otherwise def. The error stays wrapped inside the *sqlite3.Error the caller sees.
func mapErr(err error, def sqlite3.ExtendedErrorCode) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC):
		return vfs.SystemError(err, sqlite3.FULL)
	default:
		return vfs.SystemError(err, def)
	}
}
