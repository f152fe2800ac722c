package catalog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ncruces/go-sqlite3"
	"pgregory.net/rapid"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Shared pieces of the property tests (prop_*_test.go): a disk wrapper that counts the
// mutating operations and loses power at a chosen one, a pool of models, and checks of a
// catalog against its model files.

// errPowerLost is what every mutation gets once countingDisk has lost power.
var errPowerLost = errors.New("simulated power loss: the disk takes no more writes")

// countingDisk is a node.Disk over a *sim.Disk that counts mutating operations (WriteAt,
// Truncate, Sync, Rename, Remove, and Open creating a missing file). At the crashAt-th one
// (1-based; 0 never) the machine loses power: that operation reaches the disk only when
// lands is set, it and every later mutation fail, and reads go on seeing the volatile
// images until the test calls PowerFail or PowerFailTorn on the sim.Disk.
type countingDisk struct {
	d       *sim.Disk
	writes  int
	crashAt int
	lands   bool
	frozen  bool
}

func (c *countingDisk) mutate(apply func() error) error {
	if c.frozen {
		return errPowerLost
	}
	c.writes++
	if c.writes == c.crashAt {
		c.frozen = true
		if c.lands {
			_ = apply()
		}
		return errPowerLost
	}
	return apply()
}

func (c *countingDisk) Open(name string, create bool) (node.File, error) {
	f, err := c.d.Open(name, false)
	if err != nil && create && node.IsNotExist(err) {
		err = c.mutate(func() error {
			var err error
			f, err = c.d.Open(name, true)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, c: c}, nil
}

func (c *countingDisk) Remove(name string) error {
	return c.mutate(func() error { return c.d.Remove(name) })
}

func (c *countingDisk) Rename(oldName, newName string) error {
	return c.mutate(func() error { return c.d.Rename(oldName, newName) })
}

func (c *countingDisk) List(prefix string) ([]string, error) { return c.d.List(prefix) }

type countingFile struct {
	node.File
	c *countingDisk
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	err := f.c.mutate(func() error {
		var err error
		n, err = f.File.WriteAt(p, off)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (f *countingFile) Truncate(size int64) error {
	return f.c.mutate(func() error { return f.File.Truncate(size) })
}

func (f *countingFile) Sync() error {
	return f.c.mutate(func() error { return f.File.Sync() })
}

// propT is what the checks need of a *rapid.T (or a *testing.T).
type propT interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// propClock is a hive clock the tests move forward by hand.
type propClock struct{ now time.Time }

func (c *propClock) Now() time.Time { return c.now }

// propOptions are a hive's catalog options on disk through the VFS vfs.
func propOptions(disk node.Disk, vfs string, clock *propClock) catalog.Options {
	return catalog.Options{
		Disk:         disk,
		VFS:          vfs,
		Now:          clock.Now,
		BusyTimeout:  -1,
		VRAMEstimate: vramEstimate,
	}
}

// poolEntry is a model the property tests may download and register.
type poolEntry struct {
	provider, reference string
	seed                uint64
}

// propPool holds models of several providers, with references that need escaping.
var propPool = []poolEntry{
	{"hf", "TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_K_M.gguf", 1},
	{"hf", "org/repo/model.Q8_0.gguf", 2},
	{"hf", ".hidden/über model.gguf", 3},
	{"file", "my model (copy).gguf", 4},
	{"ollama", "llama3:8b", 5},
	{"x-1", "a%2Fb/c", 6},
}

// propProviders are the providers of propPool, sorted.
var propProviders = []string{"file", "hf", "ollama", "x-1"}

// poolModel is the Model of propPool[i] registered at now, with its file's bytes.
func poolModel(i int, now time.Time) (catalog.Model, []byte) {
	e := propPool[i]
	data := modelFile(e.seed)
	sum := sha256.Sum256(data)
	m := catalog.Model{
		ID: e.provider + ":" + e.reference, Provider: e.provider, Reference: e.reference,
		LocalPath: catalog.ModelPath(catalog.DefaultModelsDir, e.provider, e.reference),
		SizeBytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Architecture: "llama", ContextLength: int64(2048 + e.seed%4*1024), Quantization: gguf.QuantizationName(15),
		DownloadedAt: now,
	}
	m.VRAMRequired = vramEstimate(m)
	return m, data
}

// poolIndex returns the index in propPool of the model with this ID, or -1.
func poolIndex(id string) int {
	for i, e := range propPool {
		if e.provider+":"+e.reference == id {
			return i
		}
	}
	return -1
}

// fileIntact reports whether the file name on d holds exactly want.
func fileIntact(d node.Disk, name string, want []byte) bool {
	got, err := node.ReadFile(d, name)
	return err == nil && bytes.Equal(got, want)
}

// checkRowFile fails when the file a row names is missing or is not the file the row
// describes (size, SHA-256, GGUF header).
func checkRowFile(t propT, d node.Disk, m catalog.Model) {
	t.Helper()
	data, err := node.ReadFile(d, m.LocalPath)
	if err != nil {
		t.Fatalf("row %s points to %s, which cannot be read: %v", m.ID, m.LocalPath, err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != m.SizeBytes || hex.EncodeToString(sum[:]) != m.SHA256 {
		t.Fatalf("row %s says %d bytes, SHA-256 %s; its file %s has %d bytes, SHA-256 %x",
			m.ID, m.SizeBytes, m.SHA256, m.LocalPath, len(data), sum)
	}
	info, err := gguf.Validate(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("row %s points to %s, which is not a valid GGUF file: %v", m.ID, m.LocalPath, err)
	}
	if info.Architecture != m.Architecture || info.Quantization != m.Quantization ||
		int64(info.ContextLength) != m.ContextLength {
		t.Fatalf("row %s says %s/%s/%d; its file's header says %s/%s/%d", m.ID, m.Architecture,
			m.Quantization, m.ContextLength, info.Architecture, info.Quantization, info.ContextLength)
	}
}

// listAllProviders pages through every provider's models (pages of pageSize), in the order
// providers are given, and fails on any error.
func listAllProviders(t propT, c *catalog.Catalog, providers []string, pageSize int) []catalog.Model {
	t.Helper()
	var all []catalog.Model
	for _, p := range providers {
		token := ""
		for pages := 0; ; pages++ {
			if pages > 10000 {
				t.Fatalf("pagination of %s does not end", p)
			}
			page, next, err := c.ListByProvider(p, pageSize, token)
			if err != nil {
				t.Fatalf("ListByProvider(%q, %d, %q): %v", p, pageSize, token, err)
			}
			if len(page) > pageSize {
				t.Fatalf("ListByProvider(%q, %d): a page of %d models", p, pageSize, len(page))
			}
			all = append(all, page...)
			if next == "" {
				break
			}
			token = next
		}
	}
	return all
}

// sortedModels returns the models of set sorted by provider, then ID: listAllProviders's
// order for sorted providers.
func sortedModels(set map[string]catalog.Model) []catalog.Model {
	ms := make([]catalog.Model, 0, len(set))
	for _, m := range set { //det:sorted below
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Provider != ms[j].Provider {
			return ms[i].Provider < ms[j].Provider
		}
		return ms[i].ID < ms[j].ID
	})
	return ms
}

// diffModels is the go-cmp diff of two model lists ("" when equal).
func diffModels(want, got []catalog.Model, opts ...cmp.Option) string {
	return cmp.Diff(want, got, append(opts, cmpopts.EquateEmpty())...)
}

// rawQueryInt runs a query of one integer on the file name through vfs, with plain SQLite.
func rawQueryInt(t propT, vfs, name, query string) int {
	t.Helper()
	n, err := rawQuery(vfs, name, query)
	if err != nil {
		t.Fatalf("raw %q on %s: %v", query, name, err)
	}
	return n
}

func rawQuery(vfs, name, query string) (int, error) {
	conn, err := sqlite3.Open("file:" + name + "?vfs=" + vfs)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st, _, err := conn.Prepare(query)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if !st.Step() {
		return 0, fmt.Errorf("no row (%v)", st.Err())
	}
	return st.ColumnInt(0), nil
}

// drawSeed draws a 64-bit seed.
func drawSeed(t *rapid.T, label string) uint64 { return rapid.Uint64().Draw(t, label) }

// must fails the check on err.
func must(t propT, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
