package scenario

import (
	"fmt"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// checkDownloads judges the runs with a hub: no client sent the hub a request before a
// Retry-After it was given had passed, and every download a client asked for was answered
// (registered, or failed with an error) by the end of the settle phase.
func (r *run) checkDownloads() []CheckerResult {
	retry := CheckerResult{Name: "no request to the hub before its Retry-After", Stage: "monitors", OK: r.hubMon.early == "",
		Detail: r.hubMon.early}
	if retry.OK {
		retry.Detail = fmt.Sprintf("%d answers with 429 reached clients; no request was sent before its Retry-After had passed", r.hubMon.limited)
	}
	late := CheckerResult{Name: "downloads asked for after the faults stop succeed", Stage: "liveness",
		OK: r.hubMon.lateFailure == "", Detail: r.hubMon.lateFailure}
	if late.OK {
		late.Detail = fmt.Sprintf("every download asked for %v after the faults stopped succeeded", downloadGrace)
	}
	done := CheckerResult{Name: "every request ends registered or with a clear error once faults stop", Stage: "liveness", OK: true}
	answered, stuck := 0, 0
	for _, c := range r.sc.CatalogClients {
		k, ok := r.s.Node(c.Addr).(*keeper.CatalogClient)
		if !ok {
			continue
		}
		answered += k.Stats().Downloads
		for _, id := range k.PendingIDs() {
			if r.pendingAtChaos[reqKey{c.Addr, id}] {
				stuck++
			}
		}
	}
	done.Detail = fmt.Sprintf("%d downloads answered; every request pending when the faults stopped was answered", answered)
	if stuck > 0 {
		done.OK = false
		done.Detail = fmt.Sprintf("%d requests pending when the faults stopped were still unanswered after the settle phase", stuck)
	}
	terminal := CheckerResult{Name: "downloads the hub refuses end with a clear error", Stage: "monitors",
		OK: r.hubMon.wrongSuccess == "" && r.hubMon.unclear == "", Detail: r.hubMon.wrongSuccess + r.hubMon.unclear}
	if terminal.OK {
		terminal.Detail = "every download of a missing or gated file failed, naming it"
	}
	checks := []CheckerResult{retry, r.checkOneWriter(), r.checkHubHashes(), r.checkBytesFetched(), terminal, r.checkTerminalNotRetried()}
	checks = append(checks, r.flowChecks()...)
	return append(checks, done, late)
}

// checkHubHashes: every registration the hives acknowledged for a file of the hub names the
// hub's sha256 (its ETag): a download that kept corrupted bytes is caught even when the file
// still parses as GGUF.
func (r *run) checkHubHashes() CheckerResult {
	c := CheckerResult{Name: "every downloaded model has the hub's sha256", Stage: "monitors", OK: true}
	want := map[string]string{}
	for _, f := range r.sc.Hub.Files {
		if _, sum, ok := r.hub.Content(f.Repo, f.Revision, f.File); ok {
			want["hf:"+f.Repo+"/"+f.File] = sum
		}
	}
	checked := 0
	for _, key := range sortedKeys(r.catMon.registered) {
		rec := r.catMon.registered[key]
		sum, ok := want[rec.ID]
		if !ok {
			continue
		}
		checked++
		if rec.SHA256 != sum {
			c.OK = false
			c.Detail = fmt.Sprintf("model %s was registered with sha256 %s, but the hub's file has %s: corrupted bytes were kept",
				rec.ID, rec.SHA256, sum)
			return c
		}
	}
	c.Detail = fmt.Sprintf("%d acknowledged registrations of hub files, all with the hub's sha256", checked)
	return c
}

// checkBytesFetched: resumed downloads fetch only what is missing. Per file, the hub may send
// at most the file once, plus once more for every download it corrupted or answered 200 to a
// ranged request, plus once for every hive crash (unsynced bytes are lost), plus one chunk per
// GET (the chunk in flight when a connection breaks).
func (r *run) checkBytesFetched() CheckerResult {
	c := CheckerResult{Name: "bytes fetched stay within size plus a chunk per interruption", Stage: "monitors", OK: true}
	type tally struct{ sent, gets, restarts int64 }
	per := map[string]*tally{}
	for _, q := range r.hub.Requests() {
		if q.Kind != "get" {
			continue
		}
		t := per[q.Path]
		if t == nil {
			t = &tally{}
			per[q.Path] = t
		}
		t.sent += q.BytesSent
		t.gets++
		if q.Fault == "corrupt" || q.Fault == "ignore-range" {
			t.restarts++
		}
	}
	var crashes int64
	for _, h := range r.sc.Hives {
		crashes += int64(r.s.Crashes(h.Addr))
	}
	chunk := int64(r.sc.Hub.ChunkBytes)
	if chunk == 0 {
		chunk = 64 << 10
	}
	var total int64
	for _, f := range r.sc.Hub.Files {
		data, _, ok := r.hub.Content(f.Repo, f.Revision, f.File)
		t := per[f.Repo+"/resolve/"+f.Revision+"/"+f.File]
		if !ok || t == nil {
			continue
		}
		total += t.sent
		size := int64(len(data))
		if allowed := size*(1+t.restarts+crashes) + chunk*t.gets; t.sent > allowed && c.OK {
			c.OK = false
			c.Detail = fmt.Sprintf("%s/%s: the hub sent %d bytes for a %d-byte file over %d GETs (%d forced restarts, %d hive crashes): at most %d were needed",
				f.Repo, f.File, t.sent, size, t.gets, t.restarts, crashes, allowed)
		}
	}
	if c.OK {
		c.Detail = fmt.Sprintf("%d bytes fetched in all, within the bound for every file", total)
	}
	return c
}

// markHubFaults counts, as harness marks, the hub faults that shaped an answer.
func (r *run) markHubFaults() {
	for _, q := range r.hub.Requests() {
		if q.Fault != "" {
			r.s.Mark("harness: hub answered with fault " + q.Fault)
		}
	}
}

// checkOneWriter: the hives of one machine share one disk, so at most one live download of
// a file may be open at any instant (every provisioner scenario runs its hives on one machine).
// A download counts from its 200/206 reaching the hive until its end reaches it, the hive
// cancels it, or the hive dies (a dead process's connection is gone, even if the hub has not
// noticed yet). One process is one writer: its own retries may overlap its old connection.
func (r *run) checkOneWriter() CheckerResult {
	c := CheckerResult{Name: "at most one download of a file at a time per disk", Stage: "monitors",
		OK: r.hubMon.twoWriters == "", Detail: r.hubMon.twoWriters}
	if c.OK {
		c.Detail = fmt.Sprintf("%d downloads checked, never two of one file at once", r.hubMon.downloads)
	}
	return c
}

// notePending remembers the catalog clients' requests pending when the faults stop.
func (r *run) notePending() {
	r.pendingAtChaos = map[reqKey]bool{}
	for _, c := range r.sc.CatalogClients {
		if k, ok := r.s.Node(c.Addr).(*keeper.CatalogClient); ok {
			for _, id := range k.PendingIDs() {
				r.pendingAtChaos[reqKey{c.Addr, id}] = true
			}
		}
	}
}

// hubMonitor checks Retry-After at the client side: once a 429 has reached a client, the
// client sends the hub nothing until its Retry-After has passed. (The hub cannot judge this
// alone: a request already on its way when the 429 left was sent in good faith.)
type hubMonitor struct {
	s         *sim.Sim
	notBefore map[node.Addr]time.Duration
	limited   int
	early     string
	// paths of GETs sent; open downloads per path, with the client's crash count when opened.
	paths      map[reqKey]string
	open       map[string]map[reqKey]int
	ended      map[reqKey]bool // ends (or cancels) seen, also before their 200/206 (reordering)
	downloads  int
	twoWriters string
	// asked is when each download request was first sent; lateFailure the first download
	// asked after the faults stopped that still failed.
	asked       map[reqKey]time.Duration
	lateFailure string
	// files the hub serves; requests by key; downloads of files the hub does not serve that
	// succeeded, or failed without naming what.
	files        []sim.HubFile
	requests     map[reqKey]api.ModelDownloadReq
	wrongSuccess string
	unclear      string
}

// servable reports whether the hub serves the file to a client without a token.
func (m *hubMonitor) servable(req api.ModelDownloadReq) bool {
	rev := req.Revision
	if rev == "" {
		rev = "main"
	}
	for _, f := range m.files {
		if f.Repo == req.Repo && f.Revision == rev && f.File == req.File {
			return !f.Gated
		}
	}
	return false
}

func (m *hubMonitor) askedDownload(at time.Duration, key reqKey, req api.ModelDownloadReq) {
	if m.requests == nil {
		m.requests = map[reqKey]api.ModelDownloadReq{}
	}
	m.requests[key] = req
	if m.asked == nil {
		m.asked = map[reqKey]time.Duration{}
	}
	if _, seen := m.asked[key]; !seen {
		m.asked[key] = at
	}
}

// downloadAnswered: every file of the hub exists and is served correctly once the faults
// stop, so a download asked for after that must succeed.
func (m *hubMonitor) downloadAnswered(at time.Duration, to node.Addr, r api.CatalogResp, chaosEnd time.Duration) {
	key := reqKey{to, r.ReqID}
	if req, ok := m.requests[key]; ok && !m.servable(req) {
		if r.Err.OK() && m.wrongSuccess == "" {
			m.wrongSuccess = fmt.Sprintf("at %v a download of %s/%s, which the hub does not serve to this client, succeeded", at, req.Repo, req.File)
		}
		if !r.Err.OK() && !strings.Contains(r.Err.Message, req.Repo) && !strings.Contains(r.Err.Message, req.File) && m.unclear == "" {
			m.unclear = fmt.Sprintf("at %v the failed download of %s/%s said %q, which names neither the repository nor the file", at, req.Repo, req.File, r.Err.Error())
		}
		return
	}
	sent, ok := m.asked[key]
	if !ok || sent < chaosEnd || r.Err.OK() || m.lateFailure != "" {
		return
	}
	m.lateFailure = fmt.Sprintf("at %v a download %s asked for at %v, after the faults stopped, failed: %s", at, to, sent, r.Err.Error())
}

// downloadGrace is how long after the faults stop a download may still fail: one begun during
// the chaos may still be spending its retries (up to five, backing off to a minute).
const downloadGrace = 3 * time.Minute

// retryAfterSlack allows for the client's own clock: Retry-After is measured there.
const retryAfterSlack = time.Millisecond

func (m *hubMonitor) answered(at time.Duration, to node.Addr, r api.HubResp) {
	if r.Status == 200 || r.Status == 206 {
		m.opened(at, reqKey{to, r.ReqID})
	}
	if r.Status != 429 && !(r.Status == 503 && r.RetryAfter > 0) {
		return
	}
	if m.notBefore == nil {
		m.notBefore = map[node.Addr]time.Duration{}
	}
	m.limited++
	m.notBefore[to] = max(m.notBefore[to], at+r.RetryAfter)
}

// opened counts a download from its 200/206, and checks no other live one of the same file
// is open.
func (m *hubMonitor) opened(at time.Duration, key reqKey) {
	path, ok := m.paths[key]
	if !ok || m.ended[key] {
		return
	}
	if m.open == nil {
		m.open = map[string]map[reqKey]int{}
	}
	live := 0
	for k, crashes := range m.open[path] { //det:sorted (a count; deletes of dead entries)
		if !m.s.Up(k.client) || m.s.Crashes(k.client) != crashes {
			delete(m.open[path], k)
			continue
		}
		if k.client != key.client {
			live++ // another process writing the same file: the single-flight broke
		}
	}
	if m.open[path] == nil {
		m.open[path] = map[reqKey]int{}
	}
	m.open[path][key] = m.s.Crashes(key.client)
	m.downloads++
	if live > 0 && m.twoWriters == "" {
		m.twoWriters = fmt.Sprintf("at %v %s started a download of %s while %d other live download(s) of it were open: the hives sharing the disk did not single-flight it",
			at, key.client, path, live)
	}
}

// closed ends a download: its end reached the client, or the client cancelled it.
func (m *hubMonitor) closed(key reqKey) {
	if m.ended == nil {
		m.ended = map[reqKey]bool{}
	}
	m.ended[key] = true
	if path, ok := m.paths[key]; ok {
		delete(m.open[path], key)
	}
}

func (m *hubMonitor) sent(at time.Duration, from node.Addr, msg node.Msg) {
	switch r := msg.(type) {
	case api.HubGetReq:
		if m.paths == nil {
			m.paths = map[reqKey]string{}
		}
		m.paths[reqKey{from, r.ReqID}] = r.Repo + "/" + r.Revision + "/" + r.File
	case api.HubCancel:
		m.closed(reqKey{from, r.ReqID})
		return
	case api.HubHeadReq:
	default:
		return
	}
	if until := m.notBefore[from]; at+retryAfterSlack < until && m.early == "" {
		m.early = fmt.Sprintf("at %v %s sent the hub a %s although a 429 it had received said to wait until %v",
			at, from, msg.MsgName(), until)
	}
}
