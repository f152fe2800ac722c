package hub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
)

// waitLimit bounds every wait on a condition: generous, since a loaded CI machine is slow; a
// correct run never comes near it.
const waitLimit = 30 * time.Second

const (
	testRepo = "TheBloke/Tiny-GGUF"
	testFile = "tiny.Q4_K_M.gguf"
)

// sent is one message the port sent.
type sent struct {
	to node.Addr
	m  node.Msg
}

// sink collects what a port sends.
type sink struct {
	mu   sync.Mutex
	msgs []sent
}

func (s *sink) send(to node.Addr, m node.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, sent{to, m})
}

// of returns the messages sent to `to` about request id, in order.
func (s *sink) of(to node.Addr, id uint64) []node.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []node.Msg
	for _, x := range s.msgs {
		if x.to == to && reqID(x.m) == id {
			out = append(out, x.m)
		}
	}
	return out
}

func reqID(m node.Msg) uint64 {
	switch m := m.(type) {
	case api.HubResp:
		return m.ReqID
	case api.HubChunk:
		return m.ReqID
	case api.HubEnd:
		return m.ReqID
	}
	return 0
}

// waitFor polls until cond holds on the messages of (to, id) and returns them.
func (s *sink) waitFor(t *testing.T, to node.Addr, id uint64, what string, cond func([]node.Msg) bool) []node.Msg {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		msgs := s.of(to, id)
		if cond(msgs) {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s; request %d got %s", waitLimit, what, id, describe(msgs))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// answered waits for the request's HubResp (or a HubEnd that came instead).
func (s *sink) answered(t *testing.T, to node.Addr, id uint64) []node.Msg {
	t.Helper()
	return s.waitFor(t, to, id, "an answer", func(ms []node.Msg) bool {
		for _, m := range ms {
			switch m.(type) {
			case api.HubResp, api.HubEnd:
				return true
			}
		}
		return false
	})
}

// ended waits for the request's HubEnd, or an error HubResp (which has no body).
func (s *sink) ended(t *testing.T, to node.Addr, id uint64) []node.Msg {
	t.Helper()
	return s.waitFor(t, to, id, "the end of the answer", func(ms []node.Msg) bool {
		for _, m := range ms {
			switch m := m.(type) {
			case api.HubEnd:
				return true
			case api.HubResp:
				if m.Status != 200 && m.Status != 206 {
					return true
				}
			}
		}
		return false
	})
}

func describe(ms []node.Msg) string {
	var b bytes.Buffer
	var chunks, n int
	for _, m := range ms {
		if c, ok := m.(api.HubChunk); ok {
			chunks++
			n += len(c.Data)
			continue
		}
		fmt.Fprintf(&b, "%+v ", m)
	}
	fmt.Fprintf(&b, "(%d chunks, %d bytes)", chunks, n)
	return b.String()
}

// body checks that ms is one 200/206 HubResp, chunks at consecutive offsets from its Offset, and
// at most one HubEnd at the very end; it returns the answer, the body and the HubEnd.
func body(t *testing.T, ms []node.Msg, chunkMax int) (api.HubResp, []byte, *api.HubEnd) {
	t.Helper()
	if len(ms) == 0 {
		t.Fatal("no messages")
	}
	resp, ok := ms[0].(api.HubResp)
	if !ok {
		t.Fatalf("first message is %+v, want a HubResp", ms[0])
	}
	var data []byte
	var end *api.HubEnd
	for i, m := range ms[1:] {
		switch m := m.(type) {
		case api.HubChunk:
			if end != nil {
				t.Fatalf("chunk after HubEnd")
			}
			if m.Offset != resp.Offset+int64(len(data)) {
				t.Fatalf("message %d: chunk at offset %d, want %d", i+1, m.Offset, resp.Offset+int64(len(data)))
			}
			if len(m.Data) == 0 || len(m.Data) > chunkMax {
				t.Fatalf("message %d: chunk of %d bytes, want 1 to %d", i+1, len(m.Data), chunkMax)
			}
			data = append(data, m.Data...)
		case api.HubEnd:
			if end != nil {
				t.Fatalf("two HubEnd messages")
			}
			end = &m
		default:
			t.Fatalf("message %d: unexpected %+v", i+1, m)
		}
	}
	return resp, data, end
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rig is an adapter port talking to a fake hub through an httptest server.
type rig struct {
	t    *testing.T
	fake *fakehub.Server
	srv  *httptest.Server
	port real.Port
	out  *sink
	data []byte // the test file's bytes
	file fakehub.File
}

// spec is a GGUF of about payload bytes.
func spec(payload int64) gguf.Spec {
	return gguf.Spec{Architecture: "llama", ContextLength: 2048, BlockCount: 2, FileType: 15,
		Name: "tiny", PayloadBytes: payload, Seed: 7}
}

// newRig serves a GGUF file of about payload bytes; cfg's BaseURL and Client are filled in.
func newRig(t *testing.T, fcfg fakehub.Config, cfg Config, payload int64) *rig {
	t.Helper()
	r := &rig{t: t, fake: fakehub.New(fcfg), out: &sink{}}
	f, err := r.fake.AddGGUF(testRepo, testFile, spec(payload))
	if err != nil {
		t.Fatal(err)
	}
	r.file = f
	if payload <= 16<<20 {
		r.data = gguf.Bytes(spec(payload))
	}
	r.srv = httptest.NewServer(r.fake)
	t.Cleanup(r.srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = r.srv.URL
	}
	if cfg.Client == nil {
		cfg.Client = r.srv.Client()
	}
	r.port = New(cfg)(r.out.send)
	t.Cleanup(func() { r.port.Close() })
	return r
}

func (r *rig) head(from node.Addr, id uint64) api.HubResp {
	r.t.Helper()
	r.port.Deliver(from, api.HubHeadReq{ReqID: id, Repo: testRepo, Revision: "main", File: testFile})
	ms := r.out.answered(r.t, from, id)
	resp, ok := ms[0].(api.HubResp)
	if !ok || len(ms) != 1 {
		r.t.Fatalf("HEAD got %s, want one HubResp", describe(ms))
	}
	return resp
}
