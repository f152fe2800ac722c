// Package fakehub is a local HTTP fake of the Hugging Face hub, for tests of the real runtime
// (real/hub against it) and for real-mode scenarios that must not depend on the internet.
//
// It answers as the hub does for model downloads:
//
//   - HEAD and GET /{repo}/resolve/{revision}/{file}: for a file it has, a 302 to
//     /cdn/{sha256} (on this server, or on Config.CDNURL) with X-Linked-Size, X-Linked-Etag and
//     ETag (the sha256, quoted) and X-Repo-Commit; with Config.NoRedirect the file is served
//     right there instead (200/206, ETag the sha256, no X-Linked headers).
//   - HEAD and GET /cdn/{sha256}: the file's bytes, with Accept-Ranges, ETag, and a Range of one
//     part ("bytes=N-", "bytes=N-M", "bytes=-N") answered 206 with Content-Range, or 416 with
//     "Content-Range: bytes */SIZE" when it starts past the end. Other Range forms are ignored
//     (200), as the HTTP spec allows. The CDN asks for no token, as a signed URL does not.
//   - Errors as the hub sends them, with X-Error-Code, X-Error-Message and a JSON body
//     {"error": "..."}: 404 RepoNotFound, 401 (no token) or 403 (another token) GatedRepo for a
//     repo closed with Gate (checked before the revision, as the hub does), 404
//     RevisionNotFound, 404 EntryNotFound.
//
// Faults, safe to set while serving: FailNext (429 or 5xx with Retry-After, as delta seconds
// or, with Config.RetryAfterDate, an HTTP date), HangNext (no answer until the client goes
// away), BreakNext (close the connection after some body bytes), CorruptNext (one flipped
// byte in a body), IgnoreRangeNext (200 with the whole file to a ranged GET), Gate, and a
// per-connection bandwidth limit (SetBandwidth). Stats and Requests count and list what it
// answered.
//
// Files are held as an io.ReaderAt: AddGGUF serves a synthetic GGUF of any size from a
// gguf.Synthetic without holding it in memory (its sha256 is computed once, when it is added).
//
// Callers' duties: serve it with net/http (httptest.NewServer(s), or ListenAndServe); set
// CDNURL (SetCDNURL) only to a server that serves this same Server's /cdn/ paths.
package fakehub

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
)

// DefaultLogMax is Config.LogMax when it is 0.
const DefaultLogMax = 10000

// Config configures a Server. The zero value redirects to /cdn/ on the same server, has no
// bandwidth limit and sends Retry-After in seconds.
type Config struct {
	// NoRedirect serves files at their /resolve/ path instead of redirecting to /cdn/.
	NoRedirect bool
	// CDNURL is the scheme and host (and optional path prefix) the redirects point at, for a
	// CDN on another host; empty means this server ("/cdn/..." relative). SetCDNURL changes it.
	CDNURL string
	// BandwidthBytesPerSec limits the body rate of each response (each connection: HTTP/1.1
	// sends one response at a time on one); 0 means no limit. SetBandwidth changes it.
	BandwidthBytesPerSec int64
	// RetryAfterDate sends Retry-After as an HTTP date (now by Clock + the delay, rounded up to
	// the second) instead of delta seconds.
	RetryAfterDate bool
	// Clock is the clock of the Retry-After dates; default the wall clock. Bandwidth pacing
	// always uses the wall clock.
	Clock clock.Clock
	// LogMax bounds the requests kept for Requests (the newest are kept); default DefaultLogMax.
	LogMax int
	// Logger gets a debug line per request; nil discards.
	Logger *slog.Logger
}

// File describes a file the server serves.
type File struct {
	Repo, Revision, Name string
	Size                 int64
	// SHA256 is the file's sha256 in lowercase hex: its ETag and X-Linked-Etag.
	SHA256 string
}

