package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Defaults and limits of the simulated hub.
const (
	// HubDefaultBandwidthBytesPerSec is the per-connection bandwidth when the config says 0.
	HubDefaultBandwidthBytesPerSec int64 = 10 << 20
	// HubDefaultChunkBytes is the body chunk size when the config says 0.
	HubDefaultChunkBytes = 64 << 10
	// HubDefaultLatency is the time before the first byte of an answer when the config says 0.
	HubDefaultLatency = 20 * time.Millisecond
	// hubChunkBytesMax bounds ChunkBytes, so that chunk timing never overflows int64 nanoseconds.
	hubChunkBytesMax = 16 << 20
	// HubMaterializeMaxBytes is the largest file the hub holds in memory. Larger files are
	// served from a gguf.Synthetic: each chunk is generated when it is sent, and the file's
	// sha256 is computed once, streaming, at its first use.
	HubMaterializeMaxBytes = 64 << 20
)

// End reasons in HubRequest.End.
const (
	hubEndComplete  = "complete"
	hubEndReset     = "reset"
	hubEndCancelled = "cancelled"
	hubEndReplaced  = "replaced"
	hubEndRestart   = "hub restarted"
	hubErrReset     = "connection reset"
)

// HubFile is one file the simulated hub serves, at /{Repo}/resolve/{Revision}/{File}.
type HubFile struct {
	// Repo is the repository id ("org/name"); required.
	Repo string `json:"repo"`
	// Revision is a branch name or commit id ("main"); required. Matched exactly.
	Revision string `json:"revision"`
	// File is the file's path in the repository; required.
	File string `json:"file"`
	// Spec is the synthetic GGUF file served: its bytes are gguf.Bytes(Spec). Files larger
	// than HubMaterializeMaxBytes are never held whole: see Hub.
	Spec gguf.Spec `json:"spec"`
	// Gated makes the whole repository gated: every file of one repo must agree on Gated and
	// Token.
	Gated bool `json:"gated,omitempty"`
	// Token is the bearer token that opens a gated repo; required when Gated, empty otherwise.
	Token string `json:"token,omitempty"`
}

// Path is the file's URL path on the hub: repo/resolve/revision/file. Stats are keyed by it.
func (f HubFile) Path() string { return hubPath(f.Repo, f.Revision, f.File) }

func hubPath(repo, revision, file string) string { return repo + "/resolve/" + revision + "/" + file }

// HubConfig configures a simulated hub. The zero value serves nothing with the defaults.
type HubConfig struct {
	// Files are the files served; (Repo, Revision, File) must be unique.
	Files []HubFile `json:"files"`
	// BandwidthBytesPerSec is each connection's bandwidth, in bytes per second of the hub's
	// clock; 0 means HubDefaultBandwidthBytesPerSec (10 MiB/s).
	BandwidthBytesPerSec int64 `json:"bandwidth_bytes_per_sec,omitempty"`
	// ChunkBytes is the largest HubChunk, in bytes, at most 16 MiB; 0 means HubDefaultChunkBytes
	// (64 KiB).
	ChunkBytes int `json:"chunk_bytes,omitempty"`
	// Latency is the time from a request's arrival to its answer (status line), in the hub's
	// clock; 0 means HubDefaultLatency (20 ms).
	Latency time.Duration `json:"latency,omitempty"`
}

// Validate checks: no negative bandwidth, chunk size or latency; chunk size at most 16 MiB;
// every file named in full and once; every spec writable (architecture set, payload a
// non-negative multiple of 4, no repeated keys); Token set exactly when Gated; and the files of
// one repo agree on Gated and Token.
func (c HubConfig) Validate() error {
	if c.BandwidthBytesPerSec < 0 || c.ChunkBytes < 0 || c.Latency < 0 {
		return fmt.Errorf("hub: bandwidth %d B/s, chunk %d B and latency %v must not be negative",
			c.BandwidthBytesPerSec, c.ChunkBytes, c.Latency)
	}
	if c.ChunkBytes > hubChunkBytesMax {
		return fmt.Errorf("hub: chunk size %d B is over the limit of %d B", c.ChunkBytes, hubChunkBytesMax)
	}
	seen := map[string]bool{}
	repos := map[string]HubFile{}
	for i, f := range c.Files {
		if err := f.validate(); err != nil {
			return fmt.Errorf("hub: file %d (%s): %w", i, f.Path(), err)
		}
		if seen[f.Path()] {
			return fmt.Errorf("hub: file %d: %s is listed twice", i, f.Path())
		}
		seen[f.Path()] = true
		if g, ok := repos[f.Repo]; ok && (g.Gated != f.Gated || g.Token != f.Token) {
			return fmt.Errorf("hub: file %d: repo %s is gated for some files and not others, "+
				"or with two tokens; gating is per repo", i, f.Repo)
		}
		repos[f.Repo] = f
	}
	return nil
}

