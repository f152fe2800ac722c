package realrun

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
	"github.com/rbee-sim/rbee-sim/scenario"
	"github.com/rbee-sim/rbee-sim/sim"
)

// The scenario's hub, model files and catalog files on real processes: the hub is a fake hub
// (real/fakehub) in the harness, the model files are written into the machines' folders, and
// the catalog's disk faults corrupt the real file (chaos.CorruptFile).

// maxRevisionBytes bounds a hub file of a revision other than "main": fakehub serves those
// from memory (AddFile), "main" ones are generated as they are read (AddGGUF).
const maxRevisionBytes = 64 << 20

// hubRun is the scenario's hub: a fakehub.Server on 127.0.0.1 that each hive reaches through
// a proxy of its own, and the hub faults on at the moment.
type hubRun struct {
	srv  *fakehub.Server
	http *http.Server
	addr string // host:port of the server
	// hosts maps the Host of a request (a hive's proxy) to the hive.
	hosts map[string]node.Addr

	mu   sync.Mutex
	on   map[string][]hubAction // by fakehub setting: the faults on, oldest first
	next int
}

// startHub serves the scenario's hub files.
func (r *run) startHub() error {
	cfg := r.sc.Hub
	bw := cfg.BandwidthBytesPerSec
	if bw == 0 {
		bw = sim.HubDefaultBandwidthBytesPerSec
	}
	srv := fakehub.New(fakehub.Config{BandwidthBytesPerSec: bw, Logger: r.log.With("at", "hub")})
	gated := map[string]string{}
	for _, f := range cfg.Files {
		if f.Revision == "main" {
			if _, err := srv.AddGGUF(f.Repo, f.File, f.Spec); err != nil {
				return err
			}
		} else {
			srv.AddFile(f.Repo, f.Revision, f.File, gguf.Bytes(f.Spec))
		}
		if f.Gated {
			gated[f.Repo] = f.Token
		}
	}
	for repo, token := range gated { //det:sorted (independent settings)
		srv.Gate(repo, token)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	go hs.Serve(l)
	r.hub = &hubRun{srv: srv, http: hs, addr: l.Addr().String(), hosts: map[string]node.Addr{}, on: map[string][]hubAction{}}
	for _, h := range r.sc.Hives {
		px, err := chaos.NewProxyConfig(chaos.ProxyConfig{Target: r.hub.addr, Seed: r.sc.Seed})
		if err != nil {
			return fmt.Errorf("realrun: proxy %s -> hub: %w", h.Addr, err)
		}
		r.proxies[[2]node.Addr{h.Addr, scenario.HubAddr}] = px
		r.hub.hosts[px.Addr()] = h.Addr
	}
	r.say("hub serving %d files on %s (%d B/s per connection), one proxy per hive", len(cfg.Files), r.hub.addr, bw)
	return nil
}

// close stops the hub; requests still hanging end with their connections.
func (h *hubRun) close() {
	if h != nil {
		h.http.Close()
	}
}

// hubAction is what a hub fault does to the fake hub while it is on: one of fakehub's
// settings (slot) with its count and parameters.
type hubAction struct {
	id         int
	slot       string // "fail", "hang", "break", "corrupt", "ignore-range"
	n          int
	status     int
	retryAfter time.Duration
	after      int64
}

// hubActionOf maps a hub fault, its times already scaled, to its action on the fake hub:
//
//   - hub-5xx: the next Value requests get 503 (FailNext);
//   - hub-rate-limit: the next Value requests get 429 with a Retry-After of a quarter of For,
//     between 1 and 15 s, as faults/hub.go says (FailNext; fakehub rounds it up to seconds);
//   - hub-reset: every GET body that starts during For is cut after Value bytes (BreakNext;
//     the simulator also cuts the bodies already running when it starts);
//   - hub-hang, hub-corrupt, hub-ignore-range: the next Value requests hang, bodies carry a
//     flipped byte, ranged GETs get the whole file (HangNext, CorruptNext, IgnoreRangeNext).
//
// Each lasts For at most, as in the simulator. hub-5xx and hub-rate-limit share fakehub's one
// FailNext: while both are on, the later one's answers are given.
func hubActionOf(f faults.Fault) (hubAction, bool) {
	n := int(f.Value)
	switch f.Kind {
	case "hub-5xx":
		return hubAction{slot: "fail", n: n, status: http.StatusServiceUnavailable}, true
	case "hub-rate-limit":
		return hubAction{slot: "fail", n: n, status: http.StatusTooManyRequests, retryAfter: min(max(f.For/4, time.Second), 15*time.Second)}, true
	case "hub-reset":
		return hubAction{slot: "break", n: math.MaxInt32, after: f.Value}, true
	case "hub-hang":
		return hubAction{slot: "hang", n: n}, true
	case "hub-corrupt":
		return hubAction{slot: "corrupt", n: n}, true
	case "hub-ignore-range":
		return hubAction{slot: "ignore-range", n: n}, true
	}
	return hubAction{}, false
}

// set gives the fake hub a's setting; an action with n 0 clears its slot.
func (a hubAction) set(s *fakehub.Server) {
	switch a.slot {
	case "fail":
		status := a.status
		if status == 0 {
			status = http.StatusServiceUnavailable // clearing: any status will do
		}
		s.FailNext(a.n, status, a.retryAfter)
	case "break":
		s.BreakNext(a.n, a.after)
	case "hang":
		s.HangNext(a.n)
	case "corrupt":
		s.CorruptNext(a.n)
	case "ignore-range":
		s.IgnoreRangeNext(a.n)
	}
}

// start turns a fault on; the returned end turns it off. As in the simulator, overlapping
// faults of one setting stack: the latest sets the hub, and when it ends the latest one still
// on is set again, so a short fault never cancels a longer one that began before it.
func (h *hubRun) start(a hubAction) (end func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	a.id = h.next
	h.on[a.slot] = append(h.on[a.slot], a)
	a.set(h.srv)
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		on := h.on[a.slot][:0]
		for _, b := range h.on[a.slot] {
			if b.id != a.id {
				on = append(on, b)
			}
		}
		h.on[a.slot] = on
		if len(on) > 0 {
			on[len(on)-1].set(h.srv)
			return
		}
		hubAction{slot: a.slot}.set(h.srv)
	}
}

