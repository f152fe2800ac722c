package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// largeSpec is a file just over HubMaterializeMaxBytes.
var largeSpec = gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 2,
	Name: "large", PayloadBytes: HubMaterializeMaxBytes + 4<<20, Seed: 3}

// TestHubServesLargeFileWithoutHoldingIt: a file over HubMaterializeMaxBytes is never held in
// memory, yet a ranged GET of it (with a corrupted byte) sends the file's bytes, and HEAD and
// Stat give the sha256 of gguf.Bytes(spec).
func TestHubServesLargeFileWithoutHoldingIt(t *testing.T) {
	cfg := HubConfig{Files: []HubFile{{Repo: testRepo, Revision: testRev, File: testFile, Spec: largeSpec}},
		BandwidthBytesPerSec: 1 << 30}
	s := New(Options{Seed: 1})
	s.Network().SetDefault(LinkConfig{})
	hub := NewHub(cfg)
	hub.SetChunkBytes(1 << 20)
	cli := &hubSink{from: 5 << 20}
	s.Add("hub", "hub", 0, func() node.Node { return hub })
	s.Add("cli", "cli", 0, func() node.Node { return cli })
	s.At(time.Second, "head", func() { s.Inject("cli", "hub", head(1)) })
	s.At(2*time.Second, "get", func() {
		hub.CorruptNext(1)
		s.Inject("cli", "hub", get(2, cli.from))
	})
	s.Run(time.Hour)

	want := gguf.Bytes(largeSpec)
	wantSHA := sha(want)
	if e := hub.files[hubPath(testRepo, testRev, testFile)]; e.data != nil {
		t.Fatalf("the hub holds the %d-byte file in memory", len(e.data))
	}
	size, sum, ok := hub.Stat(testRepo, testRev, testFile)
	if !ok || size != int64(len(want)) || sum != wantSHA {
		t.Fatalf("Stat = %d, %s, %v; want %d, %s", size, sum, ok, len(want), wantSHA)
	}
	if h := cli.head; h.Status != 200 || h.Size != size || h.SHA256 != wantSHA {
		t.Fatalf("HEAD answer %+v", h)
	}
	if cli.resp.Status != 206 || cli.resp.Offset != cli.from || !cli.ended {
		t.Fatalf("GET answer %+v, ended %v", cli.resp, cli.ended)
	}
	body := want[cli.from:]
	if int64(len(body)) != cli.n {
		t.Fatalf("got %d body bytes, want %d", cli.n, len(body))
	}
	diff := 0
	for i := range body {
		if body[i] != cli.body[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d bytes differ from the file, want the 1 corrupted byte", diff)
	}
	if _, _, ok := hub.Stat(testRepo, testRev, "nope"); ok {
		t.Fatal("Stat of an unknown file is ok")
	}
	data, sum, _ := hub.Content(testRepo, testRev, testFile)
	if !bytes.Equal(data, want) || sum != wantSHA {
		t.Fatal("Content of the large file differs from gguf.Bytes(spec)")
	}
}

// hubSink keeps the HEAD answer, the GET answer and the GET's body from byte from.
type hubSink struct {
	head, resp api.HubResp
	from, n    int64
	body       []byte
	ended      bool
}

func (c *hubSink) Start(node.Env) {}

func (c *hubSink) Handle(_ node.Env, _ node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.HubResp:
		if m.ReqID == 1 {
			c.head = m
		} else {
			c.resp = m
		}
	case api.HubChunk:
		if m.Offset != c.from+c.n {
			panic("chunk out of order")
		}
		c.body = append(c.body, m.Data...)
		c.n += int64(len(m.Data))
	case api.HubEnd:
		c.ended = m.Err == ""
	}
}

// TestHubLargeSHAIsStreamed: the sha256 of a large file is the sha256 of its bytes.
func TestHubLargeSHAIsStreamed(t *testing.T) {
	hub := NewHub(HubConfig{Files: []HubFile{{Repo: testRepo, Revision: testRev, File: testFile, Spec: largeSpec}}})
	f, ok := hub.Open(testRepo, testRev, testFile)
	if !ok {
		t.Fatal("Open failed")
	}
	h := sha256.New()
	f.WriteTo(h)
	_, sum, _ := hub.Stat(testRepo, testRev, testFile)
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		t.Fatalf("Stat sha256 %s, the file's %s", sum, got)
	}
}
