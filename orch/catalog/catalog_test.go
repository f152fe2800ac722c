package catalog_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
)

func TestModelPathRoundTrip(t *testing.T) {
	for _, tc := range []struct{ provider, reference, want string }{
		{"hf", "TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_K_M.gguf",
			"models/hf/TheBloke%2FTinyLlama-1.1B-GGUF%2Ftinyllama.Q4_K_M.gguf"},
		{"file", "..", "models/file/%2E."},
		{"hf", "a b%c?d#é", "models/hf/a%20b%25c%3Fd%23%C3%A9"},
	} {
		got := catalog.ModelPath("models", tc.provider, tc.reference)
		if got != tc.want {
			t.Errorf("ModelPath(%q, %q) = %q, want %q", tc.provider, tc.reference, got, tc.want)
		}
		p, r, err := catalog.ParseModelPath("models/", got)
		if err != nil || p != tc.provider || r != tc.reference {
			t.Errorf("ParseModelPath(%q) = %q, %q, %v; want %q, %q", got, p, r, err, tc.provider, tc.reference)
		}
	}
	for _, name := range []string{
		"models/hf", "models/hf/a/b", "models/HF/x", "models/hf/%2e.", "models/hf/%2", "models/hf/%zz",
		"models/hf/a%41", "other/hf/x", "models/hf/x.partial", "models/hf/.hidden",
	} {
		if p, r, err := catalog.ParseModelPath("models/", name); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("ParseModelPath(%q) = %q, %q, %v; want an ErrInvalid error", name, p, r, err)
		}
	}
}

// catalog/concurrent-registration: registration is idempotent and says who inserted.
func TestRegisterIsIdempotent(t *testing.T) {
	w := newWorld(t)
	c, ev := w.open()
	defer c.Close()
	if len(ev) != 0 {
		t.Fatalf("events of a fresh catalog: %+v", ev)
	}
	m := w.writeModel("hf", "TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_K_M.gguf", 1)
	for i, want := range []bool{true, false, false} {
		if ins, err := c.Register(m); err != nil || ins != want {
			t.Fatalf("Register #%d = %v, %v; want %v, nil", i+1, ins, err, want)
		}
	}
	// A second process on the same file sees the row and does not insert it again.
	c2, _ := w.open()
	defer c2.Close()
	if ins, err := c2.Register(m); err != nil || ins {
		t.Fatalf("Register from a second catalog = %v, %v; want false, nil", ins, err)
	}
	got, found, err := c.Get(m.ID)
	if err != nil || !found {
		t.Fatalf("Get = %v, %v", found, err)
	}
	sameModels(t, []catalog.Model{got}, []catalog.Model{m})
	sameModels(t, listAll(t, c, "hf", 10), []catalog.Model{m})
	if _, found, err := c.Get("hf:nope"); err != nil || found {
		t.Fatalf("Get(missing) = %v, %v", found, err)
	}
}

func TestRegisterValidatesAtTheEdge(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	good := w.model("hf", "org/repo/m.gguf", 1)
	for _, tc := range []struct {
		field  string
		change func(*catalog.Model)
	}{
		{"model ID", func(m *catalog.Model) { m.ID = "hf:other" }},
		{"provider", func(m *catalog.Model) { m.Provider, m.ID = "", ":org/repo/m.gguf" }},
		{"reference", func(m *catalog.Model) { m.Reference, m.ID = "", "hf:" }},
		{"reference", func(m *catalog.Model) { m.Reference, m.ID = "x.partial", "hf:x.partial" }},
		{"SizeBytes", func(m *catalog.Model) { m.SizeBytes = 0 }},
		{"SHA256", func(m *catalog.Model) { m.SHA256 = strings.ToUpper(m.SHA256) }},
		{"ContextLength", func(m *catalog.Model) { m.ContextLength = -1 }},
		{"VRAMRequired", func(m *catalog.Model) { m.VRAMRequired = -1 }},
		{"Architecture", func(m *catalog.Model) { m.Architecture = "" }},
		{"DownloadedAt", func(m *catalog.Model) { m.DownloadedAt = m.DownloadedAt.AddDate(-1000, 0, 0) }},
		{"LocalPath", func(m *catalog.Model) { m.LocalPath = "models/elsewhere" }},
	} {
		m := good
		tc.change(&m)
		_, err := c.Register(m)
		if !errors.Is(err, catalog.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Register with a bad %s: %v; want an ErrInvalid error naming the field", tc.field, err)
		}
	}
	if got := listAll(t, c, "hf", 10); len(got) != 0 {
		t.Fatalf("invalid models were stored: %v", got)
	}
}

