package queen

import (
	"errors"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// Restarts, the durable log, compaction, and disk failures.

// sameBut compares records ignoring Health (a restart makes every worker unconfirmed).
func sameBut(t *testing.T, got, want []api.WorkerRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("restored %d records, want %d:\n%+v\n%+v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Health != api.HealthUnconfirmed {
			t.Errorf("restored %s is %s, want unconfirmed", g.ID, g.Health)
		}
		g.Health, w.Health = "", ""
		if g != w {
			t.Errorf("restored %+v, want %+v", g, w)
		}
	}
}

func TestRestartRestoresUnconfirmed(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("w1")
	h.register("w2")
	h.must(hiveA, api.RegisterReq{ReqID: h.next(), Spec: spec("w3", 1, "m", "cpu"), State: api.StateLoading})
	claimReq := api.ClaimReq{ReqID: h.next(), Model: "m"}
	claimed := h.must(router, claimReq).Record
	before := h.q.Records()

	h.boot()
	if h.q.Epoch() != 2 {
		t.Fatalf("epoch after restart %d, want 2", h.q.Epoch())
	}
	sameBut(t, h.q.Records(), before)
	if got := h.observed(); len(got) != 1 || got[0] != (api.QueenStarted{Epoch: 2, Workers: 3}) {
		t.Fatalf("observed %+v", got)
	}
	h.wantMark("registry restored from log")
	// Unconfirmed workers are not claimable.
	h.expect(router, api.ClaimReq{ReqID: h.next(), Model: "m"}, api.CodeNoWorkerAvailable)
	// The retried claim returns the cached answer and is not applied again.
	again := h.must(router, claimReq)
	if again.Record != claimed {
		t.Fatalf("retried claim after restart: %+v, first answer %+v", again.Record, claimed)
	}
	h.wantMark("duplicate request answered from cache")
	sameBut(t, h.q.Records(), before)
	// A confirmation makes a worker claimable again, with a claim ID unique across epochs.
	other := "w1"
	if claimed.ID == "w1" {
		other = "w2"
	}
	h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: other, Incarnation: 1})
	c := h.must(router, api.ClaimReq{ReqID: h.next(), Model: "m"}).Record
	if c.ID != other || c.ClaimID == claimed.ClaimID || c.Version <= claimed.Version {
		t.Fatalf("claim after restart: %+v (before: %+v)", c, claimed)
	}
}

func TestRestartUnconfirmedExpire(t *testing.T) {
	h := newHarness(t, DefaultConfig(), nil)
	h.register("idle")
	h.register("busy")
	h.must(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "busy", ExpectVersion: 2, To: api.StateBusy})
	h.boot()
	// WORKER_STALE covers unconfirmed too.
	h.expect(hiveA, api.UpdateStateReq{ReqID: h.next(), Worker: "idle", ExpectVersion: 1, To: api.StateBusy}, api.CodeWorkerStale)
	h.env.Advance(h.q, h.cfg.HeartbeatTimeout)
	if got := h.q.Records(); len(got) != 1 || got[0].ID != "busy" || got[0].Health != api.HealthStale {
		t.Fatalf("after the deadline: %+v", got)
	}
	h.env.Advance(h.q, h.cfg.StaleGrace)
	if h.q.Len() != 0 {
		t.Fatalf("after the grace: %+v", h.q.Records())
	}
	// Expiries are logged: another restart does not bring them back.
	h.boot()
	if h.q.Len() != 0 {
		t.Fatalf("expired workers restored: %+v", h.q.Records())
	}
	if h.q.Epoch() != 3 {
		t.Fatalf("epoch %d, want 3", h.q.Epoch())
	}
}

func TestTornLogTailTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(valid []byte) []byte
	}{
		{"half a record", func(v []byte) []byte { return append(v, []byte(`0badf00d {"seq":4,"ep`)...) }},
		{"garbage line", func(v []byte) []byte { return append(v, []byte("\x00\x00\x00garbage\n")...) }},
		{"bad checksum", func(v []byte) []byte {
			line := encodeLine(logRecord{Seq: 4, Version: 4, Delete: "w1"})
			line[0] ^= 1
			return append(v, line...)
		}},
		{"gap in sequence", func(v []byte) []byte { return append(v, encodeLine(logRecord{Seq: 9, Version: 9, Delete: "w1"})...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := nodetest.NewMemDisk()
			h := newHarness(t, DefaultConfig(), disk)
			h.register("w1")
			h.register("w2")
			h.register("w3")
			before := h.q.Records()
			valid, err := node.ReadFile(disk, logFile)
			if err != nil {
				t.Fatal(err)
			}
			node.WriteFileAtomic(disk, logFile, tc.tail(append([]byte(nil), valid...)))
			h.boot()
			sameBut(t, h.q.Records(), before)
			h.wantMark("torn log tail truncated")
			after, _ := node.ReadFile(disk, logFile)
			if string(after) != string(valid) {
				t.Fatalf("log not truncated to its valid prefix: %d bytes, want %d", len(after), len(valid))
			}
			// New records follow the valid prefix.
			h.register("w4")
			h.boot()
			if h.q.Len() != 4 {
				t.Fatalf("after another restart: %+v", h.q.Records())
			}
		})
	}
}

