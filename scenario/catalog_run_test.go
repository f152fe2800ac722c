package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/model"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// catalogHistory builds a catalog history from steps in time order.
type catalogHistory struct {
	h    *model.CatalogHistory
	next uint64
}

const histModel = "org-0/model-7-GGUF/model.Q4_K_M.gguf"

func newCatalogHistoryBuilder() *catalogHistory { return &catalogHistory{h: model.NewCatalogHistory()} }

// register sends a registration of histModel from client to machine at t and returns its ID.
func (b *catalogHistory) register(client node.Addr, machine string, t int64) uint64 {
	b.next++
	b.h.Invoke(client, machine, api.CatalogRegisterReq{ReqID: b.next, Provider: "hf", Reference: histModel}, b.next, t)
	return b.next
}

// inserted answers registration id of client at t: Inserted.
func (b *catalogHistory) inserted(client node.Addr, id uint64, t int64) {
	b.h.Return(client, api.CatalogResp{ReqID: id, Op: "catalog.register", Inserted: true,
		Model: api.ModelRecord{ID: "hf:" + histModel, Provider: "hf", Reference: histModel}}, t)
}

// restore sends a restore of machine's catalog at t; it is answered at done unless done < 0.
func (b *catalogHistory) restore(machine string, t, done int64) {
	b.next++
	b.h.Invoke("keeper-admin", machine, api.CatalogRestoreReq{ReqID: b.next, Name: "backups/catalog-1.db"}, b.next, t)
	if done >= 0 {
		b.h.Return("keeper-admin", api.CatalogResp{ReqID: b.next, Op: "catalog.restore"}, done)
	}
}

// TestInsertedTwiceOrdersByRealTime: two inserts of one model into one catalog are legitimate
// exactly when a restore or rebuild of that catalog may have run between them, judged by when
// requests were sent and answered, not by the order the replies reached the clients.
func TestInsertedTwiceOrdersByRealTime(t *testing.T) {
	cases := []struct {
		name  string
		build func(b *catalogHistory)
		twice bool
	}{
		{"insert, restore, insert again, replies in order", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 10)
			b.inserted("keeper-1", a, 11)
			b.restore("machine-1", 20, 21)
			c := b.register("keeper-1", "machine-1", 30)
			b.inserted("keeper-1", c, 31)
		}, false},
		// catalog/backup-restore seeds 198 and 682: the hive inserted, then restored a backup
		// older than the insert; the insert's reply (and repeats of it) reached the client after
		// the restore's; a later registration legitimately inserted again.
		{"the first insert's reply delayed past the restore's", func(b *catalogHistory) {
			a := b.register("keeper-2", "machine-1", 10)
			b.restore("machine-1", 12, 15)
			b.inserted("keeper-2", a, 16)
			b.inserted("keeper-2", a, 18) // a duplicated reply: the history keeps the first
			c := b.register("keeper-2", "machine-1", 40)
			b.inserted("keeper-2", c, 41)
		}, false},
		// catalog/backup-restore seed 871: the restore ran on the hive, then a registration
		// through another hive inserted, and its reply arrived before the restore's.
		{"the second insert answered before the restore", func(b *catalogHistory) {
			a := b.register("keeper-2", "machine-1", 1)
			b.inserted("keeper-2", a, 2)
			b.restore("machine-1", 10, 14)
			c := b.register("keeper-2", "machine-1", 11)
			b.inserted("keeper-2", c, 12)
		}, false},
		{"a restore never answered, sent before the second insert was answered", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			b.inserted("keeper-1", a, 2)
			b.restore("machine-1", 3, -1)
			c := b.register("keeper-1", "machine-1", 5)
			b.inserted("keeper-1", c, 6)
		}, false},
		{"a rebuild between", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			b.inserted("keeper-1", a, 2)
			b.h.Rebuilt("hive-1", "machine-1", 3)
			c := b.register("keeper-1", "machine-1", 5)
			b.inserted("keeper-1", c, 6)
		}, false},
		{"no restore at all", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			b.inserted("keeper-1", a, 2)
			c := b.register("keeper-2", "machine-1", 5)
			b.inserted("keeper-2", c, 6)
		}, true},
		{"two concurrent inserts", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			c := b.register("keeper-2", "machine-1", 2)
			b.inserted("keeper-2", c, 3)
			b.inserted("keeper-1", a, 4)
		}, true},
		{"the restore ended before the first insert was sent", func(b *catalogHistory) {
			b.restore("machine-1", 1, 2)
			a := b.register("keeper-1", "machine-1", 3)
			b.inserted("keeper-1", a, 4)
			c := b.register("keeper-1", "machine-1", 5)
			b.inserted("keeper-1", c, 6)
		}, true},
		{"the restore began after the second insert was answered", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			b.inserted("keeper-1", a, 2)
			c := b.register("keeper-1", "machine-1", 3)
			b.inserted("keeper-1", c, 4)
			b.restore("machine-1", 5, -1)
		}, true},
		{"a restore of another machine's catalog", func(b *catalogHistory) {
			a := b.register("keeper-1", "machine-1", 1)
			b.inserted("keeper-1", a, 2)
			b.restore("machine-2", 3, 4)
			c := b.register("keeper-1", "machine-1", 5)
			b.inserted("keeper-1", c, 6)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newCatalogHistoryBuilder()
			tc.build(b)
			got := insertedTwice(b.h.Operations())
			if (got != "") != tc.twice {
				t.Fatalf("insertedTwice = %q, want a double insert: %v", got, tc.twice)
			}
			if tc.twice && !strings.Contains(got, "hf:"+histModel) {
				t.Fatalf("the verdict does not name the model: %q", got)
			}
		})
	}
}

