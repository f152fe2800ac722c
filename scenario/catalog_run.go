package scenario

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rbee-sim/rbee-sim/model"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/sim"
)

// ModelFile is a model file already on a machine's disk when the run starts (a finished
// download). Broken files have a valid name but a truncated body.
type ModelFile struct {
	Machine       string `json:"machine"`
	Provider      string `json:"provider"`
	Reference     string `json:"reference"`
	Architecture  string `json:"architecture"`
	ContextLength uint64 `json:"context_length"`
	PayloadBytes  int64  `json:"payload_bytes"`
	Broken        bool   `json:"broken,omitempty"`
	// At is when the download finishes and the file appears; zero: before anything starts.
	At time.Duration `json:"at,omitempty"`
}

// CatalogClientSpec places a catalog client.
type CatalogClientSpec struct {
	Addr   node.Addr            `json:"addr"`
	Client keeper.CatalogConfig `json:"client"`
}

// writeModelFiles puts the scenario's model files on the machines' disks: those with At zero
// before anything runs, the others when their download finishes (the download port of a later
// issue; here the harness writes them).
func (r *run) writeModelFiles() {
	for i, mf := range r.sc.Models {
		write := func() {
			body := gguf.Bytes(gguf.Spec{Architecture: mf.Architecture, ContextLength: mf.ContextLength, BlockCount: 22,
				FileType: 15, Name: mf.Reference, PayloadBytes: mf.PayloadBytes, Seed: r.sc.Seed + uint64(i)})
			if mf.Broken {
				body = body[:len(body)/2]
			}
			path := catalog.ModelPath("models/", mf.Provider, mf.Reference)
			if err := node.WriteFileAtomic(r.s.Disk(mf.Machine), path, body); err != nil {
				// A full or failing disk: the download failed; the model is simply not there.
				r.s.Mark("harness: model download could not be written")
			}
		}
		if mf.At == 0 {
			write()
			continue
		}
		r.s.At(mf.At, "download finished "+mf.Reference, write)
	}
}

// machineOf is the machine a hive runs on.
func (r *run) machineOf(a node.Addr) string {
	for _, h := range r.sc.Hives {
		if h.Addr == a && h.Machine != "" {
			return h.Machine
		}
	}
	return string(a)
}

// catalogMonitor checks catalog answers as they arrive: between two rebuilds of a machine's
// catalog, a model is inserted at most once.
type catalogMonitor struct {
	inserted   map[string]reqKey // machine|id -> the request whose registration inserted it
	twice      string
	rebuilds   []api.CatalogRebuilt
	registered map[string]api.ModelRecord // machine|id -> acknowledged record
	// open counts registrations in flight per machine|id; raced counts registrations sent
	// while another of the same model on the same machine was still unanswered.
	open  map[string]map[reqKey]bool
	raced int
}

// markRaced is the harness's coverage mark: two registrations of one model raced on one
// catalog.
const markRaced = "harness: registrations of one model raced on a shared catalog"

func (m *catalogMonitor) invoke(client node.Addr, machine string, r api.CatalogRegisterReq) {
	key := machine + "|" + r.Provider + ":" + r.Reference
	if m.open[key] == nil {
		m.open[key] = map[reqKey]bool{}
	}
	req := reqKey{client, r.ReqID}
	if !m.open[key][req] && len(m.open[key]) > 0 {
		m.raced++
	}
	m.open[key][req] = true
}

func newCatalogMonitor() *catalogMonitor {
	return &catalogMonitor{inserted: map[string]reqKey{}, registered: map[string]api.ModelRecord{},
		open: map[string]map[reqKey]bool{}}
}

func (m *catalogMonitor) answer(at time.Duration, machine string, to node.Addr, r api.CatalogResp) {
	if !r.Err.OK() || r.Op != (api.CatalogRegisterReq{}).MsgName() {
		return
	}
	key := machine + "|" + r.Model.ID
	delete(m.open[key], reqKey{to, r.ReqID})
	m.registered[key] = r.Model
	if !r.Inserted {
		return
	}
	req := reqKey{to, r.ReqID}
	if first, ok := m.inserted[key]; ok && first != req && m.twice == "" {
		m.twice = fmt.Sprintf("at %v model %s was inserted into the catalog of %s twice (by request %d of %s and request %d of %s)",
			at, r.Model.ID, machine, first.id, first.client, req.id, req.client)
	}
	m.inserted[key] = req
}

func (m *catalogMonitor) rebuilt(machine string, e api.CatalogRebuilt) {
	m.rebuilds = append(m.rebuilds, e)
	for key := range m.inserted { //det:sorted (deletes only)
		if strings.HasPrefix(key, machine+"|") {
			delete(m.inserted, key)
		}
	}
}

// checkCatalogs judges the catalogs at the end of the run: linearizability of the recorded
// catalog history, at most one insert per model, every rebuild's backup kept, and on every
// machine: no acknowledged registration lost while its file is intact, and no row that points
// to a file failing validation.
func (r *run) checkCatalogs(res *Result, o Options) []CheckerResult {
	var out []CheckerResult
	lin := model.CheckCatalog(r.catHist.Operations(), checkTimeout(o))
	c := CheckerResult{Name: "catalog linearizable", Stage: "linearizability", OK: lin.Verdict == porcupine.Ok}
	c.Detail = fmt.Sprintf("%d catalog operations in %d partitions: %s", lin.Ops, lin.Partitions, lin.Verdict)
	res.catLin = &lin
	out = append(out, c)
	twice := CheckerResult{Name: "a model is inserted once per catalog", Stage: "monitors", OK: r.catMon.twice == "",
		Detail: r.catMon.twice}
	if twice.OK {
		twice.Detail = fmt.Sprintf("%d models registered", len(r.catMon.registered))
	}
	out = append(out, twice, r.checkBackupsKept())
	return append(out, r.checkFinalCatalogs()...)
}