// Request is one request as the server answered it.
type Request struct {
	// At is when the request arrived, by Config.Clock.
	At     time.Time
	Method string
	// Host is the Host header: tells the hub's host from the CDN's when both are served.
	Host string
	// Path is the request's path, as sent (escaped).
	Path string
	// Range is the Range header, "" when absent.
	Range string
	// Authorization is the Authorization header, "" when absent.
	Authorization string
	// Status is the answer's status code.
	Status int
	// Bytes counts the body bytes written.
	Bytes int64
	// RetryAfter is the Retry-After sent (as the client reads it: whole seconds), 0 for none.
	RetryAfter time.Duration
	// Fault is "fail" (FailNext), "hang" (HangNext), "break" (BreakNext), "corrupt"
	// (CorruptNext), "ignore-range" (IgnoreRangeNext), several of these joined by commas, or "".
	Fault string
}

// Stats counts what the server answered.
type Stats struct {
	Requests int
	// ByStatus counts answers by status code.
	ByStatus map[int]int
	// ByMethodStatus counts answers by "METHOD STATUS": "HEAD 302", "GET 206".
	ByMethodStatus map[string]int
	// BytesServed counts body bytes written, over all requests.
	BytesServed int64
	// Failed counts answers of FailNext; Broken counts bodies cut by BreakNext; Hung counts
	// requests HangNext left unanswered; Corrupted counts bodies CorruptNext flipped a byte of;
	// RangesIgnored counts ranged GETs IgnoreRangeNext answered with the whole file.
	Failed, Broken, Hung, Corrupted, RangesIgnored int
}

// Server is the fake hub, an http.Handler. Its methods are safe for concurrent use, while it
// serves. The zero value is not usable; call New.
type Server struct {
	cfg       Config
	log       *slog.Logger
	bandwidth atomic.Int64

	mu       sync.Mutex
	cdnURL   string
	files    map[string]*entry   // by repo \x00 revision \x00 file
	blobs    map[string]*entry   // by sha256
	repos    map[string]bool     // repos that have a file
	revs     map[string]bool     // repo \x00 revision
	gated    map[string][]string // repo -> tokens let in
	failN    int
	failCode int
	failWait time.Duration
	breakN   int
	breakAt  int64
	hangN    int
	corruptN int
	ignoreN  int
	stats    Stats
	reqs     []*Request
}

type entry struct {
	file File
	data io.ReaderAt
}

// New returns a server with no files.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.LogMax <= 0 {
		cfg.LogMax = DefaultLogMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, cdnURL: strings.TrimRight(cfg.CDNURL, "/"),
		files: map[string]*entry{}, blobs: map[string]*entry{}, repos: map[string]bool{},
		revs: map[string]bool{}, gated: map[string][]string{},
		stats: Stats{ByStatus: map[int]int{}, ByMethodStatus: map[string]int{}}}
	s.bandwidth.Store(max(cfg.BandwidthBytesPerSec, 0))
	return s
}

// ListenAndServe serves the fake hub on addr (host:port) until it fails.
func (s *Server) ListenAndServe(addr string) error {
	srv := &http.Server{Addr: addr, Handler: s, ReadHeaderTimeout: 30 * time.Second}
	return srv.ListenAndServe()
}

