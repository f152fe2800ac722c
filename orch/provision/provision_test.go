package provision

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

var modelSize = int64(len(modelData))

func TestDownloadHeadGetVerifyRename(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	id := r.p.Request(r.env, modelReq)
	if id != r.path {
		t.Fatalf("id %q, want %q", id, r.path)
	}
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, modelSize, "")
	d := r.done()
	r.wantModel(d)
	if d.ReqID != 42 || r.p.downloads[id] != nil || r.env.PendingTimers() != 0 {
		t.Fatalf("Done %+v, downloads %v, timers %d", d, r.p.downloads, r.env.PendingTimers())
	}
	// A second request finds the file in place: Done at once, no hub traffic.
	r.out = nil
	r.p.Request(r.env, modelReq)
	r.noHub()
	r.wantModel(r.done())
}

func TestResumeAfterResetWithRange(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, 3000, "connection reset")
	if r.partialLen() != 3000 {
		t.Fatalf("partial has %d bytes", r.partialLen())
	}
	r.advance(r.backoffMax(1))
	r.serve(r.expectGet(3000), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestRestartResumesFromPartial(t *testing.T) {
	disk := nodetest.NewMemDisk()
	r := newRig(t, "hive-a", disk, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, 5000, "open")
	// The hive crashes: a new incarnation on the same disk finds its lease and resumes.
	r2 := newRig(t, "hive-a", disk, testConfig())
	r2.env.Advance(asNode{r2.p}, 0)
	r2.wantMark("download resumed after restart")
	r2.answerHead()
	r2.wantMark("download resumed")
	r2.serve(r2.expectGet(5000), 206, modelData, modelSize, "")
	d := r2.done()
	r2.wantModel(d)
	if d.ReqID != modelReq.ReqID {
		t.Fatalf("Done went to req %d, want the original %d", d.ReqID, modelReq.ReqID)
	}
}

func TestRequestResumesLeaselessPartial(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(modelData[:2500], 0)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.serve(r.expectGet(2500), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func Test200InsteadOf206StartsOver(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt([]byte(strings.Repeat("x", 2500)), 0) // a prefix that is wrong: 200 must drop it
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.serve(r.expectGet(2500), 200, modelData, modelSize, "")
	r.wantMark("download restarted after 200")
	r.wantModel(r.done())
}

func TestCorruptBodyIsRemovedAndRetried(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	bad := append([]byte(nil), modelData...)
	bad[len(bad)-10] ^= 0xff
	r.serve(r.expectGet(0), 206, bad, modelSize, "")
	r.wantMark("checksum mismatch, retrying")
	r.noDone()
	if _, err := r.disk().Open(r.path+partialSuffix, false); !node.IsNotExist(err) {
		t.Fatalf("corrupt partial file kept")
	}
	if _, err := r.disk().Open(r.path, false); !node.IsNotExist(err) {
		t.Fatalf("corrupt file renamed into place")
	}
	r.advance(r.backoffMax(1))
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestCorruptEveryTimeFailsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.RetryAttemptsMax = 2
	r := newRig(t, "hive-a", nil, cfg)
	r.p.Request(r.env, modelReq)
	bad := append([]byte(nil), modelData...)
	bad[len(bad)-10] ^= 0xff
	for i := 0; i < 3; i++ {
		r.answerHead()
		r.serve(r.expectGet(0), 206, bad, modelSize, "")
		r.advance(r.backoffMax(i + 1))
	}
	d := r.done()
	if d.Err.Code != CodeDownloadFailed || !strings.Contains(d.Err.Message, "verification") {
		t.Fatalf("Done %+v", d)
	}
	if _, err := r.disk().Open(r.path, false); !node.IsNotExist(err) {
		t.Fatalf("a corrupt file is in place")
	}
}

func TestRetryAfterRespectedExactly(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	r.p.Request(r.env, modelReq)
	h := r.expectHead()
	asked := r.env.Now()
	r.deliver(api.HubResp{ReqID: h.ReqID, Status: 429, RetryAfter: 10 * time.Second})
	r.wantMark("retry after 429")
	for i := 0; i < 9; i++ {
		r.advance(time.Second)
		r.noHub()
	}
	r.advance(time.Second - time.Nanosecond)
	r.noHub()
	r.advance(time.Nanosecond)
	r.expectHead()
	if waited := r.env.Now().Sub(asked); waited < 10*time.Second {
		t.Fatalf("asked again after %v", waited)
	}
}

func TestRetryAfterOnGet(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(0)
	r.deliver(api.HubResp{ReqID: g.ReqID, Status: 429, RetryAfter: 30 * time.Second})
	r.advance(30*time.Second - 1)
	r.noHub() // not even a HubCancel: an error answer has no body
	r.advance(1)
	r.serve(r.expectGet(0), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestTerminalErrorsNameTheCause(t *testing.T) {
	cases := []struct {
		status         int
		code, want     string
		suggestionWant string
	}{
		{404, "RepoNotFound", "repository TheBloke/Tiny-GGUF not found", "repository name"},
		{404, "RevisionNotFound", "revision main of repository", "revision"},
		{404, "EntryNotFound", "file tiny.Q4_K_M.gguf not found", "file name"},
		{401, "RepoNotFound", "repository TheBloke/Tiny-GGUF not found", "HF_TOKEN"}, // the real hub: missing or private
		{401, "GatedRepo", "gated", "HF_TOKEN"},
		{403, "GatedRepo", "gated", "licence"},
	}
	for _, c := range cases {
		r := newRig(t, "hive-a", nil, testConfig())
		r.p.Request(r.env, modelReq)
		r.answerHead()
		g := r.expectGet(0)
		r.deliver(api.HubResp{ReqID: g.ReqID, Status: c.status, ErrorCode: c.code})
		d := r.done()
		if d.Err.Code != CodeDownloadFailed || !strings.Contains(d.Err.Message, c.want) ||
			!strings.Contains(d.Err.Suggestion, c.suggestionWant) {
			t.Errorf("%d %s: Done %+v", c.status, c.code, d)
		}
		r.noHub()
		if _, err := r.disk().Open(r.path, false); !node.IsNotExist(err) {
			t.Errorf("%d: model file exists", c.status)
		}
		if _, err := r.disk().Open(r.path+leaseSuffix, false); !node.IsNotExist(err) {
			t.Errorf("%d: lease left", c.status)
		}
		if r.env.PendingTimers() != 0 {
			t.Errorf("%d: %d timers left", c.status, r.env.PendingTimers())
		}
	}
}

func TestServerErrorsBackOffCappedAndBounded(t *testing.T) {
	cfg := testConfig()
	cfg.BackoffBase, cfg.BackoffMax, cfg.RetryAttemptsMax = time.Second, 4*time.Second, 5
	r := newRig(t, "hive-a", nil, cfg)
	r.p.Request(r.env, modelReq)
	for attempt := 1; attempt <= cfg.RetryAttemptsMax; attempt++ {
		h := r.expectHead()
		r.deliver(api.HubResp{ReqID: h.ReqID, Status: 503})
		lo := r.backoffMax(attempt) / 2
		r.advance(lo - 1)
		r.noHub()
		r.advance(r.backoffMax(attempt) - lo + 1)
	}
	h := r.expectHead()
	r.deliver(api.HubResp{ReqID: h.ReqID, Status: 500})
	if d := r.done(); d.Err.Code != CodeDownloadFailed || !strings.Contains(d.Err.Message, "6 attempts") {
		t.Fatalf("Done %+v", d)
	}
}

func TestStallIsCancelledAndResumed(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(0)
	r.serve(g, 206, modelData, 2000, "open")
	r.advance(r.cfg.ChunkTimeout - 1)
	r.noHub()
	r.advance(1)
	if m, ok := r.next().(api.HubCancel); !ok || m.ReqID != g.ReqID {
		t.Fatalf("want HubCancel of %d, got %+v", g.ReqID, m)
	}
	// Chunks of the closed request that still arrive are dropped.
	r.deliver(api.HubChunk{ReqID: g.ReqID, Offset: 2000, Data: modelData[2000:3000]})
	r.advance(r.backoffMax(1))
	r.serve(r.expectGet(2000), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestDiskFullStopsAndKeepsPartial(t *testing.T) {
	disk := &fullDisk{MemDisk: nodetest.NewMemDisk(), limitBytes: 4500}
	r := newRig(t, "hive-a", disk, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(0)
	r.serve(g, 206, modelData, modelSize, "open")
	d := r.done()
	if d.Err.Code != CodeDownloadFailed || !strings.Contains(d.Err.Message, "disk full") ||
		!strings.Contains(d.Err.Suggestion, "resumes from") {
		t.Fatalf("Done %+v", d)
	}
	if m, ok := r.next().(api.HubCancel); !ok || m.ReqID != g.ReqID {
		t.Fatalf("want HubCancel, got %+v", m)
	}
	if r.partialLen() != 4000 {
		t.Fatalf("partial has %d bytes, want 4000", r.partialLen())
	}
	// Space is freed: a new request resumes.
	disk.limitBytes = 1 << 30
	r.out = nil
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.serve(r.expectGet(4000), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

// spaceDisk reports a fixed free space.
type spaceDisk struct {
	*nodetest.MemDisk
	free int64
}

func (d spaceDisk) FreeBytes() (int64, error) { return d.free, nil }

func TestFreeSpaceCheckedBeforeStart(t *testing.T) {
	cfg := testConfig()
	cfg.FreeSpaceMarginBytes = 1000
	r := newRig(t, "hive-a", spaceDisk{nodetest.NewMemDisk(), modelSize + 999}, cfg)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.noHub()
	if d := r.done(); d.Err.Code != CodeDownloadFailed || !strings.Contains(d.Err.Message, "not enough disk space") {
		t.Fatalf("Done %+v", d)
	}
}

func TestCancelClosesAndKeepsPartial(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	id := r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(0)
	r.serve(g, 206, modelData, 3000, "open")
	r.p.Cancel(r.env, id)
	if m, ok := r.next().(api.HubCancel); !ok || m.ReqID != g.ReqID {
		t.Fatalf("want HubCancel, got %+v", m)
	}
	if d := r.done(); d.Err.Code != CodeDownloadCancelled {
		t.Fatalf("Done %+v", d)
	}
	if r.partialLen() != 3000 || r.env.PendingTimers() != 0 {
		t.Fatalf("partial %d bytes, %d timers", r.partialLen(), r.env.PendingTimers())
	}
	if _, err := r.disk().Open(r.path+leaseSuffix, false); !node.IsNotExist(err) {
		t.Fatalf("lease left after cancel")
	}
}

func TestProgressAtMostEverySecond(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(modelData[:2000], 0)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(2000)
	r.serve(g, 206, modelData, 5000, "open")
	r.advance(time.Second)
	var ps []Progress
	r.collect()
	for _, m := range r.out {
		if p, ok := m.(Progress); ok {
			ps = append(ps, p)
		}
	}
	if len(ps) != 1 {
		t.Fatalf("want one Progress after 1s, got %+v", ps)
	}
	p := ps[0]
	if p.Bytes != 5000 || p.Total != modelSize || p.BytesPerSec != 3000 || !p.Resumed ||
		p.ResumedFromPercent != percent(2000, modelSize) || p.ReqID != 42 {
		t.Fatalf("Progress %+v", p)
	}
}

// TestBandwidthLimitIsFlowControl: a limited GET opens with the bucket's tokens as its window;
// when the window is spent the hive grants more credit as the bucket refills (1000 B/s here),
// never closing the connection, and the download completes on the same GET.
func TestBandwidthLimitIsFlowControl(t *testing.T) {
	cfg := testConfig()
	cfg.BandwidthBytesPerSec, cfg.BurstBytes = 1000, 2000
	r := newRig(t, "hive-a", nil, cfg)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(0)
	if g.Window != 2000 {
		t.Fatalf("first window %d, want the full bucket of 2000", g.Window)
	}
	r.serve(g, 206, modelData, 2000, "open")
	r.wantMark("download throttled")
	r.advance(2 * time.Second) // the bucket refills at 1000 B/s; a quantum is 2000
	r.noHub()
	r.advance(time.Millisecond)
	if m, ok := r.next().(api.HubCredit); !ok || m.ReqID != g.ReqID || m.Bytes != 2000 {
		t.Fatalf("want HubCredit of 2000 for request %d, got %+v", g.ReqID, m)
	}
	for off := int64(2000); off < modelSize; off += 2000 {
		end := min(off+2000, modelSize)
		r.deliver(api.HubChunk{ReqID: g.ReqID, Offset: off, Data: append([]byte(nil), modelData[off:end]...)})
		if end < modelSize {
			r.advance(2*time.Second + time.Millisecond)
			if m, ok := r.next().(api.HubCredit); !ok || m.Bytes != 2000 {
				t.Fatalf("at %d: want HubCredit of 2000, got %+v", end, m)
			}
		}
	}
	r.deliver(api.HubEnd{ReqID: g.ReqID})
	r.wantModel(r.done())
}

func TestFileChangedOnHubStartsOver(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(modelData[:2500], 0)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(2500)
	r.deliver(api.HubResp{ReqID: g.ReqID, Status: 206, SHA256: strings.Repeat("0", 64), Size: modelSize, Offset: 2500})
	if m, ok := r.next().(api.HubCancel); !ok || m.ReqID != g.ReqID {
		t.Fatalf("want HubCancel, got %+v", m)
	}
	r.advance(r.backoffMax(1))
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestRangeNotSatisfiableStartsOver(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(modelData[:2500], 0)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	g := r.expectGet(2500)
	r.deliver(api.HubResp{ReqID: g.ReqID, Status: 416})
	r.advance(r.backoffMax(1))
	r.answerHead()
	r.serve(r.expectGet(0), 206, modelData, modelSize, "")
	r.wantModel(r.done())
}

func TestHandleClaimsOnlyItsMessages(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	if r.p.Handle(r.env, "queen", api.HubResp{ReqID: 1, Status: 200}) {
		t.Fatal("claimed a HubResp from a node that is not the hub")
	}
	if r.p.Handle(r.env, r.cfg.Hub, Done{}) {
		t.Fatal("claimed a message that is not the provisioner's")
	}
	// Answers to requests it never made (or closed) are claimed and dropped.
	r.deliver(api.HubChunk{ReqID: 99, Data: []byte("x")})
	r.deliver(api.HubEnd{ReqID: 99})
	r.noHub()
	r.noDone()
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Hub = "" },
		func(c *Config) { c.LeaseRenew = c.LeaseTTL },
		func(c *Config) { c.BackoffBase = 2 * c.BackoffMax },
		func(c *Config) { c.RetryAttemptsMax = 0 },
		func(c *Config) { c.BandwidthBytesPerSec, c.BurstBytes = 1, 0 },
		func(c *Config) { c.ChunkTimeout = 0 },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: invalid config accepted", i)
		}
	}
}
