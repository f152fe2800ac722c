package hive

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	llmworker "github.com/rbee-sim/rbee-sim/orch/worker"
)

// Worker starts on request (e2e/cold-start): download, register, preflight, spawn, ready,
// registered, answered; and every way a start fails.

const hubAddr node.Addr = "hub"

var (
	startModel = gguf.Bytes(gguf.Spec{Architecture: "llama", ContextLength: 2048, BlockCount: 2, FileType: 15,
		Name: "tiny", PayloadBytes: 8192, Seed: 7})
	startModelSHA = func() string { s := sha256.Sum256(startModel); return hex.EncodeToString(s[:]) }()
	startModelID  = "hf:TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf"
)

func startReq(id uint64, device string) api.WorkerStartReq {
	return api.WorkerStartReq{ReqID: id, Repo: "TheBloke/Tiny-GGUF", File: "tiny.Q4_K_M.gguf", Device: device, Slots: 2}
}

func startConfig() Config {
	cfg := DefaultConfig(queenAddr)
	cfg.WorkerProcesses, cfg.ProcessTable, cfg.Version = true, tableAddr, "0.3.0"
	cfg.LoadTimeout, cfg.StopGrace = loadTimeout, stopGrace
	cfg.Catalog, cfg.CatalogBusyTimeout = true, -1
	p := provision.DefaultConfig()
	p.Hub = hubAddr
	cfg.Provision = &p
	cfg.DeviceMemoryBytes = map[string]int64{"cuda:0": 1 << 30, "cuda:1": 4096}
	return cfg
}

// startHive starts a hive with no workers and answers its first (empty) process list.
func startHive(t *testing.T, cfg Config, disk node.Disk) *lifeFixture {
	t.Helper()
	l := lifeStart(t, cfg)
	if disk != nil {
		l.fixture = start(t, cfg, 1, disk)
	}
	t.Cleanup(func() { l.h.Close() })
	return l
}

// serveHub plays the hub and the hive's own messages until the download ends: HEAD and GET
// are answered with the model (or with status for the HEAD when it is not 200), and what the
// provisioner sends the hive itself is delivered to it.
func (l *lifeFixture) serveHub(status int, errorCode string) {
	l.t.Helper()
	for range 20 {
		moved := false
		for _, h := range take[api.HubHeadReq](l, hubAddr) {
			moved = true
			if status != 200 {
				l.deliver(hubAddr, api.HubResp{ReqID: h.ReqID, Status: status, ErrorCode: errorCode, Message: "not here"})
				continue
			}
			l.deliver(hubAddr, api.HubResp{ReqID: h.ReqID, Status: 200, SHA256: startModelSHA, Size: int64(len(startModel))})
		}
		for _, g := range take[api.HubGetReq](l, hubAddr) {
			moved = true
			l.deliver(hubAddr, api.HubResp{ReqID: g.ReqID, Status: 200, SHA256: startModelSHA, Size: int64(len(startModel))})
			l.deliver(hubAddr, api.HubChunk{ReqID: g.ReqID, Data: append([]byte(nil), startModel...)})
			l.deliver(hubAddr, api.HubEnd{ReqID: g.ReqID})
		}
		for _, d := range take[provision.Done](l, hiveAddr) {
			moved = true
			l.deliver(hiveAddr, d)
		}
		take[provision.Progress](l, hiveAddr)
		if !moved {
			return
		}
	}
	l.t.Fatal("the download did not end")
}

// answers returns the start answers the hive sent client.
func (l *lifeFixture) answers() []api.WorkerStartResp { return take[api.WorkerStartResp](l, client) }

// spawnedWorker lists, takes the one spawn that follows, and answers it with pid.
func (l *lifeFixture) spawnedWorker(id string, pid int) api.ProcSpawn {
	l.t.Helper()
	l.list()
	sp := l.spawns()
	s, ok := sp[node.Addr(id)]
	if !ok || len(sp) != 1 {
		l.t.Fatalf("spawned %+v, want %s only", sp, id)
	}
	l.spawned(s, pid)
	return s
}

