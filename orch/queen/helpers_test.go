package queen

import (
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

const (
	queenAddr node.Addr = "queen-1"
	hiveA     node.Addr = "hive-a"
	router    node.Addr = "router-1"
)

// harness drives one queen process on a disk that outlives it.
type harness struct {
	t    *testing.T
	cfg  Config
	disk node.Disk
	env  *nodetest.Env
	q    *Queen
	seed uint64
	req  uint64 // last ReqID handed out by next()

	earlier   []node.Observation // observed by the queen's earlier processes
	traceHash uint64
}

func newHarness(t *testing.T, cfg Config, disk node.Disk) *harness {
	t.Helper()
	if disk == nil {
		disk = nodetest.NewMemDisk()
	}
	h := &harness{t: t, cfg: cfg, disk: disk, seed: 1}
	h.boot()
	return h
}

// boot starts a fresh queen process on the harness's disk (a restart after a crash).
func (h *harness) boot() {
	h.seed++
	if h.env != nil {
		h.earlier = append(h.earlier, h.env.Observed...)
	}
	h.env = nodetest.New(queenAddr, h.seed, h.disk)
	h.q = New(h.cfg)
	h.q.Start(h.env)
}

// next returns a fresh ReqID; numbers keep growing across restarts, as a client's would.
func (h *harness) next() uint64 {
	h.req++
	return h.req
}

// do delivers req from a peer and returns the one response it got.
func (h *harness) do(from node.Addr, req api.RegistryRequest) api.RegistryResp {
	h.t.Helper()
	h.env.TakeSent()
	h.q.Handle(h.env, from, req)
	sent := h.env.TakeSent()
	if len(sent) != 1 {
		h.t.Fatalf("%s: want exactly one message sent, got %d: %+v", req.MsgName(), len(sent), sent)
	}
	resp, ok := sent[0].Msg.(api.RegistryResp)
	if !ok || sent[0].To != from {
		h.t.Fatalf("%s: want a RegistryResp to %s, got %T to %s", req.MsgName(), from, sent[0].Msg, sent[0].To)
	}
	if resp.ReqID != req.RequestID() || resp.Op != req.MsgName() || resp.Epoch != h.q.Epoch() {
		h.t.Fatalf("%s: response header %d/%s/epoch %d, want %d/%s/epoch %d",
			req.MsgName(), resp.ReqID, resp.Op, resp.Epoch, req.RequestID(), req.MsgName(), h.q.Epoch())
	}
	return resp
}

// must is do and expects success.
func (h *harness) must(from node.Addr, req api.RegistryRequest) api.RegistryResp {
	h.t.Helper()
	resp := h.do(from, req)
	if !resp.Err.OK() {
		h.t.Fatalf("%s: %v", req.MsgName(), resp.Err)
	}
	return resp
}

// expect is do and expects the error code (CodeOK for success).
func (h *harness) expect(from node.Addr, req api.RegistryRequest, code api.Code) api.RegistryResp {
	h.t.Helper()
	resp := h.do(from, req)
	if resp.Err.Code != code {
		h.t.Fatalf("%s: got %q (%v), want %q", req.MsgName(), resp.Err.Code, resp.Err, code)
	}
	if code != api.CodeOK && (resp.Err.Message == "" || resp.Err.Suggestion == "") {
		h.t.Fatalf("%s: error %s needs a message and a suggestion: %+v", req.MsgName(), code, resp.Err)
	}
	return resp
}

func spec(id string, inc uint64, model, capability string) api.WorkerSpec {
	return api.WorkerSpec{ID: id, Hive: hiveA, Incarnation: inc, Model: model, Capability: capability, Slots: 1}
}

// register registers an idle worker serving model "m" on "cpu".
func (h *harness) register(id string) api.WorkerRecord {
	h.t.Helper()
	return h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec(id, 1, "m", "cpu"), State: api.StateIdle}).Record
}

func (h *harness) get(id string) api.WorkerRecord {
	h.t.Helper()
	return h.must(router, api.GetReq{ReqID: h.next(), Worker: id}).Record
}

func (h *harness) claim(model string) api.RegistryResp {
	h.t.Helper()
	return h.do(router, api.ClaimReq{ReqID: h.next(), Model: model})
}

// marks counts the coverage marks observed so far, by every process of the queen.
func (h *harness) marks(name string) int {
	n := 0
	for _, o := range append(append([]node.Observation(nil), h.earlier...), h.env.Observed...) {
		if m, ok := o.(node.Mark); ok && string(m) == name {
			n++
		}
	}
	return n
}

// observed returns the non-mark observations so far.
func (h *harness) observed() []node.Observation {
	var out []node.Observation
	for _, o := range h.env.Observed {
		if _, ok := o.(node.Mark); !ok {
			out = append(out, o)
		}
	}
	return out
}

func (h *harness) wantMark(name string) {
	h.t.Helper()
	if h.marks(name) == 0 {
		h.t.Errorf("coverage mark %q not reached", name)
	}
}

func wantContains(t *testing.T, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%q does not contain %q", s, p)
		}
	}
}
