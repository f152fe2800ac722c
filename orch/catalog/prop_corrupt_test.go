package catalog_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

// corruptWorld is one machine in TestPropRandomCorruption: its disk, a hive with the catalog
// open (or closed), and what the hive has registered.
type corruptWorld struct {
	disk  *sim.Disk
	vfs   string
	clock *propClock
	c     *catalog.Catalog // nil while closed
	// registered are the models registered so far, by ID; their files are all intact.
	registered map[string]catalog.Model
	// junk are the files in the models folder that are not models, sorted.
	junk []string
	// damaged: the catalog file was corrupted since it was last rebuilt, so a rebuild is
	// allowed (damage a call never reads, such as free space, may never be found).
	damaged bool
	// uncheckedDamage: since it was last rebuilt, the catalog file had a page zeroed or was
	// truncated, damage that page checksums do not see.
	uncheckedDamage bool
	// log of what happened, for failure messages.
	log []string
	// stats
	rebuilds, corruptions int
}

func (w *corruptWorld) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf(format, args...))
}

func (w *corruptWorld) fatalf(rt *rapid.T, format string, args ...any) {
	rt.Helper()
	for _, l := range w.log {
		rt.Logf("  %s", l)
	}
	rt.Fatalf(format, args...)
}

func (w *corruptWorld) options() catalog.Options { return propOptions(w.disk, w.vfs, w.clock) }

// catalogBytes is the catalog file's content (nil when it is missing).
func (w *corruptWorld) catalogBytes() []byte {
	b, _ := node.ReadFile(w.disk, catalog.DefaultPath)
	return b
}

// open opens the catalog (the hive starts) and checks the events.
func (w *corruptWorld) open(rt *rapid.T) {
	rt.Helper()
	before := w.catalogBytes()
	w.clock.now = w.clock.now.Add(time.Second)
	c, events, err := catalog.Open(w.options())
	if err != nil {
		w.fatalf(rt, "Open: %v", err)
	}
	w.c = c
	w.checkEvents(rt, "Open", events, before)
}

// call runs one call on the open catalog, checks the events it caused and returns how many.
func (w *corruptWorld) call(rt *rapid.T, what string, fn func()) (events int) {
	rt.Helper()
	before := w.catalogBytes()
	w.clock.now = w.clock.now.Add(time.Second)
	fn()
	ev := w.c.Events()
	w.checkEvents(rt, what, ev, before)
	return len(ev)
}

// checkEvents checks the events of one call: none, or one rebuild after a corruption,
// which kept the bytes the catalog file held before the call as the backup it names and
// rebuilt every model file.
func (w *corruptWorld) checkEvents(rt *rapid.T, what string, events []catalog.Event, before []byte) {
	rt.Helper()
	if len(events) == 0 {
		return
	}
	w.logf("%s: events %+v", what, events)
	if len(events) > 1 {
		w.fatalf(rt, "%s: %d events, want at most one: %+v", what, len(events), events)
	}
	ev := events[0]
	if !w.damaged {
		w.fatalf(rt, "%s: a rebuild with the catalog undamaged: %+v", what, ev)
	}
	if ev.Kind != catalog.EventRebuilt {
		w.fatalf(rt, "%s: event kind %q, want %q", what, ev.Kind, catalog.EventRebuilt)
	}
	switch {
	case len(before) > 0 && ev.Backup == "":
		w.fatalf(rt, "%s: the damaged catalog (%d bytes) was rebuilt without a backup: %+v", what, len(before), ev)
	case ev.Backup != "":
		got, err := node.ReadFile(w.disk, ev.Backup)
		if err != nil {
			w.fatalf(rt, "%s: the event names the backup %s, which cannot be read: %v", what, ev.Backup, err)
		}
		if !bytes.Equal(got, before) {
			w.fatalf(rt, "%s: the backup %s holds %d bytes (sha %x...), not the %d bytes the catalog held before the call",
				what, ev.Backup, len(got), got[:min(len(got), 8)], len(before))
		}
	}
	if want := len(w.modelsOnDisk()); ev.Rebuilt != want {
		w.fatalf(rt, "%s: the event says %d models were rebuilt, want the %d model files", what, ev.Rebuilt, want)
	}
	if !slices.Equal(ev.Unreadable, w.junk) {
		w.fatalf(rt, "%s: the event lists unreadable %q, want %q", what, ev.Unreadable, w.junk)
	}
	w.damaged, w.uncheckedDamage = false, false
	w.rebuilds++
}

