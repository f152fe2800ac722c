package scenario

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
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
	// DeleteAt, when set, is when someone deletes the file by hand (an orphaned row).
	DeleteAt time.Duration `json:"delete_at,omitempty"`
	// V1, for a file present at the start, puts its row in a schema-v1 catalog the machine
	// starts with (an old rbee-hive's catalog, to be migrated).
	V1 bool `json:"v1,omitempty"`
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
			body := r.modelBody(i)
			path := catalog.ModelPath("models/", mf.Provider, mf.Reference)
			if err := node.WriteFileAtomic(r.s.Disk(mf.Machine), path, body); err != nil {
				// A full or failing disk: the download failed; the model is simply not there.
				r.s.Mark("harness: model download could not be written")
			}
		}
		if mf.At == 0 {
			write()
		} else {
			r.s.At(mf.At, "download finished "+mf.Reference, write)
		}
		if mf.DeleteAt > 0 {
			path := catalog.ModelPath("models/", mf.Provider, mf.Reference)
			r.s.At(mf.DeleteAt, "operator deletes "+mf.Reference, func() { r.s.Disk(mf.Machine).Remove(path) })
		}
	}
	r.writeV1Catalogs()
}

// writeV1Catalogs writes, on each machine with V1 model files, the schema-v1 catalog an older
// rbee-hive left, holding those models.
func (r *run) writeV1Catalogs() {
	byMachine := map[string][]catalog.Model{}
	for i, mf := range r.sc.Models {
		if !mf.V1 || mf.At != 0 {
			continue
		}
		byMachine[mf.Machine] = append(byMachine[mf.Machine], r.v1Model(i))
	}
	for _, machine := range sortedKeys(byMachine) {
		d := r.s.Disk(machine)
		name := sqlitevfs.Register(d)
		err := catalog.CreateV1(catalog.Options{Disk: d, VFS: name, Now: func() time.Time { return sim.Epoch }, BusyTimeout: -1},
			byMachine[machine])
		sqlitevfs.Unregister(name)
		if err != nil {
			panic(fmt.Sprintf("scenario: cannot write the v1 catalog of %s: %v", machine, err))
		}
		r.s.Mark("harness: v1 catalog on disk at start")
	}
}

// v1Model is the row an old rbee-hive wrote for model file i.
func (r *run) v1Model(i int) catalog.Model {
	mf := r.sc.Models[i]
	body := r.modelBody(i)
	sum := sha256.Sum256(body)
	return catalog.Model{ID: mf.Provider + ":" + mf.Reference, Provider: mf.Provider, Reference: mf.Reference,
		LocalPath: catalog.ModelPath("models/", mf.Provider, mf.Reference), SizeBytes: int64(len(body)),
		SHA256: hex.EncodeToString(sum[:]), Architecture: mf.Architecture, ContextLength: int64(mf.ContextLength),
		Quantization: "Q4_K_M", DownloadedAt: sim.Epoch.Add(-time.Hour)}
}

