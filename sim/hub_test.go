package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// hubClient records everything the hub sends it, with arrival times. Tests send requests by
// injecting them into the hub as if from the client.
type hubClient struct {
	s      *Sim
	resps  map[uint64][]api.HubResp
	respAt map[uint64]time.Duration
	chunks map[uint64][]api.HubChunk
	lastAt map[uint64]time.Duration // arrival of the last chunk
	ends   map[uint64][]api.HubEnd
}

func newHubClient(s *Sim) *hubClient {
	return &hubClient{s: s, resps: map[uint64][]api.HubResp{}, respAt: map[uint64]time.Duration{},
		chunks: map[uint64][]api.HubChunk{}, lastAt: map[uint64]time.Duration{},
		ends: map[uint64][]api.HubEnd{}}
}

func (c *hubClient) Start(node.Env) {}

func (c *hubClient) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.HubResp:
		c.resps[m.ReqID] = append(c.resps[m.ReqID], m)
		c.respAt[m.ReqID] = c.s.Now()
	case api.HubChunk:
		c.chunks[m.ReqID] = append(c.chunks[m.ReqID], m)
		c.lastAt[m.ReqID] = c.s.Now()
	case api.HubEnd:
		c.ends[m.ReqID] = append(c.ends[m.ReqID], m)
	}
}

// resp returns the one answer to id, failing the test when there is not exactly one.
func (c *hubClient) resp(t *testing.T, id uint64) api.HubResp {
	t.Helper()
	if len(c.resps[id]) != 1 {
		t.Fatalf("request %d got %d answers, want 1: %+v", id, len(c.resps[id]), c.resps[id])
	}
	return c.resps[id][0]
}

// body reassembles the chunks of id by offset, failing on a gap or overlap.
func (c *hubClient) body(t *testing.T, id uint64, from int64) []byte {
	t.Helper()
	cs := append([]api.HubChunk(nil), c.chunks[id]...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Offset < cs[j].Offset })
	var b []byte
	for _, ch := range cs {
		if ch.Offset != from+int64(len(b)) {
			t.Fatalf("request %d: chunk at %d, want %d", id, ch.Offset, from+int64(len(b)))
		}
		if len(ch.Data) > HubDefaultChunkBytes {
			t.Fatalf("request %d: chunk of %d bytes is over the chunk size", id, len(ch.Data))
		}
		b = append(b, ch.Data...)
	}
	return b
}

// end returns the one HubEnd of id.
func (c *hubClient) end(t *testing.T, id uint64) api.HubEnd {
	t.Helper()
	if len(c.ends[id]) != 1 {
		t.Fatalf("request %d got %d ends, want 1", id, len(c.ends[id]))
	}
	return c.ends[id][0]
}

var testHubSpec = gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 2,
	Name: "tiny", PayloadBytes: 200_000, Seed: 7}

const (
	testRepo  = "org/tiny-GGUF"
	testRev   = "main"
	testFile  = "tiny.Q8_0.gguf"
	gatedRepo = "meta/gated-GGUF"
	gatedTok  = "hf_secret"
)

func testHubConfig() HubConfig {
	return HubConfig{Files: []HubFile{
		{Repo: testRepo, Revision: testRev, File: testFile, Spec: testHubSpec},
		{Repo: gatedRepo, Revision: testRev, File: testFile, Spec: testHubSpec, Gated: true, Token: gatedTok},
	}}
}

// hubRig is a simulation with a hub at "hub" and a recording client at "cli" on a perfect
// network.
type hubRig struct {
	s    *Sim
	hub  *Hub
	cli  *hubClient
	data []byte
	sha  string
}

func newHubRig(t testing.TB, cfg HubConfig, seed uint64) *hubRig {
	s := New(Options{Seed: seed})
	s.Network().SetDefault(LinkConfig{})
	hub := NewHub(cfg)
	cli := newHubClient(s)
	s.Add("hub", "hub", 0, func() node.Node { return hub })
	s.Add("cli", "cli", 0, func() node.Node { return cli })
	r := &hubRig{s: s, hub: hub, cli: cli}
	if len(cfg.Files) > 0 {
		f := cfg.Files[0]
		r.data, r.sha, _ = hub.Content(f.Repo, f.Revision, f.File)
	}
	return r
}