// TestWorkerStartColdChain (e2e/cold-start): no worker and no model anywhere: the hive
// downloads the model, registers it in its catalog, passes the preflight, spawns a worker for
// the model's catalog ID with its size, and answers once the worker is ready and registered.
// Resends join the start while it runs and get the same answer after.
func TestWorkerStartColdChain(t *testing.T) {
	l := startHive(t, startConfig(), nil)
	l.list()
	l.deliver(client, startReq(7, "cuda:0"))
	l.deliver(client, startReq(7, "cuda:0")) // a resend joins: no second download, no answer
	if h := take[api.HubHeadReq](l, hubAddr); len(h) != 1 {
		t.Fatalf("a start of a model not in the catalog asked the hub %+v, want one HEAD", h)
	} else {
		l.sent = append(l.sent, nodetest.Sent{To: hubAddr, Msg: h[0]}) // for serveHub
	}
	l.serveHub(200, "")
	if !l.marked("downloaded model registered") || !l.marked("worker start: preflight passed") {
		t.Fatalf("marks %v: want the model downloaded and registered, then the preflight passed", l.env.Observed)
	}
	if m, ok := l.h.registeredModel(l.env, "hf", "TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf"); !ok || m.SizeBytes != int64(len(startModel)) {
		t.Fatalf("catalog has %+v (found %v), want the downloaded model", m, ok)
	}
	s := l.spawnedWorker("hive-1-w1", 21)
	wc, err := llmworker.ParseArgs(s.Args)
	if err != nil || wc.Model != startModelID || wc.ModelBytes != int64(len(startModel)) || wc.Slots != 2 || wc.Engine != "hive-1-w1-engine" {
		t.Fatalf("spawned with %+v (%v), want model %s of %d bytes with 2 slots", wc, err, startModelID, len(startModel))
	}
	if a := l.answers(); len(a) != 0 {
		t.Fatalf("answered %+v before the worker was ready", a)
	}
	l.deliver(client, startReq(7, "cuda:0"))
	// The model's loading progress reaches the client waiting for the start; a report that
	// claims to be another worker's does not.
	l.deliver("hive-1-w1", api.WorkerLoading{Worker: "hive-1-w1", Percent: 40})
	l.deliver("elsewhere", api.WorkerLoading{Worker: "hive-1-w1", Percent: 90})
	if got := take[api.WorkerLoading](l, client); len(got) != 1 || got[0].Percent != 40 {
		t.Fatalf("forwarded %+v to the client, want the worker's one report of 40%%", got)
	}
	reg := l.ready("hive-1-w1")
	if reg.Spec.Model != startModelID || reg.Spec.Capability != "cuda:0" || reg.Spec.Slots != 2 {
		t.Fatalf("registered %+v", reg.Spec)
	}
	a := l.answers()
	want := api.WorkerStartResp{ReqID: 7, Worker: "hive-1-w1", Model: startModelID}
	if len(a) != 1 || a[0] != want {
		t.Fatalf("answers %+v, want one %+v", a, want)
	}
	l.deliver(client, startReq(7, "cuda:0"))
	if a := l.answers(); len(a) != 1 || a[0] != want {
		t.Fatalf("a repeat after the answer got %+v, want %+v again", a, want)
	}
	if sp := l.spawns(); len(sp) != 0 {
		t.Fatalf("repeats spawned %+v", sp)
	}
	// A second start of the model finds it in the catalog: no download, a new worker.
	l.deliver(client, startReq(8, "cuda:0"))
	if h := take[api.HubHeadReq](l, hubAddr); len(h) != 0 || !l.marked("worker start: model found in the catalog") {
		t.Fatalf("a start of a registered model asked the hub %+v", h)
	}
	l.spawnedWorker("hive-1-w2", 22)
	l.ready("hive-1-w2")
	if a := l.answers(); len(a) != 1 || a[0].Worker != "hive-1-w2" || !a[0].Err.OK() {
		t.Fatalf("second start answered %+v", a)
	}
	if got := l.h.Registered(); !slices.Equal(got, []string{"hive-1-w1", "hive-1-w2"}) {
		t.Fatalf("Registered() = %v", got)
	}
}

