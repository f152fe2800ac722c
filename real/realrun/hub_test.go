package realrun

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
	"github.com/rbee-sim/rbee-sim/scenario"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Each hub fault maps to one of fakehub's settings, with faults/hub.go's Retry-After.
func TestHubActionOf(t *testing.T) {
	hub := []node.Addr{scenario.HubAddr}
	for _, tc := range []struct {
		f    faults.Fault
		want hubAction
	}{
		{faults.Fault{Kind: "hub-5xx", Targets: hub, Value: 3, For: time.Second}, hubAction{slot: "fail", n: 3, status: 503}},
		{faults.Fault{Kind: "hub-rate-limit", Targets: hub, Value: 2, For: 6 * time.Second}, hubAction{slot: "fail", n: 2, status: 429, retryAfter: 1500 * time.Millisecond}},
		{faults.Fault{Kind: "hub-rate-limit", Targets: hub, Value: 1, For: 2 * time.Second}, hubAction{slot: "fail", n: 1, status: 429, retryAfter: time.Second}},
		{faults.Fault{Kind: "hub-rate-limit", Targets: hub, Value: 1, For: 3 * time.Minute}, hubAction{slot: "fail", n: 1, status: 429, retryAfter: 15 * time.Second}},
		{faults.Fault{Kind: "hub-reset", Targets: hub, Value: 100 << 10, For: time.Second}, hubAction{slot: "break", n: 1<<31 - 1, after: 100 << 10}},
		{faults.Fault{Kind: "hub-hang", Targets: hub, Value: 2}, hubAction{slot: "hang", n: 2}},
		{faults.Fault{Kind: "hub-corrupt", Targets: hub, Value: 1}, hubAction{slot: "corrupt", n: 1}},
		{faults.Fault{Kind: "hub-ignore-range", Targets: hub, Value: 4}, hubAction{slot: "ignore-range", n: 4}},
	} {
		if got, ok := hubActionOf(tc.f); !ok || got != tc.want {
			t.Errorf("%s value %d for %v: got %+v %v, want %+v", tc.f.Kind, tc.f.Value, tc.f.For, got, ok, tc.want)
		}
	}
	if _, ok := hubActionOf(faults.Fault{Kind: "net-delay"}); ok {
		t.Error("net-delay mapped to a hub action")
	}
}

// Overlapping faults on one fakehub setting stack as in the simulator: the latest is set, and
// when it ends the one still on is set again; when none is left the setting is cleared.
func TestHubFaultsStack(t *testing.T) {
	srv := fakehub.New(fakehub.Config{})
	srv.AddFile("acme/m", "main", "m.gguf", []byte("0123456789"))
	ts := httptest.NewServer(srv)
	defer ts.Close()
	h := &hubRun{srv: srv, on: map[string][]hubAction{}}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	status := func() (int, string) {
		t.Helper()
		resp, err := noFollow.Head(ts.URL + "/acme/m/resolve/main/m.gguf")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	limit, _ := hubActionOf(faults.Fault{Kind: "hub-rate-limit", Value: 5, For: 8 * time.Second})
	endLimit := h.start(limit)
	fail, _ := hubActionOf(faults.Fault{Kind: "hub-5xx", Value: 5})
	endFail := h.start(fail)
	if got, _ := status(); got != 503 {
		t.Fatalf("with a 5xx on top of a rate limit: %d, want 503", got)
	}
	endFail()
	if got, ra := status(); got != 429 || ra != "2" {
		t.Fatalf("after the 5xx ended: %d Retry-After %q, want 429 and 2", got, ra)
	}
	endLimit()
	if got, _ := status(); got != 302 {
		t.Fatalf("after both ended: %d, want 302", got)
	}
}

// A 429's Retry-After is judged per hive at the hub: a request of the same hive before it has
// passed fails the check, but for one arriving within the grace (sent before the 429 arrived),
// and another hive's requests are not held to it.
func TestCheckRetryAfter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hosts := map[string]node.Addr{"a": "hive-1", "b": "hive-2"}
	path := "/acme/m/resolve/main/m.gguf"
	reqs := []fakehub.Request{
		{At: t0, Host: "a", Method: "HEAD", Path: path, Status: 429, RetryAfter: 2 * time.Second, Fault: "fail"},
		{At: t0.Add(100 * time.Millisecond), Host: "a", Method: "HEAD", Path: path, Status: 302},
		{At: t0.Add(500 * time.Millisecond), Host: "b", Method: "HEAD", Path: path, Status: 302},
		{At: t0.Add(600 * time.Millisecond), Host: "a", Method: "GET", Path: "/cdn/abc", Status: 206},
		{At: t0.Add(2 * time.Second), Host: "a", Method: "HEAD", Path: path, Status: 302},
	}
	if c := checkRetryAfter(reqs, hosts); !c.OK {
		t.Fatalf("a run that waited failed: %+v", c)
	}
	early := append(reqs, fakehub.Request{At: t0.Add(time.Second), Host: "a", Method: "HEAD", Path: path, Status: 302})
	if c := checkRetryAfter(early, hosts); c.OK || !strings.Contains(c.Detail, "hive-1") {
		t.Fatalf("a request a second into a 2s Retry-After passed: %+v", c)
	}
}