// modelsOnDisk are the pool models whose files are on the disk (all intact), by ID.
func (w *corruptWorld) modelsOnDisk() map[string]catalog.Model {
	out := map[string]catalog.Model{}
	for i := range propPool {
		m, data := poolModel(i, t0)
		if fileIntact(w.disk, m.LocalPath, data) {
			out[m.ID] = m
		}
	}
	return out
}

// checkGet checks one Get against what was registered.
func (w *corruptWorld) checkGet(rt *rapid.T, i int) {
	rt.Helper()
	want, _ := poolModel(i, t0)
	w.call(rt, "Get "+want.ID, func() {
		got, found, err := w.c.Get(want.ID)
		if err != nil {
			w.fatalf(rt, "Get(%s): %v", want.ID, err)
		}
		reg, registered := w.registered[want.ID]
		if found != registered {
			w.fatalf(rt, "Get(%s): found=%v, but registered=%v: a wrong answer", want.ID, found, registered)
		}
		if found {
			if d := diffModels([]catalog.Model{reg}, []catalog.Model{got}, ignoreDownloadedAt); d != "" {
				w.fatalf(rt, "Get(%s) gave a wrong answer (-want +got):\n%s", want.ID, d)
			}
		}
	})
}

// checkList checks the listing of providers against what was registered.
func (w *corruptWorld) checkList(rt *rapid.T, providers []string, pageSize int) {
	rt.Helper()
	w.call(rt, fmt.Sprintf("list %q by %d", providers, pageSize), func() {
		got := listAllProviders(rt, w.c, providers, pageSize)
		var want []catalog.Model
		for _, m := range sortedModels(w.registered) {
			if slices.Contains(providers, m.Provider) {
				want = append(want, m)
			}
		}
		if d := diffModels(want, got, ignoreDownloadedAt); d != "" {
			w.fatalf(rt, "ListByProvider(%q) gave a wrong answer (-want +got):\n%s", providers, d)
		}
	})
}

// verifyAll asks for every pool model and lists every provider.
func (w *corruptWorld) verifyAll(rt *rapid.T) {
	rt.Helper()
	for i := range propPool {
		w.checkGet(rt, i)
	}
	w.checkList(rt, propProviders, 2)
}

// corrupt damages the catalog file with a rapid-drawn corruption, with the catalog closed
// (then the hive starts again) or open (then the next call meets the damage).
func (w *corruptWorld) corrupt(rt *rapid.T, step int) {
	closed := rapid.Bool().Draw(rt, fmt.Sprintf("step %d: catalog closed while corrupted", step))
	if len(w.catalogBytes()) == 0 {
		// An earlier corruption emptied the file and no call has met it yet: nothing left
		// to damage.
		w.logf("the catalog file is already empty; no further corruption")
		return
	}
	if closed {
		if err := w.c.Close(); err != nil {
			w.fatalf(rt, "Close: %v", err)
		}
		w.c = nil
	}
	data := w.catalogBytes()
	name := catalog.DefaultPath
	kind := rapid.SampledFrom([]string{"flip", "clobber", "truncate", "zero-page"}).Draw(rt, fmt.Sprintf("step %d: corruption", step))
	switch kind {
	case "flip":
		var off int
		if knownBugReserveByteFlipped && len(data) > 20 {
			// Leave out byte 20, as TestBugReserveByteFlipped shows.
			if off = rapid.IntRange(0, len(data)-2).Draw(rt, "offset"); off >= 20 {
				off++
			}
		} else {
			off = rapid.IntRange(0, len(data)-1).Draw(rt, "offset")
		}
		mask := byte(rapid.IntRange(1, 255).Draw(rt, "mask"))
		must(rt, w.disk.FlipByte(name, int64(off), mask), "FlipByte")
		w.logf("flip byte %d of %d with %#x (closed=%v)", off, len(data), mask, closed)
	case "clobber":
		n := rapid.IntRange(1, min(len(data), 2*4096)).Draw(rt, "bytes")
		seed := drawSeed(rt, "garbage seed")
		must(rt, w.disk.ClobberHeader(name, n, seed), "ClobberHeader")
		w.logf("clobber the first %d of %d bytes (closed=%v)", n, len(data), closed)
	case "truncate":
		var size int
		if !closed && knownBugTruncatedWhileOpen {
			// Leave out what TestBugTruncatedWhileOpen shows: with the hive up, cut only
			// at a page boundary, keeping at least one page.
			size = len(data) // a file of one page or less stays as it is
			if ps := headerPageSize(data); len(data) > ps {
				size = ps * rapid.IntRange(1, (len(data)-1)/ps).Draw(rt, "pages kept")
			}
		} else {
			size = rapid.IntRange(0, len(data)-1).Draw(rt, "size")
		}
		w.uncheckedDamage = true
		must(rt, w.disk.TruncateTo(name, int64(size)), "TruncateTo")
		w.logf("truncate from %d to %d bytes (closed=%v)", len(data), size, closed)
	case "zero-page":
		ps := headerPageSize(data)
		pages := (len(data) + ps - 1) / ps
		p := rapid.IntRange(0, pages-1).Draw(rt, "page")
		for off := p * ps; off < min((p+1)*ps, len(data)); off++ {
			if data[off] != 0 {
				must(rt, w.disk.FlipByte(name, int64(off), data[off]), "FlipByte")
			}
		}
		w.uncheckedDamage = true
		w.logf("zero page %d of %d (%d bytes each) (closed=%v)", p, pages, ps, closed)
	}
	if !bytes.Equal(w.catalogBytes(), data) {
		w.damaged = true
		w.corruptions++
	}
	if closed {
		w.open(rt)
	}
}