// send delivers m to the hub from the client at time at.
func (r *hubRig) send(at time.Duration, m node.Msg) {
	r.s.At(at, "send "+m.MsgName(), func() { r.s.Inject("cli", "hub", m) })
}

func head(id uint64) api.HubHeadReq {
	return api.HubHeadReq{ReqID: id, Repo: testRepo, Revision: testRev, File: testFile}
}

func get(id uint64, rangeStart int64) api.HubGetReq {
	return api.HubGetReq{ReqID: id, Repo: testRepo, Revision: testRev, File: testFile, RangeStart: rangeStart}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestHubContentIsTheSpecsBytes(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	if want := gguf.Bytes(testHubSpec); !bytes.Equal(r.data, want) || r.sha != sha(want) {
		t.Fatalf("Content differs from gguf.Bytes(spec) or its sha256")
	}
	if _, _, ok := r.hub.Content(testRepo, testRev, "nope"); ok {
		t.Fatal("Content of an unknown file is ok")
	}
}

func TestHubHead(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(time.Second, head(1))
	r.s.Run(time.Minute)
	got := r.cli.resp(t, 1)
	want := api.HubResp{ReqID: 1, Status: 200, SHA256: r.sha, Size: int64(len(r.data))}
	if got != want {
		t.Fatalf("HEAD = %+v, want %+v", got, want)
	}
	if at := r.cli.respAt[1]; at != time.Second+HubDefaultLatency {
		t.Fatalf("HEAD answered at %v, want after the latency (%v)", at, time.Second+HubDefaultLatency)
	}
	if len(r.cli.chunks[1])+len(r.cli.ends[1]) != 0 {
		t.Fatal("HEAD got a body")
	}
}

func TestHubGetWhole(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(0, get(1, -1))
	r.s.Run(time.Minute)
	resp := r.cli.resp(t, 1)
	if resp.Status != 200 || resp.Offset != 0 || resp.Size != int64(len(r.data)) || resp.SHA256 != r.sha {
		t.Fatalf("GET = %+v", resp)
	}
	body := r.cli.body(t, 1, 0)
	if !bytes.Equal(body, gguf.Bytes(testHubSpec)) || sha(body) != resp.SHA256 {
		t.Fatal("reassembled body differs from gguf.Bytes(spec)")
	}
	if e := r.cli.end(t, 1); e.Err != "" {
		t.Fatalf("end = %+v", e)
	}
	st := r.hub.Stats()
	if st.Requests["get 200"] != 1 || st.BytesSent[HubFile{Repo: testRepo, Revision: testRev, File: testFile}.Path()] != int64(len(r.data)) {
		t.Fatalf("stats = %+v", st)
	}
}

func TestHubGetRange(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	const from = 100_001
	r.send(0, get(1, from))
	r.send(0, get(2, int64(len(r.data))-1))
	r.s.Run(time.Minute)
	resp := r.cli.resp(t, 1)
	if resp.Status != 206 || resp.Offset != from || resp.Size != int64(len(r.data)) {
		t.Fatalf("ranged GET = %+v", resp)
	}
	if body := r.cli.body(t, 1, from); !bytes.Equal(body, r.data[from:]) {
		t.Fatalf("ranged body of %d bytes differs from the file's tail", len(body))
	}
	if last := r.cli.body(t, 2, int64(len(r.data))-1); len(last) != 1 || r.cli.end(t, 2).Err != "" {
		t.Fatalf("range of the last byte gave %d bytes", len(last))
	}
}

func TestHubRangeNotSatisfiable(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	size := int64(len(r.data))
	r.send(0, get(1, size))
	r.send(0, get(2, size+10))
	r.s.Run(time.Minute)
	for _, id := range []uint64{1, 2} {
		if resp := r.cli.resp(t, id); resp.Status != 416 || resp.Size != size {
			t.Fatalf("GET %d = %+v, want 416 with the size", id, resp)
		}
		if len(r.cli.chunks[id])+len(r.cli.ends[id]) != 0 {
			t.Fatalf("416 %d got a body", id)
		}
	}
}

func TestHubNotFoundKinds(t *testing.T) {
	cases := []struct {
		repo, rev, file, code string
	}{
		{"org/nope", testRev, testFile, "RepoNotFound"},
		{testRepo, "v9", testFile, "RevisionNotFound"},
		{testRepo, testRev, "nope.gguf", "EntryNotFound"},
	}
	for i, c := range cases {
		r := newHubRig(t, testHubConfig(), 1)
		r.send(0, api.HubHeadReq{ReqID: 1, Repo: c.repo, Revision: c.rev, File: c.file})
		r.send(0, api.HubGetReq{ReqID: 2, Repo: c.repo, Revision: c.rev, File: c.file, RangeStart: 5})
		r.s.Run(time.Minute)
		for _, id := range []uint64{1, 2} {
			resp := r.cli.resp(t, id)
			if resp.Status != 404 || resp.ErrorCode != c.code || resp.Message == "" {
				t.Errorf("case %d req %d = %+v, want 404 %s with a message", i, id, resp, c.code)
			}
		}
		if len(r.cli.chunks[2]) != 0 {
			t.Errorf("case %d: 404 with a body", i)
		}
	}
}

func TestHubGated(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	g := func(id uint64, tok string) api.HubGetReq {
		return api.HubGetReq{ReqID: id, Repo: gatedRepo, Revision: testRev, File: testFile, Token: tok, RangeStart: -1}
	}
	r.send(0, g(1, ""))
	r.send(0, g(2, "hf_wrong"))
	r.send(0, g(3, gatedTok))
	r.send(0, api.HubHeadReq{ReqID: 4, Repo: gatedRepo, Revision: "v9", File: testFile})
	r.s.Run(time.Minute)
	for id, status := range map[uint64]int{1: 401, 2: 403, 4: 401} {
		resp := r.cli.resp(t, id)
		if resp.Status != status || resp.ErrorCode != "GatedRepo" ||
			!strings.Contains(resp.Message, "HF_TOKEN") || !strings.Contains(resp.Message, "licence") {
			t.Errorf("req %d = %+v, want %d GatedRepo saying to accept the licence and set HF_TOKEN", id, resp, status)
		}
	}
	if resp := r.cli.resp(t, 3); resp.Status != 200 || !bytes.Equal(r.cli.body(t, 3, 0), r.data) {
		t.Fatalf("with the token: %+v", resp)
	}
}

func TestHubRateLimitThenSuccess(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "rate limit", func() { r.hub.RateLimitNext(2, 1500*time.Millisecond) })
	r.send(time.Second, head(1))
	r.send(time.Second, get(2, -1))
	r.send(5*time.Second, get(3, -1))
	r.s.Run(time.Minute)
	for _, id := range []uint64{1, 2} {
		if resp := r.cli.resp(t, id); resp.Status != 429 || resp.RetryAfter != 2*time.Second {
			t.Fatalf("req %d = %+v, want 429 with Retry-After 2s (rounded up)", id, resp)
		}
	}
	if resp := r.cli.resp(t, 3); resp.Status != 200 || !bytes.Equal(r.cli.body(t, 3, 0), r.data) {
		t.Fatalf("after the rate limit: %+v", resp)
	}
	st := r.hub.Stats()
	sentAt := Epoch.Add(time.Second + HubDefaultLatency)
	if st.Requests["head 429"] != 1 || st.Requests["get 429"] != 1 || len(st.RateLimitedAt) != 2 ||
		!st.RateLimitedAt[0].Equal(sentAt) {
		t.Fatalf("stats = %+v", st)
	}
	if dl := r.hub.RetryAfterDeadlines()["cli"]; !dl.Equal(sentAt.Add(2 * time.Second)) {
		t.Fatalf("deadline = %v, want %v", dl, sentAt.Add(2*time.Second))
	}
	if v := r.hub.Violations(); len(v) != 0 {
		t.Fatalf("violations = %+v", v)
	}
}

