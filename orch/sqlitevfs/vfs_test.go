package sqlitevfs

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/sim"
)

func mustExec(t testing.TB, c *sqlite3.Conn, sql string) {
	t.Helper()
	if err := c.Exec(sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func wantErr(t testing.TB, err error, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

// TestLocking: connections of one process on one disk, through one registration or two,
// never write at the same time.
func TestLocking(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("one-registration=%v", shared), func(t *testing.T) {
			d := nodetest.NewMemDisk()
			n1 := register(t, d)
			n2, n3 := n1, n1
			if !shared {
				n2, n3 = register(t, d), register(t, d)
			}
			a, b, c := open(t, n1, "catalog.db"), open(t, n2, "catalog.db"), open(t, n3, "catalog.db")
			defer a.Close()
			defer b.Close()
			defer c.Close()
			mustExec(t, a, `CREATE TABLE t (x)`)

			// A writer (RESERVED) shuts out other writers, not readers.
			mustExec(t, a, `BEGIN IMMEDIATE; INSERT INTO t VALUES (1)`)
			wantErr(t, b.Exec(`INSERT INTO t VALUES (2)`), sqlite3.BUSY, "insert while another writes")
			wantErr(t, b.Exec(`BEGIN IMMEDIATE`), sqlite3.BUSY, "begin immediate while another writes")
			if got := queryString(t, b, `SELECT count(*) FROM t`); got != "0" {
				t.Fatalf("reader sees %s rows of an uncommitted transaction", got)
			}
			mustExec(t, a, `COMMIT`)
			mustExec(t, b, `INSERT INTO t VALUES (2)`)

			// A reader's SHARED lock holds a commit back; the waiting writer's PENDING lock
			// keeps new readers out until it commits.
			mustExec(t, b, `BEGIN`)
			if got := queryString(t, b, `SELECT count(*) FROM t`); got != "2" {
				t.Fatalf("count = %s", got)
			}
			mustExec(t, a, `BEGIN; INSERT INTO t VALUES (3)`)
			wantErr(t, a.Exec(`COMMIT`), sqlite3.BUSY, "commit while another reads")
			// c has not read the schema yet, so Prepare is the first read.
			_, _, err := c.Prepare(`SELECT count(*) FROM t`)
			wantErr(t, err, sqlite3.BUSY, "read while a writer is pending")
			mustExec(t, b, `COMMIT`)
			mustExec(t, a, `COMMIT`)
			if got := queryString(t, c, `SELECT group_concat(x) FROM t`); got != "1,2,3" {
				t.Fatalf("rows = %s", got)
			}
			if got := queryString(t, c, `PRAGMA integrity_check`); got != "ok" {
				t.Fatal(got)
			}
		})
	}
}

// TestLockingRandomInterleaving drives three connections through seeded random steps and
// checks the lock table after each: at most one handle at RESERVED or above, and none
// besides an EXCLUSIVE one at SHARED. Every insert that committed is there at the end.
func TestLockingRandomInterleaving(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := nodetest.NewMemDisk()
		var names []string
		var conns []*sqlite3.Conn
		for range 3 {
			n := register(t, d)
			names = append(names, n)
			c := open(t, n, "catalog.db")
			defer c.Close()
			conns = append(conns, c)
		}
		mustExec(t, conns[0], `CREATE TABLE t (x)`)
		pending := make([]int, len(conns)) // inserts in each connection's open transaction
		committed, busy := 0, 0
		for step := range 400 {
			i := rng.IntN(len(conns))
			c := conns[i]
			var err error
			switch rng.IntN(5) {
			case 0:
				if c.GetAutocommit() {
					err = c.Exec([]string{`BEGIN`, `BEGIN IMMEDIATE`}[rng.IntN(2)])
				}
			case 1:
				err = c.Exec(`INSERT INTO t VALUES (1)`)
				if err == nil {
					if c.GetAutocommit() {
						committed++
					} else {
						pending[i]++
					}
				}
			case 2:
				_, err = readRowsCount(c)
			case 3:
				if !c.GetAutocommit() {
					if err = c.Exec(`COMMIT`); err == nil {
						committed += pending[i]
						pending[i] = 0
					}
				}
			case 4:
				if !c.GetAutocommit() {
					err = c.Exec(`ROLLBACK`)
					pending[i] = 0
				}
			}
			if err != nil {
				if !errors.Is(err, sqlite3.BUSY) {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				busy++
				if c.GetAutocommit() {
					pending[i] = 0 // SQLite rolled the transaction back
				}
			}
			checkLockTable(t, names)
		}
		for i, c := range conns {
			if !c.GetAutocommit() {
				if err := c.Exec(`ROLLBACK`); err != nil {
					t.Fatal(err)
				}
				pending[i] = 0
			}
		}
		if n, err := readRowsCount(conns[0]); err != nil || n != committed {
			t.Fatalf("seed %d: %d rows, %d committed (%v)", seed, n, committed, err)
		}
		if busy == 0 {
			t.Fatalf("seed %d: no conflict at all", seed)
		}
	}
}

func readRowsCount(c *sqlite3.Conn) (int, error) {
	s, _, err := c.Prepare(`SELECT count(*) FROM t`)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if !s.Step() {
		return 0, s.Err()
	}
	return s.ColumnInt(0), nil
}

func checkLockTable(t *testing.T, names []string) {
	t.Helper()
	regMu.Lock()
	defer regMu.Unlock()
	var writers, excl, shared int
	for _, n := range names {
		v := regVFS[n]
		for _, f := range v.files {
			if f.name != "catalog.db" {
				continue
			}
			switch l := f.lock; {
			case l == 4:
				excl++
				writers++
			case l >= 2:
				writers++
			case l == 1:
				shared++
			}
		}
	}
	if writers > 1 || excl > 0 && shared > 0 {
		t.Fatalf("lock table: %d writers, %d exclusive, %d shared", writers, excl, shared)
	}
}

// TestConcurrentGoroutines: connections on goroutines with a busy timeout all get their
// writes in.
func TestConcurrentGoroutines(t *testing.T) {
	d := nodetest.NewMemDisk()
	name := register(t, d)
	c0 := open(t, name, "catalog.db")
	mustExec(t, c0, `CREATE TABLE t (x)`)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			c, err := sqlite3.Open("file:catalog.db?vfs=" + name + "&_pragma=busy_timeout(10000)")
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close()
			for range each {
				if err := c.Exec(`BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT`); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := readRowsCount(c0); err != nil || n != workers*each {
		t.Fatalf("%d rows (%v), want %d", n, err, workers*each)
	}
	c0.Close()
}

func TestENOSPCIsFull(t *testing.T) {
	fd := &faultDisk{Disk: nodetest.NewMemDisk()}
	c := open(t, register(t, fd), "catalog.db")
	defer c.Close()
	mustExec(t, c, `CREATE TABLE t (x); INSERT INTO t VALUES (1)`)
	fd.writeErr = fmt.Errorf("write: %w", syscall.ENOSPC)
	err := c.Exec(`INSERT INTO t VALUES (2)`)
	wantErr(t, err, sqlite3.FULL, "insert on a full disk")
	fd.writeErr = nil
	mustExec(t, c, `INSERT INTO t VALUES (3)`)
	if got := queryString(t, c, `SELECT group_concat(x) FROM t`); got != "1,3" {
		t.Fatalf("rows = %s", got)
	}
	if got := queryString(t, c, `PRAGMA integrity_check`); got != "ok" {
		t.Fatal(got)
	}
}

func TestFailingSyncIsIOErrFsync(t *testing.T) {
	fd := &faultDisk{Disk: sim.NewDisk()}
	c := open(t, register(t, fd), "catalog.db")
	defer c.Close()
	mustExec(t, c, `CREATE TABLE t (x); INSERT INTO t VALUES (1)`)
	fd.syncErr = fmt.Errorf("fsync: %w", syscall.EIO)
	err := c.Exec(`INSERT INTO t VALUES (2)`)
	wantErr(t, err, sqlite3.IOERR_FSYNC, "insert with a failing fsync")
	fd.syncErr = nil
	mustExec(t, c, `INSERT INTO t VALUES (3)`)
	if got := queryString(t, c, `SELECT group_concat(x) FROM t`); got != "1,3" {
		t.Fatalf("rows = %s", got)
	}
}

func TestDeadSimDiskIsIOErr(t *testing.T) {
	d := sim.NewDisk()
	c := open(t, register(t, d), "catalog.db")
	defer c.Close()
	mustExec(t, c, `CREATE TABLE t (x)`)
	d.FailWrites = true
	wantErr(t, c.Exec(`INSERT INTO t VALUES (1)`), sqlite3.IOERR, "insert on a dead disk")
}

func TestCorruption(t *testing.T) {
	setup := func(t *testing.T) (node.Disk, string) {
		d := nodetest.NewMemDisk()
		name := register(t, d)
		c := open(t, name, "catalog.db")
		mustExec(t, c, `PRAGMA page_size=1024; CREATE TABLE t (x); INSERT INTO t VALUES (1)`)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		return d, name
	}
	poke := func(t *testing.T, d node.Disk, off int64, b byte) {
		f, err := d.Open("catalog.db", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{b}, off); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	t.Run("header", func(t *testing.T) {
		d, name := setup(t)
		poke(t, d, 0, 'X') // "SQLite format 3" -> "XQLite format 3"
		c, err := sqlite3.Open("file:catalog.db?vfs=" + name)
		if err == nil {
			defer c.Close()
			err = c.Exec(`SELECT * FROM t`)
		}
		wantErr(t, err, sqlite3.NOTADB, "query of a clobbered header")
	})
	t.Run("btree page", func(t *testing.T) {
		d, name := setup(t)
		poke(t, d, 1024, 0x55) // page 2's b-tree page type
		c := open(t, name, "catalog.db")
		defer c.Close()
		wantErr(t, c.Exec(`SELECT * FROM t`), sqlite3.CORRUPT, "query of a corrupt page")
	})
}

// TestTempFilesAndVacuumInto: temporary files live on the disk under deterministic names and
// go when closed; VACUUM INTO writes a second database through the same VFS.
func TestTempFilesAndVacuumInto(t *testing.T) {
	d := sim.NewDisk()
	c := open(t, register(t, d), "catalog.db")
	mustExec(t, c, `PRAGMA temp_store=FILE; PRAGMA cache_size=10; PRAGMA temp.cache_size=10; CREATE TABLE t (x)`)
	mustExec(t, c, `CREATE TEMP TABLE s (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO s SELECT zeroblob(500) FROM n`)
	files, _ := d.List("")
	if !strings.Contains(strings.Join(files, " "), tempPrefix) {
		t.Fatalf("no temp file on the disk: %q", files)
	}
	mustExec(t, c, `INSERT INTO t VALUES (1), (2); VACUUM INTO 'backup.db'`)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ = d.List("")
	if strings.Join(files, " ") != "backup.db catalog.db" {
		t.Fatalf("files after close: %q", files)
	}
	b := open(t, register(t, d), "backup.db")
	defer b.Close()
	if got := queryString(t, b, `SELECT group_concat(x) FROM t`); got != "1,2" {
		t.Fatalf("backup rows = %s", got)
	}
}

// TestDeterministicBytes: with crypto/rand.Reader set to DeterministicRandom, the same
// workload writes the same bytes, journal nonces included; another seed changes them.
func TestDeterministicBytes(t *testing.T) {
	saved := crand.Reader
	t.Cleanup(func() { crand.Reader = saved })
	trace := func(seed uint64) uint64 {
		crand.Reader = DeterministicRandom(seed)
		fd := &faultDisk{Disk: sim.NewDisk(), trace: fnv.New64a()}
		name := Register(fd)
		defer Unregister(name)
		w := &workload{seed: 3}
		c := w.run(t, fd, name)
		if w.err != nil {
			t.Fatal(w.err)
		}
		c.Close()
		return fd.trace.(interface{ Sum64() uint64 }).Sum64()
	}
	a, b, other := trace(1), trace(1), trace(2)
	if a != b {
		t.Fatalf("same seed, different writes: %x != %x", a, b)
	}
	if a == other {
		t.Fatalf("the seed does not reach SQLite's randomness (crypto/rand.Reader not honoured?)")
	}
}

func TestDeterministicRandom(t *testing.T) {
	read := func(r io.Reader) []byte {
		b := make([]byte, 100)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(DeterministicRandom(5)), read(DeterministicRandom(5))) {
		t.Fatal("same seed, different bytes")
	}
	if bytes.Equal(read(DeterministicRandom(5)), read(DeterministicRandom(6))) {
		t.Fatal("different seeds, same bytes")
	}
	r := DeterministicRandom(7)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { read(r) })
	}
	wg.Wait()
}

func TestUnregisterReleasesLocks(t *testing.T) {
	d := nodetest.NewMemDisk()
	dead := Register(d)
	c := open(t, dead, "catalog.db")
	mustExec(t, c, `CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)`)
	other := open(t, register(t, d), "catalog.db")
	defer other.Close()
	wantErr(t, other.Exec(`INSERT INTO t VALUES (2)`), sqlite3.BUSY, "insert while the other writes")
	Unregister(dead) // the writer's process dies
	mustExec(t, other, `INSERT INTO t VALUES (2)`)
	if err := c.Exec(`COMMIT`); err == nil {
		t.Fatal("a dead connection committed")
	}
	c.Close() // must not panic
	if got := queryString(t, other, `SELECT group_concat(x) FROM t`); got != "2" {
		t.Fatalf("rows = %s", got)
	}
	Unregister(dead) // twice: ignored
}

func BenchmarkInsertTx1Row(b *testing.B) {
	c := open(b, register(b, nodetest.NewMemDisk()), "catalog.db")
	defer c.Close()
	mustExec(b, c, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, size INTEGER)`)
	s, _, err := c.Prepare(`INSERT INTO t(name, size) VALUES (?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := 0
	for b.Loop() {
		i++
		s.BindText(1, "model")
		s.BindInt(2, i)
		if err := s.Exec(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
}
