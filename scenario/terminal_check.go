package scenario

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// The monitor behind checkTerminalNotRetried (provisioner/hub-errors). A 404, 401 or 403 is the
// hub's final word on a file: once one reaches a hive, the hive must not ask the hub for that
// file again unless a client asks it for the model anew. It watches delivered messages:
//
//   - a HEAD or GET reaching the hub from a hive: the file's path, and whether the hive's
//     latest refusal of that path still stands (then the request is a retry: a violation);
//   - a 404, 401 or 403 reaching the hive that sent the request, from the same incarnation
//     that sent it and for its latest request of that path (an answer to a request the hive
//     gave up on, or to a crashed incarnation, was never acted on): the refusal now stands;
//   - a download request from a catalog client reaching a hive: a new ask lifts the refusal
//     of that model's file. Only the first delivery of a (client, ReqID) to an incarnation of
//     the hive counts: clients resend unanswered requests, and a hive answers a resend it
//     has answered from memory without starting a download (memory a crash loses).
//
// Times are the deliveries'. A request counts from its arrival at the hub, not its sending: the
// two differ by the hub link's few milliseconds, and a hive has a second request for a file in
// flight when a refusal arrives only if it gave up on the refused one first (no answer within
// the provisioner's stall timeout, while the hub answers at once or never).

// terminalStatus reports whether a hub status refuses a file for good.
func terminalStatus(status int) bool { return status == 404 || status == 401 || status == 403 }

// hubFilePath is a file's path on the hub, as sim.HubRequest.Path names it.
func hubFilePath(repo, revision, file string) string {
	if revision == "" {
		revision = "main"
	}
	return sim.HubFile{Repo: repo, Revision: revision, File: file}.Path()
}

// terminalMonitor is the state of checkTerminalNotRetried. It holds plain data only: it lives in
// terminalMonitors, which must not keep its run alive.
type terminalMonitor struct {
	reqs  map[reqKey]hubRequestSeen    // requests that reached the hub, by (hive, ReqID)
	files map[hiveFile]*refusedFile    // per hive and hub path
	asks  map[hiveAsk]int              // new asks seen, with the hive's crash count then
	acted map[reqKey]bool              // refusals counted (a duplicate answer counts once)
	first string                       // the first violation, in words
	count struct{ refusals, asks int } // refusals that stood, and new asks that lifted one
}

type hubRequestSeen struct {
	kind, path string
	crashes    int // the hive's crash count when the request reached the hub
}

type hiveFile struct {
	hive node.Addr
	path string
}

type hiveAsk struct {
	hive, client node.Addr
	reqID        uint64
}

// refusedFile is what one hive was last told about one file.
type refusedFile struct {
	latest  uint64 // the ReqID of the hive's latest request for the file to reach the hub
	refusal *refusal
	askedAt time.Duration // when the latest new ask for the file reached the hive; -1: none
}

// refusal is a 404, 401 or 403 that stands until a new ask lifts it.
type refusal struct {
	status     int
	code, kind string
	at         time.Duration // when the answer reached the hive
	lifted     bool          // a new ask reached the hive since
}

// terminal returns this run's terminalMonitor, making it on first use.
func (r *run) terminal() *terminalMonitor {
	if r.term == nil {
		r.term = &terminalMonitor{reqs: map[reqKey]hubRequestSeen{}, files: map[hiveFile]*refusedFile{},
			asks: map[hiveAsk]int{}, acted: map[reqKey]bool{}}
	}
	return r.term
}

// watchTerminal is the delivery hook of the monitor; it ignores every other message cheaply.
func (r *run) watchTerminal(at time.Duration, from, to node.Addr, m node.Msg) {
	switch msg := m.(type) {
	case api.HubHeadReq:
		if to == HubAddr && r.hives[from] {
			r.terminal().request(at, from, msg.ReqID, "HEAD", hubFilePath(msg.Repo, msg.Revision, msg.File), r.s.Crashes(from))
		}
	case api.HubGetReq:
		if to == HubAddr && r.hives[from] {
			r.terminal().request(at, from, msg.ReqID, "GET", hubFilePath(msg.Repo, msg.Revision, msg.File), r.s.Crashes(from))
		}
	case api.HubResp:
		if from == HubAddr && r.hives[to] && terminalStatus(msg.Status) {
			r.terminal().refused(at, to, msg, r.s.Crashes(to))
		}
	case api.ModelDownloadReq:
		if r.catCli[from] && r.hives[to] {
			r.terminal().asked(at, to, from, msg, r.s.Crashes(to))
		}
	}
}

