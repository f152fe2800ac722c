package catalog_test

import (
	"fmt"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
)

// TestMigrateLargeV1KeepsEveryRow: migrating a v1 catalog of 20,000 models (which enables page
// checksums with a VACUUM of the whole file) keeps every row and leaves a sound file. With
// go-sqlite3's default page cache that VACUUM used to write pages with bad checksums, and the
// catalog then "recovered" by rebuilding from files, losing the rows.
func TestMigrateLargeV1KeepsEveryRow(t *testing.T) {
	const n = 20000
	w := newWorld(t)
	tmpl := w.model("hf", "x", 1)
	ms := make([]catalog.Model, n)
	for i := range ms {
		m := tmpl
		m.Reference = fmt.Sprintf("org-%d/repo-%08d/model.gguf", i%17, i)
		m.ID, m.LocalPath = "hf:"+m.Reference, catalog.ModelPath(catalog.DefaultModelsDir, "hf", m.Reference)
		ms[i] = m
	}
	if err := catalog.CreateV1(w.options(), ms); err != nil {
		t.Fatal(err)
	}
	c, events := w.open()
	defer c.Close()
	if len(events) != 0 {
		t.Fatalf("migrating a sound v1 catalog gave events: %+v", events)
	}
	if got := len(listAll(t, c, "hf", 1000)); got != n {
		t.Fatalf("after migration %d of %d models are listed", got, n)
	}
}