func (f HubFile) validate() error {
	if f.Repo == "" || f.Revision == "" || f.File == "" {
		return errors.New("repo, revision and file must all be set")
	}
	if f.Gated != (f.Token != "") {
		return errors.New("a gated file needs a token, and only a gated one may have one")
	}
	if f.Spec.PayloadBytes < 0 || f.Spec.PayloadBytes%4 != 0 {
		return fmt.Errorf("spec payload %d B is not a non-negative multiple of 4", f.Spec.PayloadBytes)
	}
	header := f.Spec
	header.PayloadBytes = 0 // check the header's rules without writing the payload
	return gguf.Write(io.Discard, header)
}

// HubRequest is one request as the hub saw it, for checkers.
type HubRequest struct {
	// At is the arrival time by the hub's clock.
	At     time.Time `json:"at"`
	Client node.Addr `json:"client"`
	// Kind is "head", "get" or "cancel".
	Kind  string `json:"kind"`
	ReqID uint64 `json:"req_id"`
	// Path is repo/resolve/revision/file (empty for a cancel).
	Path string `json:"path,omitempty"`
	// RangeStart is a GET's range start, -1 without a range.
	RangeStart int64 `json:"range_start"`
	// Status is the answer's status, 0 for a request never answered (hang) and for a cancel.
	Status int `json:"status,omitempty"`
	// Fault names the fault that shaped the answer: rate-limit, server-error, hang,
	// wrong-size, ignore-range, corrupt; empty for none.
	Fault string `json:"fault,omitempty"`
	// BytesSent counts the body bytes sent.
	BytesSent int64 `json:"bytes_sent,omitempty"`
	// End is how a GET with a body ended (possibly before its answer was sent): complete,
	// reset, cancelled, replaced (a new request with the same client and ReqID), hub
	// restarted; empty while open, for HEADs and for error answers.
	End string `json:"end,omitempty"`
}

// HubViolation is a request that arrived before the Retry-After deadline given to its client.
type HubViolation struct {
	Client   node.Addr `json:"client"`
	ReqID    uint64    `json:"req_id"`
	Kind     string    `json:"kind"`
	At       time.Time `json:"at"`
	Deadline time.Time `json:"deadline"`
}

// HubStats sums up what the hub did, for checkers and reports.
type HubStats struct {
	// Requests counts requests by "kind status": "get 206", "head 404", "get hang", "cancel".
	Requests map[string]int `json:"requests"`
	// BytesSent counts body bytes sent per file path (repo/resolve/revision/file).
	BytesSent map[string]int64 `json:"bytes_sent"`
	// RateLimitedAt lists when (hub clock) each 429 was sent, in order.
	RateLimitedAt []time.Time `json:"rate_limited_at,omitempty"`
	// MaxConcurrent is the most exchanges open at once (awaiting their answer or sending a
	// body); hung requests are not counted.
	MaxConcurrent int `json:"max_concurrent"`
	// MaxConcurrentPerFile is the most successful GETs of one path open at once.
	MaxConcurrentPerFile map[string]int `json:"max_concurrent_per_file"`
	// Chunks counts HubChunk messages sent.
	Chunks int `json:"chunks"`
	// Duplicates counts requests dropped as network duplicates of one still awaiting its
	// answer (same client, ReqID and content).
	Duplicates int `json:"duplicates,omitempty"`
}