func (m *terminalMonitor) file(hive node.Addr, path string) *refusedFile {
	k := hiveFile{hive, path}
	f := m.files[k]
	if f == nil {
		f = &refusedFile{askedAt: -1}
		m.files[k] = f
	}
	return f
}

// request notes a hive's request reaching the hub, and judges it against a standing refusal.
func (m *terminalMonitor) request(at time.Duration, hive node.Addr, reqID uint64, kind, path string, crashes int) {
	m.reqs[reqKey{hive, reqID}] = hubRequestSeen{kind: kind, path: path, crashes: crashes}
	f := m.file(hive, path)
	f.latest = reqID
	ref := f.refusal
	if ref == nil {
		return
	}
	if ref.lifted {
		f.refusal = nil // a new ask let the hive try again; a new refusal will stand anew
		return
	}
	if m.first != "" {
		return
	}
	since := "no client's ask for the model ever reached it"
	if f.askedAt >= 0 {
		since = fmt.Sprintf("no client asked %s for the model after that (its last ask arrived at %v)", hive, round(f.askedAt))
	}
	m.first = fmt.Sprintf("%s asked the hub again for %s (a %s, at %v) after the hub had refused that file for "+
		"good: %d %s to its %s, received at %v; %s. A 404, 401 or 403 must end the download, not be retried.",
		hive, path, kind, round(at), ref.status, ref.code, ref.kind, round(ref.at), since)
}

// refused notes a 404, 401 or 403 reaching a hive; it stands if the hive could act on it.
func (m *terminalMonitor) refused(at time.Duration, hive node.Addr, resp api.HubResp, crashes int) {
	key := reqKey{hive, resp.ReqID}
	req, ok := m.reqs[key]
	if !ok || m.acted[key] || req.crashes != crashes {
		return // not a request this monitor saw, a duplicate answer, or one to a dead incarnation
	}
	f := m.file(hive, req.path)
	if f.latest != resp.ReqID {
		return // the hive had already asked again (it gave up on this request): a stale answer
	}
	m.acted[key] = true
	m.count.refusals++
	f.refusal = &refusal{status: resp.Status, code: resp.ErrorCode, kind: req.kind, at: at}
}

// asked notes a download request reaching a hive; a new one lifts a standing refusal.
func (m *terminalMonitor) asked(at time.Duration, hive, client node.Addr, req api.ModelDownloadReq, crashes int) {
	k := hiveAsk{hive, client, req.ReqID}
	if seen, ok := m.asks[k]; ok && seen == crashes {
		return // a resend this incarnation has seen: answered from memory, no new download
	}
	m.asks[k] = crashes
	f := m.file(hive, hubFilePath(req.Repo, req.Revision, req.File))
	f.askedAt = at
	if f.refusal != nil && !f.refusal.lifted {
		f.refusal.lifted = true
		m.count.asks++
	}
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// checkTerminalNotRetried: a download the hub refused for good (404, 401, 403) is not asked of
// the hub again by the same hive unless a client asks for it anew.
func (r *run) checkTerminalNotRetried() CheckerResult {
	c := CheckerResult{Name: "terminal hub errors are not retried", Stage: "monitors", OK: true}
	m := r.terminal()
	if m.first != "" {
		c.OK, c.Detail = false, m.first
		return c
	}
	switch {
	case m.count.refusals == 0:
		c.Detail = "no 404, 401 or 403 from the hub reached a hive: nothing to check"
	default:
		c.Detail = fmt.Sprintf("%d refusals for good (404, 401, 403) reached the hives; no hive asked the hub "+
			"for a refused file again unless a client asked it anew (%d times)", m.count.refusals, m.count.asks)
	}
	return c
}
