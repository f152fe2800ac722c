//go:build plant

package catalog_test

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
)

// Each plant changes behaviour as its description in package plant says, and only with the
// plant switched on: every subtest runs without the plant first and expects the right thing.

// catalog/disk-faults: with catalog-ack-before-commit, a crash right after Register loses a
// registration that was acknowledged.
func TestPlantAckBeforeCommitLosesAnAcknowledgedRegistration(t *testing.T) {
	for _, planted := range []bool{false, true} {
		w := newWorld(t)
		plants := plantIf(planted, catalog.PlantAckBeforeCommit)
		c, _ := w.open(plants...)
		m := w.writeModel("hf", "org/acked.gguf", 1)
		if ins, err := c.Register(m); err != nil || !ins {
			t.Fatalf("planted=%v: Register = %v, %v", planted, ins, err)
		}
		w.crash() // the hive dies without closing the catalog
		c, _ = w.open()
		_, found, err := c.Get(m.ID)
		c.Close()
		if err != nil || found == planted {
			t.Fatalf("planted=%v: after a crash, the acknowledged model is found=%v (%v)", planted, found, err)
		}
	}
}

// The plant's lazy commit still commits when the next call comes.
func TestPlantAckBeforeCommitCommitsAtTheNextCall(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open(catalog.PlantAckBeforeCommit)
	ms := w.registerModels(c, "hf", 3)
	w.crash()
	c, _ = w.open()
	defer c.Close()
	sameModels(t, listAll(t, c, "hf", 10), ms[:2])
}

// catalog/concurrent-registration: with catalog-no-dedupe, registering a model twice stores
// it twice and says "inserted" both times.
func TestPlantNoDedupeStoresAModelTwice(t *testing.T) {
	for _, planted := range []bool{false, true} {
		w := newWorld(t)
		c, _ := w.open(plantIf(planted, catalog.PlantNoDedupe)...)
		m := w.writeModel("hf", "org/twice.gguf", 1)
		var inserted int
		for range 2 {
			ins, err := c.Register(m)
			if err != nil {
				t.Fatalf("planted=%v: %v", planted, err)
			}
			if ins {
				inserted++
			}
		}
		page, _, err := c.ListByProvider("hf", 10, "")
		c.Close()
		want := map[bool]int{false: 1, true: 2}[planted]
		if err != nil || len(page) != want || inserted != want {
			t.Fatalf("planted=%v: %d rows, %d inserted (%v); want %d", planted, len(page), inserted, err, want)
		}
	}
}

// catalog/corruption-recovery: with catalog-delete-corrupt, recovery deletes the damaged
// catalog though its event still names a backup.
func TestPlantDeleteCorruptLosesTheDamagedFile(t *testing.T) {
	for _, planted := range []bool{false, true} {
		w := newWorld(t)
		plants := plantIf(planted, catalog.PlantDeleteCorrupt)
		c, _ := w.open(plants...)
		w.registerModels(c, "hf", 2)
		c.Close()
		b := w.readFile(catalog.DefaultPath)
		b[0] ^= 0xff
		w.writeFile(catalog.DefaultPath, b)
		c, ev := w.open(plants...)
		c.Close()
		if len(ev) != 1 || ev[0].Backup != backupName || ev[0].Rebuilt != 2 {
			t.Fatalf("planted=%v: events %+v", planted, ev)
		}
		kept := false
		for _, f := range w.files("catalog/") {
			kept = kept || f == backupName
		}
		if kept == planted {
			t.Fatalf("planted=%v: backup kept=%v; files %q", planted, kept, w.files(""))
		}
	}
}

func plantIf(on bool, name string) []string {
	if on {
		return []string{name}
	}
	return nil
}