func (r *run) checkBackupsKept() CheckerResult {
	c := CheckerResult{Name: "a corrupt catalog is backed up, never deleted", Stage: "monitors", OK: true,
		Detail: fmt.Sprintf("%d rebuilds, every backup present", len(r.catMon.rebuilds))}
	for _, e := range r.catMon.rebuilds {
		if e.Backup == "" {
			continue // the catalog was missing or empty: nothing to back up
		}
		found := false
		for _, m := range r.catalogMachines() {
			if f, err := r.s.Disk(m).Open(e.Backup, false); err == nil {
				f.Close()
				found = true
			}
		}
		if !found {
			c.OK = false
			c.Detail = fmt.Sprintf("the rebuild event says the corrupt catalog was moved to %q, but no such file exists: %s", e.Backup, e.Message)
			break
		}
	}
	return c
}

func (r *run) catalogMachines() []string {
	set := map[string]bool{}
	for _, h := range r.sc.Hives {
		if h.Catalog {
			set[r.machineOf(h.Addr)] = true
		}
	}
	return sortedKeys(set)
}

// checkFinalCatalogs opens each machine's catalog after the run (recovering it if needed) and
// compares it with what must be there.
func (r *run) checkFinalCatalogs() []CheckerResult {
	lost := CheckerResult{Name: "no acknowledged registration lost while its file is intact", Stage: "liveness", OK: true}
	bad := CheckerResult{Name: "no catalog row points to a file that fails validation", Stage: "liveness", OK: true}
	var lostProblems, badProblems []string
	rows := 0
	for _, machine := range r.catalogMachines() {
		models, err := r.finalCatalog(machine)
		if err != nil {
			lostProblems = append(lostProblems, fmt.Sprintf("%s: the catalog cannot be opened after the run: %v", machine, err))
			continue
		}
		rows += len(models)
		lostProblems = append(lostProblems, r.lostRegistrations(machine, models)...)
		badProblems = append(badProblems, r.invalidRows(machine, models)...)
	}
	lost.OK, bad.OK = len(lostProblems) == 0, len(badProblems) == 0
	lost.Detail = fmt.Sprintf("%d acknowledged registrations, all present in the final catalogs", len(r.catMon.registered))
	if !lost.OK {
		lost.Detail = strings.Join(lostProblems, "; ")
	}
	bad.Detail = fmt.Sprintf("%d rows, every file valid", rows)
	if !bad.OK {
		bad.Detail = strings.Join(badProblems, "; ")
	}
	return []CheckerResult{lost, bad}
}

func (r *run) finalCatalog(machine string) (map[string]catalog.Model, error) {
	d := r.s.Disk(machine)
	name := sqlitevfs.Register(d)
	defer sqlitevfs.Unregister(name)
	cat, _, err := catalog.Open(catalog.Options{Disk: d, VFS: name, Now: func() time.Time { return sim.Epoch.Add(r.s.Now()) }})
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	out := map[string]catalog.Model{}
	for _, p := range r.providers() {
		token := ""
		for {
			page, next, err := cat.ListByProvider(p, 500, token)
			if err != nil {
				return nil, err
			}
			for _, m := range page {
				out[m.ID] = m
			}
			if next == "" {
				break
			}
			token = next
		}
	}
	return out, nil
}

func (r *run) providers() []string {
	set := map[string]bool{}
	for _, m := range r.sc.Models {
		set[m.Provider] = true
	}
	return sortedKeys(set)
}

// lostRegistrations lists acknowledged registrations on machine whose file is intact but
// whose row is missing or different from what was acknowledged (with a go-cmp diff).
func (r *run) lostRegistrations(machine string, models map[string]catalog.Model) []string {
	var problems []string
	for _, key := range sortedKeys(r.catMon.registered) {
		m, id, _ := strings.Cut(key, "|")
		if m != machine {
			continue
		}
		ack := r.catMon.registered[key]
		if !fileIntact(r.s.Disk(machine), ack.LocalPath, ack.SHA256) {
			continue
		}
		got, ok := models[id]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: acknowledged model %s is missing although its file %s is intact", machine, id, ack.LocalPath))
			continue
		}
		want := catalog.Model{ID: ack.ID, Provider: ack.Provider, Reference: ack.Reference, LocalPath: ack.LocalPath,
			SizeBytes: ack.SizeBytes, SHA256: ack.SHA256, Architecture: ack.Architecture, ContextLength: ack.ContextLength,
			Quantization: ack.Quantization}
		if d := cmp.Diff(want, got, cmpopts.IgnoreFields(catalog.Model{}, "DownloadedAt", "VRAMRequired")); d != "" {
			problems = append(problems, fmt.Sprintf("%s: model %s differs from what was acknowledged (-acknowledged +catalog):\n%s", machine, id, d))
		}
	}
	return problems
}

// invalidRows lists rows whose file is missing, fails GGUF validation, or has another size or
// hash than the row says.
func (r *run) invalidRows(machine string, models map[string]catalog.Model) []string {
	var problems []string
	for _, id := range sortedKeys(models) {
		m := models[id]
		if !fileIntact(r.s.Disk(machine), m.LocalPath, m.SHA256) {
			problems = append(problems, fmt.Sprintf("%s: row %s points to %s, which is missing or fails validation", machine, id, m.LocalPath))
		}
	}
	return problems
}

// fileIntact reports whether the model file validates and has the given sha256.
func fileIntact(d node.Disk, path, sum string) bool {
	b, err := node.ReadFile(d, path)
	if err != nil {
		return false
	}
	if _, err := gguf.Validate(bytes.NewReader(b), int64(len(b))); err != nil {
		return false
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]) == sum
}
