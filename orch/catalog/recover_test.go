package catalog_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

const backupName = catalog.DefaultPath + ".corrupt-20260101T120000Z"

// recoveryWorld registers 8 models with their files, then damages model 3's file, adds a
// file that is not a model and a download in progress. It returns the open catalog, the
// models whose files are intact (in ID order) and the unreadable files.
func recoveryWorld(t *testing.T) (*world, *catalog.Catalog, []catalog.Model, []string) {
	w := newWorld(t)
	c, _ := w.open()
	all := w.registerModels(c, "hf", 6)
	all = append(all, w.registerModels(c, "file", 2)...)
	damaged := all[3]
	w.writeFile(damaged.LocalPath, w.readFile(damaged.LocalPath)[:40])
	w.writeFile("models/hf/notes.txt", []byte("not a model"))
	w.writeFile("models/hf/org%2Fnext.gguf.partial", modelFile(77)[:50])
	intact := slices.Delete(slices.Clone(all), 3, 4)
	slices.SortFunc(intact, func(a, b catalog.Model) int { return strings.Compare(a.ID, b.ID) })
	return w, c, intact, []string{"models/hf/notes.txt", damaged.LocalPath} // name order
}

// corruptions damage the catalog file in the ways SCENARIOS.md names.
var corruptions = []struct {
	name   string
	damage func(b []byte) []byte
}{
	{"clobbered header", func(b []byte) []byte { b[0] ^= 0xff; return b }},
	{"flipped b-tree page", func(b []byte) []byte { b[pageSize(b)] ^= 0xff; return b }},
	{"truncated", func(b []byte) []byte { return b[:pageSize(b)*3/2] }},
	{"zeroed pages", func(b []byte) []byte { clear(b[pageSize(b):]); return b }},
}

func pageSize(b []byte) int {
	return int(binary.BigEndian.Uint16(b[16:18]))
}

// catalog/corruption-recovery: whatever the damage, and whether the hive was down (Open finds
// it) or up (the next call finds it), the catalog is moved aside, rebuilt from the intact
// model files, and one event says so.
func TestCorruptionIsRecovered(t *testing.T) {
	for _, kind := range corruptions {
		for _, up := range []bool{false, true} {
			name := kind.name + map[bool]string{false: " while down", true: " while up"}[up]
			t.Run(name, func(t *testing.T) {
				w, c, intact, unreadable := recoveryWorld(t)
				if !up {
					c.Close()
				}
				damaged := kind.damage(w.readFile(catalog.DefaultPath))
				w.writeFile(catalog.DefaultPath, damaged)
				var events []catalog.Event
				if up {
					damaged = w.readFile(catalog.DefaultPath)
					page, _, err := c.ListByProvider("hf", 100, "")
					if err != nil {
						t.Fatalf("ListByProvider on a corrupt catalog: %v", err)
					}
					sameModels(t, page, filterProvider(intact, "hf"), ignoreDownloadedAt)
					events = c.Events()
				} else {
					c, events = w.open()
				}
				defer c.Close()
				checkRebuilt(t, w, c, events, intact, unreadable, damaged)
			})
		}
	}
}

func filterProvider(ms []catalog.Model, provider string) []catalog.Model {
	var out []catalog.Model
	for _, m := range ms {
		if m.Provider == provider {
			out = append(out, m)
		}
	}
	return out
}

// checkRebuilt checks the outcome of a recovery: one event that tells the truth, the old
// bytes kept, and a catalog of exactly the intact models.
func checkRebuilt(t *testing.T, w *world, c *catalog.Catalog, events []catalog.Event,
	intact []catalog.Model, unreadable []string, damaged []byte) {
	t.Helper()
	if len(events) != 1 {
		t.Fatalf("events = %+v; want exactly one", events)
	}
	ev := events[0]
	if ev.Kind != catalog.EventRebuilt || ev.Backup != backupName || ev.Rebuilt != len(intact) {
		t.Errorf("event = %+v; want kind %s, backup %s, %d rebuilt", ev, catalog.EventRebuilt, backupName, len(intact))
	}
	if !slices.Equal(ev.Unreadable, unreadable) {
		t.Errorf("event lists unreadable files %q, want %q", ev.Unreadable, unreadable)
	}
	for _, want := range []string{"corrupt", backupName, "rebuilt from 7 model files"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("event message %q does not say %q", ev.Message, want)
		}
	}
	for _, want := range append([]string{"2 files could not be read", "keep the backup"}, unreadable...) {
		if !strings.Contains(ev.Suggestion, want) {
			t.Errorf("event suggestion %q does not say %q", ev.Suggestion, want)
		}
	}
	if got := w.readFile(backupName); string(got) != string(damaged) {
		t.Errorf("the backup holds %d bytes, not the %d damaged bytes", len(got), len(damaged))
	}
	got := append(listAll(t, c, "file", 3), listAll(t, c, "hf", 3)...)
	sameModels(t, got, intact, ignoreDownloadedAt)
	for _, m := range got {
		if !m.DownloadedAt.Equal(w.now) {
			t.Errorf("rebuilt %s dated %v, want %v", m.ID, m.DownloadedAt, w.now)
		}
	}
	if more := c.Events(); len(more) != 0 {
		t.Errorf("events not drained: %+v", more)
	}
}

