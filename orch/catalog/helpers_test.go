package catalog_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
)

// t0 is the tests' clock; backups made at t0 are named "...-20260101T120000Z".
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// vramEstimate is the tests' stand-in for the hive's VRAM estimate, used both when
// registering and when the catalog rebuilds, so rebuilt rows equal registered ones.
func vramEstimate(m catalog.Model) int64 { return 2*m.SizeBytes + m.ContextLength*1024 }

// ignoreDownloadedAt compares Models without the registration time, which a rebuild resets.
var ignoreDownloadedAt = cmpopts.IgnoreFields(catalog.Model{}, "DownloadedAt")

// world is one machine's disk, its VFS and clock, as a hive sees them.
type world struct {
	t    testing.TB
	base *nodetest.MemDisk
	disk *faultDisk
	vfs  string
	now  time.Time
}

func newWorld(t testing.TB) *world {
	base := nodetest.NewMemDisk()
	w := &world{t: t, base: base, disk: &faultDisk{MemDisk: base}, now: t0}
	w.vfs = w.register()
	return w
}

// register registers the disk as a new VFS, unregistered at the end of the test.
func (w *world) register() string {
	name := sqlitevfs.Register(w.disk)
	w.t.Cleanup(func() { sqlitevfs.Unregister(name) })
	return name
}

func (w *world) options(plants ...string) catalog.Options {
	return catalog.Options{
		Disk:         w.disk,
		VFS:          w.vfs,
		Now:          func() time.Time { return w.now },
		Plants:       plant.NewSet(plants...),
		BusyTimeout:  -1,
		VRAMEstimate: vramEstimate,
	}
}

// open opens the catalog and fails the test on error.
func (w *world) open(plants ...string) (*catalog.Catalog, []catalog.Event) {
	w.t.Helper()
	c, ev, err := catalog.Open(w.options(plants...))
	if err != nil {
		w.t.Fatalf("Open: %v", err)
	}
	return c, ev
}

// crash simulates the hive process dying: its connection is abandoned (never closed) and its
// VFS unregistered, which releases its locks; the world gets a fresh VFS name for the next
// incarnation.
func (w *world) crash() {
	old := w.vfs
	w.vfs = w.register()
	sqlitevfs.Unregister(old)
}

// modelFile makes the bytes of a small synthetic model.
func modelFile(seed uint64) []byte {
	return gguf.Bytes(gguf.Spec{
		Architecture: "llama", ContextLength: 2048 + seed%4*1024, BlockCount: 22, FileType: 15,
		Name: fmt.Sprintf("model %d", seed), PayloadBytes: 64 + int64(seed%8)*4, Seed: seed,
	})
}

// model returns the Model of the file modelFile(seed) would be, without writing it.
func (w *world) model(provider, reference string, seed uint64) catalog.Model {
	data := modelFile(seed)
	sum := sha256.Sum256(data)
	m := catalog.Model{
		ID: provider + ":" + reference, Provider: provider, Reference: reference,
		LocalPath: catalog.ModelPath(catalog.DefaultModelsDir, provider, reference),
		SizeBytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Architecture: "llama", ContextLength: int64(2048 + seed%4*1024), Quantization: gguf.QuantizationName(15),
		DownloadedAt: w.now,
	}
	m.VRAMRequired = vramEstimate(m)
	return m
}

// writeModel puts a model file on the disk as a download would and returns its Model.
func (w *world) writeModel(provider, reference string, seed uint64) catalog.Model {
	w.t.Helper()
	m := w.model(provider, reference, seed)
	if err := node.WriteFileAtomic(w.base, m.LocalPath, modelFile(seed)); err != nil {
		w.t.Fatal(err)
	}
	return m
}

