package provision

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
)

func TestTwoProvisionersOneDiskOneDownload(t *testing.T) {
	disk := nodetest.NewMemDisk()
	a := newRig(t, "hive-a", disk, testConfig())
	b := newRig(t, "hive-b", disk, testConfig())
	a.p.Request(a.env, modelReq)
	a.answerHead()
	g := a.expectGet(0)
	a.serve(g, 206, modelData, 3000, "open")
	breq := modelReq
	breq.Requester, breq.ReqID = "queen-2", 7
	b.p.Request(b.env, breq)
	b.noHub()
	b.wantMark("download waiting for another process's lease")
	// Both clocks run on; a renews its lease, b keeps waiting.
	for i := 0; i < 5; i++ {
		a.advance(10 * time.Second)
		b.advance(10 * time.Second)
		a.deliver(api.HubChunk{ReqID: g.ReqID, Offset: int64(3000 + i), Data: modelData[3000+i : 3001+i]})
		b.noHub()
		b.noDone()
	}
	a.serve(api.HubGetReq{ReqID: g.ReqID, RangeStart: 3005}, 0, modelData, modelSize, "")
	a.wantModel(a.done())
	b.advance(b.cfg.LeasePoll)
	b.noHub()
	d := b.done()
	b.wantModel(d)
	if d.ReqID != 7 {
		t.Fatalf("b's Done %+v", d)
	}
	b.wantMark("download finished by another process")
}

func TestExpiredLeaseIsTakenOverFromSyncedPrefix(t *testing.T) {
	disk := nodetest.NewMemDisk()
	cfg := testConfig()
	cfg.SyncEveryBytes = 3000
	a := newRig(t, "hive-a", disk, cfg)
	a.p.Request(a.env, modelReq)
	a.answerHead()
	a.serve(a.expectGet(0), 206, modelData, 5000, "open") // synced at 3000, not at 5000
	// hive-a crashes. hive-b waits until the lease expires, then takes over.
	b := newRig(t, "hive-b", disk, cfg)
	b.p.Request(b.env, modelReq)
	b.noHub()
	b.advance(cfg.LeaseTTL - time.Nanosecond)
	b.noHub()
	b.advance(cfg.LeasePoll)
	b.wantMark("download lease taken over")
	b.answerHead()
	b.serve(b.expectGet(3000), 206, modelData, modelSize, "")
	b.wantModel(b.done())
}

func TestLeaseLostStopsWriting(t *testing.T) {
	disk := nodetest.NewMemDisk()
	a := newRig(t, "hive-a", disk, testConfig())
	a.p.Request(a.env, modelReq)
	a.answerHead()
	g := a.expectGet(0)
	a.serve(g, 206, modelData, 3000, "open")
	// hive-a stalls (its clock does not move) while hive-b sees the lease expire.
	b := newRig(t, "hive-b", disk, testConfig())
	b.env.Advance(asNode{b.p}, 2*b.cfg.LeaseTTL)
	b.p.Request(b.env, modelReq)
	b.wantMark("download lease taken over")
	b.expectHead()
	a.env.Advance(asNode{a.p}, a.cfg.LeaseRenew)
	a.wantMark("download lease lost")
	if m, ok := a.next().(api.HubCancel); !ok || m.ReqID != g.ReqID {
		t.Fatalf("want HubCancel, got %+v", m)
	}
	a.noDone()
}