// hubStep is the step of a hub fault.
func (r *run) hubStep(s chaos.Step, f faults.Fault) (chaos.Step, bool) {
	a, ok := hubActionOf(f)
	if !ok || r.hub == nil {
		return s, false
	}
	var mu sync.Mutex
	var end func()
	s.Do = func() error {
		mu.Lock()
		defer mu.Unlock()
		end = r.hub.start(a)
		return nil
	}
	s.Undo = func() error {
		mu.Lock()
		defer mu.Unlock()
		if end != nil {
			end()
		}
		return nil
	}
	return s, true
}

// corruptions are the catalog's disk faults and what chaos.CorruptFile does for each: a
// flipped page-type byte of a b-tree page, a flipped byte of the SQLite magic, the file cut
// to half its size. (The simulator flips the first byte of a random page, overwrites the
// first Value bytes, cuts to a random size; each is caught by SQLite the same way.)
var corruptions = map[string]chaos.Corruption{
	"disk-flip": chaos.FlipPageByte, "disk-clobber-header": chaos.FlipHeaderByte, "disk-truncate": chaos.Truncate,
}

// diskStep is the step of a catalog disk fault: the catalog file of the target hive's machine
// is corrupted in place while the hives run (the copy chaos.CorruptFile makes first stays next
// to it, as models.db.chaos-backup-N).
func (r *run) diskStep(s chaos.Step, f faults.Fault) (chaos.Step, bool) {
	how, ok := corruptions[f.Kind]
	if !ok || f.File != catalog.DefaultPath || len(f.Targets) != 1 {
		return s, false
	}
	path := filepath.Join(r.machineDir(r.machineOf(f.Targets[0])), filepath.FromSlash(f.File))
	seed := r.sc.Seed ^ uint64(f.At)
	s.Do = func() error {
		_, err := chaos.CorruptFile(path, how, seed)
		return err
	}
	s.Undo = func() error { return nil }
	return s, true
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

// machineDir is a machine's folder: the disk its hives share.
func (r *run) machineDir(machine string) string { return filepath.Join(r.o.Dir, "data", machine) }

// machineDisks are the folders of the machines whose hives keep a catalog, for the judge.
func (r *run) machineDisks() map[string]string {
	out := map[string]string{}
	for _, h := range r.sc.Hives {
		if h.Catalog {
			m := r.machineOf(h.Addr)
			out[m] = r.machineDir(m)
		}
	}
	return out
}

// placeModels writes, before the hives start, the scenario's model files present at the
// start (the simulator's bytes) and the schema-v1 catalogs that machines start with.
func (r *run) placeModels() error {
	for i, mf := range r.sc.Models {
		if mf.At != 0 {
			continue
		}
		d, err := real.NewOSDisk(r.machineDir(mf.Machine))
		if err != nil {
			return err
		}
		if err := node.WriteFileAtomic(d, r.sc.ModelFilePath(i), r.sc.ModelFileBytes(i)); err != nil {
			return fmt.Errorf("realrun: model file %s: %w", mf.Reference, err)
		}
	}
	machines := map[string]bool{}
	for _, mf := range r.sc.Models {
		machines[mf.Machine] = true
	}
	var names []string
	for m := range machines { //det:sorted (sorted next)
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		rows := r.sc.V1CatalogRows(m)
		if len(rows) == 0 {
			continue
		}
		d, err := real.NewOSDisk(r.machineDir(m))
		if err != nil {
			return err
		}
		if err := catalog.CreateV1(catalog.Options{Disk: d, Dir: d.Dir(), Now: time.Now}, rows); err != nil {
			return fmt.Errorf("realrun: the v1 catalog of %s: %w", m, err)
		}
		r.mark("harness: v1 catalog on disk at start")
	}
	return nil
}

// modelSteps are the model files that appear during the run (a download finishing: At) and
// those an operator deletes by hand (DeleteAt), at their times scaled as the faults' are; ones
// after the real chaos phase are left out and listed.
func (r *run) modelSteps(chaosFor time.Duration, k float64) (steps []chaos.Step, skipped []string) {
	add := func(at time.Duration, name string, do func() error) {
		if scaled := time.Duration(float64(at) * k); scaled < chaosFor {
			steps = append(steps, chaos.Step{At: scaled, For: time.Millisecond, Name: name, Do: do, Undo: func() error { return nil }})
		} else {
			skipped = append(skipped, fmt.Sprintf("%s at %v (after the real chaos phase of %v)", name, at, chaosFor))
		}
	}
	for i, mf := range r.sc.Models {
		path := r.sc.ModelFilePath(i)
		dir := r.machineDir(mf.Machine)
		if mf.At > 0 {
			body := r.sc.ModelFileBytes(i)
			add(mf.At, "model file appears "+mf.Reference, func() error {
				d, err := real.NewOSDisk(dir)
				if err == nil {
					err = node.WriteFileAtomic(d, path, body)
				}
				if err != nil {
					r.mark("harness: model download could not be written")
				}
				return err
			})
		}
		if mf.DeleteAt > 0 {
			add(mf.DeleteAt, "operator deletes "+mf.Reference, func() error {
				d, err := real.NewOSDisk(dir)
				if err != nil {
					return err
				}
				return d.Remove(path)
			})
		}
	}
	return steps, skipped
}

func (r *run) mark(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marks[m]++
}

// hubMarks are the harness marks the simulator counts for the hub's faults, read off the fake
// hub's request log.
func (r *run) hubMarks() map[string]int {
	out := map[string]int{}
	if r.hub == nil {
		return out
	}
	for _, q := range r.hub.srv.Requests() {
		for _, f := range strings.Split(q.Fault, ",") {
			name := f
			switch {
			case f == "fail" && q.Status == http.StatusTooManyRequests:
				name = "rate-limit"
			case f == "fail":
				name = "server-error"
			case f == "break" || f == "":
				continue // the simulator has no mark for resets
			}
			out["harness: hub answered with fault "+name]++
		}
	}
	return out
}

// retryAfterGrace is how long after a 429 the hub may still see requests the hive sent before
// the 429 reached it (other downloads of the same hive); retryAfterSlack allows for timers.
const (
	retryAfterGrace = 250 * time.Millisecond
	retryAfterSlack = 10 * time.Millisecond
)

// hubLog is what the judge needs of the fake hub after the run (hub.json in the run folder):
// its request log, which hive each Host is, and the sha256 of each file by model ID.
type hubLog struct {
	Requests []fakehub.Request    `json:"requests"`
	Hosts    map[string]node.Addr `json:"hosts"`
	SHA256   map[string]string    `json:"sha256"`
}

// log reads the fake hub's log off it.
func (h *hubRun) log(sc scenario.Scenario) *hubLog {
	if h == nil {
		return nil
	}
	l := &hubLog{Requests: h.srv.Requests(), Hosts: h.hosts, SHA256: map[string]string{}}
	for _, f := range sc.Hub.Files {
		if st, ok := h.srv.Stat(f.Repo, f.Revision, f.File); ok {
			l.SHA256["hf:"+f.Repo+"/"+f.File] = st.SHA256
		}
	}
	return l
}

// hubChecks judge the downloads at the fake hub and in the recorded history, where the
// simulator's hub monitors have no counterpart: Retry-After is honoured (seen at the hub, per
// hive: each comes through its own proxy), registrations of hub files carry the hub's sha256,
// and downloads the hub refuses end with an error that names what.
func hubChecks(sc scenario.Scenario, l *hubLog, evs []scenario.Recorded) []scenario.CheckerResult {
	if l == nil {
		return nil
	}
	return []scenario.CheckerResult{checkRetryAfter(l.Requests, l.Hosts), checkHubHashes(sc, l.SHA256, evs), checkRefused(sc, evs)}
}

// checkRetryAfter: once the hub answered a hive 429 with Retry-After, it got no request to
// /resolve/ from that hive (through its proxy) until that had passed, but for requests
// arriving within retryAfterGrace of the 429 (sent before it arrived).
func checkRetryAfter(reqs []fakehub.Request, hosts map[string]node.Addr) scenario.CheckerResult {
	c := scenario.CheckerResult{Name: "no request to the hub before its Retry-After (real run: seen at the hub)", Stage: "monitors", OK: true}
	notBefore := map[string]time.Time{}
	from := map[string]time.Time{}
	limited := 0
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].At.Before(reqs[j].At) })
	for _, q := range reqs {
		if !strings.Contains(q.Path, "/resolve/") {
			continue
		}
		if until, ok := notBefore[q.Host]; ok && q.At.After(from[q.Host].Add(retryAfterGrace)) && q.At.Add(retryAfterSlack).Before(until) && c.OK {
			c.OK = false
			c.Detail = fmt.Sprintf("%s sent the hub %s %s %v after a 429 told it to wait %v",
				hosts[q.Host], q.Method, q.Path, q.At.Sub(from[q.Host]), until.Sub(from[q.Host]))
		}
		if q.Status == http.StatusTooManyRequests && q.RetryAfter > 0 {
			limited++
			if until := q.At.Add(q.RetryAfter); until.After(notBefore[q.Host]) {
				notBefore[q.Host], from[q.Host] = until, q.At
			}
		}
	}
	if c.OK {
		c.Detail = fmt.Sprintf("%d answers with 429 and Retry-After; no hive asked again before it had passed", limited)
	}
	return c
}