// AddFile serves data at /{repo}/resolve/{revision}/{file}, replacing any file there. data is
// kept, not copied: do not change it afterwards.
func (s *Server) AddFile(repo, revision, file string, data []byte) File {
	sum := sha256.Sum256(data)
	f := File{Repo: repo, Revision: revision, Name: file, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	s.add(&entry{file: f, data: bytes.NewReader(data)})
	return f
}

// AddGGUF serves the synthetic GGUF file spec describes (gguf.Bytes(spec)) at
// /{repo}/resolve/main/{file}. The file is generated as it is read, so its size costs no
// memory; its sha256 is computed here, in one pass. It fails when spec is invalid.
func (s *Server) AddGGUF(repo, file string, spec gguf.Spec) (File, error) {
	syn, err := gguf.NewSynthetic(spec)
	if err != nil {
		return File{}, fmt.Errorf("fakehub: AddGGUF(%s, %s): the spec cannot be written: %w", repo, file, err)
	}
	h := sha256.New()
	if _, err := syn.WriteTo(h); err != nil {
		return File{}, fmt.Errorf("fakehub: AddGGUF(%s, %s): %w", repo, file, err)
	}
	f := File{Repo: repo, Revision: "main", Name: file, Size: syn.Size(), SHA256: hex.EncodeToString(h.Sum(nil))}
	s.add(&entry{file: f, data: syn})
	return f, nil
}

func (s *Server) add(e *entry) {
	f := e.file
	if f.Repo == "" || f.Revision == "" || f.Name == "" {
		panic(fmt.Sprintf("fakehub: a file needs a repo, a revision and a name: got %q, %q, %q", f.Repo, f.Revision, f.Name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[fileKey(f.Repo, f.Revision, f.Name)] = e
	s.blobs[f.SHA256] = e
	s.repos[f.Repo] = true
	s.revs[f.Repo+"\x00"+f.Revision] = true
}

func fileKey(repo, revision, file string) string { return repo + "\x00" + revision + "\x00" + file }

// Stat returns the file served at (repo, revision, file).
func (s *Server) Stat(repo, revision, file string) (File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.files[fileKey(repo, revision, file)]
	if e == nil {
		return File{}, false
	}
	return e.file, true
}

// FailNext makes the next n requests to /resolve/ (HEAD or GET) answer status (a 4xx or 5xx,
// usually 429 or 503), with Retry-After retryAfter rounded up to whole seconds when it is
// positive. It replaces any earlier setting; n 0 turns it off.
func (s *Server) FailNext(n int, status int, retryAfter time.Duration) {
	if n < 0 || status < 400 || status > 599 || retryAfter < 0 {
		panic(fmt.Sprintf("fakehub: FailNext(%d, %d, %v): n and retryAfter must not be negative, and the status must be a 4xx or 5xx", n, status, retryAfter))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode, s.failWait = n, status, retryAfter
}

// BreakNext makes the next n GET bodies (200 or 206, on /cdn/ or on /resolve/ without
// redirect) stop after afterBytes body bytes and close the connection, as a connection reset
// does; the client sees the body end early. A body no longer than afterBytes completes, and
// still counts as one of the n. It replaces any earlier setting; n 0 turns it off.
func (s *Server) BreakNext(n int, afterBytes int64) {
	if n < 0 || afterBytes < 0 {
		panic(fmt.Sprintf("fakehub: BreakNext(%d, %d): must not be negative", n, afterBytes))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.breakN, s.breakAt = n, afterBytes
}

// HangNext makes the next n requests to /resolve/ (HEAD or GET) go unanswered: no status, no
// body, until the client gives up or the connection closes (http.Server.Close closes it;
// httptest.Server.Close waits for it). It replaces any earlier setting; n 0 turns it off. It
// comes before FailNext: a hung request uses none of FailNext's n.
func (s *Server) HangNext(n int) { s.setCount("HangNext", &s.hangN, n) }

// CorruptNext makes the next n non-empty GET bodies (200 or 206) carry one flipped byte (XOR
// 0xFF), the one in the middle of the body's range, with headers (ETag, sizes) unchanged: a
// client that checks the sha256 catches it. A body BreakNext cuts before that byte arrives
// whole. It replaces any earlier setting; n 0 turns it off.
func (s *Server) CorruptNext(n int) { s.setCount("CorruptNext", &s.corruptN, n) }

// IgnoreRangeNext makes the next n GETs with a satisfiable Range be answered 200 with the
// whole file, as a server that ignores Range does (the client must start over). It replaces
// any earlier setting; n 0 turns it off.
func (s *Server) IgnoreRangeNext(n int) { s.setCount("IgnoreRangeNext", &s.ignoreN, n) }

// setCount sets one of the "next n requests" faults; n must not be negative.
func (s *Server) setCount(name string, field *int, n int) {
	if n < 0 {
		panic(fmt.Sprintf("fakehub: %s(%d): must not be negative", name, n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	*field = n
}

// Gate closes repo: requests for its files get 401 GatedRepo without a token and 403
// GatedRepo with a token not in tokens (none: every token is refused).
func (s *Server) Gate(repo string, tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gated[repo] = append([]string{}, tokens...)
}

// Ungate opens a repo closed with Gate.
func (s *Server) Ungate(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.gated, repo)
}

// SetBandwidth changes the per-connection body rate, in bytes per second (0: no limit); it
// applies to bodies being sent too.
func (s *Server) SetBandwidth(bytesPerSec int64) {
	if bytesPerSec < 0 {
		panic(fmt.Sprintf("fakehub: SetBandwidth(%d): must not be negative", bytesPerSec))
	}
	s.bandwidth.Store(bytesPerSec)
}

// SetCDNURL changes where redirects point: the scheme and host (and optional path prefix) of
// a server that serves this Server's /cdn/ paths; "" means this server.
func (s *Server) SetCDNURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cdnURL = strings.TrimRight(u, "/")
}

// Stats returns the counters (a copy).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.ByStatus = make(map[int]int, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		out.ByStatus[k] = v
	}
	out.ByMethodStatus = make(map[string]int, len(s.stats.ByMethodStatus))
	for k, v := range s.stats.ByMethodStatus {
		out.ByMethodStatus[k] = v
	}
	return out
}

// Requests returns the latest requests (at most Config.LogMax), oldest first (a copy).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
	}
	return out
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &Request{At: s.cfg.Clock.Now(), Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Range: r.Header.Get("Range"),
		Authorization: r.Header.Get("Authorization")}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	if len(s.reqs) > 2*s.cfg.LogMax {
		s.reqs = append([]*Request(nil), s.reqs[len(s.reqs)-s.cfg.LogMax:]...)
	}
	s.stats.Requests++
	s.mu.Unlock()
	s.log.Debug("fakehub: request", "method", r.Method, "host", r.Host, "path", rec.Path, "range", rec.Range)

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, r, rec, http.StatusMethodNotAllowed, "", "the fake hub answers GET and HEAD only")
		return
	}
	path := rec.Path
	if sha, ok := strings.CutPrefix(path, "/cdn/"); ok {
		s.mu.Lock()
		e := s.blobs[sha]
		s.mu.Unlock()
		if e == nil {
			s.fail(w, r, rec, http.StatusNotFound, "", "no file with sha256 "+sha)
			return
		}
		s.serveBody(w, r, rec, e)
		return
	}
	repoEsc, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/resolve/")
	revEsc, fileEsc, ok2 := strings.Cut(rest, "/")
	repo, err1 := url.PathUnescape(repoEsc)
	rev, err2 := url.PathUnescape(revEsc)
	file, err3 := url.PathUnescape(fileEsc)
	if !ok || !ok2 || repo == "" || rev == "" || file == "" || err1 != nil || err2 != nil || err3 != nil {
		s.fail(w, r, rec, http.StatusNotFound, "", "not a path the fake hub serves: use /{repo}/resolve/{revision}/{file}")
		return
	}
	s.resolve(w, r, rec, repo, rev, file)
}

// resolve answers /{repo}/resolve/{revision}/{file}: a fault, an error, a redirect or the body.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request, rec *Request, repo, rev, file string) {
	s.mu.Lock()
	if s.hangN > 0 {
		s.hangN--
		s.stats.Hung++
		rec.Fault = "hang"
		s.mu.Unlock()
		<-r.Context().Done()
		return
	}
	if s.failN > 0 {
		s.failN--
		status, wait := s.failCode, s.failWait
		s.stats.Failed++
		rec.Fault = "fail"
		secs := int64((wait + time.Second - 1) / time.Second)
		rec.RetryAfter = time.Duration(secs) * time.Second
		s.mu.Unlock()
		if wait > 0 {
			if s.cfg.RetryAfterDate {
				at := s.cfg.Clock.Now().Add(time.Duration(secs) * time.Second)
				if at.Nanosecond() != 0 {
					at = at.Truncate(time.Second).Add(time.Second)
				}
				w.Header().Set("Retry-After", at.UTC().Format(http.TimeFormat))
			} else {
				w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			}
		}
		msg := fmt.Sprintf("%d %s (fault injected by the fake hub)", status, http.StatusText(status))
		if status == http.StatusTooManyRequests {
			msg = "You have been rate-limited; you can retry this action later (fault injected by the fake hub)"
		}
		s.fail(w, r, rec, status, "", msg)
		return
	}
	e := s.files[fileKey(repo, rev, file)]
	tokens, gated := s.gated[repo]
	known, revKnown := s.repos[repo], s.revs[repo+"\x00"+rev]
	cdn := s.cdnURL
	s.mu.Unlock()

	switch auth := r.Header.Get("Authorization"); {
	case !known:
		s.fail(w, r, rec, http.StatusNotFound, "RepoNotFound", fmt.Sprintf("Repository Not Found for url: %s. "+
			"Please make sure you specified the correct repo_id and repo_type.", r.URL.Path))
		return
	case gated && !tokenIn(auth, tokens):
		status := http.StatusUnauthorized
		if auth != "" {
			status = http.StatusForbidden
		}
		s.fail(w, r, rec, status, "GatedRepo", fmt.Sprintf("Access to model %s is restricted. You must have "+
			"access to it and be authenticated to access it. Please log in.", repo))
		return
	case !revKnown:
		s.fail(w, r, rec, http.StatusNotFound, "RevisionNotFound", fmt.Sprintf("Invalid rev id: %s", rev))
		return
	case e == nil:
		s.fail(w, r, rec, http.StatusNotFound, "EntryNotFound", fmt.Sprintf("%s does not exist on %q", file, rev))
		return
	}
	if s.cfg.NoRedirect {
		s.serveBody(w, r, rec, e)
		return
	}
	h := w.Header()
	h.Set("Location", cdn+"/cdn/"+e.file.SHA256)
	h.Set("X-Linked-Size", strconv.FormatInt(e.file.Size, 10))
	h.Set("X-Linked-Etag", `"`+e.file.SHA256+`"`)
	h.Set("ETag", `"`+e.file.SHA256+`"`)
	commit := sha1.Sum([]byte(repo + "\x00" + rev))
	h.Set("X-Repo-Commit", hex.EncodeToString(commit[:]))
	s.answer(rec, r.Method, http.StatusFound, "")
	w.WriteHeader(http.StatusFound)
}

