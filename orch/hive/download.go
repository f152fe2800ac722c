package hive

import (
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// downloadState tracks the model downloads clients asked for: the provisioner downloads, the
// hive registers the verified file in the catalog and answers every client waiting for it.
type downloadState struct {
	prov *provision.Provisioner
	// waiting maps a provisioner download ID to the clients waiting for it.
	waiting map[string][]downloadWaiter
	// nextReq numbers the hive's own requests to the provisioner.
	nextReq uint64
}

type downloadWaiter struct {
	from node.Addr
	req  api.ModelDownloadReq
	// start, when set, is the worker start waiting for the model (start.go), not a client's
	// download request.
	start *startOp
}

func (h *Hive) startDownloads(env node.Env) {
	if h.cfg.Provision == nil {
		return
	}
	h.downloads = downloadState{prov: provision.New(*h.cfg.Provision), waiting: map[string][]downloadWaiter{}}
	h.downloads.prov.Start(env)
}

// handleDownload starts (or joins) a download for a client; a repeat of a request that was
// already answered is answered from memory.
func (h *Hive) handleDownload(env node.Env, from node.Addr, r api.ModelDownloadReq) {
	key := useKey{from: from, reqID: r.ReqID}
	if resp, ok := h.catalog.answered[key]; ok {
		env.Send(from, resp)
		return
	}
	if h.downloads.prov == nil || !h.cfg.Catalog {
		env.Send(from, api.CatalogResp{ReqID: r.ReqID, Op: r.MsgName(), Err: api.Errorf(api.CodeCatalogUnavailable,
			"send downloads to a hive that has a hub and a catalog", "hive %s does not download models", env.Self())})
		return
	}
	if h.answerRegistered(env, from, r) {
		return
	}
	for _, ws := range h.downloads.waiting { //det:sorted (a membership test)
		for _, w := range ws {
			if w.start == nil && w.from == from && w.req.ReqID == r.ReqID {
				return // a retry of a request already waiting
			}
		}
	}
	h.downloads.nextReq++
	id := h.downloads.prov.Request(env, provision.Request{Repo: r.Repo, Revision: r.Revision, File: r.File,
		Provider: r.Provider, Requester: env.Self(), ReqID: h.downloads.nextReq})
	h.downloads.waiting[id] = append(h.downloads.waiting[id], downloadWaiter{from: from, req: r})
}

// answerRegistered answers a download of a model the catalog already has, whose file is still
// there at its registered size, without asking the provisioner (which would hash it again).
func (h *Hive) answerRegistered(env node.Env, from node.Addr, r api.ModelDownloadReq) bool {
	m, ok := h.registeredModel(env, r.Provider, r.Reference())
	if !ok {
		return false
	}
	env.Observe(node.Mark("download answered from the catalog"))
	resp := api.CatalogResp{ReqID: r.ReqID, Op: r.MsgName(), Model: toRecord(m)}
	h.remember(useKey{from: from, reqID: r.ReqID}, resp)
	env.Send(from, resp)
	return true
}

// registeredModel is the catalog's model (provider, reference) when its file is still there at
// its registered size.
func (h *Hive) registeredModel(env node.Env, provider, reference string) (catalog.Model, bool) {
	if err := h.openCatalog(env); err != nil || h.catalog.cat == nil {
		return catalog.Model{}, false
	}
	m, found, err := h.catalog.cat.Get(provider + ":" + reference)
	if err != nil || !found {
		return catalog.Model{}, false
	}
	f, err := env.Disk().Open(m.LocalPath, false)
	if err != nil {
		return catalog.Model{}, false
	}
	size, err := f.Size()
	f.Close()
	if err != nil || size != m.SizeBytes {
		return catalog.Model{}, false
	}
	return m, true
}

// downloadProgress forwards progress to the clients waiting for that download.
func (h *Hive) downloadProgress(env node.Env, p provision.Progress) {
	for _, w := range h.downloads.waiting[p.ID] {
		if w.start != nil {
			continue // a worker start waits for the end only
		}
		fwd := p
		fwd.ReqID = w.req.ReqID
		env.Send(w.from, fwd)
	}
}

// downloadDone registers a verified file in the catalog and answers the waiting clients.
func (h *Hive) downloadDone(env node.Env, d provision.Done) {
	waiters := h.downloads.waiting[d.ID]
	delete(h.downloads.waiting, d.ID)
	for _, w := range waiters {
		resp := api.CatalogResp{ReqID: w.req.ReqID, Op: w.req.MsgName(), Err: d.Err}
		if d.Err.OK() {
			if err := h.openCatalog(env); err != nil {
				resp.Err = catalogError(err)
			} else {
				h.catalogRegister(env, api.CatalogRegisterReq{ReqID: w.req.ReqID, Provider: w.req.Provider,
					Reference: w.req.Reference()}, &resp)
			}
		}
		if resp.Err.OK() {
			env.Observe(node.Mark("downloaded model registered"))
		}
		if w.start != nil {
			h.startDownloaded(env, w.start, resp)
			continue
		}
		h.remember(useKey{from: w.from, reqID: w.req.ReqID}, resp)
		env.Send(w.from, resp)
	}
}