// Hub is a simulated Hugging Face hub: HEAD and ranged GET of synthetic GGUF files, answered
// after a latency, bodies sent in chunks paced by timers at a per-connection bandwidth, and
// faults set by the harness. It sends and forgets: there are no acks, so a client that is gone
// just stops receiving.
//
// Files: at its first use (a request for it, Content or Stat) the hub makes a file's
// gguf.Synthetic and its sha256 (the ETag). A file of at most HubMaterializeMaxBytes (every
// file of the scenarios) is then kept in memory, and each chunk is copied from it. A larger
// one is not: each chunk is generated from the Synthetic when it is sent (the tensor data is
// made per 64 KiB block from a PCG keyed by the block, so any range costs its length), and its
// sha256 is computed once by streaming the file through the hash. A 5 GB file costs a few KiB
// of memory and one pass of generation and hashing, then one pass of generation per download.
//
// Register it with a factory that returns the same *Hub every time
// (func() node.Node { return hub }): a restart then closes the open exchanges (their timers
// died with the process) but keeps the stats, file cache and Retry-After deadlines. Fault
// setters and readers are for the harness, between events.
//
// Clients must not reuse a ReqID for a new request while an old one with that ID is open: a
// new request with the same client and ReqID closes the old exchange silently (as a new
// connection would), except that an identical one arriving before the first is answered is
// taken for a network duplicate and dropped. Draw ReqIDs so they do not repeat after a crash.
type Hub struct {
	cfg        HubConfig
	files      map[string]*hubEntry
	repos      map[string]*HubFile // the first file of each repo: its gating
	revisions  map[string]bool     // repo + "\x00" + revision
	open       map[uint64]*hubExchange
	byKey      map[hubKey]uint64
	seq        uint64
	bandwidth  int64
	faults     hubFaults
	log        []HubRequest
	deadlines  map[node.Addr]time.Time
	violations []HubViolation
	stats      HubStats
	openGets   map[string]int
	chunkBytes int
}

var _ node.Node = (*Hub)(nil)

// hubEntry is a file the hub serves. syn and sha are set at the file's first use; data too when
// the file is small enough to keep (HubMaterializeMaxBytes).
type hubEntry struct {
	file HubFile
	syn  *gguf.Synthetic
	data []byte // the whole file, or nil for a large file
	sha  string
}

type hubKey struct {
	client node.Addr
	reqID  uint64
}

type hubFaults struct {
	rateLimitN   int
	retryAfter   time.Duration
	serverErrN   int
	serverStatus int
	hangN        int
	corruptN     int
	wrongSizeN   int
	ignoreRangeN int
	resetAfter   int64 // 0: off
}

// hubReq is a HEAD or GET in one shape.
type hubReq struct {
	kind                        string
	reqID                       uint64
	repo, revision, file, token string
	rangeStart                  int64
	window                      int64 // flow control window of a GET, 0 for none
}

// hubExchange is one answered-or-about-to-be request: its answer, then for a GET its body.
type hubExchange struct {
	seq       uint64
	client    node.Addr
	req       hubReq
	resp      api.HubResp
	logIdx    int
	entry     *hubEntry // nil for an error answer or a HEAD
	next, end int64     // body bytes still to send: [next, end)
	corruptAt int64     // the body byte to flip, -1 for none
	resetLeft int64     // bytes until a reset, -1 for none
	window    int64     // flow control: body bytes the client lets us send, -1 for no limit
	blocked   bool      // the window is spent: the next chunk waits for HubCredit
	answered  bool
	timer     node.TimerID
}

// hubTimer is the hub's one timer: exchange Seq is due its answer or its next chunk.
type hubTimer struct{ Seq uint64 }

// MsgName implements node.Msg.
func (hubTimer) MsgName() string { return "hub.timer" }

// AppendCanonical implements Canonical.
func (t hubTimer) AppendCanonical(b []byte) []byte { return strconv.AppendUint(b, t.Seq, 10) }

// NewHub returns a hub serving cfg. It panics if cfg is invalid: check configs that come from
// files with Validate first.
func NewHub(cfg HubConfig) *Hub {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.BandwidthBytesPerSec == 0 {
		cfg.BandwidthBytesPerSec = HubDefaultBandwidthBytesPerSec
	}
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = HubDefaultChunkBytes
	}
	if cfg.Latency == 0 {
		cfg.Latency = HubDefaultLatency
	}
	h := &Hub{cfg: cfg, files: map[string]*hubEntry{}, repos: map[string]*HubFile{},
		revisions: map[string]bool{}, open: map[uint64]*hubExchange{}, byKey: map[hubKey]uint64{},
		bandwidth: cfg.BandwidthBytesPerSec, chunkBytes: cfg.ChunkBytes, deadlines: map[node.Addr]time.Time{},
		openGets: map[string]int{}, stats: HubStats{MaxConcurrentPerFile: map[string]int{}}}
	for i := range h.cfg.Files {
		f := &h.cfg.Files[i]
		h.files[f.Path()] = &hubEntry{file: *f}
		if h.repos[f.Repo] == nil {
			h.repos[f.Repo] = f
		}
		h.revisions[f.Repo+"\x00"+f.Revision] = true
	}
	return h
}

