package catalog_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"pgregory.net/rapid"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/sim"
)

// v1Model is a model of a version 1 catalog and its file's bytes.
type v1Model struct {
	m    catalog.Model
	data []byte
}

var migrateProviders = []string{"a", "file", "hf", "modelscope", "ollama", "x-1"}

// v1ModelGen draws a valid model with a GGUF file that matches it: varied providers,
// references with '/' and bytes that need escaping, quantizations, context lengths, dates.
var v1ModelGen = rapid.Custom(func(t *rapid.T) v1Model {
	provider := rapid.SampledFrom(migrateProviders).Draw(t, "provider")
	segs := rapid.SliceOfN(rapid.StringMatching(`[A-Za-z0-9._ %:()ü-]{1,16}`), 1, 4).Draw(t, "reference")
	reference := strings.Join(segs, "/") + rapid.SampledFrom([]string{".gguf", "", "-Q4_K_M.gguf"}).Draw(t, "suffix")
	spec := gguf.Spec{
		Architecture:  rapid.SampledFrom([]string{"llama", "qwen2", "phi3", "gemma2", "mistral"}).Draw(t, "arch"),
		ContextLength: rapid.OneOf(rapid.Uint64Range(1, 1<<17), rapid.Uint64Range(1<<32, 1<<40)).Draw(t, "context"),
		BlockCount:    rapid.Uint64Range(1, 80).Draw(t, "blocks"),
		FileType:      rapid.SampledFrom([]uint32{0, 1, 2, 7, 8, 10, 12, 15, 17, 18, 30, 32, 99}).Draw(t, "file type"),
		PayloadBytes:  4 * rapid.Int64Range(1, 8).Draw(t, "payload words"),
		Seed:          rapid.Uint64().Draw(t, "seed"),
	}
	data := gguf.Bytes(spec)
	sum := sha256.Sum256(data)
	m := catalog.Model{
		ID: provider + ":" + reference, Provider: provider, Reference: reference,
		LocalPath: catalog.ModelPath(catalog.DefaultModelsDir, provider, reference),
		SizeBytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Architecture: spec.Architecture, ContextLength: int64(spec.ContextLength),
		Quantization: gguf.QuantizationName(spec.FileType),
		// Version 1 has no column for it: the migrated row reads 0, unknown.
		VRAMRequired: rapid.Int64Range(0, 1<<40).Draw(t, "vram"),
		DownloadedAt: time.Unix(0, rapid.Int64Range(1, 1<<62).Draw(t, "downloaded at")).UTC(),
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("the generator made an invalid model: %v", err)
	}
	return v1Model{m, data}
})

// drawV1Models draws 0-200 models with distinct IDs (the count drawn first, so that large
// catalogs, whose tables span many pages, come up as often as small ones).
func drawV1Models(t *rapid.T) []v1Model {
	n := rapid.IntRange(0, 200).Draw(t, "model count")
	return rapid.SliceOfNDistinct(v1ModelGen, n, n, func(v v1Model) string { return v.m.ID }).Draw(t, "models")
}

// migratedWant is what the migrated catalog must hold: every model, VRAMRequired 0, in
// listAllProviders's order.
func migratedWant(ms []v1Model) []catalog.Model {
	set := map[string]catalog.Model{}
	for _, v := range ms {
		m := v.m
		m.VRAMRequired = 0
		set[m.ID] = m
	}
	return sortedModels(set)
}

// v1Machine writes the model files and a version 1 catalog of ms on a fresh disk, and returns
// it with a counting wrapper (counting from zero after CreateV1) and its VFS.
func v1Machine(t *testing.T, rt *rapid.T, ms []v1Model) (*sim.Disk, *countingDisk, string) {
	cryptotest.SetGlobalRandom(t, 1)
	disk := sim.NewDisk()
	var models []catalog.Model
	for _, v := range ms {
		must(rt, node.WriteFileAtomic(disk, v.m.LocalPath, v.data), "writing %s", v.m.LocalPath)
		models = append(models, v.m)
	}
	cd := &countingDisk{d: disk}
	vfs := sqlitevfs.Register(cd)
	rt.Cleanup(func() { sqlitevfs.Unregister(vfs) })
	must(rt, catalog.CreateV1(propOptions(cd, vfs, &propClock{now: t0}), models), "CreateV1")
	if v := rawQueryInt(rt, vfs, catalog.DefaultPath, `PRAGMA user_version`); v != 1 {
		rt.Fatalf("CreateV1 wrote version %d", v)
	}
	cd.writes = 0
	return disk, cd, vfs
}

// checkMigrated checks an open catalog against the models of the v1 catalog it came from.
func checkMigrated(rt *rapid.T, c *catalog.Catalog, disk node.Disk, vfs string, ms []v1Model) {
	rt.Helper()
	if v := rawQueryInt(rt, vfs, catalog.DefaultPath, `PRAGMA user_version`); v != catalog.SchemaVersion {
		rt.Fatalf("after Open: schema version %d, want %d", v, catalog.SchemaVersion)
	}
	want := migratedWant(ms)
	got := listAllProviders(rt, c, migrateProviders, rapid.IntRange(1, 60).Draw(rt, "page size"))
	if d := diffModels(want, got); d != "" {
		rt.Fatalf("the migrated catalog differs (-want +got):\n%s", d)
	}
	if n := rawQueryInt(rt, vfs, catalog.DefaultPath, `SELECT count(*) FROM models`); n != len(want) {
		rt.Fatalf("the catalog holds %d rows, want %d", n, len(want))
	}
	for _, i := range rapid.SliceOfNDistinct(rapid.IntRange(0, max(0, len(want)-1)), 0, min(len(want), 5), rapid.ID[int]).Draw(rt, "gets") {
		m, found, err := c.Get(want[i].ID)
		must(rt, err, "Get(%s)", want[i].ID)
		if d := diffModels([]catalog.Model{want[i]}, []catalog.Model{m}); !found || d != "" {
			rt.Fatalf("Get(%s): found %v (-want +got):\n%s", want[i].ID, found, d)
		}
	}
	for _, m := range got {
		checkRowFile(rt, disk, m)
	}
}

