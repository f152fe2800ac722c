package catalog_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// catalog/orphan-cleanup: rows without valid files go, valid files without rows are adopted
// on request, and the summary says so.
func TestCleanupRemovesOrphanRowsAndAdoptsFiles(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	defer c.Close()
	ms := w.registerModels(c, "hf", 6)
	for _, m := range ms[:2] {
		if err := w.base.Remove(m.LocalPath); err != nil {
			t.Fatal(err)
		}
	}
	w.writeFile(ms[2].LocalPath, []byte("GGUF but not really"))
	w.writeFile(ms[3].LocalPath, modelFile(1000)) // a valid file, not the one registered
	extra := []catalog.Model{w.writeModel("hf", "new/a.gguf", 200), w.writeModel("file", "b.gguf", 201)}
	w.writeFile("models/hf/x.gguf.partial", []byte("downloading"))

	sum, err := c.Cleanup(false)
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.CleanupSummary{
		RowsRemoved:  4,
		Removed:      []string{ms[0].ID, ms[1].ID, ms[2].ID, ms[3].ID},
		Unregistered: []string{extra[1].LocalPath, extra[0].LocalPath, ms[3].LocalPath},
		Unreadable:   []string{ms[2].LocalPath},
	}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Fatalf("Cleanup(false) summary (-want +got):\n%s", diff)
	}
	sameModels(t, listAll(t, c, "hf", 10), ms[4:])

	w.now = w.now.Add(time.Hour)
	sum, err = c.Cleanup(true)
	if err != nil {
		t.Fatal(err)
	}
	adopted := w.model("hf", ms[3].Reference, 1000)
	adopted.DownloadedAt = w.now
	extra[0].DownloadedAt, extra[1].DownloadedAt = w.now, w.now
	want = catalog.CleanupSummary{
		FilesAdopted: 3,
		BytesAdopted: extra[0].SizeBytes + extra[1].SizeBytes + adopted.SizeBytes,
		Adopted:      []string{extra[1].ID, extra[0].ID, adopted.ID},
		Unreadable:   []string{ms[2].LocalPath},
	}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Fatalf("Cleanup(true) summary (-want +got):\n%s", diff)
	}
	sameModels(t, listAll(t, c, "hf", 10), []catalog.Model{extra[0], adopted, ms[4], ms[5]})
	sameModels(t, listAll(t, c, "file", 10), extra[1:])
	if !slices.Contains(w.files("models/"), ms[2].LocalPath) {
		t.Fatal("Cleanup deleted an unreadable file; it must leave it to the user")
	}
}