// registerModels writes n model files and registers them.
func (w *world) registerModels(c *catalog.Catalog, provider string, n int) []catalog.Model {
	w.t.Helper()
	var ms []catalog.Model
	for i := range n {
		m := w.writeModel(provider, fmt.Sprintf("org/repo-%03d/model.Q4_K_M.gguf", i), uint64(i))
		if ins, err := c.Register(m); err != nil || !ins {
			w.t.Fatalf("Register(%s) = %v, %v", m.ID, ins, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// listAll pages through a provider's models.
func listAll(t testing.TB, c *catalog.Catalog, provider string, pageSize int) []catalog.Model {
	t.Helper()
	var all []catalog.Model
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatal("pagination does not end")
		}
		page, next, err := c.ListByProvider(provider, pageSize, token)
		if err != nil {
			t.Fatalf("ListByProvider(%q, %d, %q): %v", provider, pageSize, token, err)
		}
		if len(page) > pageSize {
			t.Fatalf("page of %d models, asked for %d", len(page), pageSize)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		token = next
	}
}

// sameModels fails the test when got and want differ (ignoring DownloadedAt if asked).
func sameModels(t testing.TB, got, want []catalog.Model, opts ...cmp.Option) {
	t.Helper()
	if diff := cmp.Diff(want, got, append(opts, cmpopts.EquateEmpty())...); diff != "" {
		t.Errorf("models differ (-want +got):\n%s", diff)
	}
}

// rawConn opens the catalog file with plain SQLite, bypassing the catalog.
func (w *world) rawConn(name string) *sqlite3.Conn {
	w.t.Helper()
	conn, err := sqlite3.Open("file:" + name + "?vfs=" + w.vfs)
	if err != nil {
		w.t.Fatal(err)
	}
	return conn
}

func (w *world) userVersion(name string) int {
	w.t.Helper()
	conn := w.rawConn(name)
	defer conn.Close()
	st, _, err := conn.Prepare(`PRAGMA user_version`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer st.Close()
	if !st.Step() {
		w.t.Fatal(st.Err())
	}
	return st.ColumnInt(0)
}

func (w *world) readFile(name string) []byte {
	w.t.Helper()
	b, err := node.ReadFile(w.base, name)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func (w *world) writeFile(name string, b []byte) {
	w.t.Helper()
	if err := node.WriteFileAtomic(w.base, name, b); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) files(prefix string) []string {
	names, err := w.base.List(prefix)
	if err != nil {
		w.t.Fatal(err)
	}
	return names
}

// faultDisk is a MemDisk with the faults the catalog must survive: a full disk, failing
// fsyncs, failing reads of one file, and a crash after a number of writes.
type faultDisk struct {
	*nodetest.MemDisk
	// full: no file may grow (writes past the end fail with ENOSPC).
	full bool
	// failSyncs: the next failSyncs Sync calls fail.
	failSyncs int
	// failReadsOf: reads of this file fail while failReads > 0.
	failReadsOf string
	failReads   int
	// crashAfter: when > 0, the disk freezes after this many more mutations: later writes,
	// truncates, syncs, renames and removes fail, as if the machine had lost power with every
	// earlier write durable.
	crashAfter int
	crashed    bool
}

var errCrashed = fmt.Errorf("machine crashed")

func (d *faultDisk) mutate() error {
	if d.crashed {
		return errCrashed
	}
	if d.crashAfter > 0 {
		d.crashAfter--
		if d.crashAfter == 0 {
			d.crashed = true
		}
	}
	return nil
}

func (d *faultDisk) Open(name string, create bool) (node.File, error) {
	if d.crashed && create {
		if _, err := d.MemDisk.Open(name, false); err != nil {
			return nil, errCrashed
		}
	}
	f, err := d.MemDisk.Open(name, create)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, d: d, name: name}, nil
}

func (d *faultDisk) Remove(name string) error {
	if err := d.mutate(); err != nil {
		return err
	}
	return d.MemDisk.Remove(name)
}

func (d *faultDisk) Rename(oldName, newName string) error {
	if err := d.mutate(); err != nil {
		return err
	}
	return d.MemDisk.Rename(oldName, newName)
}

type faultFile struct {
	node.File
	d    *faultDisk
	name string
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if f.name == f.d.failReadsOf && f.d.failReads > 0 {
		f.d.failReads--
		return 0, fmt.Errorf("read %s: %w", f.name, syscall.EIO)
	}
	return f.File.ReadAt(p, off)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.d.mutate(); err != nil {
		return 0, err
	}
	if f.d.full {
		size, err := f.File.Size()
		if err != nil {
			return 0, err
		}
		if off+int64(len(p)) > size {
			return 0, fmt.Errorf("write %s: %w", f.name, syscall.ENOSPC)
		}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.d.mutate(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *faultFile) Sync() error {
	if err := f.d.mutate(); err != nil {
		return err
	}
	if f.d.failSyncs > 0 {
		f.d.failSyncs--
		return fmt.Errorf("fsync %s: %w", f.name, syscall.EIO)
	}
	return f.File.Sync()
}