// catalog/schema-migration, as a property: a version 1 catalog of 0-200 rapid-drawn models
// opens as version 2 with every row and value kept and VRAMRequired 0 (unknown).
func TestPropMigrateV1(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ms := drawV1Models(rt)
		disk, cd, vfs := v1Machine(t, rt, ms)
		c, events, err := catalog.Open(propOptions(cd, vfs, &propClock{now: t0.Add(time.Hour)}))
		must(rt, err, "Open of a version 1 catalog of %d models", len(ms))
		defer c.Close()
		if len(events) != 0 {
			rt.Fatalf("the migration reported events: %+v", events)
		}
		checkMigrated(rt, c, disk, vfs, ms)
	})
}

// catalog/schema-migration, as a property: the machine loses power at a rapid-drawn disk
// mutation of the Open that migrates a rapid-drawn version 1 catalog (torn or not). After it,
// the file is a complete version 1 catalog or a complete version 2 one, never a mix, with
// every row; and the next Open finishes the job without an event.
func TestPropMigrateV1Crash(t *testing.T) {
	sawV1, sawV2 := 0, 0
	rapid.Check(t, func(rt *rapid.T) {
		ms := drawV1Models(rt)
		_, dry, dryVFS := v1Machine(t, rt, ms)
		c, _, err := catalog.Open(propOptions(dry, dryVFS, &propClock{now: t0.Add(time.Hour)}))
		must(rt, err, "dry run: Open")
		total := dry.writes
		must(rt, c.Close(), "dry run: Close")
		sqlitevfs.Unregister(dryVFS)

		k := rapid.IntRange(1, total).Draw(rt, "k")
		lands := rapid.Bool().Draw(rt, "the k-th mutation lands")
		torn := rapid.Bool().Draw(rt, "torn power failure")
		seed := drawSeed(rt, "power failure seed")
		disk, cd, vfs := v1Machine(t, rt, ms)
		cd.crashAt, cd.lands = k, lands
		c, _, err = catalog.Open(propOptions(cd, vfs, &propClock{now: t0.Add(time.Hour)}))
		if !cd.frozen {
			rt.Fatalf("the Open made %d mutations, fewer than the dry run's %d: runs are not deterministic", cd.writes, total)
		}
		sqlitevfs.Unregister(vfs)
		if torn {
			disk.PowerFailTorn(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		} else {
			disk.PowerFail()
		}
		if err == nil {
			c.Close() // frees memory only: the VFS is gone and the disk frozen
		}

		// What the crash left, read on a copy of the disk (reading the file rolls back a hot
		// journal, which the catalog's own Open must get to do).
		copyVFS := sqlitevfs.Register(copyDisk(rt, disk))
		defer sqlitevfs.Unregister(copyVFS)
		v := rawQueryInt(rt, copyVFS, catalog.DefaultPath, `PRAGMA user_version`)
		col := rawQueryInt(rt, copyVFS, catalog.DefaultPath, `SELECT count(*) FROM pragma_table_info('models') WHERE name = 'vram_required'`)
		switch {
		case v == 1 && col == 0:
			sawV1++
		case v == 2 && col == 1:
			sawV2++
		default:
			rt.Fatalf("a crash at mutation %d of %d (lands=%v, torn=%v) left version %d with %d vram_required columns: half migrated",
				k, total, lands, torn, v, col)
		}
		if n := rawQueryInt(rt, copyVFS, catalog.DefaultPath, `SELECT count(*) FROM models`); n != len(ms) {
			rt.Fatalf("a crash at mutation %d of %d left version %d with %d rows of %d", k, total, v, n, len(ms))
		}

		// The machine reboots; the hive opens the catalog again.
		cd = &countingDisk{d: disk}
		vfs = sqlitevfs.Register(cd)
		defer sqlitevfs.Unregister(vfs)
		c, events, err := catalog.Open(propOptions(cd, vfs, &propClock{now: t0.Add(2 * time.Hour)}))
		must(rt, err, "Open after a crash at mutation %d of %d (version %d left)", k, total, v)
		defer c.Close()
		if len(events) != 0 {
			rt.Fatalf("Open after a crash at mutation %d of %d: events %+v (nothing was lost)", k, total, events)
		}
		checkMigrated(rt, c, disk, vfs, ms)
	})
	t.Logf("crashes left version 1 %d times and version 2 %d times", sawV1, sawV2)
	if sawV1 == 0 || sawV2 == 0 {
		t.Errorf("the crashes never left version 1 (%d) or never version 2 (%d): the property does not cover the migration", sawV1, sawV2)
	}
}

// copyDisk returns a new disk holding d's files as they are now, synced.
func copyDisk(t propT, d *sim.Disk) *sim.Disk {
	t.Helper()
	out := sim.NewDisk()
	for _, name := range d.Files() {
		b, err := node.ReadFile(d, name)
		must(t, err, "copying %s", name)
		f, err := out.Open(name, true)
		must(t, err, "copying %s", name)
		_, err = f.WriteAt(b, 0)
		must(t, err, "copying %s", name)
		must(t, f.Sync(), "copying %s", name)
		f.Close()
	}
	return out
}
