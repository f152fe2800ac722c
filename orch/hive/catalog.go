package hive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"syscall"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
)

// catalogState is the hive's connection to its machine's model catalog. Several hives on one
// machine share the catalog file; each has its own connection.
type catalogState struct {
	cat *catalog.Catalog
	vfs string // the SQLite VFS name this process registered for its disk
	// answered remembers catalog answers by (sender, request ID) to answer repeats.
	answered map[useKey]api.CatalogResp
	order    []useKey
}

// openCatalog opens (or recovers) the catalog; on failure the hive keeps running and tries
// again at the next catalog request.
func (h *Hive) openCatalog(env node.Env) error {
	if !h.cfg.Catalog || h.catalog.cat != nil {
		return nil
	}
	cat, events, err := catalog.Open(h.catalogOptions(env))
	h.reportCatalogEvents(env, events)
	if err != nil {
		env.Log().Error("cannot open the model catalog; catalog requests fail until it opens", "err", err)
		return err
	}
	h.catalog.cat = cat
	return nil
}

// osFolder is a disk that is a folder of the operating system (the real runtime's disks).
type osFolder interface{ Dir() string }

// catalogOptions opens the catalog through SQLite's own VFS in the disk's folder when the disk
// is an OS folder: its locks are the operating system's, which the other processes sharing
// the file (hive processes on one machine) see. sqlitevfs keeps its locks inside this process,
// right for the simulator's nodes, but two hive processes would write the file at once.
func (h *Hive) catalogOptions(env node.Env) catalog.Options {
	o := catalog.Options{Disk: env.Disk(), Path: h.cfg.CatalogPath, ModelsDir: h.cfg.ModelsDir,
		Now: env.Now, Log: env.Log(), Plants: h.cfg.Plants, BusyTimeout: h.cfg.CatalogBusyTimeout}
	if d, ok := env.Disk().(osFolder); ok {
		o.Dir = d.Dir()
		return o
	}
	if h.catalog.vfs == "" {
		h.catalog.vfs = sqlitevfs.Register(env.Disk())
	}
	o.VFS = h.catalog.vfs
	return o
}

func (h *Hive) reportCatalogEvents(env node.Env, events []catalog.Event) {
	for _, e := range events {
		env.Log().Warn(e.Message, "backup", e.Backup, "rebuilt", e.Rebuilt, "unreadable", e.Unreadable, "suggestion", e.Suggestion)
		if e.Backup != "" {
			env.Observe(node.Mark("catalog rebuilt after corruption"))
		} else {
			env.Observe(node.Mark("catalog created and filled from model files"))
		}
		env.Observe(api.CatalogRebuilt{Message: e.Message, Backup: e.Backup, Rebuilt: e.Rebuilt,
			Unreadable: e.Unreadable, Suggestion: e.Suggestion})
	}
}

// Close is the process dying: the runtime calls it on a crash. Like an operating system it
// releases the catalog file's locks without writing anything: the VFS is unregistered first,
// so the connection's last calls fail instead of touching the disk, and an unfinished
// transaction is left for the next process to roll back from its journal. (On an OS folder
// the connection is closed; the process's exit releases its locks.)
func (h *Hive) Close() error {
	if h.catalog.vfs != "" {
		sqlitevfs.Unregister(h.catalog.vfs)
		h.catalog.vfs = ""
	}
	if h.catalog.cat != nil {
		h.catalog.cat.Close() // fails cleanly: its files are gone with the process
		h.catalog.cat = nil
	}
	return nil
}

func (h *Hive) handleCatalog(env node.Env, from node.Addr, m node.Msg, reqID uint64) {
	key := useKey{from: from, reqID: reqID}
	if resp, ok := h.catalog.answered[key]; ok {
		env.Send(from, resp)
		return
	}
	resp := api.CatalogResp{ReqID: reqID, Op: m.MsgName()}
	if !h.cfg.Catalog {
		resp.Err = api.Errorf(api.CodeCatalogUnavailable, "send catalog requests to a hive that keeps the catalog",
			"hive %s keeps no model catalog", env.Self())
		env.Send(from, resp)
		return
	}
	if err := h.openCatalog(env); err != nil {
		resp.Err = catalogError(err)
		env.Send(from, resp)
		return
	}
	switch m := m.(type) {
	case api.CatalogRegisterReq:
		h.catalogRegister(env, m, &resp)
	case api.CatalogGetReq:
		model, found, err := h.catalog.cat.Get(m.ID)
		resp.Found, resp.Model, resp.Err = found, toRecord(model), catalogError(err)
	case api.CatalogListReq:
		models, next, err := h.catalog.cat.ListByProvider(m.Provider, m.PageSize, m.PageToken)
		for _, mo := range models {
			resp.Models = append(resp.Models, toRecord(mo))
		}
		resp.NextToken, resp.Err = next, catalogError(err)
	case api.CatalogCleanupReq:
		h.catalogCleanup(env, m, &resp)
	case api.CatalogBackupReq:
		resp.Err = catalogError(h.catalog.cat.Backup(m.Name))
		if resp.Err.OK() {
			env.Observe(node.Mark("catalog backed up"))
		}
	case api.CatalogRestoreReq:
		h.catalogRestore(env, m, &resp)
	}
	if h.catalog.cat != nil {
		h.reportCatalogEvents(env, h.catalog.cat.Events())
	}
	switch resp.Err.Code {
	case api.CodeDiskFull:
		env.Observe(node.Mark("catalog refused a write: disk full"))
	case api.CodeCatalogUnavailable:
		env.Observe(node.Mark("catalog call failed (I/O error), reported to the client"))
	}
	h.remember(key, resp)
	env.Send(from, resp)
}