// modelBody is the content of model file i.
func (r *run) modelBody(i int) []byte {
	mf := r.sc.Models[i]
	body := gguf.Bytes(gguf.Spec{Architecture: mf.Architecture, ContextLength: mf.ContextLength, BlockCount: 22,
		FileType: 15, Name: mf.Reference, PayloadBytes: mf.PayloadBytes, Seed: r.sc.Seed + uint64(i)})
	if mf.Broken {
		body = body[:len(body)/2]
	}
	return body
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

// catalogMonitor follows catalog answers as they reach the clients: acknowledged
// registrations, backups and restores, list scans and rebuilds. (Whether a model was inserted
// twice is judged on the whole history at the end, by insertedTwice.)
type catalogMonitor struct {
	rebuilds   []api.CatalogRebuilt
	registered map[string]api.ModelRecord // machine|id -> acknowledged record
	// replied holds the registrations whose first reply came: a repeat of a reply (a
	// duplicated message, or the hive answering a resent request from memory) is no news.
	replied map[reqKey]bool
	// open counts registrations in flight per machine|id; raced counts registrations sent
	// while another of the same model on the same machine was still unanswered.
	open  map[string]map[reqKey]bool
	raced int
	// ackAt is when each machine|id registration was last acknowledged, and ackReq by which
	// request.
	ackAt  map[string]time.Duration
	ackReq map[string]reqKey
	// maint are backups and restores by request; backups by name once done; restores done.
	maint    map[reqKey]*maintOp
	backups  map[string]*maintOp
	restores []*maintOp
	// lists are list requests in flight; scanLast the last ID each client's scan has seen.
	lists    map[reqKey]api.CatalogListReq
	scanLast map[node.Addr]string
	scanBad  string
	pages    int
}

// maintOp is one backup or restore as the client saw it.
type maintOp struct {
	op, name   string
	sent, done time.Duration
	ok         bool
}

func (m *catalogMonitor) sentMaintenance(at time.Duration, key reqKey, op, name string) {
	if _, seen := m.maint[key]; !seen {
		m.maint[key] = &maintOp{op: op, name: name, sent: at}
	}
}

func (m *catalogMonitor) sentList(key reqKey, r api.CatalogListReq) { m.lists[key] = r }

// listed checks one page of a scan: in ID order, within the page size, after the last page.
func (m *catalogMonitor) listed(at time.Duration, client node.Addr, req api.CatalogListReq, r api.CatalogResp) {
	if !r.Err.OK() || m.scanBad != "" {
		return
	}
	m.pages++
	last := m.scanLast[client]
	if req.PageToken == "" {
		last = ""
	}
	if len(r.Models) > req.PageSize {
		m.scanBad = fmt.Sprintf("at %v a page of %d models was answered for a page size of %d", at, len(r.Models), req.PageSize)
	}
	for _, mo := range r.Models {
		if mo.ID <= last || mo.Provider != req.Provider {
			m.scanBad = fmt.Sprintf("at %v %s's scan of provider %s got %s after %q: pages must be in strictly increasing ID order of that provider",
				at, client, req.Provider, mo.ID, last)
			return
		}
		last = mo.ID
	}
	m.scanLast[client] = last
}

func (m *catalogMonitor) maintained(at time.Duration, machine string, key reqKey, r api.CatalogResp) {
	op, ok := m.maint[key]
	if !ok || op.done != 0 {
		return
	}
	op.done, op.ok = at, r.Err.OK()
	switch {
	case op.ok && op.op == (api.CatalogBackupReq{}).MsgName():
		m.backups[op.name] = op
	case op.ok:
		m.restores = append(m.restores, op)
	}
}

// mustSurvive reports whether an acknowledged registration must be in the final catalog: it
// must, unless a restore that may have run after it (one that ended after the registration
// was sent) brought back a backup that began before it was acknowledged. The order in which
// the replies reached the clients says nothing about the order the hive ran the two in: the
// registration's reply may have been delayed past the restore's. invoked holds when each
// request was first sent.
func (m *catalogMonitor) mustSurvive(key string, invoked map[reqKey]time.Duration) bool {
	at := m.ackAt[key]
	from := at
	if req, ok := m.ackReq[key]; ok {
		if t, ok := invoked[req]; ok {
			from = t
		}
	}
	for _, rs := range m.restores {
		if rs.done <= from {
			continue
		}
		b, ok := m.backups[rs.name]
		if !ok || b.sent <= at {
			return false
		}
	}
	return true
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
	return &catalogMonitor{registered: map[string]api.ModelRecord{}, replied: map[reqKey]bool{},
		open: map[string]map[reqKey]bool{}, ackAt: map[string]time.Duration{}, ackReq: map[string]reqKey{}, maint: map[reqKey]*maintOp{},
		backups: map[string]*maintOp{}, lists: map[reqKey]api.CatalogListReq{}, scanLast: map[node.Addr]string{}}
}

func (m *catalogMonitor) answer(at time.Duration, machine string, to node.Addr, r api.CatalogResp) {
	rk := reqKey{to, r.ReqID}
	if req, ok := m.lists[rk]; ok {
		delete(m.lists, rk)
		m.listed(at, to, req, r)
	}
	m.maintained(at, machine, rk, r)
	if !r.Err.OK() || r.Op != (api.CatalogRegisterReq{}).MsgName() && r.Op != (api.ModelDownloadReq{}).MsgName() {
		return
	}
	key := machine + "|" + r.Model.ID
	delete(m.open[key], rk)
	if m.replied[rk] {
		return
	}
	m.replied[rk] = true
	m.registered[key] = r.Model
	m.ackAt[key] = at
	m.ackReq[key] = rk
}

func (m *catalogMonitor) rebuilt(_ string, e api.CatalogRebuilt) {
	m.rebuilds = append(m.rebuilds, e)
}

// insertedTwice checks a catalog history (first sends and first replies, as the clients saw
// them) for a model inserted twice into one machine's catalog. Two inserts of one model are
// legitimate only if something that replaces the catalog may have happened between them: a
// rebuild, or a restore (whatever its answer: a failed restore may still have swapped the
// file), which brings back a catalog without the model. Between them means in real time, not
// in the order the replies arrived: the hive may run a registration, then a restore, and the
// registration's reply still reach its client after the restore's (a delayed or duplicated
// reply). So a restore X lies between inserts A and B unless it ended before A was sent or
// began after B was answered; a restore with no reply may have ended at any time. It returns
// the first two inserts, by the second's reply, that nothing can separate, or "".
func insertedTwice(ops []porcupine.Operation) string {
	type insert struct {
		client      node.Addr
		reqID       uint64
		call, ret   int64
		id, machine string
	}
	var inserts []insert
	var replacements []porcupine.Operation
	for _, op := range ops {
		c, r := op.Input.(model.CatalogCall), op.Output.(model.CatalogReturn)
		if _, restore := c.Req.(api.CatalogRestoreReq); restore || c.Rebuilt {
			replacements = append(replacements, op)
			continue
		}
		var reqID uint64
		switch q := c.Req.(type) {
		case api.CatalogRegisterReq:
			reqID = q.ReqID
		case api.ModelDownloadReq:
			reqID = q.ReqID
		default:
			continue
		}
		if r.Known && r.Resp.Err.OK() && r.Resp.Inserted {
			inserts = append(inserts, insert{client: c.Client, reqID: reqID, call: op.Call, ret: op.Return, id: r.Resp.Model.ID, machine: c.Machine})
		}
	}
	sort.SliceStable(inserts, func(i, j int) bool { return inserts[i].ret < inserts[j].ret })
	separated := func(a, b insert) bool {
		for _, x := range replacements {
			if x.Input.(model.CatalogCall).Machine != a.machine {
				continue
			}
			if a.call <= x.Return && x.Call <= b.ret || b.call <= x.Return && x.Call <= a.ret {
				return true
			}
		}
		return false
	}
	for j, b := range inserts {
		for _, a := range inserts[:j] {
			if a.machine != b.machine || a.id != b.id || separated(a, b) {
				continue
			}
			return fmt.Sprintf("at %v model %s was inserted into the catalog of %s twice (by request %d of %s and request %d of %s), "+
				"with no restore or rebuild of that catalog that could have come between them",
				time.Duration(b.ret), b.id, b.machine, a.reqID, a.client, b.reqID, b.client)
		}
	}
	return ""
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
	dup := insertedTwice(r.catHist.Operations())
	twice := CheckerResult{Name: "a model is inserted once per catalog", Stage: "monitors", OK: dup == "", Detail: dup}
	if twice.OK {
		twice.Detail = fmt.Sprintf("%d models registered", len(r.catMon.registered))
	}
	scan := CheckerResult{Name: "list pages are in order, within their size, without repeats", Stage: "monitors",
		OK: r.catMon.scanBad == "", Detail: r.catMon.scanBad}
	if scan.OK {
		scan.Detail = fmt.Sprintf("%d pages checked", r.catMon.pages)
	}
	out = append(out, twice, scan, r.checkBackupsKept())
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
			if f, err := r.disk(m).Open(e.Backup, false); err == nil {
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
	invoked := catalogInvocations(r.catHist.Operations())
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
		lostProblems = append(lostProblems, r.lostRegistrations(machine, models, invoked)...)
		lostProblems = append(lostProblems, r.lostV1Rows(machine, models, invoked)...)
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

// catalogInvocations says when each registration or download in the catalog history was
// first sent.
func catalogInvocations(ops []porcupine.Operation) map[reqKey]time.Duration {
	out := map[reqKey]time.Duration{}
	for _, op := range ops {
		c := op.Input.(model.CatalogCall)
		switch q := c.Req.(type) {
		case api.CatalogRegisterReq:
			out[reqKey{c.Client, q.ReqID}] = time.Duration(op.Call)
		case api.ModelDownloadReq:
			out[reqKey{c.Client, q.ReqID}] = time.Duration(op.Call)
		}
	}
	return out
}

func (r *run) finalCatalog(machine string) (map[string]catalog.Model, error) {
	cat, closeCat, err := r.openFinalCatalog(machine)
	if err != nil {
		return nil, err
	}
	defer closeCat()
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
	for _, c := range r.sc.CatalogClients {
		set[c.Client.Provider] = true
	}
	return sortedKeys(set)
}

// lostRegistrations lists acknowledged registrations on machine whose file is intact but
// whose row is missing or different from what was acknowledged (with a go-cmp diff).
func (r *run) lostRegistrations(machine string, models map[string]catalog.Model, invoked map[reqKey]time.Duration) []string {
	var problems []string
	for _, key := range sortedKeys(r.catMon.registered) {
		m, id, _ := strings.Cut(key, "|")
		if m != machine {
			continue
		}
		ack := r.catMon.registered[key]
		if !fileIntact(r.disk(machine), ack.LocalPath, ack.SHA256) || !r.catMon.mustSurvive(key, invoked) {
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

// lostV1Rows lists rows of the machine's starting v1 catalog whose file is intact but that
// are missing or changed after the migration (compared with go-cmp; the v2 column
// vram_required is new, so it is not compared).
func (r *run) lostV1Rows(machine string, models map[string]catalog.Model, invoked map[reqKey]time.Duration) []string {
	var problems []string
	for i, mf := range r.sc.Models {
		if !mf.V1 || mf.At != 0 || mf.Machine != machine {
			continue
		}
		want := r.v1Model(i)
		if !fileIntact(r.disk(machine), want.LocalPath, want.SHA256) || !r.catMon.mustSurvive(machine+"|"+want.ID, invoked) {
			continue
		}
		got, ok := models[want.ID]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: model %s of the v1 catalog is missing after migration", machine, want.ID))
			continue
		}
		if d := cmp.Diff(want, got, cmpopts.IgnoreFields(catalog.Model{}, "VRAMRequired", "DownloadedAt")); d != "" {
			problems = append(problems, fmt.Sprintf("%s: model %s changed in migration (-v1 +now):\n%s", machine, want.ID, d))
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
		if !fileIntact(r.disk(machine), m.LocalPath, m.SHA256) {
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
