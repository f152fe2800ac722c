package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

// The recorded-history judge reads the final catalogs of a run on real processes from the
// machines' folders: an acknowledged registration whose row is there passes, one whose row is
// missing while its file is intact fails liveness, and a machine whose folder the judge was
// not given fails with that said (it used to dereference the absent simulator).
func TestJudgeRecordedCatalogReadsRealDisks(t *testing.T) {
	mf := ModelFile{Machine: "machine-1", Provider: "hf", Reference: "org/m-GGUF/m.gguf", Architecture: "llama", ContextLength: 2048, PayloadBytes: 256}
	sc := Scenario{ID: "real/catalog", Queen: QueenSpec{Addr: "queen", MaxWorkers: 8},
		Hives:  []HiveSpec{{Addr: "hive-1", Machine: "machine-1", Catalog: true}},
		Models: []ModelFile{mf},
		CatalogClients: []CatalogClientSpec{{Addr: "keeper-1", Client: keeper.CatalogConfig{Hives: []node.Addr{"hive-1"},
			Provider: "hf", References: []string{mf.Reference}}}}}
	v1 := sc
	v1.Models = []ModelFile{mf}
	v1.Models[0].V1 = true
	row := v1.V1CatalogRows("machine-1")[0]

	// machine writes the model file into a fresh folder, over a catalog created first (a
	// catalog opened on a disk that has the file would adopt it in its rebuild), with the row
	// registered or not.
	machine := func(registered bool) string {
		dir := filepath.Join(t.TempDir(), "machine-1")
		d, err := real.NewOSDisk(dir)
		if err != nil {
			t.Fatal(err)
		}
		cat, _, err := catalog.Open(catalog.Options{Disk: d, Dir: d.Dir(), Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, sc.ModelFilePath(0))), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sc.ModelFilePath(0)), sc.ModelFileBytes(0), 0o644); err != nil {
			t.Fatal(err)
		}
		if registered {
			if _, err := cat.Register(row); err != nil {
				t.Fatal(err)
			}
		}
		cat.Close()
		return dir
	}
	rec := api.ModelRecord{ID: row.ID, Provider: row.Provider, Reference: row.Reference, LocalPath: row.LocalPath, SizeBytes: row.SizeBytes,
		SHA256: row.SHA256, Architecture: row.Architecture, ContextLength: row.ContextLength, Quantization: row.Quantization}
	req := api.CatalogRegisterReq{ReqID: 1, Provider: "hf", Reference: mf.Reference}
	evs := []Recorded{
		{At: time.Millisecond, Kind: "send", From: "keeper-1", To: "hive-1", Msg: req},
		{At: 2 * time.Millisecond, Kind: "deliver", From: "hive-1", To: "keeper-1", Msg: api.CatalogResp{ReqID: 1, Op: req.MsgName(), Inserted: true, Model: rec}},
	}
	judge := func(disks map[string]string) Result {
		return JudgeRecorded(sc, RealRun{Events: evs, CatalogOps: 1, Disks: disks}, Options{})
	}
	if res := judge(map[string]string{"machine-1": machine(true)}); !res.Passed {
		t.Fatalf("a kept registration failed: %+v", res.Checkers)
	}
	lost := judge(map[string]string{"machine-1": machine(false)})
	if f := lost.FirstFailure(); lost.Passed || f.Name != "no acknowledged registration lost while its file is intact" {
		t.Fatalf("a lost registration passed or failed elsewhere: %+v", lost.Checkers)
	}
	none := judge(nil)
	if f := none.FirstFailure(); none.Passed || !strings.Contains(f.Detail, "not given the folder") {
		t.Fatalf("a judge without the machine's folder: %+v", none.Checkers)
	}
	// The helpers give the simulator's bytes and path.
	if got, want := sc.ModelFilePath(0), catalog.ModelPath("models/", "hf", mf.Reference); got != want {
		t.Errorf("ModelFilePath = %q, want %q", got, want)
	}
	if b := sc.ModelFileBytes(0); len(b) == 0 || row.SizeBytes != int64(len(b)) {
		t.Errorf("ModelFileBytes: %d bytes, the v1 row says %d", len(b), row.SizeBytes)
	}
}

// JudgeRecorded counts the harness's marks of its monitors as Run does: two registrations of
// one model in flight at once on one machine's catalog is the raced mark the catalog
// scenarios require.
func TestJudgeRecordedCountsRacedRegistrations(t *testing.T) {
	sc := Scenario{ID: "real/raced", Queen: QueenSpec{Addr: "queen", MaxWorkers: 8},
		Hives: []HiveSpec{{Addr: "hive-1", Machine: "m", Catalog: true}, {Addr: "hive-2", Machine: "m", Catalog: true}},
		CatalogClients: []CatalogClientSpec{{Addr: "keeper-1", Client: keeper.CatalogConfig{Hives: []node.Addr{"hive-1", "hive-2"},
			Provider: "hf", References: []string{"a/b/c.gguf"}}}}}
	ms := time.Millisecond
	a, b := api.CatalogRegisterReq{ReqID: 1, Provider: "hf", Reference: "a/b/c.gguf"}, api.CatalogRegisterReq{ReqID: 2, Provider: "hf", Reference: "a/b/c.gguf"}
	evs := []Recorded{{At: ms, Kind: "send", From: "keeper-1", To: "hive-1", Msg: a}, {At: 2 * ms, Kind: "send", From: "keeper-1", To: "hive-2", Msg: b}}
	if got := JudgeRecorded(sc, RealRun{Events: evs, CatalogOps: 2}, Options{}).Marks[markRaced]; got != 1 {
		t.Fatalf("raced mark counted %d times, want 1", got)
	}
}
