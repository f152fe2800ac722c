package catalog_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/cryptotest"
	"time"

	"pgregory.net/rapid"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/sim"
)

// crashOp is one step of a hive's life in TestPropCrashAtKthWrite.
type crashOp struct {
	kind   string // "register", "get", "cleanup", "backup"
	model  int    // register, get: index in propPool
	adopt  bool   // cleanup
	backup int    // backup: which of two backup names
}

func (o crashOp) String() string {
	switch o.kind {
	case "register", "get":
		return fmt.Sprintf("%s %d", o.kind, o.model)
	case "cleanup":
		return fmt.Sprintf("cleanup adopt=%v", o.adopt)
	}
	return fmt.Sprintf("backup %d", o.backup)
}

var crashOpGen = rapid.Custom(func(t *rapid.T) crashOp {
	op := crashOp{kind: rapid.SampledFrom([]string{"register", "register", "register", "get", "cleanup", "backup"}).Draw(t, "kind")}
	switch op.kind {
	case "register", "get":
		op.model = rapid.IntRange(0, len(propPool)-1).Draw(t, "model")
	case "cleanup":
		op.adopt = rapid.Bool().Draw(t, "adopt")
	case "backup":
		op.backup = rapid.IntRange(1, 2).Draw(t, "backup")
	}
	return op
})

// crashRun is one run of a list of crashOps by one hive process.
type crashRun struct {
	disk  *sim.Disk
	cd    *countingDisk
	vfs   string
	c     *catalog.Catalog // nil when Open failed (the crash hit it)
	clock *propClock
	// acked are the registrations that returned without error, by ID.
	acked map[string]catalog.Model
}

// runCrashOps runs ops on a fresh machine whose disk loses power at its crashAt-th mutation
// (0: never). Every run of the same ops makes the same disk operations: SQLite's randomness
// is seeded the same each time. The run stops at the first op after the crash.
func runCrashOps(t *testing.T, rt *rapid.T, ops []crashOp, crashAt int, lands bool) *crashRun {
	cryptotest.SetGlobalRandom(t, 1)
	r := &crashRun{disk: sim.NewDisk(), clock: &propClock{now: t0}, acked: map[string]catalog.Model{}}
	r.cd = &countingDisk{d: r.disk, crashAt: crashAt, lands: lands}
	r.vfs = sqlitevfs.Register(r.cd)
	vfs := r.vfs
	rt.Cleanup(func() { sqlitevfs.Unregister(vfs) })
	c, _, err := catalog.Open(propOptions(r.cd, r.vfs, r.clock))
	if err != nil {
		if r.cd.frozen {
			return r
		}
		rt.Fatalf("Open: %v", err)
	}
	r.c = c
	for i, op := range ops {
		if r.cd.frozen {
			break
		}
		r.clock.now = r.clock.now.Add(time.Second)
		switch op.kind {
		case "register":
			m, data := poolModel(op.model, r.clock.now)
			if !fileIntact(r.cd, m.LocalPath, data) {
				if err := node.WriteFileAtomic(r.cd, m.LocalPath, data); err != nil {
					if r.cd.frozen {
						break
					}
					rt.Fatalf("op %d (%v): writing the model file: %v", i, op, err)
				}
			}
			_, err := r.c.Register(m)
			if err == nil {
				if _, ok := r.acked[m.ID]; !ok {
					r.acked[m.ID] = m
				}
			} else if !r.cd.frozen {
				rt.Fatalf("op %d (%v): Register: %v", i, op, err)
			}
		case "get":
			want, _ := poolModel(op.model, r.clock.now)
			got, found, err := r.c.Get(want.ID)
			if r.cd.frozen {
				break
			}
			must(rt, err, "op %d (%v): Get", i, op)
			acked, registered := r.acked[want.ID]
			if found != registered {
				rt.Fatalf("op %d (%v): Get(%s) found=%v, but registered=%v", i, op, want.ID, found, registered)
			}
			if found {
				if d := diffModels([]catalog.Model{acked}, []catalog.Model{got}); d != "" {
					rt.Fatalf("op %d (%v): Get(%s) (-want +got):\n%s", i, op, want.ID, d)
				}
			}
		case "cleanup":
			sum, err := r.c.Cleanup(op.adopt)
			if r.cd.frozen {
				break
			}
			must(rt, err, "op %d (%v): Cleanup", i, op)
			if sum.RowsRemoved != 0 || sum.FilesAdopted != 0 {
				rt.Fatalf("op %d (%v): Cleanup removed %v and adopted %v, with every file intact and registered",
					i, op, sum.Removed, sum.Adopted)
			}
		case "backup":
			err := r.c.Backup(fmt.Sprintf("backups/catalog-%d.db", op.backup))
			if !r.cd.frozen {
				must(rt, err, "op %d (%v): Backup", i, op)
			}
		}
	}
	return r
}