// checkHubHashes: every registration the hives acknowledged of a hub file names the hub's
// sha256.
func checkHubHashes(sc scenario.Scenario, want map[string]string, evs []scenario.Recorded) scenario.CheckerResult {
	c := scenario.CheckerResult{Name: "every downloaded model has the hub's sha256", Stage: "monitors", OK: true}
	checked := 0
	for _, e := range evs {
		resp, ok := e.Msg.(api.CatalogResp)
		if e.Kind != "deliver" || !ok || !resp.Err.OK() || !isCatalogClient(sc, e.To) {
			continue
		}
		sum, ok := want[resp.Model.ID]
		if !ok || resp.Op != (api.ModelDownloadReq{}).MsgName() && resp.Op != (api.CatalogRegisterReq{}).MsgName() {
			continue
		}
		checked++
		if resp.Model.SHA256 != sum {
			c.OK = false
			c.Detail = fmt.Sprintf("at %v %s was told model %s is registered with sha256 %s, but the hub's file has %s: corrupted bytes were kept",
				e.At, e.To, resp.Model.ID, resp.Model.SHA256, sum)
			return c
		}
	}
	c.Detail = fmt.Sprintf("%d acknowledged registrations of hub files, all with the hub's sha256", checked)
	return c
}

// checkRefused: a download of a file the hub does not serve without a token (a missing
// repository, revision or file, a gated repository) never succeeds, and fails naming the
// repository or the file.
func checkRefused(sc scenario.Scenario, evs []scenario.Recorded) scenario.CheckerResult {
	c := scenario.CheckerResult{Name: "downloads the hub refuses end with a clear error", Stage: "monitors", OK: true}
	type key struct {
		client node.Addr
		id     uint64
	}
	asked := map[key]api.ModelDownloadReq{}
	refused := 0
	for _, e := range evs {
		switch m := e.Msg.(type) {
		case api.ModelDownloadReq:
			if e.Kind == "send" && isCatalogClient(sc, e.From) {
				asked[key{e.From, m.ReqID}] = m
			}
		case api.CatalogResp:
			req, ok := asked[key{e.To, m.ReqID}]
			if e.Kind != "deliver" || !ok || m.Op != (api.ModelDownloadReq{}).MsgName() || servable(sc, req) {
				continue
			}
			delete(asked, key{e.To, m.ReqID})
			refused++
			switch {
			case m.Err.OK():
				c.OK, c.Detail = false, fmt.Sprintf("at %v a download of %s/%s, which the hub does not serve to this client, succeeded", e.At, req.Repo, req.File)
			case !strings.Contains(m.Err.Message, req.Repo) && !strings.Contains(m.Err.Message, req.File):
				c.OK, c.Detail = false, fmt.Sprintf("at %v the failed download of %s/%s said %q, which names neither the repository nor the file", e.At, req.Repo, req.File, m.Err.Error())
			}
			if !c.OK {
				return c
			}
		}
	}
	c.Detail = fmt.Sprintf("%d downloads of files the hub refuses, each failed naming what", refused)
	return c
}

