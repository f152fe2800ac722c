// Package catalog is a hive's model catalog: one SQLite file on the machine's Disk that lists
// the model files the hive has downloaded, with what their GGUF headers say.
//
// The catalog is data the hive can always rebuild, so it protects the model files and never
// the other way round. Open checks the file (PRAGMA quick_check) and its schema version,
// migrates a version 1 catalog in one transaction, and refuses (read-only, untouched) a
// catalog newer than this code. When the file is found corrupt, at Open or by any later call
// (SQLITE_CORRUPT, SQLITE_NOTADB, an I/O error, a row breaking Model's invariants), the
// catalog reopens and checks the file in full (integrity_check, every row): a file that passes
// is kept (the error was transient, or another process already replaced the file). Otherwise
// it moves the bad file and its journal aside as "<Path>.corrupt-<time>" (never deleting
// them), creates a fresh catalog, rebuilds it from the model files in ModelsDir (GGUF header,
// size, SHA-256), reports one Event for the user, and retries the failed call. A disk that is
// full (SQLITE_FULL)
// or an fsync that fails is not corruption: the call fails with an error that says so, and
// the transaction leaves nothing behind.
//
// The catalog is part of the deterministic core: it starts no goroutines, reads time only from
// Options.Now, and runs synchronously inside the caller's Start or Handle. Every write is one
// SQLite transaction that has committed (rollback journal, synchronous=FULL) before the call
// returns: an acknowledged registration survives a crash.
//
// Callers' duties:
//   - Open the catalog on a Disk through a VFS from sqlitevfs.Register (simulation), or with
//     VFS "" and Dir set to the disk's OS folder (real runtime). In a simulation, seed
//     crypto/rand.Reader as sqlitevfs says and set BusyTimeout to -1: a busy wait sleeps in
//     real time and, in a single-threaded run, can never see the lock released.
//   - Keep ModelsDir the same across runs: every row must name its file at ModelPath, and a
//     row that does not reads as damage (the catalog then rebuilds).
//   - Use one Catalog from one goroutine at a time; several Catalogs (hive processes) may share
//     one file. Close it on a clean shutdown; after a crash simply drop it.
//   - Put a model's file at ModelPath before registering it, write it atomically (or as
//     "<path>.partial" renamed when complete), and validate it first: Register trusts the
//     Model it is given. Remove the row before deleting the file.
//   - Hand Events (from Open and from Events) to the user: they say what was lost and where
//     the backup is.
//   - Keep ModelsDir for model files only: every other file there is reported as unreadable.
package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Defaults of Options.
const (
	// DefaultPath is the catalog's file name on the Disk.
	DefaultPath = "catalog/models.db"
	// DefaultModelsDir is the folder of the model files on the Disk.
	DefaultModelsDir = "models/"
	// DefaultBusyTimeout is how long SQLite waits for another process's lock by default.
	DefaultBusyTimeout = 5 * time.Second
)

// Names of the planted bugs of this package (see package plant).
const (
	PlantAckBeforeCommit = "catalog-ack-before-commit"
	PlantNoDedupe        = "catalog-no-dedupe"
	PlantDeleteCorrupt   = "catalog-delete-corrupt"
)

// Errors that callers map to user-facing codes. Errors match them with errors.Is, and keep the
// SQLite error too where there is one.
var (
	// ErrDiskFull: the disk had no room for the change, which was not made.
	ErrDiskFull = errors.New("disk full")
	// ErrNewerVersion: the catalog file was written by a newer rbee-hive.
	ErrNewerVersion = errors.New("catalog written by a newer rbee-hive")
	// ErrUnavailable: the catalog could not do the call (busy, fsync failed, unrecoverable).
	ErrUnavailable = errors.New("model catalog unavailable")
)

