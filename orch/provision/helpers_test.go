package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// The fake hub of these tests: one file, answered by hand. A rig is one provisioner on a
// hand-driven Env; the test plays the hub by reading what the provisioner sent it.

const chunkBytes = 1000

var (
	modelData = gguf.Bytes(gguf.Spec{Architecture: "llama", ContextLength: 2048, BlockCount: 2,
		FileType: 15, Name: "tiny", PayloadBytes: 8192, Seed: 7})
	modelSHA = func() string { s := sha256.Sum256(modelData); return hex.EncodeToString(s[:]) }()
	modelReq = Request{Repo: "TheBloke/Tiny-GGUF", File: "tiny.Q4_K_M.gguf", Requester: "queen", ReqID: 42}
)

type rig struct {
	t    *testing.T
	env  *nodetest.Env
	p    *Provisioner
	cfg  Config
	hub  []node.Msg // what the provisioner sent the hub, not yet taken
	out  []node.Msg // what it sent anyone else
	path string
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.SyncEveryBytes = 1 // every chunk synced: a restart resumes exactly
	return cfg
}

func newRig(t *testing.T, self node.Addr, disk node.Disk, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, env: nodetest.New(self, 1, disk), cfg: cfg, p: New(cfg)}
	r.p.Start(r.env)
	r.path = r.p.modelPath(Request{Repo: modelReq.Repo, File: modelReq.File, Provider: "hf"})
	return r
}

func (r *rig) disk() node.Disk { return r.env.Disk() }

// collect sorts what the provisioner sent into hub and out.
func (r *rig) collect() {
	for _, s := range r.env.TakeSent() {
		if s.To == r.cfg.Hub {
			r.hub = append(r.hub, s.Msg)
		} else {
			r.out = append(r.out, s.Msg)
		}
	}
}

// next returns the one message sent to the hub; it fails unless exactly one was.
func (r *rig) next() node.Msg {
	r.t.Helper()
	r.collect()
	if len(r.hub) != 1 {
		r.t.Fatalf("want one message to the hub, got %d: %+v", len(r.hub), r.hub)
	}
	m := r.hub[0]
	r.hub = nil
	return m
}

func (r *rig) noHub() {
	r.t.Helper()
	r.collect()
	if len(r.hub) != 0 {
		r.t.Fatalf("want no message to the hub at %v, got %+v", r.env.Now().Sub(nodetest.Epoch), r.hub)
	}
}

func (r *rig) deliver(m node.Msg) {
	r.t.Helper()
	if !r.p.Handle(r.env, r.cfg.Hub, m) {
		r.t.Fatalf("provisioner did not claim %T", m)
	}
}

func (r *rig) advance(d time.Duration) { r.env.Advance(asNode{r.p}, d) }

// asNode lets nodetest.Env fire the provisioner's timers.
type asNode struct{ p *Provisioner }

func (n asNode) Start(env node.Env)                              { n.p.Start(env) }
func (n asNode) Handle(env node.Env, from node.Addr, m node.Msg) { n.p.Handle(env, from, m) }

func (r *rig) expectHead() api.HubHeadReq {
	r.t.Helper()
	m, ok := r.next().(api.HubHeadReq)
	if !ok {
		r.t.Fatalf("want a HEAD, got %+v", m)
	}
	return m
}

// answerHead expects a HEAD and answers it with the model's metadata.
func (r *rig) answerHead() {
	r.t.Helper()
	h := r.expectHead()
	r.deliver(api.HubResp{ReqID: h.ReqID, Status: 200, SHA256: modelSHA, Size: int64(len(modelData))})
}

func (r *rig) expectGet(start int64) api.HubGetReq {
	r.t.Helper()
	m, ok := r.next().(api.HubGetReq)
	if !ok || m.RangeStart != start {
		r.t.Fatalf("want a GET from %d, got %+v", start, m)
	}
	return m
}

// serve answers a GET with status (206 from its range or 200 from 0), sends body chunks up to
// byte upto of data, then a HubEnd with endErr unless endErr is "open".
func (r *rig) serve(g api.HubGetReq, status int, data []byte, upto int64, endErr string) {
	r.t.Helper()
	from := g.RangeStart
	if status == 200 {
		from = 0
	}
	r.deliver(api.HubResp{ReqID: g.ReqID, Status: status, SHA256: modelSHA, Size: int64(len(data)), Offset: from})
	for off := from; off < upto; off += chunkBytes {
		end := min(off+chunkBytes, upto)
		r.deliver(api.HubChunk{ReqID: g.ReqID, Offset: off, Data: append([]byte(nil), data[off:end]...)})
	}
	if endErr != "open" {
		r.deliver(api.HubEnd{ReqID: g.ReqID, Err: endErr})
	}
}

// done returns the one Done sent so far; it fails unless exactly one was.
func (r *rig) done() Done {
	r.t.Helper()
	r.collect()
	var ds []Done
	for _, m := range r.out {
		if d, ok := m.(Done); ok {
			ds = append(ds, d)
		}
	}
	if len(ds) != 1 {
		r.t.Fatalf("want one Done, got %+v", ds)
	}
	return ds[0]
}

func (r *rig) noDone() {
	r.t.Helper()
	r.collect()
	for _, m := range r.out {
		if d, ok := m.(Done); ok {
			r.t.Fatalf("unexpected Done %+v", d)
		}
	}
}

// wantModel checks a successful Done and the model file in place with no partial or lease.
func (r *rig) wantModel(d Done) {
	r.t.Helper()
	if !d.Err.OK() || d.SHA256 != modelSHA || d.Size != int64(len(modelData)) || d.Path != r.path {
		r.t.Fatalf("bad Done %+v", d)
	}
	got, err := node.ReadFile(r.disk(), r.path)
	if err != nil || string(got) != string(modelData) {
		r.t.Fatalf("model file wrong: %v", err)
	}
	for _, suffix := range []string{partialSuffix, leaseSuffix} {
		if _, err := r.disk().Open(r.path+suffix, false); !node.IsNotExist(err) {
			r.t.Fatalf("%s left behind", suffix)
		}
	}
}

func (r *rig) partialLen() int64 {
	b, err := node.ReadFile(r.disk(), r.path+partialSuffix)
	if err != nil {
		r.t.Fatalf("no partial file: %v", err)
	}
	return int64(len(b))
}

func (r *rig) marked(mark string) bool {
	for _, o := range r.env.Observed {
		if o == node.Mark(mark) {
			return true
		}
	}
	return false
}

func (r *rig) wantMark(mark string) {
	r.t.Helper()
	if !r.marked(mark) {
		r.t.Fatalf("mark %q not observed; got %v", mark, r.env.Observed)
	}
}

// backoffMax is the longest the first backoff can be, for advancing past it.
func (r *rig) backoffMax(attempt int) time.Duration {
	c := r.cfg.BackoffBase << (attempt - 1)
	return min(c, r.cfg.BackoffMax)
}

// fullDisk is a MemDisk whose files may hold at most limitBytes in all (ENOSPC beyond).
type fullDisk struct {
	*nodetest.MemDisk
	limitBytes int64
}

func (d *fullDisk) Open(name string, create bool) (node.File, error) {
	f, err := d.MemDisk.Open(name, create)
	if err != nil || !strings.HasSuffix(name, partialSuffix) {
		return f, err
	}
	return &fullFile{File: f, limit: d.limitBytes}, nil
}

type fullFile struct {
	node.File
	limit int64
}

func (f *fullFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	return f.File.WriteAt(p, off)
}