// catalog/backup-restore: a backup taken while another process is in the middle of a write
// is a consistent snapshot; restoring it brings back exactly what was committed before it,
// and keeps the replaced catalog.
func TestBackupWhileWritingThenRestore(t *testing.T) {
	w := newWorld(t)
	a, _ := w.open()
	b, _ := w.open() // a second hive process on the same file
	var before []catalog.Model
	for i := range 20 {
		c := []*catalog.Catalog{a, b}[i%2]
		m := w.model("hf", "org/m-"+string(rune('a'+i))+".gguf", uint64(i))
		if _, err := c.Register(m); err != nil {
			t.Fatal(err)
		}
		before = append(before, m)
	}
	// A third process holds an open write transaction during the backup.
	writer := w.rawConn(catalog.DefaultPath)
	defer writer.Close()
	inFlight := w.model("hf", "org/in-flight.gguf", 99)
	if err := writer.Exec(`BEGIN IMMEDIATE; INSERT INTO models (id, provider, reference, local_path, size_bytes, sha256, ` +
		`architecture, context_length, quantization, downloaded_at_unix_nano) VALUES ('` + inFlight.ID + `', 'hf', '` +
		inFlight.Reference + `', '` + inFlight.LocalPath + `', 1, '` + inFlight.SHA256 + `', 'llama', 1, '', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := a.Backup("backups/catalog-1.db"); err != nil {
		t.Fatalf("Backup during a write: %v", err)
	}
	if err := writer.Exec(`COMMIT`); err != nil {
		t.Fatal(err)
	}
	after := w.model("hf", "org/after.gguf", 100)
	if _, err := b.Register(after); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()

	w.now = w.now.Add(time.Minute)
	if err := catalog.Restore(w.options(), "backups/catalog-1.db"); err != nil {
		t.Fatal(err)
	}
	c, ev := w.open()
	defer c.Close()
	if len(ev) != 0 {
		t.Fatalf("events after restore: %+v", ev)
	}
	slices.SortFunc(before, func(x, y catalog.Model) int { return strings.Compare(x.ID, y.ID) })
	sameModels(t, listAll(t, c, "hf", 100), before)
	replaced := catalog.DefaultPath + ".replaced-20260101T120100Z"
	if !slices.Contains(w.files("catalog/"), replaced) {
		t.Fatalf("the replaced catalog was not kept as %s: files %q", replaced, w.files(""))
	}
	old := w.options()
	old.Path = replaced
	oc, _ := mustOpen(t, old)
	defer oc.Close()
	if got := listAll(t, oc, "hf", 100); len(got) != len(before)+2 {
		t.Fatalf("the replaced catalog holds %d models, want %d", len(got), len(before)+2)
	}
}

func mustOpen(t *testing.T, o catalog.Options) (*catalog.Catalog, []catalog.Event) {
	t.Helper()
	c, ev, err := catalog.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, ev
}

// catalog/backup-restore: a damaged or missing backup is refused and the catalog kept.
func TestRestoreRefusesABadBackup(t *testing.T) {
	w := newWorld(t)
	c, _ := w.open()
	w.registerModels(c, "hf", 3)
	if err := c.Backup("backups/good.db"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", catalog.DefaultPath, "models/hf/backup.db", "x.tmp"} {
		if err := c.Backup(name); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("Backup(%q) = %v; want ErrInvalid", name, err)
		}
	}
	c.Close()
	bad := w.readFile("backups/good.db")
	bad[0] ^= 0xff
	w.writeFile("backups/bad.db", bad)
	before := w.readFile(catalog.DefaultPath)
	for _, name := range []string{"backups/bad.db", "backups/missing.db"} {
		if err := catalog.Restore(w.options(), name); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Restore(%q) = %v; want an error naming it", name, err)
		}
	}
	if string(w.readFile(catalog.DefaultPath)) != string(before) {
		t.Fatal("a refused restore changed the catalog")
	}
}

// The real runtime opens the catalog with the OS's own VFS (VFS "") in the disk's folder.
func TestOSVFS(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t)
	o := w.options()
	o.VFS, o.Dir, o.Disk = "", dir, osDisk{dir}
	c, _ := mustOpen(t, o)
	m := w.model("hf", "org/os.gguf", 5)
	if err := node.WriteFileAtomic(o.Disk, m.LocalPath, modelFile(5)); err != nil {
		t.Fatal(err)
	}
	if ins, err := c.Register(m); err != nil || !ins {
		t.Fatalf("Register = %v, %v", ins, err)
	}
	if err := c.Backup("backups/b.db"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(dir, "catalog", "models.db")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "catalog", "models.db"))
	b[0] ^= 0xff
	os.WriteFile(filepath.Join(dir, "catalog", "models.db"), b, 0o644)
	c, ev := mustOpen(t, o)
	defer c.Close()
	if len(ev) != 1 || ev[0].Rebuilt != 1 {
		t.Fatalf("events = %+v", ev)
	}
	sameModels(t, listAll(t, c, "hf", 10), []catalog.Model{m}, ignoreDownloadedAt)
}

// osDisk is a minimal node.Disk over an OS folder, as the real runtime's.
type osDisk struct{ dir string }

func (d osDisk) path(name string) string { return filepath.Join(d.dir, filepath.FromSlash(name)) }

func (d osDisk) Open(name string, create bool) (node.File, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
		if err := os.MkdirAll(filepath.Dir(d.path(name)), 0o755); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(d.path(name), flag, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (d osDisk) Remove(name string) error { return os.Remove(d.path(name)) }

func (d osDisk) Rename(oldName, newName string) error {
	if err := os.MkdirAll(filepath.Dir(d.path(newName)), 0o755); err != nil {
		return err
	}
	return os.Rename(d.path(oldName), d.path(newName))
}

func (d osDisk) List(prefix string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(d.dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d.dir, p)
		if rel = filepath.ToSlash(rel); strings.HasPrefix(rel, prefix) {
			names = append(names, rel)
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