// knownBugTruncatedWhileOpen leaves out of the property the truncations that
// TestBugTruncatedWhileOpen shows give wrong answers or errors: while the hive has the catalog
// open, to 0 bytes or to a size that is not a whole number of pages. Set it to false once that
// test passes.
const knownBugTruncatedWhileOpen = false

// knownBugBackupCopiesDamage lets a Backup taken while the catalog has a zeroed page or was
// truncated be unusable, as TestBugBackupCopiesDamage shows. Set it to false once that test
// passes.
const knownBugBackupCopiesDamage = false

// knownBugReserveByteFlipped leaves out of the property flips of the header's byte 20 (the
// bytes reserved per page), which TestBugReserveByteFlipped shows leave a catalog that cannot
// be opened. Set it to false once that test passes.
const knownBugReserveByteFlipped = false

// headerPageSize is the page size an SQLite header names, or 4096 if it names none.
func headerPageSize(b []byte) int {
	if len(b) < 18 {
		return 4096
	}
	ps := int(binary.BigEndian.Uint16(b[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return 4096
	}
	return ps
}

// catalog/corruption-recovery, as a property: a rapid-drawn corruption (a flipped byte, a
// clobbered header, a truncation, a zeroed page) at a rapid-drawn point, with the hive up or
// down. Every call and every Open either answers correctly or recovers (one event, naming a
// backup that holds the damaged bytes); no call ever answers wrongly (the catalog has page
// checksums); and at the end the catalog holds exactly the models whose files are intact.
func TestPropRandomCorruption(t *testing.T) {
	var checks, corruptions, rebuilds int
	rapid.Check(t, func(rt *rapid.T) {
		cryptotest.SetGlobalRandom(t, 1)
		w := &corruptWorld{disk: sim.NewDisk(), clock: &propClock{now: t0}, registered: map[string]catalog.Model{}}
		w.vfs = sqlitevfs.Register(w.disk)
		defer sqlitevfs.Unregister(w.vfs)
		if rapid.Bool().Draw(rt, "junk in the models folder") {
			must(rt, node.WriteFileAtomic(w.disk, "models/hf/notes.txt", []byte("not a model")), "write junk")
			broken := modelFile(99)
			must(rt, node.WriteFileAtomic(w.disk, "models/hf/broken.gguf", broken[:len(broken)/2]), "write junk")
			w.junk = []string{"models/hf/broken.gguf", "models/hf/notes.txt"}
		}
		w.damaged = true // the catalog is missing: the first Open creates it and reports the junk
		w.open(rt)
		w.damaged, w.rebuilds = false, 0
		defer func() {
			if w.c != nil {
				w.c.Close()
			}
		}()

		steps := rapid.IntRange(1, 10).Draw(rt, "steps")
		corruptAt := rapid.IntRange(0, steps-1).Draw(rt, "corrupt at step")
		for step := range steps {
			kind := "corrupt"
			if step != corruptAt {
				kind = rapid.SampledFrom([]string{"register", "register", "register", "get", "list",
					"cleanup", "backup", "reopen", "corrupt"}).Draw(rt, fmt.Sprintf("step %d", step))
			}
			switch kind {
			case "register":
				i := rapid.IntRange(0, len(propPool)-1).Draw(rt, "model")
				m, data := poolModel(i, w.clock.now)
				if !fileIntact(w.disk, m.LocalPath, data) {
					must(rt, node.WriteFileAtomic(w.disk, m.LocalPath, data), "writing %s", m.LocalPath)
				}
				w.logf("register %s", m.ID)
				_, already := w.registered[m.ID]
				var inserted bool
				events := w.call(rt, "Register "+m.ID, func() {
					var err error
					if inserted, err = w.c.Register(m); err != nil {
						w.fatalf(rt, "Register(%s): %v", m.ID, err)
					}
				})
				// A recovery during the call may rebuild the model from its file before the
				// insert; then inserted is false.
				if inserted == already && !(events > 0 && !inserted) {
					w.fatalf(rt, "Register(%s) = inserted %v, but it was registered already: %v", m.ID, inserted, already)
				}
				if !already {
					w.registered[m.ID] = m
				}
			case "get":
				w.checkGet(rt, rapid.IntRange(0, len(propPool)-1).Draw(rt, "model"))
			case "list":
				p := rapid.SampledFrom(propProviders).Draw(rt, "provider")
				w.checkList(rt, []string{p}, rapid.IntRange(1, 3).Draw(rt, "page size"))
			case "cleanup":
				adopt := rapid.Bool().Draw(rt, "adopt")
				w.call(rt, "Cleanup", func() {
					sum, err := w.c.Cleanup(adopt)
					if err != nil {
						w.fatalf(rt, "Cleanup: %v", err)
					}
					if sum.RowsRemoved != 0 || sum.FilesAdopted != 0 || !slices.Equal(sum.Unreadable, w.junk) {
						w.fatalf(rt, "Cleanup = %+v; want nothing removed or adopted and %q unreadable", sum, w.junk)
					}
				})
			case "backup":
				name := fmt.Sprintf("backups/catalog-%d.db", rapid.IntRange(1, 2).Draw(rt, "backup"))
				w.call(rt, "Backup", func() {
					if err := w.c.Backup(name); err != nil {
						w.fatalf(rt, "Backup(%s): %v", name, err)
					}
				})
				n, err := rawQuery(w.vfs, name, `SELECT count(*) FROM models`)
				switch {
				case err != nil && w.uncheckedDamage && knownBugBackupCopiesDamage:
					w.logf("the backup is unusable (TestBugBackupCopiesDamage): %v", err)
				case err != nil:
					w.fatalf(rt, "the backup %s is unusable: %v", name, err)
				case n != len(w.registered):
					w.fatalf(rt, "the backup %s holds %d models, want %d", name, n, len(w.registered))
				}
			case "reopen":
				if err := w.c.Close(); err != nil {
					w.fatalf(rt, "Close: %v", err)
				}
				w.open(rt)
			case "corrupt":
				w.corrupt(rt, step)
			}
		}
		// Every answer is still right, and after a restart too.
		w.verifyAll(rt)
		must(rt, w.c.Close(), "Close")
		w.open(rt)
		w.verifyAll(rt)
		want := w.modelsOnDisk()
		if d := diffModels(sortedModels(want), sortedModels(w.registered), ignoreDownloadedAt); d != "" {
			w.fatalf(rt, "the test lost track: registered differs from the model files on disk:\n%s", d)
		}
		rows := listAllProviders(rt, w.c, propProviders, 100)
		if d := diffModels(sortedModels(want), rows, ignoreDownloadedAt); d != "" {
			w.fatalf(rt, "the catalog differs from the intact model files (-want +got):\n%s", d)
		}
		if n := rawQueryInt(rt, w.vfs, catalog.DefaultPath, `SELECT count(*) FROM models`); n != len(rows) {
			w.fatalf(rt, "the catalog holds %d rows, %d of them under the known providers", n, len(rows))
		}
		for _, row := range rows {
			checkRowFile(rt, w.disk, row)
		}
		checks++
		corruptions += w.corruptions
		rebuilds += w.rebuilds
	})
	t.Logf("%d checks, %d corruptions that changed the file, %d rebuilds", checks, corruptions, rebuilds)
}