// catalog/large-query: keyset pagination returns every model once, in ID order.
func TestListByProviderPaginates(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	want := map[string][]catalog.Model{}
	for i := range 2500 {
		provider := []string{"hf", "file"}[i%3%2]
		m := w.model(provider, fmt.Sprintf("org-%d/repo/%05d.gguf", i%7, i), uint64(i))
		if _, err := c.Register(m); err != nil {
			t.Fatal(err)
		}
		want[provider] = append(want[provider], m)
	}
	for _, provider := range []string{"file", "hf"} {
		sort.Slice(want[provider], func(i, j int) bool { return want[provider][i].ID < want[provider][j].ID })
		sameModels(t, listAll(t, c, provider, 100), want[provider])
	}
	if got := len(want["hf"]) + len(want["file"]); got != 2500 {
		t.Fatalf("test registered %d models", got)
	}
	// An exact multiple of the page size ends without an empty page.
	page, next, err := c.ListByProvider("file", len(want["file"]), "")
	if err != nil || len(page) != len(want["file"]) || next != "" {
		t.Fatalf("one full page: %d models, next %q, %v", len(page), next, err)
	}
	_, hfNext, _ := c.ListByProvider("hf", 10, "")
	for _, tc := range []struct {
		provider, token string
		size            int
	}{
		{"hf", "garbage", 10}, {"hf", "k1.!!!", 10}, {"file", hfNext, 10}, {"hf", "", -1},
		{"hf", "", catalog.PageSizeMax + 1}, {"HF", "", 10},
	} {
		if _, _, err := c.ListByProvider(tc.provider, tc.size, tc.token); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("ListByProvider(%q, %d, %q) = %v; want an ErrInvalid error", tc.provider, tc.size, tc.token, err)
		}
	}
}

func TestRemove(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	ms := w.registerModels(c, "hf", 3)
	for range 2 { // removing twice is fine
		if err := c.Remove(ms[1].ID); err != nil {
			t.Fatal(err)
		}
	}
	sameModels(t, listAll(t, c, "hf", 2), []catalog.Model{ms[0], ms[2]})
}

// catalog/schema-migration: a v1 catalog is migrated in place and keeps every row.
func TestMigrateV1KeepsEveryRow(t *testing.T) {
	w := newWorld(t)
	v1 := v1Models(w, 40)
	if err := catalog.CreateV1(w.options(), v1); err != nil {
		t.Fatal(err)
	}
	if v := w.userVersion(catalog.DefaultPath); v != 1 {
		t.Fatalf("CreateV1 wrote version %d", v)
	}
	c, ev := w.open()
	defer c.Close()
	if len(ev) != 0 {
		t.Fatalf("migration events: %+v", ev)
	}
	if v := w.userVersion(catalog.DefaultPath); v != catalog.SchemaVersion {
		t.Fatalf("after Open: version %d", v)
	}
	sameModels(t, listAll(t, c, "hf", 7), v1)
	// The new column works.
	m := w.model("hf", "new/model.gguf", 99)
	if _, err := c.Register(m); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := c.Get(m.ID); got.VRAMRequired != m.VRAMRequired || m.VRAMRequired == 0 {
		t.Fatalf("VRAMRequired = %d, want %d", got.VRAMRequired, m.VRAMRequired)
	}
}

// v1Models returns n valid models sorted by ID, with VRAMRequired 0 as version 1 reads them.
func v1Models(w *world, n int) []catalog.Model {
	var ms []catalog.Model
	for i := range n {
		m := w.model("hf", fmt.Sprintf("org/v1-%03d.gguf", i), uint64(i))
		m.VRAMRequired = 0
		ms = append(ms, m)
	}
	return ms
}

// catalog/schema-migration: a crash at any write of the migration leaves either the intact
// v1 catalog or the migrated one, and the next Open finishes the job.
func TestMigrationSurvivesACrashAtEveryWrite(t *testing.T) {
	sawV1 := false
	for k := 1; ; k++ {
		w := newWorld(t)
		v1 := v1Models(w, 30)
		if err := catalog.CreateV1(w.options(), v1); err != nil {
			t.Fatal(err)
		}
		w.disk.crashAfter = k
		c, _, err := catalog.Open(w.options())
		if err == nil {
			c.Close()
		}
		crashed := w.disk.crashed
		w.crash()
		w.disk.crashed, w.disk.crashAfter = false, 0 // the machine reboots
		v := w.userVersion(catalog.DefaultPath)
		if v != 1 && v != 2 {
			t.Fatalf("crash after write %d: version %d", k, v)
		}
		sawV1 = sawV1 || v == 1
		c, ev := w.open()
		if len(ev) != 0 {
			t.Fatalf("crash after write %d: events %+v (nothing was lost)", k, ev)
		}
		sameModels(t, listAll(t, c, "hf", 100), v1)
		c.Close()
		if !crashed { // the migration completed before the k-th write
			t.Logf("crashed at each of the migration's %d disk mutations", k-1)
			break
		}
	}
	if !sawV1 {
		t.Fatal("no crash point left a version 1 catalog: the test did not crash mid-migration")
	}
}

// catalog/schema-migration: a newer catalog is refused and not touched.
func TestNewerCatalogIsRefusedAndUntouched(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	w.registerModels(c, "hf", 3)
	c.Close()
	conn := w.rawConn(catalog.DefaultPath)
	if err := conn.Exec(`PRAGMA user_version = 3`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	before := w.readFile(catalog.DefaultPath)
	filesBefore := w.files("")
	_, _, err := catalog.Open(w.options())
	if !errors.Is(err, catalog.ErrNewerVersion) || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("Open of a version 3 catalog: %v; want ErrNewerVersion saying to upgrade", err)
	}
	if after := w.readFile(catalog.DefaultPath); string(after) != string(before) {
		t.Fatal("the newer catalog was modified")
	}
	sameFiles(t, w.files(""), filesBefore)
}

func sameFiles(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("files = %q, want %q", got, want)
	}
}