func TestHubRetryAfterViolation(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.Add("other", "other", 0, func() node.Node { return newHubClient(r.s) })
	r.s.At(0, "rate limit", func() { r.hub.RateLimitNext(1, 2*time.Second) })
	r.send(0, head(1))                                                           // 429 sent at 20ms
	r.send(time.Second, head(2))                                                 // too early
	r.s.At(time.Second, "other", func() { r.s.Inject("other", "hub", head(3)) }) // another client: fine
	r.send(2*time.Second+HubDefaultLatency, head(4))                             // exactly at the deadline: fine
	r.send(3*time.Second, head(5))                                               // fine
	r.s.Run(time.Minute)
	v := r.hub.Violations()
	want := HubViolation{Client: "cli", ReqID: 2, Kind: "head", At: Epoch.Add(time.Second),
		Deadline: Epoch.Add(2*time.Second + HubDefaultLatency)}
	if len(v) != 1 || v[0] != want {
		t.Fatalf("violations = %+v, want [%+v]", v, want)
	}
	if n := len(r.hub.Requests()); n != 5 {
		t.Fatalf("%d requests logged, want 5", n)
	}
}

func TestHubServerErrors(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "5xx", func() { r.hub.ServerErrorNext(2, 503) })
	r.send(0, get(1, -1))
	r.send(time.Second, head(2))
	r.send(2*time.Second, get(3, -1))
	r.s.Run(time.Minute)
	for _, id := range []uint64{1, 2} {
		if resp := r.cli.resp(t, id); resp.Status != 503 || resp.Message == "" {
			t.Fatalf("req %d = %+v, want 503", id, resp)
		}
	}
	if len(r.cli.chunks[1]) != 0 || r.cli.resp(t, 3).Status != 200 {
		t.Fatal("5xx sent a body, or the fault outlived its count")
	}
	if st := r.hub.Stats(); st.Requests["get 503"] != 1 || st.Requests["head 503"] != 1 {
		t.Fatalf("stats = %+v", st.Requests)
	}
}