// Content returns the bytes served at (repo, revision, file) and their sha256 in hex (the
// ETag), or ok false when the hub has no such file. The bytes of a file of at most
// HubMaterializeMaxBytes are shared: do not change them. A larger file is made anew at every
// call, which costs its size in memory: use Stat and Open for those.
func (h *Hub) Content(repo, revision, file string) (data []byte, sha256Hex string, ok bool) {
	e := h.files[hubPath(repo, revision, file)]
	if e == nil {
		return nil, "", false
	}
	e.load()
	if e.data != nil {
		return e.data, e.sha, true
	}
	data = make([]byte, e.syn.Size())
	e.syn.ReadAt(data, 0) // cannot fail: the buffer is the file's size
	return data, e.sha, true
}

// Stat returns the size and sha256 in hex (the ETag) of the file served at (repo, revision,
// file), or ok false when the hub has no such file. For a large file, the first call computes
// the sha256 (a pass over the file); later ones are free.
func (h *Hub) Stat(repo, revision, file string) (size int64, sha256Hex string, ok bool) {
	e := h.files[hubPath(repo, revision, file)]
	if e == nil {
		return 0, "", false
	}
	e.load()
	return e.syn.Size(), e.sha, true
}

// Open returns the file served at (repo, revision, file) as a reader of any range that holds
// nothing in memory, or ok false when the hub has no such file.
func (h *Hub) Open(repo, revision, file string) (f *gguf.Synthetic, ok bool) {
	e := h.files[hubPath(repo, revision, file)]
	if e == nil {
		return nil, false
	}
	e.load()
	return e.syn, true
}

// load makes the entry's Synthetic and sha256, and keeps a small file's bytes.
func (e *hubEntry) load() {
	if e.syn != nil {
		return
	}
	syn, err := gguf.NewSynthetic(e.file.Spec)
	if err != nil {
		panic(fmt.Sprintf("sim: hub file %s: %v", e.file.Path(), err)) // Validate checked it
	}
	h := sha256.New()
	if syn.Size() <= HubMaterializeMaxBytes {
		e.data = make([]byte, syn.Size())
		syn.ReadAt(e.data, 0) // cannot fail: the buffer is the file's size
		h.Write(e.data)
	} else {
		syn.WriteTo(h) // cannot fail: a hash takes every write
	}
	e.syn, e.sha = syn, hex.EncodeToString(h.Sum(nil))
}

// --- faults, set by the harness between events ---

// RateLimitNext makes the next n HEAD or GET requests get 429 with Retry-After retryAfter,
// rounded up to whole seconds (the header's unit). It replaces any earlier setting.
func (h *Hub) RateLimitNext(n int, retryAfter time.Duration) {
	mustNonNegative("RateLimitNext n", int64(n))
	mustNonNegative("RateLimitNext retryAfter", int64(retryAfter))
	h.faults.rateLimitN = n
	h.faults.retryAfter = (retryAfter + time.Second - 1).Truncate(time.Second)
}

// ServerErrorNext makes the next n HEAD or GET requests get status (a 5xx), without
// Retry-After. It replaces any earlier setting.
func (h *Hub) ServerErrorNext(n int, status int) {
	mustNonNegative("ServerErrorNext n", int64(n))
	if status < 500 || status > 599 {
		panic(fmt.Sprintf("sim: hub ServerErrorNext status %d is not a 5xx", status))
	}
	h.faults.serverErrN, h.faults.serverStatus = n, status
}

// HangNext makes the next n HEAD or GET requests never get an answer: no status, no body.
func (h *Hub) HangNext(n int) { mustNonNegative("HangNext n", int64(n)); h.faults.hangN = n }

// CorruptNext flips one byte (XOR 0xFF) in the body of each of the next n GETs that send a
// non-empty body; the byte's position is drawn from the hub's random stream when the GET
// arrives. Status, Size and SHA256 stay those of the true file.
func (h *Hub) CorruptNext(n int) { mustNonNegative("CorruptNext n", int64(n)); h.faults.corruptN = n }

// WrongSizeNext makes the next n successful HEAD or GET answers declare a Size one byte larger
// than the file; the body itself is the true one.
func (h *Hub) WrongSizeNext(n int) {
	mustNonNegative("WrongSizeNext n", int64(n))
	h.faults.wrongSizeN = n
}

