package catalog_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Bugs TestPropRandomCorruption found, reduced to one case each. Each test asserts the right
// behaviour, and skips with "BUG: ..." while the catalog still shows the bug, so the suite
// stays green; the property leaves the bug's cases out while its knownBug... constant is set.

// bugWorld is a catalog with three registered models, open.
func bugWorld(t *testing.T) (*sim.Disk, *catalog.Catalog, *propClock, string) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	disk := sim.NewDisk()
	vfs := sqlitevfs.Register(disk)
	t.Cleanup(func() { sqlitevfs.Unregister(vfs) })
	clock := &propClock{now: t0}
	c, _, err := catalog.Open(propOptions(disk, vfs, clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i := range 3 {
		m, data := poolModel(i, t0)
		if err := node.WriteFileAtomic(disk, m.LocalPath, data); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Register(m); err != nil {
			t.Fatal(err)
		}
	}
	clock.now = clock.now.Add(time.Second)
	return disk, c, clock, vfs
}

// catalog/corruption-recovery: the catalog file loses its content while the hive has it open
// (emptied, or cut inside a page). The next calls must answer rightly or recover.
//
// BUG: emptied, every call fails with "SQL logic error: no such table: models" (SQLITE_ERROR,
// which isCorruption does not count as damage) until the hive restarts. Cut inside the last
// page (4 pages of 4096 bytes, cut to 12289 or 16000 bytes; the last page is the index
// models_provider_id), ListByProvider answers an empty list with no error and no event: the
// VFS returns the short read with io.EOF, SQLite zero-fills the page's tail, the page-type
// byte survives so the page reads as an empty leaf, and the page checksum is not verified
// because the checksum VFS (ncruces vfs/cksm.go ReadAt) checks only reads of a whole page;
// the header's page count still matches the file's size rounded up, so SQLite's own check
// (header page count > pages in the file) does not fire either. Cut to under 32 bytes the
// header loses its page count and SQLite sizes the database from the file (one short,
// unverified page), so later damage to that page also goes unchecked: cut to 48 bytes, then
// byte 47 flipped, Get fails with "SQL logic error: unsupported file format" (SQLITE_ERROR
// again). An Open finds all of these (quick_check, or the error it meets is corruption), which
// is why only a running hive is affected.
func TestBugTruncatedWhileOpen(t *testing.T) {
	cases := []struct {
		name   string
		damage func(d *sim.Disk) error
	}{
		{"emptied", func(d *sim.Disk) error { return d.TruncateTo(catalog.DefaultPath, 0) }},
		{"cut to 12289 bytes", func(d *sim.Disk) error { return d.TruncateTo(catalog.DefaultPath, 12289) }},
		{"cut to 16000 bytes", func(d *sim.Disk) error { return d.TruncateTo(catalog.DefaultPath, 16000) }},
		{"cut to 48 bytes, byte 47 flipped", func(d *sim.Disk) error {
			if err := d.TruncateTo(catalog.DefaultPath, 48); err != nil {
				return err
			}
			return d.FlipByte(catalog.DefaultPath, 47, 0x01)
		}},
	}
	var bugs []string
	for _, tc := range cases {
		disk, c, _, _ := bugWorld(t)
		if n, _ := fileSize(disk, catalog.DefaultPath); n != 16384 {
			t.Fatalf("the catalog file has %d bytes; the cases assume 4 pages of 4096", n)
		}
		if err := tc.damage(disk); err != nil {
			t.Fatal(err)
		}
		m, _ := poolModel(0, t0)
		_, found, gerr := c.Get(m.ID)
		page, _, lerr := c.ListByProvider("hf", 10, "")
		events := c.Events()
		switch {
		case gerr != nil || lerr != nil:
			bugs = append(bugs, fmt.Sprintf("%s: Get or ListByProvider failed instead of recovering: %v; %v", tc.name, gerr, lerr))
		case !found || len(page) != 3:
			bugs = append(bugs, fmt.Sprintf("%s: wrong answers: Get found=%v, ListByProvider %d models of 3; %d events",
				tc.name, found, len(page), len(events)))
		case len(events) != 1:
			t.Errorf("%s: right answers with %d events, want the one rebuild event", tc.name, len(events))
		}
	}
	if len(bugs) > 0 {
		t.Fatal("a catalog truncated while open is not recovered:\n" + strings.Join(bugs, "\n"))
	}
}

// catalog/corruption-recovery: Backup of a damaged catalog, with the hive up.
//
// BUG: when the damage is one page checksums do not see, Backup copies it into the backup,
// reports success and no event, and the backup is unusable ("database disk image is
// malformed"; Restore refuses it), while the catalog stays damaged until a later call reads
// the damaged page. Two cases: a zeroed page (an all-zero page passes the checksum, as ncruces
// vfs/cksm.go cksmCompute of zeros is zeros, and SQLite's backup copies pages without parsing
// them), and a file truncated to 24 bytes (the header's page count is gone, so SQLite sizes
// the database from the file, 1 page, read short and not verified). A fix: quick_check the
// snapshot (as Restore's checkBackup does) before renaming it into place, and treat a failure
// as damage to the catalog.
func TestBugBackupCopiesDamage(t *testing.T) {
	var bugs []string
	for _, kind := range []string{"zero page 3", "truncate to 24 bytes"} {
		disk, c, _, vfs := bugWorld(t)
		data, err := node.ReadFile(disk, catalog.DefaultPath)
		if err != nil {
			t.Fatal(err)
		}
		switch kind {
		case "zero page 3": // the table's primary key index
			ps := headerPageSize(data)
			for off := 2 * ps; off < 3*ps; off++ {
				if data[off] != 0 {
					if err := disk.FlipByte(catalog.DefaultPath, int64(off), data[off]); err != nil {
						t.Fatal(err)
					}
				}
			}
		case "truncate to 24 bytes":
			if err := disk.TruncateTo(catalog.DefaultPath, 24); err != nil {
				t.Fatal(err)
			}
		}
		const name = "backups/catalog.db"
		err = c.Backup(name)
		events := c.Events()
		if err != nil {
			t.Fatalf("%s: Backup: %v (events %+v)", kind, err, events)
		}
		if len(events) == 1 {
			continue // recovered: the backup was taken of the rebuilt catalog
		}
		if err := catalog.Restore(propOptions(disk, vfs, &propClock{now: t0}), name); err != nil {
			bugs = append(bugs, fmt.Sprintf("%s: Backup succeeded with %d events, and its backup is unusable: %v",
				kind, len(events), err))
		}
	}
	if len(bugs) > 0 {
		t.Fatal("Backup copies damage it does not notice:\n" + strings.Join(bugs, "\n"))
	}
}

// catalog/corruption-recovery: a flipped byte in the header's byte 20, the bytes SQLite
// reserves at the end of each page (8, for the page checksums).
//
// BUG: when the flip leaves a value other than 0 or 8, Open fails for good with "sqlite3:
// reserve bytes must be 8, is: 9" and the file is neither moved aside nor rebuilt: the hive
// cannot start until someone deletes the catalog by hand. With the hive up, the next call
// fails with the same error and the ones after it with "an earlier recovery failed". The
// error comes from Conn.EnableChecksums in open() (a plain error string, which isCorruption
// does not count as damage); page 1's checksum does not catch the flip because the checksum
// VFS (ncruces vfs/cksm.go init) verifies pages only while header byte 20 is 8. A fix: treat
// a reserve-bytes value other than 0 and 8 (or EnableChecksums failing) as corruption.
func TestBugReserveByteFlipped(t *testing.T) {
	var bugs []string
	for _, closed := range []bool{true, false} {
		disk, c, clock, vfs := bugWorld(t)
		if closed {
			c.Close()
		}
		if err := disk.FlipByte(catalog.DefaultPath, 20, 0x01); err != nil { // 8 becomes 9
			t.Fatal(err)
		}
		var events []catalog.Event
		if closed {
			var err error
			if c, events, err = catalog.Open(propOptions(disk, vfs, clock)); err != nil {
				bugs = append(bugs, fmt.Sprintf("Open: %v", err))
				continue
			}
			t.Cleanup(func() { c.Close() })
		}
		m, _ := poolModel(0, t0)
		got, found, err := c.Get(m.ID)
		events = append(events, c.Events()...)
		switch {
		case err != nil:
			bugs = append(bugs, fmt.Sprintf("with the hive up: Get: %v", err))
		case !found || got.ID != m.ID:
			t.Errorf("closed=%v: Get(%s) = %v, found %v: a wrong answer", closed, m.ID, got.ID, found)
		case len(events) != 1:
			t.Errorf("closed=%v: a right answer with %d events, want the one rebuild event", closed, len(events))
		}
	}
	if len(bugs) > 0 {
		t.Fatal("a flipped reserve-bytes header field is not recovered:\n" + strings.Join(bugs, "\n"))
	}
}

func fileSize(d node.Disk, name string) (int64, error) {
	f, err := d.Open(name, false)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Size()
}