func TestHubHang(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "hang", func() { r.hub.HangNext(1) })
	r.send(0, get(1, -1))
	r.send(time.Second, get(2, -1))
	r.s.Run(time.Hour)
	if len(r.cli.resps[1])+len(r.cli.chunks[1])+len(r.cli.ends[1]) != 0 {
		t.Fatal("a hung request got an answer")
	}
	if r.cli.resp(t, 2).Status != 200 || r.cli.end(t, 2).Err != "" {
		t.Fatal("the request after the hang did not complete")
	}
	if st := r.hub.Stats(); st.Requests["get hang"] != 1 {
		t.Fatalf("stats = %+v", st.Requests)
	}
}

func TestHubResetMidBody(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "reset", func() { r.hub.ResetAfter(70_000) })
	r.send(0, get(1, -1))
	r.send(10*time.Second, get(2, 70_000))
	r.s.At(20*time.Second, "reset off", func() { r.hub.ResetAfter(0) })
	r.send(20*time.Second, get(3, 140_000))
	r.s.Run(time.Minute)
	for i, id := range []uint64{1, 2} {
		if got := r.cli.body(t, id, int64(i)*70_000); len(got) != 70_000 {
			t.Fatalf("req %d sent %d bytes before the reset, want 70000", id, len(got))
		}
		if e := r.cli.end(t, id); e.Err != "connection reset" {
			t.Fatalf("req %d end = %+v, want a reset", id, e)
		}
	}
	whole := append(append(r.cli.body(t, 1, 0), r.cli.body(t, 2, 70_000)...), r.cli.body(t, 3, 140_000)...)
	if !bytes.Equal(whole, r.data) || r.cli.end(t, 3).Err != "" {
		t.Fatal("resumed pieces do not make the file")
	}
}