// TestWorkerStartPreflightInsufficientVRAM: a model larger than the device's memory is refused
// with both numbers and a suggestion; nothing is spawned.
func TestWorkerStartPreflightInsufficientVRAM(t *testing.T) {
	l := startHive(t, startConfig(), nil)
	l.list()
	l.deliver(client, startReq(3, "cuda:1"))
	l.serveHub(200, "")
	a := l.answers()
	if len(a) != 1 || a[0].Err.Code != api.CodeInsufficientVRAM || a[0].Worker != "" {
		t.Fatalf("answers %+v, want INSUFFICIENT_VRAM", a)
	}
	e := a[0].Err
	for _, want := range []string{"4096 bytes", "cuda:1", startModelID} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not name %q", e.Message, want)
		}
	}
	if !strings.Contains(e.Message, "("+strconv.Itoa(len(startModel))+" bytes)") || !strings.Contains(e.Suggestion, "quantization") {
		t.Errorf("error %v: want the model's size and a suggestion of a smaller quantization", e)
	}
	l.advance(time.Minute)
	if sp := l.spawns(); len(sp) != 0 || len(l.h.Workers()) != 0 {
		t.Fatalf("a refused start spawned %+v, workers %+v", sp, l.h.Workers())
	}
}

// TestWorkerStartDownloadFails: a model the hub does not have ends the start with the
// download's error, and nothing is spawned.
func TestWorkerStartDownloadFails(t *testing.T) {
	l := startHive(t, startConfig(), nil)
	l.list()
	l.deliver(client, startReq(4, "cuda:0"))
	l.serveHub(404, "RepoNotFound")
	a := l.answers()
	if len(a) != 1 || a[0].Err.Code != provision.CodeDownloadFailed || !strings.Contains(a[0].Err.Message, "download failed") ||
		a[0].Err.Suggestion == "" {
		t.Fatalf("answers %+v, want DOWNLOAD_FAILED saying so, with a suggestion", a)
	}
	if sp := l.spawns(); len(sp) != 0 || len(l.h.Workers()) != 0 {
		t.Fatalf("spawned %+v after a failed download", sp)
	}
}

// TestWorkerStartFailuresAnswerAndGiveUp: a started worker that cannot start ends its start
// with the reason, is never registered, never respawned, and is not among the hive's workers.
func TestWorkerStartFailuresAnswerAndGiveUp(t *testing.T) {
	cases := []struct {
		name string
		fail func(l *lifeFixture, s api.ProcSpawn)
		code api.Code
	}{
		{"binary missing", func(l *lifeFixture, s api.ProcSpawn) {
			l.deliver(tableAddr, api.ProcSpawned{ReqID: s.ReqID, Err: api.Errorf(api.CodeBinaryMissing, "install it", "no binary")})
		}, api.CodeBinaryMissing},
		{"loading timeout", func(l *lifeFixture, s api.ProcSpawn) {
			l.spawned(s, 21)
			l.advance(loadTimeout + time.Second)
			if sig := l.signals(); len(sig) == 0 || sig[0].Signal != "KILL" {
				l.t.Fatalf("signals %+v, want KILL", sig)
			}
			l.deliver(tableAddr, api.ProcExited{PID: 21, Signal: "KILL"})
		}, api.CodeLoadingTimeout},
		{"crash while loading", func(l *lifeFixture, s api.ProcSpawn) {
			l.spawned(s, 21)
			l.deliver(tableAddr, api.ProcExited{PID: 21, Signal: "SEGV"})
		}, api.CodeWorkerCrashed},
		{"failed load", func(l *lifeFixture, s api.ProcSpawn) {
			l.spawned(s, 21)
			l.deliver("hive-1-w1", api.WorkerReady{Worker: "hive-1-w1", Err: api.Errorf(api.CodeEngineError, "check the GPU", "out of memory")})
			l.deliver(tableAddr, api.ProcExited{PID: 21, Signal: "KILL"})
		}, api.CodeEngineError},
		{"version mismatch", func(l *lifeFixture, s api.ProcSpawn) {
			l.deliver(tableAddr, api.ProcSpawned{ReqID: s.ReqID, PID: 21, Version: "0.0.1"})
			l.deliver(tableAddr, api.ProcExited{PID: 21, Signal: "KILL"})
		}, api.CodeVersionMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := startHive(t, startConfig(), nil)
			l.list()
			l.deliver(client, startReq(5, "cuda:0"))
			l.serveHub(200, "")
			l.list()
			s := l.spawns()["hive-1-w1"]
			c.fail(l, s)
			a := l.answers()
			if len(a) != 1 || a[0].Err.Code != c.code || !strings.Contains(a[0].Err.Message, "hive-1-w1") || a[0].Err.Suggestion == "" {
				t.Fatalf("answers %+v, want one %s naming the worker, with a suggestion", a, c.code)
			}
			l.advance(3 * time.Minute)
			if sp := l.spawns(); len(sp) != 0 {
				t.Fatalf("a failed start was spawned again: %+v", sp)
			}
			if regs := take[api.RegisterReq](l, queenAddr); len(regs) != 0 {
				t.Fatalf("a failed start registered %+v", regs)
			}
			if w := l.h.Workers(); len(w) != 0 {
				t.Fatalf("Workers() = %+v after a failed start, want none", w)
			}
			l.deliver(client, startReq(5, "cuda:0"))
			if b := l.answers(); len(b) != 1 || b[0] != a[0] {
				t.Fatalf("a repeat got %+v, want %+v", b, a[0])
			}
		})
	}
}