// Registrations of hub files must carry the hub's sha256, and downloads the hub refuses must
// fail naming what.
func TestHubHistoryChecks(t *testing.T) {
	spec := gguf.Spec{Architecture: "llama", ContextLength: 2048, PayloadBytes: 64}
	sc := scenario.Scenario{Hub: &sim.HubConfig{Files: []sim.HubFile{{Repo: "acme/m", Revision: "main", File: "m.gguf", Spec: spec},
		{Repo: "acme/gated", Revision: "main", File: "m.gguf", Spec: spec, Gated: true, Token: "t"}}},
		CatalogClients: []scenario.CatalogClientSpec{{Addr: "keeper-1"}}}
	sums := map[string]string{"hf:acme/m/m.gguf": "good"}
	dl := api.ModelDownloadReq{ReqID: 1, Provider: "hf", Repo: "acme/m", Revision: "main", File: "m.gguf"}
	gated := api.ModelDownloadReq{ReqID: 2, Provider: "hf", Repo: "acme/gated", Revision: "main", File: "m.gguf"}
	answer := func(req api.ModelDownloadReq, sum string, err api.Error) []scenario.Recorded {
		return []scenario.Recorded{{Kind: "send", From: "keeper-1", To: "hive-1", Msg: req},
			{Kind: "deliver", From: "hive-1", To: "keeper-1", Msg: api.CatalogResp{ReqID: req.ReqID, Op: req.MsgName(), Err: err,
				Model: api.ModelRecord{ID: "hf:" + req.Repo + "/" + req.File, SHA256: sum}}}}
	}
	refused := api.Error{Code: provision.CodeDownloadFailed, Message: "repository acme/gated is gated"}
	good := append(answer(dl, "good", api.Error{}), answer(gated, "", refused)...)
	if c := checkHubHashes(sc, sums, good); !c.OK {
		t.Errorf("the hub's sha256 failed: %+v", c)
	}
	if c := checkRefused(sc, good); !c.OK || !strings.Contains(c.Detail, "1 download") {
		t.Errorf("a clear refusal failed: %+v", c)
	}
	if c := checkHubHashes(sc, sums, answer(dl, "bad", api.Error{})); c.OK {
		t.Error("a registration with another sha256 than the hub's passed")
	}
	if c := checkRefused(sc, answer(gated, "x", api.Error{})); c.OK {
		t.Error("a download of a gated repository succeeded and passed")
	}
	if c := checkRefused(sc, answer(gated, "", api.Error{Code: provision.CodeDownloadFailed, Message: "no"})); c.OK {
		t.Error("a refusal that names nothing passed")
	}
}

// The catalog's disk faults corrupt the real catalog file of the target hive's machine and
// keep a copy of it; a fault on another file is not mapped.
func TestDiskStepCorruptsTheCatalog(t *testing.T) {
	dir := t.TempDir()
	r := &run{sc: scenario.Scenario{Seed: 1, Hives: []scenario.HiveSpec{{Addr: "hive-1", Machine: "machine-1", Catalog: true}}}, o: Options{Dir: dir}}
	d, err := real.NewOSDisk(r.machineDir("machine-1"))
	if err != nil {
		t.Fatal(err)
	}
	cat, _, err := catalog.Open(catalog.Options{Disk: d, Dir: d.Dir(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	cat.Close()
	path := filepath.Join(dir, "data", "machine-1", "catalog", "models.db")
	for _, kind := range []string{"disk-clobber-header", "disk-truncate"} {
		before, _ := os.ReadFile(path)
		s, ok := r.diskStep(stepFor(kind), faults.Fault{Kind: kind, Targets: []node.Addr{"hive-1"}, File: catalog.DefaultPath})
		if !ok {
			t.Fatalf("%s of the catalog was not mapped", kind)
		}
		if err := s.Do(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		after, _ := os.ReadFile(path)
		if string(after) == string(before) {
			t.Fatalf("%s left the catalog as it was", kind)
		}
	}
	if backups, _ := filepath.Glob(path + ".chaos-backup-*"); len(backups) != 2 {
		t.Fatalf("backups %v, want two", backups)
	}
	if _, ok := r.diskStep(stepFor("disk-flip"), faults.Fault{Kind: "disk-flip", Targets: []node.Addr{"hive-1"}, File: "models/x.gguf"}); ok {
		t.Fatal("a flip of a model file was mapped")
	}
}

// Check lets the provisioner and catalog scenarios run; a hub file it cannot serve is refused.
func TestCheckAcceptsHubsModelsAndCatalogClients(t *testing.T) {
	for _, id := range []string{"provisioner/rate-limit-429", "catalog/orphan-cleanup", "catalog/schema-migration"} {
		e, err := scenario.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(e.Generate(1, scenario.Knobs{})); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	big := scenario.Scenario{Hub: &sim.HubConfig{Files: []sim.HubFile{{Repo: "a/b", Revision: "v2", File: "m.gguf",
		Spec: gguf.Spec{Architecture: "llama", PayloadBytes: 128 << 20}}}}}
	if err := Check(big); err == nil || !strings.Contains(err.Error(), "revision v2") {
		t.Errorf("a 128 MiB file of revision v2: %v", err)
	}
}

func stepFor(name string) chaos.Step { return chaos.Step{Name: name} }