// Options configure a Catalog.
type Options struct {
	// Disk holds the catalog file, its backups and the model files. Required.
	Disk node.Disk
	// VFS is the SQLite VFS name sqlitevfs.Register returned for Disk; "" opens the file with
	// the OS's default VFS at Dir/Path (real runtime).
	VFS string
	// Dir is the OS folder of Disk's files; used, and required, only when VFS is "".
	Dir string
	// Path is the catalog's file name on Disk. Default DefaultPath.
	Path string
	// ModelsDir is the folder of the model files on Disk; it must not hold Path. Default
	// DefaultModelsDir.
	ModelsDir string
	// Now is the hive's clock (env.Now): it names backups and dates rebuilt models. Required.
	Now func() time.Time
	// Log receives what the catalog does. Default: discarded.
	Log *slog.Logger
	// Plants are the planted bugs enabled (tests and the harness only).
	Plants plant.Set
	// BusyTimeout is how long SQLite waits for another process's lock before a retry. Default
	// (zero) DefaultBusyTimeout; negative: never wait, as in a simulation, where nothing can
	// release a lock while a call waits.
	BusyTimeout time.Duration
	// VRAMEstimate gives VRAMRequired, in bytes, for a model the catalog finds on disk
	// (rebuild, adoption); pass the hive's estimate so rebuilt rows match registered ones.
	// Default (nil): 0, unknown.
	VRAMEstimate func(Model) int64
}

// withDefaults returns o with defaults filled in, or an error naming the bad field.
func (o Options) withDefaults() (Options, error) {
	if o.Disk == nil {
		return o, fmt.Errorf("catalog: %w: Options.Disk is required", ErrInvalid)
	}
	if o.Now == nil {
		return o, fmt.Errorf("catalog: %w: Options.Now is required (pass env.Now)", ErrInvalid)
	}
	if o.VFS == "" && o.Dir == "" {
		return o, fmt.Errorf("catalog: %w: Options.Dir (the disk's OS folder) is required when VFS is empty", ErrInvalid)
	}
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.ModelsDir == "" {
		o.ModelsDir = DefaultModelsDir
	}
	o.ModelsDir = dirPrefix(o.ModelsDir)
	if o.ModelsDir == "/" || strings.HasPrefix(o.Path, o.ModelsDir) {
		return o, fmt.Errorf("catalog: %w: ModelsDir %q must be a folder that does not hold the catalog %q",
			ErrInvalid, o.ModelsDir, o.Path)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	return o, nil
}

// Event kinds.
const (
	// EventRebuilt: the catalog was corrupt or missing and was rebuilt from the model files.
	EventRebuilt = "catalog-rebuilt"
)

// Event is one thing that happened to the catalog that the user must hear about.
type Event struct {
	// Kind is EventRebuilt.
	Kind string
	// Message says what happened, in one sentence.
	Message string
	// Backup is the file name on Disk where the damaged catalog was kept ("" if none).
	Backup string
	// Suggestion says what to do.
	Suggestion string
	// Rebuilt is how many models the rebuilt catalog holds.
	Rebuilt int
	// Unreadable are the files in ModelsDir that could not be read as models; they were left
	// in place and not registered.
	Unreadable []string
}

// Catalog is an open model catalog. Its methods are not safe for concurrent use.
type Catalog struct {
	o      Options
	conn   *sqlite3.Conn // nil when closed or after a failed recovery
	st     statements
	events []Event
	// pending: an insert transaction is open and acknowledged but not committed (only with
	// the plant catalog-ack-before-commit).
	pending bool
	closed  bool
	// gen is the catalog file's generation when this connection opened it.
	gen uint64
}

// Open opens the catalog at o.Path on o.Disk, creating it (and registering the model files
// already in ModelsDir) when it does not exist. The events say what Open had to repair.
// A catalog of a newer schema version gives an error matching ErrNewerVersion and is not
// modified.
func Open(o Options) (*Catalog, []Event, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	c := &Catalog{o: o}
	res, err := c.open()
	if err == nil {
		c.openEvent(res)
	}
	if err != nil && isCorruption(err) {
		err = c.recover(err, false)
	}
	if err != nil {
		c.closeConn()
		return nil, nil, c.describe("open", err)
	}
	return c, c.Events(), nil
}

// Events returns the events since the last call (or since Open), and forgets them.
func (c *Catalog) Events() []Event {
	ev := c.events
	c.events = nil
	return ev
}

// Close closes the catalog. It is idempotent.
func (c *Catalog) Close() error {
	if c.closed {
		return nil
	}
	var err error
	if c.conn != nil {
		err = c.commitPending()
	}
	c.closed = true
	if cerr := c.closeConn(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("catalog %s: close: %w", c.o.Path, err)
	}
	return nil
}

// closeConn closes the statements and the connection, if open.
func (c *Catalog) closeConn() error {
	if c.conn == nil {
		return nil
	}
	c.pending = false // an open transaction dies with the connection
	c.st.close()
	err := c.conn.Close()
	c.conn = nil
	return err
}

// do runs one public operation: it commits a pending insert (plant), runs fn, and, when fn
// fails because the catalog is corrupt, recovers and runs fn again. The first recovery keeps
// a file that passes a full check; if fn fails on it again, the second one replaces it.
func (c *Catalog) do(op string, fn func() error) error {
	if c.closed {
		panic(fmt.Sprintf("catalog %s: %s after Close", c.o.Path, op))
	}
	run := func() error {
		if c.conn == nil {
			return fmt.Errorf("%w: an earlier recovery failed; reopen the catalog", ErrUnavailable)
		}
		if err := c.commitPending(); err != nil {
			return err
		}
		if err := c.reopenIfReplaced(); err != nil {
			return err
		}
		if err := c.checkShape(); err != nil {
			return err
		}
		return fn()
	}
	err := run()
	for attempt := range recoveriesPerCallMax {
		if err == nil || !isCorruption(err) {
			break
		}
		if rerr := c.recover(err, attempt > 0); rerr != nil {
			return c.describe(op, rerr)
		}
		err = run()
	}
	c.dropCache()
	return c.describe(op, err)
}

// dropCache empties the connection's page cache, so that the next call reads the file
// again: SQLite trusts its cache while the file's change counter is unchanged, which would
// hide damage done to the file behind its back (a flipped byte, a truncation) until the next
// Open. Pages of an open transaction (the plant catalog-ack-before-commit) stay.
func (c *Catalog) dropCache() {
	if c.conn != nil {
		_ = c.conn.ReleaseMemory() // only frees memory; it cannot fail in a way that matters
	}
}

// isCorruption reports whether err means the catalog file cannot be trusted.
func isCorruption(err error) bool {
	var ce *corruptError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ce), errors.Is(err, sqlite3.CORRUPT), errors.Is(err, sqlite3.NOTADB), schemaLost(err):
		return true
	case isDiskFull(err), errors.Is(err, sqlite3.IOERR_FSYNC), errors.Is(err, sqlite3.IOERR_DIR_FSYNC),
		errors.Is(err, sqlite3.IOERR_NOMEM):
		return false
	}
	return errors.Is(err, sqlite3.IOERR)
}