func tokenIn(auth string, tokens []string) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	for _, t := range tokens {
		if t == tok {
			return true
		}
	}
	return false
}

// answer counts an answer.
func (s *Server) answer(rec *Request, method string, status int, fault string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
	if fault != "" && rec.Fault != "" {
		rec.Fault += "," + fault
	} else if fault != "" {
		rec.Fault = fault
	}
	s.stats.ByStatus[status]++
	s.stats.ByMethodStatus[method+" "+strconv.Itoa(status)]++
}

// fail sends an error answer as the hub does: X-Error-Code, X-Error-Message, a JSON body.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, rec *Request, status int, code, msg string) {
	h := w.Header()
	if code != "" {
		h.Set("X-Error-Code", code)
	}
	h.Set("X-Error-Message", msg)
	body, _ := json.Marshal(map[string]string{"error": msg})
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	s.answer(rec, r.Method, status, "")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		n, _ := w.Write(body)
		s.served(rec, int64(n))
	}
}

func (s *Server) served(rec *Request, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Bytes += n
	s.stats.BytesServed += n
}

// serveBody sends a file: 200, 206 for a satisfiable Range, 416 past the end; a BreakNext
// fault cuts a GET's body.
func (s *Server) serveBody(w http.ResponseWriter, r *http.Request, rec *Request, e *entry) {
	size := e.file.Size
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+e.file.SHA256+`"`)
	h.Set("Content-Type", "application/octet-stream")
	start, end, status := parseRange(r.Header.Get("Range"), size)
	var faults []string
	if status == http.StatusPartialContent && r.Method == http.MethodGet {
		s.mu.Lock()
		if s.ignoreN > 0 {
			s.ignoreN--
			s.stats.RangesIgnored++
			start, end, status = 0, size, http.StatusOK
			faults = append(faults, "ignore-range")
		}
		s.mu.Unlock()
	}
	if status == http.StatusRequestedRangeNotSatisfiable {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		s.fail(w, r, rec, status, "", fmt.Sprintf("Range %q is not satisfiable: the file has %d bytes",
			r.Header.Get("Range"), size))
		return
	}
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	cut, flip := int64(-1), int64(-1)
	if r.Method == http.MethodGet {
		s.mu.Lock()
		if s.breakN > 0 {
			s.breakN--
			if s.breakAt < end-start {
				cut = s.breakAt
				faults = append(faults, "break")
				s.stats.Broken++
			}
		}
		if s.corruptN > 0 && end > start {
			s.corruptN--
			flip = start + (end-start)/2
			faults = append(faults, "corrupt")
			s.stats.Corrupted++
		}
		s.mu.Unlock()
	}
	s.answer(rec, r.Method, status, strings.Join(faults, ","))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	limit := end - start
	if cut >= 0 {
		limit = cut
	}
	if !s.copyBody(w, r, rec, e, start, limit, flip) {
		return // the client went away
	}
	if cut >= 0 {
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // closes the connection without finishing the body
	}
}