// servable reports whether the hub serves the file to a client without a token.
func servable(sc scenario.Scenario, req api.ModelDownloadReq) bool {
	rev := req.Revision
	if rev == "" {
		rev = "main"
	}
	for _, f := range sc.Hub.Files {
		if f.Repo == req.Repo && f.Revision == rev && f.File == req.File {
			return !f.Gated
		}
	}
	return false
}

func isCatalogClient(sc scenario.Scenario, a node.Addr) bool {
	for _, c := range sc.CatalogClients {
		if c.Addr == a {
			return true
		}
	}
	return false
}

// checkHub says why the scenario's hub cannot be served, if it cannot.
func checkHub(sc scenario.Scenario) error {
	if sc.Hub == nil {
		return nil
	}
	var errs []error
	for _, f := range sc.Hub.Files {
		if f.Revision == "main" {
			continue
		}
		syn, err := gguf.NewSynthetic(f.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("hub file %s: %w", f.Path(), err))
		} else if n := syn.Size(); n > maxRevisionBytes {
			errs = append(errs, fmt.Errorf("hub file %s is %d bytes on revision %s, over %d: the fake hub serves files of other revisions than main from memory", f.Path(), n, f.Revision, maxRevisionBytes))
		}
	}
	return errors.Join(errs...)
}
