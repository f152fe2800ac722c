package model

import (
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

func catReg(h *CatalogHistory, client string, id uint64, ref string, start, end int64, resp *api.CatalogResp) {
	h.Invoke(node.Addr(client), "m1", api.CatalogRegisterReq{ReqID: id, Provider: "hf", Reference: ref}, id, start)
	if resp != nil {
		resp.ReqID = id
		h.Return(node.Addr(client), *resp, end)
	}
}

func catGet(h *CatalogHistory, client string, id uint64, ref string, start, end int64, resp api.CatalogResp) {
	h.Invoke(node.Addr(client), "m1", api.CatalogGetReq{ReqID: id, ID: "hf:" + ref}, id, start)
	resp.ReqID = id
	h.Return(node.Addr(client), resp, end)
}

func TestCatalogModel(t *testing.T) {
	rec := api.ModelRecord{ID: "hf:a", Provider: "hf", Reference: "a", SizeBytes: 10}
	other := rec
	other.SizeBytes = 11
	cases := []struct {
		name  string
		build func(h *CatalogHistory)
		want  porcupine.CheckResult
	}{
		{"insert then already registered", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
			catReg(h, "k2", 2, "a", 20, 30, &api.CatalogResp{Model: rec})
			catGet(h, "k1", 3, "a", 40, 50, api.CatalogResp{Found: true, Model: rec})
		}, porcupine.Ok},
		{"concurrent registrations, one inserts", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Model: rec})
			catReg(h, "k2", 2, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
		}, porcupine.Ok},
		{"two inserts of one model (no dedupe)", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
			catReg(h, "k2", 2, "a", 20, 30, &api.CatalogResp{Inserted: true, Model: rec})
		}, porcupine.Illegal},
		{"acknowledged registration lost", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
			catGet(h, "k1", 2, "a", 20, 30, api.CatalogResp{})
		}, porcupine.Illegal},
		{"record changed without a rebuild", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
			catGet(h, "k1", 2, "a", 20, 30, api.CatalogResp{Found: true, Model: other})
		}, porcupine.Illegal},
		{"rebuild may change and drop models", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, &api.CatalogResp{Inserted: true, Model: rec})
			h.Rebuilt("hive-1", "m1", 15)
			catGet(h, "k1", 2, "a", 20, 30, api.CatalogResp{Found: true, Model: other})
		}, porcupine.Ok},
		{"unanswered registration may have happened", func(h *CatalogHistory) {
			catReg(h, "k1", 1, "a", 0, 10, nil)
			catGet(h, "k2", 2, "a", 20, 30, api.CatalogResp{Found: true, Model: rec})
			catReg(h, "k2", 3, "a", 40, 50, &api.CatalogResp{Model: rec})
		}, porcupine.Ok},
		{"failed registration changes nothing", func(h *CatalogHistory) {
			catGet(h, "k2", 4, "a", 0, 5, api.CatalogResp{})
			catReg(h, "k1", 1, "a", 10, 15, &api.CatalogResp{Err: api.Error{Code: api.CodeModelFileInvalid}})
			catGet(h, "k2", 2, "a", 20, 30, api.CatalogResp{Found: true, Model: rec})
		}, porcupine.Illegal},
		{"a catalog may start with models (an old one to migrate)", func(h *CatalogHistory) {
			catGet(h, "k2", 2, "a", 20, 30, api.CatalogResp{Found: true, Model: rec})
		}, porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewCatalogHistory()
			c.build(h)
			if got := CheckCatalog(h.Operations(), 0).Verdict; got != c.want {
				t.Fatalf("verdict %s, want %s", got, c.want)
			}
		})
	}
}