// IgnoreRangeNext makes the next n successful GETs that ask for a range answer 200 with the
// whole file, as a server that ignores Range does.
func (h *Hub) IgnoreRangeNext(n int) {
	mustNonNegative("IgnoreRangeNext n", int64(n))
	h.faults.ignoreRangeN = n
}

// ResetAfter makes every download in progress, and every one started while it is on, end with
// HubEnd{Err: "connection reset"} once it has sent bytes more body bytes (counted from this
// call for those in progress, from the start of the body for new ones). A download whose body
// ends first completes normally. 0 turns it off, for those in progress too.
func (h *Hub) ResetAfter(bytes int64) {
	mustNonNegative("ResetAfter bytes", bytes)
	h.faults.resetAfter = bytes
	for _, ex := range h.open { //det:sorted (each exchange is set on its own)
		ex.resetLeft = h.resetBudget()
	}
}

func (h *Hub) resetBudget() int64 {
	if h.faults.resetAfter == 0 {
		return -1
	}
	return h.faults.resetAfter
}

// SetChunkBytes changes the largest body chunk, in bytes (1 to 16 MiB); it applies from each
// download's next chunk.
func (h *Hub) SetChunkBytes(n int) {
	if n <= 0 || n > hubChunkBytesMax {
		panic(fmt.Sprintf("sim: hub chunk size %d B is not in 1 B to %d B", n, hubChunkBytesMax))
	}
	h.chunkBytes = n
}

// SetBandwidth changes the per-connection bandwidth, in bytes per second; it applies from each
// download's next chunk.
func (h *Hub) SetBandwidth(bytesPerSec int64) {
	if bytesPerSec <= 0 {
		panic(fmt.Sprintf("sim: hub bandwidth %d B/s must be positive", bytesPerSec))
	}
	h.bandwidth = bytesPerSec
}

func mustNonNegative(what string, v int64) {
	if v < 0 {
		panic(fmt.Sprintf("sim: hub %s = %d must not be negative", what, v))
	}
}

// --- readers, for checkers ---

// Stats returns a summary of what the hub did so far (a copy).
func (h *Hub) Stats() HubStats {
	s := h.stats
	s.Requests = map[string]int{}
	s.BytesSent = map[string]int64{}
	for _, r := range h.log {
		s.Requests[requestStatKey(r)]++
		if r.BytesSent > 0 {
			s.BytesSent[r.Path] += r.BytesSent
		}
	}
	s.RateLimitedAt = append([]time.Time(nil), h.stats.RateLimitedAt...)
	s.MaxConcurrentPerFile = map[string]int{}
	for p, n := range h.stats.MaxConcurrentPerFile { //det:sorted (a copy)
		s.MaxConcurrentPerFile[p] = n
	}
	return s
}

func requestStatKey(r HubRequest) string {
	switch {
	case r.Kind == "cancel":
		return "cancel"
	case r.Fault == "hang":
		return r.Kind + " hang"
	}
	return r.Kind + " " + strconv.Itoa(r.Status)
}

// Requests returns every request the hub received, in arrival order (a copy).
func (h *Hub) Requests() []HubRequest { return append([]HubRequest(nil), h.log...) }

// RetryAfterDeadlines returns, per client, the hub-clock time before which it must not send
// another request: the latest 429's send time plus its Retry-After (a copy).
func (h *Hub) RetryAfterDeadlines() map[node.Addr]time.Time {
	out := make(map[node.Addr]time.Time, len(h.deadlines))
	for a, t := range h.deadlines { //det:sorted (a copy)
		out[a] = t
	}
	return out
}

// Violations lists the HEAD and GET requests that arrived (hub clock) before the Retry-After
// deadline the hub had given the same client, in arrival order. The hub's clock must not jump
// during the run for this to be exact.
func (h *Hub) Violations() []HubViolation { return append([]HubViolation(nil), h.violations...) }

// --- the node ---

// Start implements node.Node. After a crash it closes every exchange the old incarnation had
// open: their timers died with it, and their clients see them hang.
func (h *Hub) Start(env node.Env) {
	seqs := make([]uint64, 0, len(h.open))
	for seq := range h.open { //det:sorted
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		h.close(h.open[seq], hubEndRestart)
	}
}