// catalog/corruption-recovery: damage only the rows' content can show (a cell SQLite reads
// happily) is caught by the invariants checked on every row read.
func TestDamagedRowIsRecovered(t *testing.T) {
	w, c, intact, unreadable := recoveryWorld(t)
	defer c.Close()
	conn := w.rawConn(catalog.DefaultPath)
	if err := conn.Exec(`UPDATE models SET sha256 = 'not a hash' WHERE id = '` + intact[0].ID + `'`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	damaged := w.readFile(catalog.DefaultPath)
	m, found, err := c.Get(intact[0].ID)
	if err != nil || !found {
		t.Fatalf("Get of a damaged row = %v, %v", found, err)
	}
	sameModels(t, []catalog.Model{m}, intact[:1], ignoreDownloadedAt)
	checkRebuilt(t, w, c, c.Events(), intact, unreadable, damaged)
}

// catalog/corruption-recovery: an I/O error reading the catalog makes the catalog check the
// file in full; a transient error costs nothing, a lasting one moves the file aside.
func TestReadErrors(t *testing.T) {
	t.Run("transient", func(t *testing.T) {
		w, c, _, _ := recoveryWorld(t)
		want := listAll(t, c, "hf", 100)
		c.Close()
		w.disk.failReadsOf, w.disk.failReads = catalog.DefaultPath, 1
		c, events := w.open()
		defer c.Close()
		if len(events) != 0 || w.disk.failReads != 0 {
			t.Fatalf("events %+v, %d read faults left", events, w.disk.failReads)
		}
		sameModels(t, listAll(t, c, "hf", 100), want) // registration times and all
	})
	t.Run("lasting", func(t *testing.T) {
		w, c, _, _ := recoveryWorld(t)
		c.Close()
		old := w.readFile(catalog.DefaultPath)
		w.disk.failReadsOf, w.disk.failReads = catalog.DefaultPath, 1000
		_, _, err := catalog.Open(w.options())
		if !errors.Is(err, catalog.ErrUnavailable) || !strings.Contains(err.Error(), backupName) {
			t.Fatalf("Open with unreadable catalog: %v; want ErrUnavailable naming the backup", err)
		}
		if got := w.readFile(backupName); string(got) != string(old) {
			t.Fatal("the unreadable catalog was not kept")
		}
	})
}

// catalog/corruption-recovery: several hive processes share the catalog; the first to meet
// the damage rebuilds it, and the others carry on with the rebuilt file, without a second
// rebuild.
func TestSharedCatalogIsRebuiltOnce(t *testing.T) {
	w, a, intact, unreadable := recoveryWorld(t)
	defer a.Close()
	b, _ := w.open()
	defer b.Close()
	damaged := w.readFile(catalog.DefaultPath)
	damaged[pageSize(damaged)] ^= 0xff
	w.writeFile(catalog.DefaultPath, damaged)
	if _, _, err := a.Get(intact[0].ID); err != nil {
		t.Fatal(err)
	}
	checkRebuilt(t, w, a, a.Events(), intact, unreadable, damaged)
	got := append(listAll(t, b, "file", 3), listAll(t, b, "hf", 3)...)
	sameModels(t, got, intact, ignoreDownloadedAt)
	if ev := b.Events(); len(ev) != 0 {
		t.Fatalf("the second process rebuilt again: %+v", ev)
	}
}

// catalog/corruption-recovery: a second recovery in the same second keeps the first backup.
func TestBackupsAreNeverOverwritten(t *testing.T) {
	w, c, _, _ := recoveryWorld(t)
	c.Close()
	var backups []string
	for i := range 3 {
		b := w.readFile(catalog.DefaultPath)
		b[0] ^= 0xff
		w.writeFile(catalog.DefaultPath, b)
		c, events := w.open()
		c.Close()
		if len(events) != 1 {
			t.Fatalf("recovery %d: events %+v", i, events)
		}
		backups = append(backups, events[0].Backup)
	}
	want := []string{backupName, backupName + "-2", backupName + "-3"}
	if !slices.Equal(backups, want) {
		t.Fatalf("backups %q, want %q", backups, want)
	}
	for _, b := range want {
		if _, err := node.ReadFile(w.base, b); err != nil {
			t.Fatal(err)
		}
	}
}

// A catalog that is missing while model files are on disk is rebuilt from them, and the
// user hears about it; a fresh install with no files says nothing.
func TestMissingCatalogIsRebuilt(t *testing.T) {
	w, c, intact, unreadable := recoveryWorld(t)
	c.Close()
	if err := w.base.Remove(catalog.DefaultPath); err != nil {
		t.Fatal(err)
	}
	c, events := w.open()
	defer c.Close()
	if len(events) != 1 || events[0].Rebuilt != len(intact) || events[0].Backup != "" ||
		!strings.Contains(events[0].Message, "missing") || !slices.Equal(events[0].Unreadable, unreadable) {
		t.Fatalf("events = %+v", events)
	}
	got := append(listAll(t, c, "file", 3), listAll(t, c, "hf", 3)...)
	sameModels(t, got, intact, ignoreDownloadedAt)
}

// catalog/disk-faults: ENOSPC is a clear error, not corruption, and leaves nothing behind.
func TestDiskFullIsAClearError(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	before := w.registerModels(c, "hf", 3)
	w.disk.full = true
	m := w.writeModel("hf", "org/big.gguf", 50)
	var err error
	for i := 0; err == nil && i < 1000; i++ { // fill the free pages first
		m.Reference = strings.Repeat("x", 200) + string(rune('a'+i%26)) + strings.Repeat("y", i)
		m.ID, m.LocalPath = "hf:"+m.Reference, catalog.ModelPath("models", "hf", m.Reference)
		if len(m.Reference) > 250 {
			break
		}
		var ins bool
		ins, err = c.Register(m)
		if err == nil && ins {
			before = append(before, m)
		}
	}
	if !errors.Is(err, catalog.ErrDiskFull) || !strings.Contains(err.Error(), "free space") {
		t.Fatalf("Register on a full disk: %v; want ErrDiskFull saying to free space", err)
	}
	if ev := c.Events(); len(ev) != 0 {
		t.Fatalf("a full disk caused a recovery: %+v", ev)
	}
	if _, found, err := c.Get(m.ID); err != nil || found {
		t.Fatalf("the failed registration is visible: %v, %v", found, err)
	}
	w.disk.full = false
	if ins, err := c.Register(m); err != nil || !ins {
		t.Fatalf("Register after freeing space = %v, %v", ins, err)
	}
	slices.SortFunc(before, func(a, b catalog.Model) int { return strings.Compare(a.ID, b.ID) })
	got := listAll(t, c, "hf", 100)
	got = slices.DeleteFunc(got, func(x catalog.Model) bool { return x.ID == m.ID })
	sameModels(t, got, before)
	checkIntegrity(t, w)
}

// catalog/disk-faults: a failed fsync fails the call clearly; the next call works.
func TestFailedFsyncFailsOnlyThatCall(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	ms := w.registerModels(c, "hf", 2)
	m := w.writeModel("hf", "org/fsync.gguf", 9)
	w.disk.failSyncs = 1
	_, err := c.Register(m)
	if !errors.Is(err, catalog.ErrUnavailable) || !strings.Contains(err.Error(), "durable") {
		t.Fatalf("Register with a failing fsync: %v", err)
	}
	if ev := c.Events(); len(ev) != 0 {
		t.Fatalf("a failed fsync caused a recovery: %+v", ev)
	}
	if ins, err := c.Register(m); err != nil || !ins {
		t.Fatalf("the next Register = %v, %v; want true, nil", ins, err)
	}
	sameModels(t, listAll(t, c, "hf", 10), append([]catalog.Model{m}, ms...)) // "org/f..." sorts first
	checkIntegrity(t, w)
}

func checkIntegrity(t *testing.T, w *world) {
	t.Helper()
	conn := w.rawConn(catalog.DefaultPath)
	defer conn.Close()
	st, _, err := conn.Prepare(`PRAGMA integrity_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.Step() || st.ColumnText(0) != "ok" {
		t.Fatalf("integrity_check: %q %v", st.ColumnText(0), st.Err())
	}
}

// catalog/disk-faults: a crash at any disk write loses no registration that was acknowledged,
// and leaves a catalog that opens without a rebuild.
func TestCrashAtEveryWriteLosesNoAcknowledgedRegistration(t *testing.T) {
	for k := 1; ; k++ {
		w := newWorld(t)
		c, _ := w.open()
		ms := w.registerModels(c, "hf", 2)
		w.disk.crashAfter = k
		var acked []catalog.Model
		for i := range 4 {
			m := w.writeModel("file", "m-"+string(rune('a'+i))+".gguf", uint64(10+i))
			if _, err := c.Register(m); err != nil {
				break
			}
			acked = append(acked, m)
		}
		crashed := w.disk.crashed
		w.crash()
		w.disk.crashed, w.disk.crashAfter = false, 0
		c, ev := w.open()
		if len(ev) != 0 {
			t.Fatalf("crash at write %d: events %+v", k, ev)
		}
		got := listAll(t, c, "file", 10)
		if len(got) < len(acked) || len(got) > len(acked)+1 {
			t.Fatalf("crash at write %d: %d models of %d acknowledged (+1 in flight)", k, len(got), len(acked))
		}
		sameModels(t, got[:len(acked)], acked)
		sameModels(t, listAll(t, c, "hf", 10), ms)
		c.Close()
		checkIntegrity(t, w)
		if !crashed {
			t.Logf("crashed at each of %d disk mutations", k-1)
			return
		}
	}
}