func (h *Hive) catalogCleanup(env node.Env, r api.CatalogCleanupReq, resp *api.CatalogResp) {
	sum, err := h.catalog.cat.Cleanup(r.Adopt)
	if resp.Err = catalogError(err); !resp.Err.OK() {
		return
	}
	resp.Cleanup = api.CleanupSummary{RowsRemoved: sum.RowsRemoved, FilesAdopted: sum.FilesAdopted,
		RemovedIDs: sum.Removed, AdoptedIDs: sum.Adopted, Unreadable: sum.Unreadable}
	env.Log().Info("catalog cleanup", "rows_removed", sum.RowsRemoved, "files_adopted", sum.FilesAdopted,
		"bytes_adopted", sum.BytesAdopted, "unreadable", sum.Unreadable)
	if sum.RowsRemoved > 0 {
		env.Observe(node.Mark("catalog cleanup removed orphan rows"))
	}
	if sum.FilesAdopted > 0 {
		env.Observe(node.Mark("catalog cleanup adopted files"))
	}
}

// catalogRestore replaces the catalog with a backup: this process's connection is closed
// first and reopened after; other processes on the machine reopen on their next call.
func (h *Hive) catalogRestore(env node.Env, r api.CatalogRestoreReq, resp *api.CatalogResp) {
	h.catalog.cat.Close()
	h.catalog.cat = nil
	err := catalog.Restore(h.catalogOptions(env), r.Name)
	if oerr := h.openCatalog(env); err == nil {
		err = oerr
	}
	if resp.Err = catalogError(err); resp.Err.OK() {
		env.Observe(node.Mark("catalog restored from backup"))
	}
}

func (h *Hive) catalogRegister(env node.Env, r api.CatalogRegisterReq, resp *api.CatalogResp) {
	path := catalog.ModelPath(h.modelsDir(), r.Provider, r.Reference)
	info, size, sum, err := inspectModelFile(env.Disk(), path)
	if err != nil {
		resp.Err = api.Errorf(api.CodeModelFileInvalid, "download the model again",
			"model file %s cannot be registered: %v", path, err)
		return
	}
	m := catalog.Model{ID: r.Provider + ":" + r.Reference, Provider: r.Provider, Reference: r.Reference,
		LocalPath: path, SizeBytes: size, SHA256: sum, Architecture: info.Architecture,
		ContextLength: int64(info.ContextLength), Quantization: info.Quantization, VRAMRequired: r.VRAMRequired,
		DownloadedAt: env.Now()}
	inserted, err := h.catalog.cat.Register(m)
	if err != nil {
		resp.Err = catalogError(err)
		return
	}
	if !inserted {
		env.Observe(node.Mark("catalog registration already present"))
	}
	resp.Inserted, resp.Model = inserted, toRecord(m)
	if !inserted {
		if got, found, err := h.catalog.cat.Get(m.ID); err == nil && found {
			resp.Model = toRecord(got)
		}
	}
}

func (h *Hive) modelsDir() string {
	if h.cfg.ModelsDir == "" {
		return "models/"
	}
	return h.cfg.ModelsDir
}

func (h *Hive) remember(key useKey, resp api.CatalogResp) {
	if h.catalog.answered == nil {
		h.catalog.answered = map[useKey]api.CatalogResp{}
	}
	h.catalog.answered[key] = resp
	h.catalog.order = append(h.catalog.order, key)
	for len(h.catalog.order) > h.cfg.UseDedupMax {
		delete(h.catalog.answered, h.catalog.order[0])
		h.catalog.order = h.catalog.order[1:]
	}
}

func catalogError(err error) api.Error {
	if err == nil {
		return api.Error{}
	}
	if errors.Is(err, catalog.ErrDiskFull) || errors.Is(err, sqlite3.FULL) || errors.Is(err, syscall.ENOSPC) {
		return api.Errorf(api.CodeDiskFull, "free space on the hive's disk and retry", "%v", err)
	}
	return api.Errorf(api.CodeCatalogUnavailable, "retry; if it persists, check the hive's disk", "%v", err)
}

func toRecord(m catalog.Model) api.ModelRecord {
	var at int64
	if !m.DownloadedAt.IsZero() {
		at = m.DownloadedAt.UnixNano()
	}
	return api.ModelRecord{ID: m.ID, Provider: m.Provider, Reference: m.Reference, LocalPath: m.LocalPath,
		SizeBytes: m.SizeBytes, SHA256: m.SHA256, Architecture: m.Architecture, ContextLength: m.ContextLength,
		Quantization: m.Quantization, VRAMRequired: m.VRAMRequired, DownloadedAtUnixNano: at}
}

// inspectModelFile validates a model file's GGUF header and returns its size and sha256.
func inspectModelFile(d node.Disk, path string) (gguf.Info, int64, string, error) {
	f, err := d.Open(path, false)
	if err != nil {
		return gguf.Info{}, 0, "", err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return gguf.Info{}, 0, "", err
	}
	info, err := gguf.Validate(f, size)
	if err != nil {
		return gguf.Info{}, 0, "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return gguf.Info{}, 0, "", err
	}
	return info, size, hex.EncodeToString(h.Sum(nil)), nil
}