func isDiskFull(err error) bool {
	return errors.Is(err, sqlite3.FULL) || errors.Is(err, syscall.ENOSPC)
}

// corruptError is corruption found by the catalog itself rather than by SQLite: a failed
// quick_check, a schema that does not match its version, a row breaking Model's invariants.
type corruptError struct{ reason string }

func (e *corruptError) Error() string { return e.reason }

// describe turns an error of op into one that says what happened and what to do. Errors the
// catalog made itself (validation, recovery) pass through.
func (c *Catalog) describe(op string, err error) error {
	var ce *corruptError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNewerVersion), errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrDiskFull):
		return err
	case isDiskFull(err):
		return fmt.Errorf("catalog %s: %s: %w (%w); nothing was changed: free space on the disk and retry",
			c.o.Path, op, ErrDiskFull, err)
	case errors.Is(err, sqlite3.IOERR_FSYNC), errors.Is(err, sqlite3.IOERR_DIR_FSYNC):
		return fmt.Errorf("catalog %s: %s: %w: the disk failed to make the change durable (%w); "+
			"the change was rolled back: retry, and check the disk if it keeps failing", c.o.Path, op, ErrUnavailable, err)
	case errors.Is(err, sqlite3.BUSY), errors.Is(err, sqlite3.LOCKED):
		return fmt.Errorf("catalog %s: %s: %w: another process held the catalog locked through %d tries (%w); retry",
			c.o.Path, op, ErrUnavailable, busyRetriesMax+1, err)
	case errors.As(err, &ce), isCorruption(err):
		return fmt.Errorf("catalog %s: %s: %w: the catalog is still unreadable after a rebuild (%w); "+
			"check the disk", c.o.Path, op, ErrUnavailable, err)
	}
	return fmt.Errorf("catalog %s: %s: %w", c.o.Path, op, err)
}