func TestTornTailKeepsValidPrefix(t *testing.T) {
	disk := nodetest.NewMemDisk()
	h := newHarness(t, DefaultConfig(), disk)
	h.register("w1")
	h.register("w2")
	data, _ := node.ReadFile(disk, logFile)
	node.WriteFileAtomic(disk, logFile, data[:len(data)-5]) // the second record torn
	h.boot()
	if got := h.q.Records(); len(got) != 1 || got[0].ID != "w1" {
		t.Fatalf("restored %+v, want only w1", got)
	}
}

func TestCompactionThenRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LogCompactRecords = 3
	h := newHarness(t, cfg, nil)
	early := api.RegisterReq{ReqID: h.next(), Spec: spec("w0", 1, "m", "cpu"), State: api.StateIdle}
	first := h.must(hiveA, early)
	for _, id := range []string{"w1", "w2", "w3", "w4"} {
		h.register(id)
	}
	c := h.claim("m").Record
	gone := "w2"
	if c.ID == gone {
		gone = "w3"
	}
	h.must(router, api.RemoveReq{ReqID: h.next(), Worker: gone})
	h.wantMark("log compacted")
	if h.q.wal.records >= 3 {
		t.Fatalf("log holds %d records after compaction at 3", h.q.wal.records)
	}
	before := h.q.Records()
	h.boot()
	sameBut(t, h.q.Records(), before)
	// Dedup entries survive compaction: the first registration is answered from the snapshot.
	if again := h.must(hiveA, early); again.Record != first.Record || !again.Created {
		t.Fatalf("retry after compaction: %+v, first %+v", again, first)
	}
	// Versions keep growing.
	h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: c.ID, Incarnation: 1})
	r := h.must(router, api.ReleaseReq{ReqID: h.next(), Worker: c.ID, Incarnation: 1, ClaimID: c.ClaimID})
	if r.Record.Version != c.Version+1 {
		t.Fatalf("version after restart %d, want %d", r.Record.Version, c.Version+1)
	}
}

// hookDisk wraps a MemDisk and can fail writes and syncs, or run a hook on rename.
type hookDisk struct {
	*nodetest.MemDisk
	failWrites bool
	failSyncs  bool
	onRename   func(oldName, newName string)
}

func (d *hookDisk) Open(name string, create bool) (node.File, error) {
	f, err := d.MemDisk.Open(name, create)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, d: d}, nil
}

func (d *hookDisk) Rename(oldName, newName string) error {
	if d.onRename != nil {
		d.onRename(oldName, newName)
	}
	return d.MemDisk.Rename(oldName, newName)
}

type hookFile struct {
	node.File
	d *hookDisk
}

var errDisk = errors.New("input/output error")

func (f *hookFile) WriteAt(p []byte, off int64) (int, error) {
	if f.d.failWrites {
		return 0, errDisk
	}
	return f.File.WriteAt(p, off)
}

func (f *hookFile) Sync() error {
	if f.d.failSyncs {
		return errDisk
	}
	return f.File.Sync()
}

func TestCrashDuringCompactionRecovers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LogCompactRecords = 4
	disk := &hookDisk{MemDisk: nodetest.NewMemDisk()}
	var logAtSnapshot []byte
	disk.onRename = func(_, newName string) {
		if newName == snapshotFile {
			logAtSnapshot, _ = node.ReadFile(disk.MemDisk, logFile)
		}
	}
	h := newHarness(t, cfg, disk)
	for _, id := range []string{"w1", "w2", "w3", "w4", "w5", "w6"} {
		h.register(id)
	}
	before := h.q.Records()
	if len(logAtSnapshot) == 0 {
		t.Fatal("no compaction happened")
	}
	// The state a crash between the snapshot's rename and emptying the log leaves, plus the
	// records written after it: the log still holds records 1..4, then 5 and 6 follow.
	after, _ := node.ReadFile(disk.MemDisk, logFile)
	node.WriteFileAtomic(disk.MemDisk, logFile, append(append([]byte(nil), logAtSnapshot...), after...))
	h.boot()
	sameBut(t, h.q.Records(), before)
	if h.marks("torn log tail truncated") != 0 {
		t.Error("a log with records the snapshot covers was treated as torn")
	}
	// A crash before the rename leaves only a temporary file, which is ignored.
	node.WriteFileAtomic(disk.MemDisk, snapshotFile+".tmp", []byte("half a snapsh"))
	h.boot()
	sameBut(t, h.q.Records(), before)
}

