package sqlitevfs

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/sim"
)

type rows map[int64][]byte

// workload runs a seeded workload on fd: a table, a few committed transactions and a last
// one, stopping at the first error (the crash).
type workload struct {
	seed uint64
	// committed is the content after the last COMMIT that returned; inDoubt, when not nil,
	// is the content had the transaction whose COMMIT was cut short committed.
	committed, inDoubt rows
	// lastStart and end count the disk's mutating calls before the last transaction and
	// at the end.
	lastStart, end int
	err            error
}

func (w *workload) run(t *testing.T, fd *faultDisk, vfsName string) *sqlite3.Conn {
	rng := rand.New(rand.NewPCG(w.seed, 7))
	c, err := sqlite3.Open("file:catalog.db?vfs=" + vfsName)
	if err != nil {
		t.Fatalf("seed %d: open: %v", w.seed, err)
	}
	mode := []string{"DELETE", "TRUNCATE", "PERSIST"}[w.seed%3]
	if err := c.Exec(`PRAGMA page_size=1024; PRAGMA cache_size=10; PRAGMA journal_mode=` + mode); err != nil {
		t.Fatalf("seed %d: pragmas: %v", w.seed, err)
	}
	w.committed = rows{}
	exec := func(sql string, args ...any) error {
		s, _, err := c.Prepare(sql)
		if err != nil {
			return err
		}
		defer s.Close()
		for i, a := range args {
			switch a := a.(type) {
			case int64:
				s.BindInt64(i+1, a)
			case []byte:
				s.BindBlob(i+1, a)
			}
		}
		return s.Exec()
	}
	commit := func(next rows) bool {
		if err := exec(`COMMIT`); err != nil {
			w.inDoubt, w.err = next, err
			return false
		}
		w.committed = next
		return true
	}
	if w.err = exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)`); w.err != nil {
		return c
	}
	nextID := int64(1)
	txs := 3 + rng.IntN(3)
	for tx := range txs {
		if tx == txs-1 {
			w.lastStart = fd.ops
		}
		next := maps.Clone(w.committed)
		if w.err = exec(`BEGIN`); w.err != nil {
			return c
		}
		for range 2 + rng.IntN(8) {
			ids := slices.Sorted(maps.Keys(next))
			blob := make([]byte, 1+rng.IntN(3000))
			for i := range blob {
				blob[i] = byte(rng.Uint32())
			}
			switch op := rng.IntN(4); {
			case op <= 1 || len(ids) == 0:
				w.err = exec(`INSERT INTO t(id, v) VALUES (?, ?)`, nextID, blob)
				next[nextID] = blob
				nextID++
			case op == 2:
				id := ids[rng.IntN(len(ids))]
				w.err = exec(`UPDATE t SET v = ? WHERE id = ?`, blob, id)
				next[id] = blob
			default:
				id := ids[rng.IntN(len(ids))]
				w.err = exec(`DELETE FROM t WHERE id = ?`, id)
				delete(next, id)
			}
			if w.err != nil {
				return c
			}
		}
		if !commit(next) {
			return c
		}
	}
	w.end = fd.ops
	return c
}

func readRows(c *sqlite3.Conn) (rows, error) {
	s, _, err := c.Prepare(`SELECT id, v FROM t`)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	got := rows{}
	for s.Step() {
		got[s.ColumnInt64(0)] = slices.Clone(s.ColumnBlob(1, nil))
	}
	return got, s.Err()
}

func sameRows(a, b rows) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

func describe(r rows) string {
	return fmt.Sprint(slices.Sorted(maps.Keys(r)))
}

// TestCrashSafety cuts the power at a seeded mutating disk call of the last transaction
// (for one seed in five, of the whole workload) and checks that the reopened database is
// intact and holds exactly the committed transactions (plus, when COMMIT itself was cut
// short, possibly the last one, whole).
func TestCrashSafety(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 30
	}
	var old, whole, journals int
	for seed := range uint64(seeds) {
		// Dry run: how many mutating calls, and where the last transaction starts.
		dry := &workload{seed: seed}
		dd := &faultDisk{Disk: sim.NewDisk()}
		name := Register(dd)
		c := dry.run(t, dd, name)
		if dry.err != nil {
			t.Fatalf("seed %d: dry run: %v", seed, dry.err)
		}
		c.Close()
		Unregister(name)

		rng := rand.New(rand.NewPCG(seed, 8))
		from := dry.lastStart
		if rng.IntN(5) == 0 {
			from = 0
		}
		crashAt := from + 1 + rng.IntN(dry.end-from)

		disk := sim.NewDisk()
		fd := &faultDisk{Disk: disk, crashAt: crashAt, onCrash: disk.PowerFail}
		w := &workload{seed: seed}
		name = Register(fd)
		c = w.run(t, fd, name)
		if !fd.crashed || w.err == nil {
			t.Fatalf("seed %d: no crash at call %d of %d (err %v)", seed, crashAt, dry.end, w.err)
		}
		// The process is dead: its locks go with it; closing its connection later fails
		// cleanly.
		Unregister(name)
		c.Close()

		if j, _ := disk.List("catalog.db-journal"); len(j) > 0 {
			journals++
		}
		name = Register(disk)
		c2, err := sqlite3.Open("file:catalog.db?vfs=" + name)
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		if got := queryString(t, c2, `PRAGMA integrity_check`); got != "ok" {
			t.Fatalf("seed %d (crash at call %d of %d): integrity_check = %q", seed, crashAt, dry.end, got)
		}
		got, err := readRows(c2)
		switch {
		case err != nil && len(w.committed) == 0 && fd.ops <= dry.lastStart:
			// The crash came before the table's creation was durable.
		case err != nil:
			t.Fatalf("seed %d: read: %v", seed, err)
		case sameRows(got, w.committed):
			old++
		case w.inDoubt != nil && sameRows(got, w.inDoubt):
			whole++
		default:
			t.Fatalf("seed %d (crash at call %d of %d, %v): rows %s, committed %s, in doubt %s",
				seed, crashAt, dry.end, w.err, describe(got), describe(w.committed), describe(w.inDoubt))
		}
		if err := c2.Close(); err != nil {
			t.Fatal(err)
		}
		Unregister(name)
	}
	t.Logf("%d seeds: %d recovered the last commit, %d kept an interrupted commit whole; %d left a journal",
		seeds, old, whole, journals)
}