// Handle implements node.Node.
func (h *Hub) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case hubTimer:
		if from == env.Self() {
			h.handleTimer(env, m)
		}
	case api.HubHeadReq:
		h.handleRequest(env, from, hubReq{kind: "head", reqID: m.ReqID, repo: m.Repo,
			revision: m.Revision, file: m.File, token: m.Token, rangeStart: -1})
	case api.HubGetReq:
		h.handleRequest(env, from, hubReq{kind: "get", reqID: m.ReqID, repo: m.Repo,
			revision: m.Revision, file: m.File, token: m.Token, rangeStart: max(m.RangeStart, -1),
			window: max(m.Window, 0)})
	case api.HubCancel:
		h.handleCancel(env, from, m)
	case api.HubCredit:
		h.handleCredit(env, from, m)
	default:
		env.Log().Warn("hub: unexpected message dropped", "from", from, "msg", m.MsgName())
	}
}

func (h *Hub) handleRequest(env node.Env, from node.Addr, r hubReq) {
	key := hubKey{from, r.reqID}
	if seq, ok := h.byKey[key]; ok {
		old := h.open[seq]
		if !old.answered && old.req == r {
			h.stats.Duplicates++
			return
		}
		env.Cancel(old.timer)
		h.close(old, hubEndReplaced)
	}
	idx := h.logArrival(env, from, r)
	resp, entry, fault := h.decide(r)
	h.log[idx].Fault = fault
	if fault == "hang" {
		return
	}
	h.log[idx].Status = resp.Status
	h.seq++
	ex := &hubExchange{seq: h.seq, client: from, req: r, resp: resp, logIdx: idx,
		corruptAt: -1, resetLeft: -1, window: -1}
	if r.window > 0 {
		ex.window = r.window
	}
	if entry != nil && r.kind == "get" {
		h.planBody(env, ex, entry)
	}
	h.opened(ex)
	ex.timer = env.After(h.cfg.Latency, hubTimer{ex.seq})
}

// logArrival records a request and any Retry-After violation; it returns the log index.
func (h *Hub) logArrival(env node.Env, from node.Addr, r hubReq) int {
	now := env.Now()
	if dl, ok := h.deadlines[from]; ok && now.Before(dl) {
		h.violations = append(h.violations, HubViolation{Client: from, ReqID: r.reqID, Kind: r.kind,
			At: now, Deadline: dl})
	}
	h.log = append(h.log, HubRequest{At: now, Client: from, Kind: r.kind, ReqID: r.reqID,
		Path: hubPath(r.repo, r.revision, r.file), RangeStart: r.rangeStart})
	return len(h.log) - 1
}

// decide picks the answer: faults first (hang, 429, 5xx), then the lookup errors, then the
// success answer with its size and range faults. entry is set for 200/206 answers.
func (h *Hub) decide(r hubReq) (api.HubResp, *hubEntry, string) {
	resp := api.HubResp{ReqID: r.reqID}
	switch {
	case take(&h.faults.hangN):
		return resp, nil, "hang"
	case take(&h.faults.rateLimitN):
		resp.Status, resp.RetryAfter = 429, h.faults.retryAfter
		resp.Message = fmt.Sprintf("429 Too Many Requests: rate limit reached for %s; retry after %v",
			hubPath(r.repo, r.revision, r.file), h.faults.retryAfter)
		return resp, nil, "rate-limit"
	case take(&h.faults.serverErrN):
		resp.Status = h.faults.serverStatus
		resp.Message = fmt.Sprintf("%d: the hub had an internal error; retry later", resp.Status)
		return resp, nil, "server-error"
	}
	entry, errResp := h.lookup(r)
	if entry == nil {
		return errResp, nil, ""
	}
	return h.success(r, entry)
}