// copyBody writes n bytes of e from off, paced by the bandwidth, with the byte at file offset
// flip (when not -1) XORed with 0xFF; false when a write failed.
func (s *Server) copyBody(w http.ResponseWriter, r *http.Request, rec *Request, e *entry, off, n, flip int64) bool {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	began := time.Now()
	var sent int64
	for sent < n {
		bw := s.bandwidth.Load()
		piece := int64(len(buf))
		if bw > 0 {
			piece = min(piece, max(bw/20, 512))
		}
		piece = min(piece, n-sent)
		if bw > 0 {
			// A piece leaves when the rate allows its last byte: n bytes take n/bw at least.
			due := began.Add(time.Duration(float64(sent+piece) / float64(bw) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return false
				}
			}
		}
		k, err := e.data.ReadAt(buf[:piece], off+sent)
		if int64(k) < piece {
			s.log.Error("fakehub: cannot read a file", "file", e.file.Name, "err", err)
			return false
		}
		if at := flip - (off + sent); flip >= 0 && at >= 0 && at < piece {
			buf[at] ^= 0xFF
		}
		k, err = w.Write(buf[:piece])
		s.served(rec, int64(k))
		sent += int64(k)
		if err != nil {
			return false
		}
		if bw > 0 {
			rc.Flush()
		}
	}
	return true
}

// parseRange reads a Range header of one part against a file of size bytes and returns the
// body's [start, end) and its status: 200 (no Range, or one the server ignores: several parts,
// another unit, bad syntax), 206, or 416.
func parseRange(v string, size int64) (start, end int64, status int) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, http.StatusOK
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, http.StatusOK
	}
	if a == "" { // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		switch {
		case err != nil || n < 0:
			return 0, size, http.StatusOK
		case n == 0 || size == 0:
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		return max(size-n, 0), size, http.StatusPartialContent
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, size, http.StatusOK
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first {
			return 0, size, http.StatusOK
		}
		last = min(l, size-1)
	}
	if first >= size {
		if size == 0 && first == 0 {
			return 0, 0, http.StatusOK // an empty file: nothing to range over
		}
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	return first, last + 1, http.StatusPartialContent
}
