//go:build plant

package provision

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Each planted bug changes what the provisioner does; the correct behaviour is what the
// non-plant tests check.

func plantConfig(name string) Config {
	cfg := testConfig()
	cfg.Plants = plant.NewSet(name)
	return cfg
}

func TestPlantIgnoreRetryAfter(t *testing.T) {
	r := newRig(t, "hive-a", nil, plantConfig(PlantIgnoreRetryAfter))
	r.p.Request(r.env, modelReq)
	h := r.expectHead()
	r.deliver(api.HubResp{ReqID: h.ReqID, Status: 429, RetryAfter: 10 * time.Second})
	r.advance(r.backoffMax(1))
	r.expectHead() // long before the Retry-After deadline
}

func TestPlantResumeWrongOffset(t *testing.T) {
	r := newRig(t, "hive-a", nil, plantConfig(PlantResumeWrongOffset))
	f, _ := r.disk().Open(r.path+partialSuffix, true)
	f.WriteAt(modelData[:2500], 0)
	r.p.Request(r.env, modelReq)
	r.answerHead()
	r.expectGet(2501)
}

func TestPlantSkipChecksum(t *testing.T) {
	r := newRig(t, "hive-a", nil, plantConfig(PlantSkipChecksum))
	r.p.Request(r.env, modelReq)
	r.answerHead()
	bad := append([]byte(nil), modelData...)
	bad[len(bad)-10] ^= 0xff
	r.serve(r.expectGet(0), 206, bad, modelSize, "")
	if d := r.done(); !d.Err.OK() {
		t.Fatalf("Done %+v", d)
	}
	got, _ := node.ReadFile(r.disk(), r.path)
	if string(got) != string(bad) {
		t.Fatalf("want the corrupt file in place")
	}
}

func TestPlantDoubleDownload(t *testing.T) {
	disk := nodetest.NewMemDisk()
	a := newRig(t, "hive-a", disk, plantConfig(PlantDoubleDownload))
	b := newRig(t, "hive-b", disk, plantConfig(PlantDoubleDownload))
	a.p.Request(a.env, modelReq)
	a.answerHead()
	b.p.Request(b.env, modelReq)
	b.expectHead() // despite a's live lease
}

func TestPlantRetryTerminal(t *testing.T) {
	for _, status := range []int{404, 401, 403} {
		r := newRig(t, "hive-a", nil, plantConfig(PlantRetryTerminal))
		r.p.Request(r.env, modelReq)
		h := r.expectHead()
		r.deliver(api.HubResp{ReqID: h.ReqID, Status: status, ErrorCode: "RepoNotFound"})
		r.noDone()
		r.advance(r.backoffMax(1))
		r.expectHead() // the hub is asked again for what it refused for good
	}
}