// TestWorkerStartSurvivesHiveRestart: a hive that restarts while its started worker loads
// adopts the worker's process, joins the client's resend to it and answers once it is
// registered; the next start gets a new ID.
func TestWorkerStartSurvivesHiveRestart(t *testing.T) {
	disk := nodetest.NewMemDisk()
	l := startHive(t, startConfig(), disk)
	l.list()
	l.deliver(client, startReq(9, "cuda:0"))
	l.serveHub(200, "")
	s := l.spawnedWorker("hive-1-w1", 21)
	l.h.Close()

	r := startHive(t, startConfig(), disk)
	r.list(api.ProcInfo{PID: 21, Binary: "llm-worker-rbee", Port: s.Port, Addr: "hive-1-w1"})
	if sp := r.spawns(); len(sp) != 0 || !r.marked("hive restored a started worker") {
		t.Fatalf("after a restart the hive spawned %+v, want the running worker adopted", sp)
	}
	r.deliver(client, startReq(9, "cuda:0"))
	if a := r.answers(); len(a) != 0 {
		t.Fatalf("answered %+v before the worker was ready", a)
	}
	r.ready("hive-1-w1")
	if a := r.answers(); len(a) != 1 || a[0] != (api.WorkerStartResp{ReqID: 9, Worker: "hive-1-w1", Model: startModelID}) {
		t.Fatalf("answers %+v", a)
	}
	r.deliver(client, startReq(10, "cuda:0"))
	r.spawnedWorker("hive-1-w2", 22)
}

// TestWorkerStartRefusals: requests the hive cannot take are answered at once, saying why.
func TestWorkerStartRefusals(t *testing.T) {
	l := startHive(t, startConfig(), nil)
	l.list()
	bad := startReq(1, "")
	l.deliver(client, bad)
	zero := startReq(2, "cuda:0")
	zero.Slots = 0
	l.deliver(client, zero)
	a := l.answers()
	if len(a) != 2 || a[0].Err.Code != api.CodeInvalidRequest || a[1].Err.Code != api.CodeInvalidRequest ||
		a[0].Err.Suggestion == "" || !strings.Contains(a[1].Err.Message, "0 slots") {
		t.Fatalf("answers %+v, want two INVALID_REQUEST", a)
	}
	cfg := startConfig()
	cfg.ProcessTable = ""
	n := startHive(t, cfg, nil)
	n.deliver(client, startReq(3, "cuda:0"))
	if a := n.answers(); len(a) != 1 || a[0].Err.Code != api.CodeStartUnsupported || a[0].Err.Suggestion == "" {
		t.Fatalf("a hive without a process table answered %+v", a)
	}
	if err := (Config{Queen: queenAddr, DeviceMemoryBytes: map[string]int64{"cuda:0": -1}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "cuda:0") {
		t.Fatalf("negative device memory: Validate() = %v", err)
	}
}