// take uses up one of a fault's remaining count, if any.
func take(n *int) bool {
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

// lookup finds the file, or the error answer the real hub gives: 404 RepoNotFound, 401/403
// GatedRepo (before the revision is looked at, as the hub checks access to the repo first),
// 404 RevisionNotFound, 404 EntryNotFound.
func (h *Hub) lookup(r hubReq) (*hubEntry, api.HubResp) {
	resp := api.HubResp{ReqID: r.reqID, Status: 404}
	repo := h.repos[r.repo]
	switch {
	case repo == nil:
		resp.ErrorCode = "RepoNotFound"
		resp.Message = fmt.Sprintf("repository %q not found: check the repo id (org/name) and "+
			"that it is public or your token can see it", r.repo)
	case repo.Gated && r.token != repo.Token:
		resp.Status, resp.ErrorCode = 401, "GatedRepo"
		if r.token != "" {
			resp.Status = 403 // a token, but not one allowed in: the real hub's answer
		}
		resp.Message = fmt.Sprintf("access to %s is restricted: accept the licence on the hub "+
			"page of %s, then set HF_TOKEN to a token of the account that accepted it", r.repo, r.repo)
	case !h.revisions[r.repo+"\x00"+r.revision]:
		resp.ErrorCode = "RevisionNotFound"
		resp.Message = fmt.Sprintf("revision %q not found in %s: check the branch or commit id",
			r.revision, r.repo)
	default:
		if e := h.files[hubPath(r.repo, r.revision, r.file)]; e != nil {
			return e, api.HubResp{}
		}
		resp.ErrorCode = "EntryNotFound"
		resp.Message = fmt.Sprintf("file %q not found in %s at revision %s: check the file name",
			r.file, r.repo, r.revision)
	}
	return nil, resp
}

// success answers a found file: HEAD 200; GET 200 (no range, or the range ignored), 206 from
// the range start, or 416 when the range starts at or past the end.
func (h *Hub) success(r hubReq, e *hubEntry) (api.HubResp, *hubEntry, string) {
	e.load()
	size := e.syn.Size()
	resp := api.HubResp{ReqID: r.reqID, Status: 200, SHA256: e.sha, Size: size}
	var faults []string
	if r.kind == "get" && r.rangeStart >= 0 {
		switch {
		case take(&h.faults.ignoreRangeN):
			faults = append(faults, "ignore-range")
		case r.rangeStart >= size && size > 0:
			resp = api.HubResp{ReqID: r.reqID, Status: 416, Size: size,
				Message: fmt.Sprintf("416 Range Not Satisfiable: range starts at byte %d, "+
					"the file has %d bytes", r.rangeStart, size)}
			return resp, nil, ""
		default:
			resp.Status, resp.Offset = 206, min(r.rangeStart, size)
		}
	}
	if take(&h.faults.wrongSizeN) {
		resp.Size++
		faults = append(faults, "wrong-size")
	}
	return resp, e, joinFaults(faults)
}

func joinFaults(fs []string) string {
	out := ""
	for i, f := range fs {
		if i > 0 {
			out += ","
		}
		out += f
	}
	return out
}

// planBody sets up a GET's body: its range, a corrupted byte, a reset budget.
func (h *Hub) planBody(env node.Env, ex *hubExchange, e *hubEntry) {
	ex.entry, ex.next, ex.end = e, ex.resp.Offset, e.syn.Size()
	ex.resetLeft = h.resetBudget()
	if ex.end > ex.next && take(&h.faults.corruptN) {
		ex.corruptAt = ex.next + env.Rand().Int64N(ex.end-ex.next)
		h.addFault(ex, "corrupt")
	}
}

func (h *Hub) addFault(ex *hubExchange, f string) {
	l := &h.log[ex.logIdx]
	if l.Fault != "" {
		l.Fault += ","
	}
	l.Fault += f
}

// opened and close keep the open-exchange indexes and the concurrency stats.
func (h *Hub) opened(ex *hubExchange) {
	h.open[ex.seq] = ex
	h.byKey[hubKey{ex.client, ex.req.reqID}] = ex.seq
	h.stats.MaxConcurrent = max(h.stats.MaxConcurrent, len(h.open))
	if ex.entry != nil {
		p := ex.entry.file.Path()
		h.openGets[p]++
		h.stats.MaxConcurrentPerFile[p] = max(h.stats.MaxConcurrentPerFile[p], h.openGets[p])
	}
}

func (h *Hub) close(ex *hubExchange, end string) {
	delete(h.open, ex.seq)
	delete(h.byKey, hubKey{ex.client, ex.req.reqID})
	if ex.entry != nil {
		h.openGets[ex.entry.file.Path()]--
	}
	if ex.entry != nil {
		h.log[ex.logIdx].End = end
	}
}

func (h *Hub) handleCancel(env node.Env, from node.Addr, m api.HubCancel) {
	h.log = append(h.log, HubRequest{At: env.Now(), Client: from, Kind: "cancel", ReqID: m.ReqID,
		RangeStart: -1})
	if seq, ok := h.byKey[hubKey{from, m.ReqID}]; ok {
		ex := h.open[seq]
		env.Cancel(ex.timer)
		h.close(ex, hubEndCancelled)
	}
}

func (h *Hub) handleTimer(env node.Env, t hubTimer) {
	ex := h.open[t.Seq]
	if ex == nil {
		return // closed since the timer was set
	}
	if !ex.answered {
		h.answer(env, ex)
		return
	}
	h.sendChunk(env, ex)
}

// answer sends the status line; a GET with a body then starts sending it.
func (h *Hub) answer(env node.Env, ex *hubExchange) {
	ex.answered = true
	env.Send(ex.client, ex.resp)
	if ex.resp.Status == 429 {
		now := env.Now()
		h.stats.RateLimitedAt = append(h.stats.RateLimitedAt, now)
		dl := now.Add(ex.resp.RetryAfter)
		if dl.After(h.deadlines[ex.client]) {
			h.deadlines[ex.client] = dl
		}
	}
	if ex.entry == nil {
		h.close(ex, "")
		return
	}
	h.scheduleChunk(env, ex)
}

// chunkLen is the size of the exchange's next chunk under the current settings.
func (h *Hub) chunkLen(ex *hubExchange) int64 {
	n := min(int64(h.chunkBytes), ex.end-ex.next)
	if ex.resetLeft >= 0 {
		n = min(n, ex.resetLeft)
	}
	if ex.window > 0 {
		n = min(n, ex.window)
	}
	return n
}

// handleCredit widens a flow-controlled download's window and sends on if it was blocked.
func (h *Hub) handleCredit(env node.Env, from node.Addr, m api.HubCredit) {
	seq, ok := h.byKey[hubKey{from, m.ReqID}]
	if !ok || m.Bytes <= 0 {
		return
	}
	ex := h.open[seq]
	if ex.window < 0 {
		return // not flow-controlled
	}
	ex.window += m.Bytes
	if ex.blocked {
		ex.blocked = false
		h.scheduleChunk(env, ex)
	}
}

// scheduleChunk sets the timer for the next chunk: the time the chunk takes at the bandwidth.
// With nothing left to send (an empty body) it ends the body at once.
func (h *Hub) scheduleChunk(env node.Env, ex *hubExchange) {
	if ex.window == 0 && ex.next < ex.end && ex.resetLeft != 0 {
		ex.blocked = true // wait for HubCredit
		return
	}
	n := h.chunkLen(ex)
	if n == 0 {
		h.finish(env, ex)
		return
	}
	ex.timer = env.After(transferTime(n, h.bandwidth), hubTimer{ex.seq})
}

// transferTime is how long n bytes take at bytesPerSec, rounded up to the nanosecond.
// n is at most hubChunkBytesMax, so n*1e9 fits in an int64.
func transferTime(n, bytesPerSec int64) time.Duration {
	ns := n * int64(time.Second)
	d := ns / bytesPerSec
	if ns%bytesPerSec != 0 {
		d++
	}
	return time.Duration(d)
}

func (h *Hub) sendChunk(env node.Env, ex *hubExchange) {
	n := h.chunkLen(ex)
	data := make([]byte, n)
	if ex.entry.data != nil {
		copy(data, ex.entry.data[ex.next:ex.next+n])
	} else {
		ex.entry.syn.ReadAt(data, ex.next) // cannot fail: the range is inside the file
	}
	if ex.corruptAt >= ex.next && ex.corruptAt < ex.next+n {
		data[ex.corruptAt-ex.next] ^= 0xFF
	}
	env.Send(ex.client, api.HubChunk{ReqID: ex.req.reqID, Offset: ex.next, Data: data})
	ex.next += n
	if ex.window > 0 {
		ex.window -= n
	}
	h.stats.Chunks++
	h.log[ex.logIdx].BytesSent += n
	if ex.resetLeft >= 0 {
		ex.resetLeft -= n
	}
	h.scheduleChunk(env, ex)
}

// finish ends a body: complete when every byte was sent, otherwise reset by the fault.
func (h *Hub) finish(env node.Env, ex *hubExchange) {
	if ex.next == ex.end {
		env.Send(ex.client, api.HubEnd{ReqID: ex.req.reqID})
		h.close(ex, hubEndComplete)
		return
	}
	env.Send(ex.client, api.HubEnd{ReqID: ex.req.reqID, Err: hubErrReset})
	h.close(ex, hubEndReset)
}