// TestMustSurviveOrdersByRealTime: a registration the hive ran before a restore of an older
// backup need not survive, even when its reply (or a repeat of it) reached the client after
// the restore's; one sent after the restore ended must.
func TestMustSurviveOrdersByRealTime(t *testing.T) {
	key := "machine-1|hf:" + histModel
	ok := api.CatalogResp{Op: "catalog.register", Inserted: true, Model: api.ModelRecord{ID: "hf:" + histModel}}
	setup := func(regAt time.Duration) (*catalogMonitor, map[reqKey]time.Duration) {
		m := newCatalogMonitor()
		backup, restore := reqKey{"keeper-admin", 1}, reqKey{"keeper-admin", 2}
		m.sentMaintenance(5, backup, (api.CatalogBackupReq{}).MsgName(), "backups/catalog-1.db")
		m.answer(6, "machine-1", backup.client, api.CatalogResp{ReqID: backup.id, Op: "catalog.backup"})
		m.sentMaintenance(12, restore, (api.CatalogRestoreReq{}).MsgName(), "backups/catalog-1.db")
		m.answer(15, "machine-1", restore.client, api.CatalogResp{ReqID: restore.id, Op: "catalog.restore"})
		return m, map[reqKey]time.Duration{{"keeper-1", 7}: regAt}
	}

	m, invoked := setup(10)
	r := ok
	r.ReqID = 7
	m.answer(16, "machine-1", "keeper-1", r)
	m.answer(18, "machine-1", "keeper-1", r) // a repeat of the reply
	if m.ackAt[key] != 16 {
		t.Fatalf("a repeated reply moved the acknowledgement to %v, want 16", m.ackAt[key])
	}
	if m.mustSurvive(key, invoked) {
		t.Fatal("a registration sent before the restore ended must not be required to survive a restore of an older backup")
	}

	m, invoked = setup(20)
	m.answer(21, "machine-1", "keeper-1", r)
	if !m.mustSurvive(key, invoked) {
		t.Fatal("a registration sent after the restore ended must survive")
	}
}

// TestBackupRestorePinnedSeeds: seeds of catalog/backup-restore where a registration ran
// before a restore of an older backup and its reply reached the client after the restore's
// (198, 682), or where a registration ran after the restore and was answered before it (871);
// a later insert of the same model is legitimate and every checker must pass.
func TestBackupRestorePinnedSeeds(t *testing.T) {
	e, err := Lookup("catalog/backup-restore")
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{198, 682, 871} {
		res := Run(e.Generate(seed, Knobs{}), Options{})
		if c := res.FirstFailure(); c != nil {
			t.Errorf("seed %d: [%s] %s: %s", seed, c.Stage, c.Name, c.Detail)
		}
	}
}