// catalog/disk-faults, as a property: whatever the hive was doing (registering, cleaning up,
// backing up) when the machine lost power at its k-th disk mutation, for a rapid-drawn k,
// with or without torn writes, the catalog opens afterwards, keeps every acknowledged
// registration whose file is intact, and holds no row whose file is missing or invalid.
func TestPropCrashAtKthWrite(t *testing.T) {
	var checks, tornRuns, rebuiltWithBackup, openEvents, maxWrites int
	rapid.Check(t, func(rt *rapid.T) {
		ops := rapid.SliceOfN(crashOpGen, 1, 8).Draw(rt, "ops")
		dry := runCrashOps(t, rt, ops, 0, false)
		total := dry.cd.writes
		must(rt, dry.c.Close(), "dry run: Close")
		sqlitevfs.Unregister(dry.vfs)
		maxWrites = max(maxWrites, total)

		k := rapid.IntRange(1, total).Draw(rt, "k")
		lands := rapid.Bool().Draw(rt, "the k-th mutation lands")
		torn := rapid.Bool().Draw(rt, "torn power failure")
		seed := drawSeed(rt, "power failure seed")
		r := runCrashOps(t, rt, ops, k, lands)
		if !r.cd.frozen {
			rt.Fatalf("the run made %d mutations, fewer than the dry run's %d: runs are not deterministic", r.cd.writes, total)
		}
		// The hive process dies with the machine: its VFS goes first (releasing its locks),
		// then the disk loses what was not synced.
		sqlitevfs.Unregister(r.vfs)
		if torn {
			r.disk.PowerFailTorn(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
			tornRuns++
		} else {
			r.disk.PowerFail()
		}
		if r.c != nil {
			// Frees the dead connection's memory only: its VFS is unregistered and its disk
			// frozen, so nothing it does reaches the disk.
			r.c.Close()
		}

		// The machine reboots; a new hive process opens the catalog.
		cd := &countingDisk{d: r.disk}
		vfs := sqlitevfs.Register(cd)
		defer sqlitevfs.Unregister(vfs)
		r.clock.now = r.clock.now.Add(time.Minute)
		c, events, err := catalog.Open(propOptions(cd, vfs, r.clock))
		if err != nil {
			rt.Fatalf("Open after a crash at mutation %d of %d (lands=%v, torn=%v): %v", k, total, lands, torn, err)
		}
		defer c.Close()
		openEvents += len(events)
		for _, ev := range events {
			rt.Logf("event after the crash: %+v", ev)
			if ev.Backup != "" {
				rebuiltWithBackup++
				if ok, _ := exists(r.disk, ev.Backup); !ok {
					rt.Fatalf("event names the backup %s, which does not exist", ev.Backup)
				}
			}
		}
		ids := make([]string, 0, len(r.acked))
		for id := range r.acked { //det:sorted below
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			want := r.acked[id]
			_, data := poolModel(poolIndex(id), t0)
			if !fileIntact(r.disk, want.LocalPath, data) {
				continue
			}
			got, found, err := c.Get(id)
			must(rt, err, "Get(%s) after the crash", id)
			if !found {
				rt.Fatalf("the acknowledged registration of %s was lost in a crash at mutation %d of %d (lands=%v, torn=%v)",
					id, k, total, lands, torn)
			}
			if d := diffModels([]catalog.Model{want}, []catalog.Model{got}, ignoreDownloadedAt); d != "" {
				rt.Fatalf("acknowledged %s changed in the crash (-want +got):\n%s", id, d)
			}
		}
		rows := listAllProviders(rt, c, propProviders, 2)
		if n := rawQueryInt(rt, vfs, catalog.DefaultPath, `SELECT count(*) FROM models`); n != len(rows) {
			rt.Fatalf("the catalog holds %d rows, %d of them under the known providers", n, len(rows))
		}
		for _, row := range rows {
			i := poolIndex(row.ID)
			if i < 0 {
				rt.Fatalf("row %s is not a model anyone registered", row.ID)
			}
			want, _ := poolModel(i, t0)
			if d := diffModels([]catalog.Model{want}, []catalog.Model{row}, ignoreDownloadedAt); d != "" {
				rt.Fatalf("row %s (-want +got):\n%s", row.ID, d)
			}
			checkRowFile(rt, r.disk, row)
		}
		checks++
	})
	t.Logf("%d checks, up to %d disk mutations a run, %d torn power failures, %d events at reopen (%d naming a backup)",
		checks, maxWrites, tornRuns, openEvents, rebuiltWithBackup)
}

// exists reports whether the file name is on d.
func exists(d node.Disk, name string) (bool, error) {
	f, err := d.Open(name, false)
	if node.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, f.Close()
}