func TestDiskFailureUnavailable(t *testing.T) {
	for _, mode := range []string{"write", "sync"} {
		t.Run(mode, func(t *testing.T) {
			disk := &hookDisk{MemDisk: nodetest.NewMemDisk()}
			h := newHarness(t, DefaultConfig(), disk)
			h.register("w1")
			c := h.claim("m").Record
			before := h.q.Records()
			disk.failWrites, disk.failSyncs = mode == "write", true
			reqs := []api.RegistryRequest{
				api.RegisterReq{ReqID: h.next(), Spec: spec("w2", 1, "m", "cpu"), State: api.StateIdle},
				api.RegisterReq{ReqID: h.next(), Spec: spec("w1", 2, "m", "cpu"), State: api.StateIdle},
				api.UpdateStateReq{ReqID: h.next(), Worker: "w1", ExpectVersion: c.Version, To: api.StateDraining},
				api.ReleaseReq{ReqID: h.next(), Worker: "w1", Incarnation: 1, ClaimID: c.ClaimID},
				api.RemoveReq{ReqID: h.next(), Worker: "w1"},
			}
			for _, req := range reqs {
				e := h.expect(hiveA, req, api.CodeUnavailable)
				wantContains(t, e.Err.Message, "could not persist")
			}
			if after := h.q.Records(); len(after) != 1 || after[0] != before[0] {
				t.Fatalf("a failed write changed the registry: %+v -> %+v", before, after)
			}
			// Disk healed: the retried request is applied (UNAVAILABLE was not cached).
			disk.failWrites, disk.failSyncs = false, false
			h.expect(hiveA, reqs[0], api.CodeOK)
			// No failed write is replayed after a restart.
			h.boot()
			got := h.q.Records()
			if len(got) != 2 || got[0].Version != c.Version || got[0].ClaimID != c.ClaimID || got[1].ID != "w2" {
				t.Fatalf("after restart: %+v", got)
			}
		})
	}
}

func TestExpiryRetriedAfterDiskFailure(t *testing.T) {
	disk := &hookDisk{MemDisk: nodetest.NewMemDisk()}
	h := newHarness(t, DefaultConfig(), disk)
	h.register("w1")
	disk.failSyncs = true
	h.env.Advance(h.q, h.cfg.HeartbeatTimeout)
	if h.q.Len() != 1 || len(h.observed()) != 1 {
		t.Fatalf("an expiry that was not persisted took effect: %+v %+v", h.q.Records(), h.observed())
	}
	disk.failSyncs = false
	h.env.Advance(h.q, persistRetry)
	if h.q.Len() != 0 {
		t.Fatal("expiry not retried")
	}
}

func TestUnreadableDiskRetriesRecovery(t *testing.T) {
	disk := &hookDisk{MemDisk: nodetest.NewMemDisk()}
	h := newHarness(t, DefaultConfig(), disk)
	h.register("w1")
	disk.failSyncs = true // a corrupt tail cannot be truncated
	data, _ := node.ReadFile(disk.MemDisk, logFile)
	node.WriteFileAtomic(disk.MemDisk, logFile, append(data, "torn"...))
	h.boot()
	h.expect(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 1}, api.CodeUnavailable)
	disk.failSyncs = false
	h.env.Advance(h.q, recoverRetry)
	h.must(hiveA, api.HeartbeatReq{ReqID: h.next(), Worker: "w1", Incarnation: 1})
}

func TestCorruptSnapshotSetAside(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LogCompactRecords = 2
	disk := nodetest.NewMemDisk()
	h := newHarness(t, cfg, disk)
	for _, id := range []string{"w1", "w2", "w3"} {
		h.register(id)
	}
	node.WriteFileAtomic(disk, snapshotFile, []byte("00000000 {}\n"))
	h.boot()
	h.wantMark("corrupt registry snapshot set aside")
	if _, err := node.ReadFile(disk, snapshotFile+".corrupt"); err != nil {
		t.Fatalf("corrupt snapshot not kept: %v", err)
	}
	if got := h.q.Records(); len(got) != 1 || got[0].ID != "w3" {
		t.Fatalf("restored from the log alone: %+v", got)
	}
}