func TestHubResetHitsDownloadsInProgress(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(0, get(1, -1))
	var sent int64
	r.s.At(HubDefaultLatency+10*time.Millisecond, "reset", func() {
		sent = r.hub.Requests()[0].BytesSent
		r.hub.ResetAfter(10)
	})
	r.s.Run(time.Minute)
	if sent == 0 || int64(len(r.cli.body(t, 1, 0))) != sent+10 || r.cli.end(t, 1).Err != "connection reset" {
		t.Fatalf("%d bytes sent before ResetAfter(10), %d in all, end %+v", sent, len(r.cli.body(t, 1, 0)), r.cli.ends[1])
	}
}

func TestHubCorruptBody(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "corrupt", func() { r.hub.CorruptNext(1) })
	r.send(0, get(1, 1000))
	r.send(10*time.Second, get(2, -1))
	r.s.Run(time.Minute)
	body := r.cli.body(t, 1, 1000)
	diff := 0
	for i := range body {
		if body[i] != r.data[1000+i] {
			diff++
		}
	}
	if len(body) != len(r.data)-1000 || diff != 1 || r.cli.end(t, 1).Err != "" {
		t.Fatalf("corrupted body: %d bytes, %d differ, want %d and 1", len(body), diff, len(r.data)-1000)
	}
	if sha(r.cli.body(t, 1, 1000)) == sha(r.data[1000:]) || sha(r.cli.body(t, 2, 0)) != r.cli.resp(t, 2).SHA256 {
		t.Fatal("only the first download should fail its checksum")
	}
}

func TestHubWrongSize(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "wrong size", func() { r.hub.WrongSizeNext(2) })
	r.send(0, head(1))
	r.send(time.Second, get(2, -1))
	r.send(10*time.Second, head(3))
	r.s.Run(time.Minute)
	size := int64(len(r.data))
	if r.cli.resp(t, 1).Size != size+1 || r.cli.resp(t, 2).Size != size+1 || r.cli.resp(t, 3).Size != size {
		t.Fatalf("sizes %d %d %d, want %d %d %d", r.cli.resp(t, 1).Size, r.cli.resp(t, 2).Size,
			r.cli.resp(t, 3).Size, size+1, size+1, size)
	}
	if !bytes.Equal(r.cli.body(t, 2, 0), r.data) {
		t.Fatal("the body under a wrong size is not the true file")
	}
}

func TestHubIgnoreRange(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "ignore range", func() { r.hub.IgnoreRangeNext(1) })
	r.send(0, get(1, 5000))
	r.send(10*time.Second, get(2, 5000))
	r.s.Run(time.Minute)
	if resp := r.cli.resp(t, 1); resp.Status != 200 || resp.Offset != 0 || !bytes.Equal(r.cli.body(t, 1, 0), r.data) {
		t.Fatalf("ignored range: %+v", resp)
	}
	if resp := r.cli.resp(t, 2); resp.Status != 206 || resp.Offset != 5000 {
		t.Fatalf("after the fault: %+v", resp)
	}
}

func TestHubBandwidth(t *testing.T) {
	cfg := testHubConfig()
	spec := testHubSpec
	spec.PayloadBytes = 1 << 20
	cfg.Files[0].Spec = spec
	cfg.BandwidthBytesPerSec = 1 << 20
	r := newHubRig(t, cfg, 1)
	r.send(0, get(1, -1))
	r.s.Run(time.Minute)
	size := int64(len(r.data))
	want := time.Duration(size * int64(time.Second) / cfg.BandwidthBytesPerSec)
	took := r.cli.lastAt[1] - r.cli.respAt[1]
	chunk := transferTime(HubDefaultChunkBytes, cfg.BandwidthBytesPerSec)
	if took < want-chunk || took > want+chunk {
		t.Fatalf("%d bytes at 1 MiB/s took %v, want %v ± %v", size, took, want, chunk)
	}
	if r.cli.end(t, 1).Err != "" || len(r.cli.body(t, 1, 0)) != int(size) {
		t.Fatal("the body did not complete")
	}
}

