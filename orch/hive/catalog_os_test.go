package hive

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/real"
)

// sharedCatalogModels is how many models the processes of TestHivesInTwoProcessesShareTheCatalog
// register at once.
const sharedCatalogModels = 40

// Hive processes on one machine share its catalog file: on a real disk (an OS folder) their
// catalog connections must lock the file through the operating system, which other processes
// see. With locks kept inside each process, two hives wrote the file at once: a registration
// was acknowledged as inserted while another process's row was kept, and a commit failed to
// delete a journal the other process had already deleted (SQLITE_IOERR_DELETE_NOENT), which
// the catalog took for corruption. Two processes register the same models at the same time:
// each model must be inserted exactly once, with no error.
func TestHivesInTwoProcessesShareTheCatalog(t *testing.T) {
	if dir := os.Getenv("RBEE_TEST_SHARED_CATALOG"); dir != "" {
		registerAll(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("runs two processes")
	}
	dir := t.TempDir()
	for i := range sharedCatalogModels {
		p := filepath.Join(dir, filepath.FromSlash(catalog.ModelPath("models/", "hf", modelRef(i))))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := gguf.Bytes(gguf.Spec{Architecture: "llama", ContextLength: 2048, PayloadBytes: 64, Seed: uint64(i)})
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The catalog exists before the processes start (one that finds none rebuilds it from the
	// files, which would register the models before the race).
	d, err := real.NewOSDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{Queen: "queen", Catalog: true})
	h.cfg.ModelsDir = "empty/"
	if err := h.openCatalog(nodetest.New("hive-0", 1, d)); err != nil {
		t.Fatal(err)
	}
	h.Close()

	outs := make([]string, 2)
	var wg sync.WaitGroup
	for p := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHivesInTwoProcessesShareTheCatalog$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "RBEE_TEST_SHARED_CATALOG="+dir, "RBEE_TEST_HIVE="+strconv.Itoa(p+1))
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("process %d: %v\n%s", p+1, err, b)
			}
			outs[p] = string(b)
		}()
	}
	wg.Wait()
	inserted := map[string]int{}
	for p, out := range outs {
		_, js, ok := strings.Cut(out, "RESULT ")
		js, _, _ = strings.Cut(js, "\n")
		var r sharedCatalogResult
		if !ok || json.Unmarshal([]byte(js), &r) != nil {
			t.Fatalf("process %d printed no result:\n%s", p+1, out)
		}
		for _, e := range r.Errors {
			t.Errorf("process %d: %s", p+1, e)
		}
		for _, id := range r.Inserted {
			inserted[id]++
		}
	}
	for i := range sharedCatalogModels {
		if id := "hf:" + modelRef(i); inserted[id] != 1 {
			t.Errorf("model %s was inserted %d times by the two processes, want once", id, inserted[id])
		}
	}
}

type sharedCatalogResult struct {
	Inserted []string
	Errors   []string
}

func modelRef(i int) string { return fmt.Sprintf("org/model-%d-GGUF/model.gguf", i) }

// registerAll is one hive process of TestHivesInTwoProcessesShareTheCatalog.
func registerAll(t *testing.T, dir string) {
	d, err := real.NewOSDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := nodetest.New(node.Addr("hive-"+os.Getenv("RBEE_TEST_HIVE")), 1, d)
	h := New(Config{Queen: "queen", Catalog: true})
	defer h.Close()
	var r sharedCatalogResult
	for i := range sharedCatalogModels {
		h.Handle(env, "keeper", api.CatalogRegisterReq{ReqID: uint64(i + 1), Provider: "hf", Reference: modelRef(i)})
		for _, s := range env.TakeSent() {
			resp, ok := s.Msg.(api.CatalogResp)
			switch {
			case !ok:
			case !resp.Err.OK():
				r.Errors = append(r.Errors, fmt.Sprintf("register %s: %v", modelRef(i), resp.Err.Error()))
			case resp.Inserted:
				r.Inserted = append(r.Inserted, resp.Model.ID)
			}
		}
	}
	for _, o := range env.Observed {
		if e, ok := o.(api.CatalogRebuilt); ok {
			r.Errors = append(r.Errors, "the catalog was rebuilt: "+e.Message)
		}
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}
