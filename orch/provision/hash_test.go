package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

// The running sha256: a download checks the hub's sha256 without reading the file back, and a
// resumed one reads back only the part it resumes from, once.

// bigModel is large enough that reading it back would show next to gguf.Validate's 64 KiB
// header window.
var (
	bigModel    = gguf.Bytes(gguf.Spec{Architecture: "llama", ContextLength: 2048, BlockCount: 2, Name: "big", PayloadBytes: 1 << 20, Seed: 3})
	bigModelSHA = func() string { s := sha256.Sum256(bigModel); return hex.EncodeToString(s[:]) }()
)

// readCountingDisk is a MemDisk that counts the bytes read from each file.
type readCountingDisk struct {
	*nodetest.MemDisk
	read map[string]int64
}

func newReadCountingDisk() *readCountingDisk {
	return &readCountingDisk{MemDisk: nodetest.NewMemDisk(), read: map[string]int64{}}
}

func (d *readCountingDisk) Open(name string, create bool) (node.File, error) {
	f, err := d.MemDisk.Open(name, create)
	if err != nil {
		return nil, err
	}
	return &readCountingFile{File: f, d: d, name: name}, nil
}

type readCountingFile struct {
	node.File
	d    *readCountingDisk
	name string
}

func (f *readCountingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.d.read[f.name] += int64(n)
	return n, err
}

// serveBig answers GET g with 206 and the whole rest of bigModel in 64 KiB chunks.
func (r *rig) serveBig(g api.HubGetReq) {
	r.t.Helper()
	r.deliver(api.HubResp{ReqID: g.ReqID, Status: 206, SHA256: bigModelSHA, Size: int64(len(bigModel)), Offset: g.RangeStart})
	for off := g.RangeStart; off < int64(len(bigModel)); off += 64 << 10 {
		end := min(off+64<<10, int64(len(bigModel)))
		r.deliver(api.HubChunk{ReqID: g.ReqID, Offset: off, Data: append([]byte(nil), bigModel[off:end]...)})
	}
	r.deliver(api.HubEnd{ReqID: g.ReqID})
}

func (r *rig) answerBigHead() {
	r.t.Helper()
	h := r.expectHead()
	r.deliver(api.HubResp{ReqID: h.ReqID, Status: 200, SHA256: bigModelSHA, Size: int64(len(bigModel))})
}

// wantBigModel checks a successful Done and bigModel in place.
func (r *rig) wantBigModel(d Done) {
	r.t.Helper()
	if !d.Err.OK() || d.SHA256 != bigModelSHA || d.Size != int64(len(bigModel)) {
		r.t.Fatalf("bad Done %+v", d)
	}
	if got, err := node.ReadFile(r.disk(), r.path); err != nil || string(got) != string(bigModel) {
		r.t.Fatalf("model file wrong: %v", err)
	}
}

func TestDownloadReadsBackOnlyTheHeader(t *testing.T) {
	disk := newReadCountingDisk()
	r := newRig(t, "hive-a", disk, testConfig())
	r.p.Request(r.env, modelReq)
	r.answerBigHead()
	r.serveBig(r.expectGet(0))
	r.wantBigModel(r.done())
	// gguf.Validate reads a window of at most 64 KiB for this small header.
	if got := disk.read[r.path+partialSuffix]; got > 64<<10 {
		t.Fatalf("read %d bytes of the %d-byte partial file back; want only its header", got, len(bigModel))
	}
}

func TestResumeHashesThePartialOnce(t *testing.T) {
	disk := newReadCountingDisk()
	r := newRig(t, "hive-a", disk, testConfig())
	const have = 300_000
	f, _ := disk.MemDisk.Open(r.path+partialSuffix, true)
	f.WriteAt(bigModel[:have], 0)
	r.p.Request(r.env, modelReq)
	r.answerBigHead()
	r.serveBig(r.expectGet(have))
	r.wantBigModel(r.done())
	if got := disk.read[r.path+partialSuffix]; got < have || got > have+64<<10 {
		t.Fatalf("read %d bytes of the partial file back; want the %d resumed ones plus the header", got, have)
	}
}

func TestResumeFromAWrongPrefixFailsTheChecksum(t *testing.T) {
	r := newRig(t, "hive-a", nil, testConfig())
	bad := append([]byte(nil), bigModel[:300_000]...)
	bad[200_000] ^= 0xff
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(bad, 0)
	r.p.Request(r.env, modelReq)
	r.answerBigHead()
	r.serveBig(r.expectGet(300_000))
	r.wantMark("checksum mismatch, retrying")
	r.noDone()
	r.advance(r.backoffMax(1))
	r.answerBigHead()
	r.serveBig(r.expectGet(0))
	r.wantBigModel(r.done())
}

// TestLeaseRetakenRehashes: hive-a writes 2000 bytes without syncing and stalls; hive-b takes
// the expired lease, starts over from the synced 0 bytes, writes 2000 bytes of its own (one of
// them corrupted) and stalls too; hive-a takes the lease back at 2000 bytes. Its running hash
// covers 2000 bytes it wrote itself, but the file holds hive-b's: it must hash the file again,
// and so catch the corrupted byte.
func TestLeaseRetakenRehashes(t *testing.T) {
	disk := nodetest.NewMemDisk()
	cfgA := testConfig()
	cfgA.SyncEveryBytes = 1 << 20
	a := newRig(t, "hive-a", disk, cfgA)
	a.p.Request(a.env, modelReq)
	a.answerHead()
	a.serve(a.expectGet(0), 206, modelData, 2000, "open")

	b := newRig(t, "hive-b", disk, testConfig())
	b.advance(cfgA.LeaseTTL + time.Second)
	b.p.Request(b.env, modelReq)
	b.wantMark("download lease taken over")
	b.answerHead()
	bad := append([]byte(nil), modelData...)
	bad[1500] ^= 0xff
	b.serve(b.expectGet(0), 206, bad, 2000, "open")

	// hive-a loses its lease at its next renewal, then takes it back once hive-b's expires.
	a.advance(2*cfgA.LeaseTTL + 10*time.Second)
	a.wantMark("download lease lost")
	a.collect()
	var head api.HubHeadReq
	for _, m := range a.hub {
		if h, ok := m.(api.HubHeadReq); ok {
			head = h
		}
	}
	a.hub = nil
	if head.ReqID == 0 {
		t.Fatal("hive-a did not take the lease back")
	}
	a.deliver(api.HubResp{ReqID: head.ReqID, Status: 200, SHA256: modelSHA, Size: modelSize})
	a.serve(a.expectGet(2000), 206, modelData, modelSize, "")
	a.wantMark("checksum mismatch, retrying")
	a.noDone()
	a.advance(a.backoffMax(1))
	a.answerHead()
	a.serve(a.expectGet(0), 206, modelData, modelSize, "")
	a.wantModel(a.done())
}
