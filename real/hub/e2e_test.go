package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
)

// downloader is a node that runs the hive's provisioner for one request and reports its Done.
type downloader struct {
	cfg  provision.Config
	req  provision.Request
	p    *provision.Provisioner
	done chan<- provision.Done
}

func (d *downloader) Start(env node.Env) {
	d.p = provision.New(d.cfg)
	d.p.Start(env)
	req := d.req
	req.Requester = env.Self()
	d.p.Request(env, req)
}

func (d *downloader) Handle(env node.Env, from node.Addr, m node.Msg) {
	if d.p.Handle(env, from, m) {
		return
	}
	if done, ok := m.(provision.Done); ok {
		d.done <- done
	}
}

// counting is the adapter with a count of the messages delivered to it, by name.
type counting struct {
	real.Port
	mu sync.Mutex
	n  map[string]int
}

func (c *counting) Deliver(from node.Addr, m node.Msg) {
	c.mu.Lock()
	c.n[m.MsgName()]++
	c.mu.Unlock()
	c.Port.Deliver(from, m)
}

func (c *counting) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// e2e runs the real provisioner in a real.Runtime, the adapter at "hub", against fake, and
// returns the Done, the sha256 of the file it reports and the adapter.
func e2e(t *testing.T, fake *fakehub.Server, pcfg provision.Config, repo, file string) (provision.Done, string, *counting) {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	dataDir := t.TempDir()
	rt, err := real.New(real.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Stop)
	port := &counting{n: map[string]int{}}
	if err := rt.AddPort("hub", func(send real.Send) real.Port {
		port.Port = New(Config{BaseURL: srv.URL, Client: srv.Client(), ChunkBytes: 64 << 10})(send)
		return port
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan provision.Done, 4)
	if err := rt.Add("hive-1", "m1", func() node.Node {
		return &downloader{cfg: pcfg, req: provision.Request{Repo: repo, File: file, ReqID: 1}, done: done}
	}); err != nil {
		t.Fatal(err)
	}
	if err := rt.StartAll(); err != nil {
		t.Fatal(err)
	}
	var d provision.Done
	select {
	case d = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no Done from the provisioner after 2 minutes; the fake saw %+v", fake.Stats())
	}
	if !d.Err.OK() {
		t.Fatalf("download failed: %v; the fake saw %+v", d.Err, fake.Stats())
	}
	f, err := os.Open(filepath.Join(dataDir, "m1", filepath.FromSlash(d.Path)))
	if err != nil {
		t.Fatalf("the model file the provisioner reported is not on disk: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return d, hex.EncodeToString(h.Sum(nil)), port
}

func fastRetries() provision.Config {
	cfg := provision.DefaultConfig()
	cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	return cfg
}

// The provisioner downloads through the adapter from the fake hub, past a 429 (honouring its
// Retry-After) and a connection broken mid-body (resuming with Range), and the file it lands
// has the hub's sha256.
func TestProvisionerThroughTheAdapter(t *testing.T) {
	fake := fakehub.New(fakehub.Config{})
	f, err := fake.AddGGUF(testRepo, testFile, spec(3<<20))
	if err != nil {
		t.Fatal(err)
	}
	fake.FailNext(1, 429, time.Second)
	fake.BreakNext(1, 1<<20)
	start := time.Now()
	d, got, _ := e2e(t, fake, fastRetries(), testRepo, testFile)
	if got != f.SHA256 || d.SHA256 != f.SHA256 || d.Size != f.Size {
		t.Fatalf("landed a file with sha256 %s, Done %+v; want sha256 %s and size %d", got, d, f.SHA256, f.Size)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("finished in %v, before the 429's Retry-After of 1s ran out", waited)
	}
	st := fake.Stats()
	if st.Failed != 1 || st.Broken != 1 || st.ByStatus[429] != 1 {
		t.Fatalf("the fake saw %+v; want one 429 and one broken body", st)
	}
	// The broken body was resumed from where it broke, not fetched again.
	var ranges []string
	for _, q := range fake.Requests() {
		if q.Method == "GET" && q.Status == 206 {
			ranges = append(ranges, q.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "bytes=0-" || ranges[1] != "bytes=1048576-" {
		t.Fatalf("the CDN served the ranges %q; want bytes=0- then bytes=1048576-", ranges)
	}
}

// A bandwidth-limited provisioner drives the adapter's flow control (Window and HubCredit)
// over real HTTP.
func TestProvisionerFlowControlThroughTheAdapter(t *testing.T) {
	fake := fakehub.New(fakehub.Config{})
	f, err := fake.AddGGUF(testRepo, testFile, spec(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastRetries()
	cfg.BandwidthBytesPerSec, cfg.BurstBytes = 8<<20, 512<<10
	d, got, port := e2e(t, fake, cfg, testRepo, testFile)
	if got != f.SHA256 || d.SHA256 != f.SHA256 {
		t.Fatalf("landed a file with sha256 %s, Done %+v; want sha256 %s", got, d, f.SHA256)
	}
	if n := port.count("hub.credit"); n == 0 {
		t.Fatalf("the provisioner sent no HubCredit: the download was not flow-controlled")
	}
	if st := fake.Stats(); st.ByMethodStatus["GET 206"] != 1 {
		t.Fatalf("the fake saw %+v; want one download, never closed and resumed", st)
	}
}

// A missing file ends the download at once with an error that names it.
func TestProvisionerMissingFileThroughTheAdapter(t *testing.T) {
	fake := fakehub.New(fakehub.Config{})
	if _, err := fake.AddGGUF(testRepo, testFile, spec(4096)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	rt, err := real.New(real.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Stop()
	if err := rt.AddPort("hub", New(Config{BaseURL: srv.URL})); err != nil {
		t.Fatal(err)
	}
	done := make(chan provision.Done, 4)
	if err := rt.Add("hive-1", "m1", func() node.Node {
		return &downloader{cfg: fastRetries(), req: provision.Request{Repo: testRepo, File: "nope.gguf", ReqID: 1}, done: done}
	}); err != nil {
		t.Fatal(err)
	}
	if err := rt.StartAll(); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-done:
		if d.Err.Code != provision.CodeDownloadFailed || fake.Stats().ByStatus[404] != 1 {
			t.Fatalf("Done %+v after %+v; want DOWNLOAD_FAILED after one 404", d, fake.Stats())
		}
	case <-time.After(time.Minute):
		t.Fatal("no Done after a minute")
	}
}