func TestHubSetBandwidthSlowsLaterChunks(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.s.At(0, "slow", func() { r.hub.SetBandwidth(100_000) })
	r.send(0, get(1, -1))
	r.s.Run(time.Minute)
	if took := r.cli.lastAt[1] - r.cli.respAt[1]; took < time.Second {
		t.Fatalf("%d bytes at 100 kB/s took %v", len(r.data), took)
	}
}

func TestHubCancelStopsChunks(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(0, get(1, -1))
	cancelAt := HubDefaultLatency + 15*time.Millisecond
	r.send(cancelAt, api.HubCancel{ReqID: 1})
	r.s.Run(time.Minute)
	if n := len(r.cli.chunks[1]); n == 0 || r.cli.lastAt[1] > cancelAt || len(r.cli.ends[1]) != 0 {
		t.Fatalf("%d chunks, the last at %v, ends %v: want some, none after %v, no end", n,
			r.cli.lastAt[1], r.cli.ends[1], cancelAt)
	}
	if st := r.hub.Stats(); st.Requests["cancel"] != 1 || r.hub.Requests()[0].End != "cancelled" {
		t.Fatalf("stats = %+v", st.Requests)
	}
}

func TestHubDuplicateRequestIsDropped(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(0, get(1, -1))
	r.send(time.Millisecond, get(1, -1))
	r.s.Run(time.Minute)
	if r.cli.resp(t, 1).Status != 200 || r.hub.Stats().Duplicates != 1 || r.hub.Stats().MaxConcurrentPerFile[cfgPath()] != 1 {
		t.Fatalf("stats = %+v", r.hub.Stats())
	}
}

func cfgPath() string { return HubFile{Repo: testRepo, Revision: testRev, File: testFile}.Path() }

func TestHubRestartClosesDownloads(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	r.send(0, get(1, -1))
	r.s.At(HubDefaultLatency+5*time.Millisecond, "crash", func() { r.s.Crash("hub"); r.s.Restart("hub", time.Second) })
	r.send(2*time.Second, get(2, -1))
	r.s.Run(time.Minute)
	if len(r.cli.ends[1]) != 0 || !bytes.Equal(r.cli.body(t, 2, 0), r.data) {
		t.Fatalf("a download survived the hub's crash, or the next one failed: ends %+v, resp %+v, log %+v",
			r.cli.ends, r.cli.resps, r.hub.Requests())
	}
	if end := r.hub.Requests()[0].End; end != "hub restarted" {
		t.Fatalf("end = %q", end)
	}
}

func TestHubConcurrencyStats(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	for id := uint64(1); id <= 3; id++ {
		r.send(0, get(id, -1))
	}
	r.s.Run(time.Minute)
	if st := r.hub.Stats(); st.MaxConcurrent != 3 || st.MaxConcurrentPerFile[cfgPath()] != 3 || st.Chunks != 3*4 {
		t.Fatalf("stats = %+v", st)
	}
}

// hubScenario runs downloads with every fault over a jittery network.
func hubScenario(seed uint64) (uint64, uint64) {
	r := newHubRig(nil, testHubConfig(), seed)
	r.s.Network().SetDefault(DefaultLink)
	r.s.At(0, "faults", func() { r.hub.CorruptNext(2); r.hub.RateLimitNext(1, time.Second) })
	for id := uint64(1); id <= 6; id++ {
		r.send(time.Duration(id)*300*time.Millisecond, get(id, int64(id)*1000))
	}
	r.s.At(time.Second, "reset", func() { r.hub.ResetAfter(30_000) })
	r.s.Run(time.Minute)
	return r.s.Trace().Hash(), r.s.Trace().Events()
}

func TestHubSameSeedSameTrace(t *testing.T) {
	h1, n1 := hubScenario(42)
	h2, n2 := hubScenario(42)
	if h1 != h2 || n1 != n2 {
		t.Fatalf("same seed: hashes %x (%d events) and %x (%d events)", h1, n1, h2, n2)
	}
	if h3, _ := hubScenario(43); h3 == h1 {
		t.Fatal("another seed gave the same trace: the corrupted bytes' positions do not depend on it")
	}
}

func TestHubConfigValidate(t *testing.T) {
	ok := testHubConfig()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(c *HubConfig){
		"negative bandwidth": func(c *HubConfig) { c.BandwidthBytesPerSec = -1 },
		"huge chunk":         func(c *HubConfig) { c.ChunkBytes = 1 << 30 },
		"negative latency":   func(c *HubConfig) { c.Latency = -1 },
		"no repo":            func(c *HubConfig) { c.Files[0].Repo = "" },
		"twice":              func(c *HubConfig) { c.Files = append(c.Files, c.Files[0]) },
		"gated, no token":    func(c *HubConfig) { c.Files[1].Token = "" },
		"token, not gated":   func(c *HubConfig) { c.Files[0].Token = "x" },
		"bad payload":        func(c *HubConfig) { c.Files[0].Spec.PayloadBytes = 3 },
		"no architecture":    func(c *HubConfig) { c.Files[0].Spec.Architecture = "" },
		"repo half gated": func(c *HubConfig) {
			c.Files = append(c.Files, HubFile{Repo: gatedRepo, Revision: testRev, File: "b.gguf", Spec: testHubSpec})
		},
	}
	for name, mutate := range bad {
		c := testHubConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed", name)
		}
	}
	b, err := json.Marshal(ok)
	var back HubConfig
	if err != nil || json.Unmarshal(b, &back) != nil || back.Files[1].Token != gatedTok {
		t.Fatalf("config does not round-trip through JSON: %v", err)
	}
}

// BenchmarkHubChunkThroughput downloads a 16 MiB file at 1 GiB/s simulated in 64 KiB chunks and
// reports simulated bytes moved per wall-clock second.
func BenchmarkHubChunkThroughput(b *testing.B) {
	cfg := testHubConfig()
	cfg.Files[0].Spec.PayloadBytes = 16 << 20
	cfg.BandwidthBytesPerSec = 1 << 30
	hub := NewHub(cfg)
	data, _, _ := hub.Content(testRepo, testRev, testFile) // build the file outside the timing
	var moved int64
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		s := New(Options{Seed: uint64(i)})
		s.Add("hub", "hub", 0, func() node.Node { return hub })
		cli := newHubClient(s)
		s.Add("cli", "cli", 0, func() node.Node { return cli })
		s.At(0, "get", func() { s.Inject("cli", "hub", get(uint64(i), -1)) })
		s.Run(time.Hour)
		moved += int64(len(data))
	}
	b.ReportMetric(float64(moved)/time.Since(start).Seconds(), "sim-bytes/s")
}

// TestHubFlowControl: a GET with a window gets no more body than the window until HubCredit
// widens it; then the body goes on where it stopped and completes.
func TestHubFlowControl(t *testing.T) {
	r := newHubRig(t, testHubConfig(), 1)
	g := get(1, -1)
	g.Window = 100_000
	r.send(0, g)
	r.s.Run(10 * time.Second)
	sent := func() int64 {
		var n int64
		for _, c := range r.cli.chunks[1] {
			n += int64(len(c.Data))
		}
		return n
	}
	if got := sent(); got != 100_000 {
		t.Fatalf("with a 100000-byte window the hub sent %d bytes", got)
	}
	if len(r.cli.ends[1]) != 0 {
		t.Fatalf("a blocked download ended: %+v", r.cli.ends[1])
	}
	r.send(20*time.Second, api.HubCredit{ReqID: 1, Bytes: 50_000})
	r.s.Run(30 * time.Second)
	if got := sent(); got != 150_000 {
		t.Fatalf("after 50000 bytes of credit the hub had sent %d bytes, want 150000", got)
	}
	r.send(40*time.Second, api.HubCredit{ReqID: 1, Bytes: 1 << 30})
	r.s.Run(time.Minute)
	if body := r.cli.body(t, 1, 0); !bytes.Equal(body, r.data) {
		t.Fatal("the flow-controlled body differs from the file")
	}
	if e := r.cli.end(t, 1); e.Err != "" {
		t.Fatalf("end = %+v", e)
	}
}
