package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

// Defaults of Config.
const (
	// DefaultBaseURL is the Hugging Face hub.
	DefaultBaseURL = "https://huggingface.co"
	// DefaultChunkBytes is the largest HubChunk when Config.ChunkBytes is 0.
	DefaultChunkBytes = 256 << 10
	// DefaultIdleTimeout is Config.IdleTimeout when it is 0.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultHeaderTimeout is how long the default client waits for a status line.
	DefaultHeaderTimeout = 60 * time.Second
	// MessageBytesMax bounds HubResp.Message: the part of an error body kept.
	MessageBytesMax = 1 << 10
	// flushAfter is how long received bytes may wait for a chunk to fill before they are sent.
	flushAfter = 50 * time.Millisecond
	// redirectsMax bounds the redirects followed when the client has no CheckRedirect of its own.
	redirectsMax = 10
)

// Config configures the adapter. The zero value talks to huggingface.co with HF_TOKEN.
type Config struct {
	// BaseURL is the hub's address, scheme and host (and an optional path prefix); default
	// DefaultBaseURL.
	BaseURL string
	// Token is the bearer token used when a request carries none; default the HF_TOKEN
	// environment variable, read by New. Empty means anonymous.
	Token string
	// Client sends the requests. Nil means a client with a 30s connect timeout, a
	// DefaultHeaderTimeout wait for each status line and no overall timeout (a download takes
	// as long as it takes). A client given here is copied, and its CheckRedirect wrapped so
	// that the token never leaves the first request's host; do not set a Timeout on it, which
	// would cut long downloads.
	Client *http.Client
	// ChunkBytes is the largest HubChunk, in bytes; default DefaultChunkBytes.
	ChunkBytes int
	// IdleTimeout closes a request that got no body byte, or no HubCredit while its window was
	// spent, for this long: its client is most likely gone (a crashed hive sends no HubCancel).
	// It ends with HubEnd{Err}. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Clock is the clock Retry-After dates are read against; default the wall clock.
	Clock clock.Clock
	// Logger gets a debug line per request and the failures; nil discards.
	Logger *slog.Logger
}

// Validate reports what is wrong with cfg: a BaseURL that is not an absolute http(s) URL, or a
// negative chunk size or timeout.
func (c Config) Validate() error {
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("hub: BaseURL %q is not an http(s) URL with a host: set it like %s", c.BaseURL, DefaultBaseURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("hub: BaseURL %q has a query or fragment: give the scheme, host and path only", c.BaseURL)
		}
	}
	if c.ChunkBytes < 0 || c.IdleTimeout < 0 {
		return fmt.Errorf("hub: ChunkBytes %d and IdleTimeout %v must not be negative", c.ChunkBytes, c.IdleTimeout)
	}
	return nil
}

// New returns the constructor of a hub port for real.Runtime.AddPort. It reads HF_TOKEN when
// cfg.Token is empty. It panics if cfg is invalid: check configs from files with Validate.
func New(cfg Config) func(real.Send) real.Port {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("HF_TOKEN")
	}
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = DefaultChunkBytes
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	base, _ := url.Parse(strings.TrimRight(cfg.BaseURL, "/")) // Validate parsed it
	return func(send real.Send) real.Port {
		p := &Port{cfg: cfg, base: base, send: send, log: cfg.Logger, open: map[key]*exchange{}}
		p.client = p.newClient(cfg.Client)
		return p
	}
}

// Port is the hub adapter. Its methods are safe for concurrent use.
type Port struct {
	cfg    Config
	base   *url.URL
	client *http.Client
	send   real.Send
	log    *slog.Logger

	mu     sync.Mutex
	open   map[key]*exchange
	closed bool
	wg     sync.WaitGroup
}

var _ real.Port = (*Port)(nil)

type key struct {
	from node.Addr
	id   uint64
}

// Deliver implements real.Port: it starts a request, or credits or cancels an open one.
func (p *Port) Deliver(from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.HubHeadReq:
		p.start(from, request{id: m.ReqID, repo: m.Repo, revision: m.Revision, file: m.File,
			token: m.Token, rangeStart: -1})
	case api.HubGetReq:
		p.start(from, request{get: true, id: m.ReqID, repo: m.Repo, revision: m.Revision,
			file: m.File, token: m.Token, rangeStart: m.RangeStart, window: m.Window})
	case api.HubCredit:
		if ex := p.lookup(key{from, m.ReqID}, false); ex != nil {
			ex.credit(m.Bytes)
		}
	case api.HubCancel:
		if ex := p.lookup(key{from, m.ReqID}, true); ex != nil {
			ex.stop()
		}
	default:
		p.log.Warn("hub: unexpected message dropped", "from", from, "msg", m.MsgName())
	}
}

// LocalOnly implements real.LocalOnly: only the nodes of the hive's own process may download
// through it (it sends the hive's HF_TOKEN), never a message from another process.
func (p *Port) LocalOnly() bool { return true }

// Close implements real.Port: it closes every open request without answering it and waits
// for their goroutines.
func (p *Port) Close() error {
	p.mu.Lock()
	p.closed = true
	open := p.open
	p.open = map[key]*exchange{}
	p.mu.Unlock()
	for _, ex := range open {
		ex.stop()
	}
	p.wg.Wait()
	p.client.CloseIdleConnections()
	return nil
}

// lookup returns the open exchange at k, removing it when remove is set.
func (p *Port) lookup(k key, remove bool) *exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	ex := p.open[k]
	if remove && ex != nil {
		delete(p.open, k)
	}
	return ex
}

// request is a HEAD or GET in one shape.
type request struct {
	get                         bool
	id                          uint64
	repo, revision, file, token string
	rangeStart, window          int64
}

func (r request) method() string {
	if r.get {
		return http.MethodGet
	}
	return http.MethodHead
}

// start opens an exchange for r, replacing any open one with the same key.
func (p *Port) start(from node.Addr, r request) {
	k := key{from, r.id}
	ctx, cancel := context.WithCancelCause(context.Background())
	ex := &exchange{p: p, key: k, req: r, ctx: ctx, cancel: cancel, window: -1,
		wake: make(chan struct{}, 1)}
	if r.get && r.window > 0 {
		ex.window = r.window
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cancel(errStopped)
		p.log.Debug("hub: request after Close dropped", "from", from, "req_id", r.id)
		return
	}
	old := p.open[k]
	p.open[k] = ex
	p.wg.Add(1)
	p.mu.Unlock()
	if old != nil {
		old.stop()
	}
	go ex.run()
}

// finished forgets ex once its goroutine is done.
func (p *Port) finished(ex *exchange) {
	p.mu.Lock()
	if p.open[ex.key] == ex {
		delete(p.open, ex.key)
	}
	p.mu.Unlock()
	p.wg.Done()
}

// Causes of an exchange's context cancellation.
var (
	errStopped = errors.New("closed by the client") // HubCancel, replaced, or Close: silent
	errIdle    = errors.New("idle")                 // IdleTimeout: ends with HubEnd
)

// exchange is one open request: its goroutine sends its answers through emit.
type exchange struct {
	p      *Port
	key    key
	req    request
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	stopped bool  // nothing more may be sent
	window  int64 // body bytes that may still be sent; -1 for no limit
	wake    chan struct{}
	idle    *time.Timer
}

// stop closes the exchange's connection; nothing is sent for it once stop returns.
func (ex *exchange) stop() {
	ex.mu.Lock()
	ex.stopped = true
	ex.mu.Unlock()
	ex.cancel(errStopped)
}

// emit sends m to the client unless the exchange was stopped; it reports whether it sent.
func (ex *exchange) emit(m node.Msg) bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.stopped {
		return false
	}
	ex.p.send(ex.key.from, m)
	return true
}

// credit widens the window of a flow-controlled GET.
func (ex *exchange) credit(n int64) {
	if n <= 0 {
		return
	}
	ex.mu.Lock()
	if ex.window >= 0 {
		ex.window += n
	}
	ex.mu.Unlock()
	select {
	case ex.wake <- struct{}{}:
	default:
	}
}

// run does the request and sends its answers.
func (ex *exchange) run() {
	defer ex.p.finished(ex)
	defer ex.cancel(errStopped)
	ex.idle = time.AfterFunc(ex.p.cfg.IdleTimeout, func() { ex.cancel(errIdle) })
	defer ex.idle.Stop()

	r := ex.req
	p := ex.p
	if r.repo == "" || r.revision == "" || r.file == "" {
		ex.emit(api.HubResp{ReqID: r.id, Status: http.StatusBadRequest, Message: fmt.Sprintf(
			"the request names no repo, revision or file (repo %q, revision %q, file %q): "+
				"this is a bug in the caller", r.repo, r.revision, r.file)})
		return
	}
	links := &linked{head: !r.get}
	ctx := context.WithValue(ex.ctx, linkedKey{}, links)
	req, err := http.NewRequestWithContext(ctx, r.method(), p.fileURL(r), nil)
	if err != nil {
		ex.emit(api.HubEnd{ReqID: r.id, Err: fmt.Sprintf("cannot build the request: %v", err)})
		return
	}
	token := r.token
	if token == "" {
		token = p.cfg.Token
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if r.get && r.rangeStart >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.rangeStart))
	}
	// Byte offsets are those of the file: no transparent gzip (Go's transport asks for it on a
	// GET without Range and then hides the length).
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "rbee-hive (rbee-sim real runtime)")
	p.log.Debug("hub: request", "method", r.method(), "url", req.URL.Redacted(), "from", ex.key.from,
		"req_id", r.id, "range_start", r.rangeStart, "window", r.window)

	resp, err := p.client.Do(req)
	if err != nil {
		ex.failed(fmt.Sprintf("no answer from the hub for %s %s/%s@%s: %s; check the network "+
			"and the hub address (%s)", r.method(), r.repo, r.file, r.revision, ex.why(err), p.base.Redacted()))
		return
	}
	defer resp.Body.Close()
	links.take(resp.Header)
	ex.idle.Reset(p.cfg.IdleTimeout)

	if !r.get {
		ex.head(resp, links)
		return
	}
	ex.get(resp, links)
}

// failed ends an exchange that has no answer, or whose body broke, with HubEnd{Err: why};
// nothing is sent when the client closed it.
func (ex *exchange) failed(why string) {
	if context.Cause(ex.ctx) == errStopped {
		return
	}
	ex.p.log.Info("hub: request failed", "from", ex.key.from, "req_id", ex.req.id, "why", why)
	ex.emit(api.HubEnd{ReqID: ex.req.id, Err: why})
}

// why describes a transport error for a person, without the URL (which may be a long signed
// CDN address).
func (ex *exchange) why(err error) string {
	if context.Cause(ex.ctx) == errIdle {
		return fmt.Sprintf("nothing happened for %v (Config.IdleTimeout)", ex.p.cfg.IdleTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "the connection closed before the answer"
	case isReset(err):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out: " + err.Error()
	}
	return err.Error()
}

// head answers a HEAD.
func (ex *exchange) head(resp *http.Response, links *linked) {
	r := ex.req
	out := api.HubResp{ReqID: r.id, Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && links.found():
		// The hub's redirect to its CDN: it is the answer.
		out.Status = http.StatusOK
		out.Size, out.SHA256 = links.size, links.sha
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		out.Status = http.StatusOK
		out.Size, out.SHA256 = links.size, links.sha
		if !links.hasSize {
			out.Size = max(resp.ContentLength, 0)
		}
		if out.SHA256 == "" {
			out.SHA256 = sha256Tag(resp.Header.Get("ETag"))
		}
	default:
		out = ex.errorResp(resp)
	}
	ex.emit(out)
}

// get answers a GET: the status line, then for 200/206 the body.
func (ex *exchange) get(resp *http.Response, links *linked) {
	r := ex.req
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		ex.emit(ex.errorResp(resp))
		return
	}
	out := api.HubResp{ReqID: r.id, Status: resp.StatusCode, SHA256: links.sha, Size: links.size}
	if out.SHA256 == "" {
		out.SHA256 = sha256Tag(resp.Header.Get("ETag"))
	}
	if resp.StatusCode == http.StatusPartialContent {
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok {
			ex.failed(fmt.Sprintf("the hub answered 206 with a Content-Range %q that is not "+
				"\"bytes START-END/SIZE\"; retry, and report it if it persists", resp.Header.Get("Content-Range")))
			return
		}
		out.Offset = start
		if !links.hasSize && total >= 0 {
			out.Size = total
		}
	} else if !links.hasSize {
		out.Size = max(resp.ContentLength, 0)
	}
	if !ex.emit(out) {
		return
	}
	ex.body(resp.Body, out.Offset, out.Size)
}

// body sends the body as chunks and ends it with HubEnd.
func (ex *exchange) body(body io.Reader, pos, size int64) {
	chunk := int64(ex.p.cfg.ChunkBytes)
	var (
		buf     []byte
		filled  int
		firstAt time.Time
	)
	for {
		if buf == nil {
			n, ok := ex.waitWindow(chunk)
			if !ok {
				ex.failed(fmt.Sprintf("no credit to send more after byte %d for %v (Config.IdleTimeout): "+
					"the client is gone or stuck", pos, ex.p.cfg.IdleTimeout))
				return
			}
			buf, filled = make([]byte, n), 0
		}
		k, err := body.Read(buf[filled:])
		if k > 0 {
			ex.idle.Reset(ex.p.cfg.IdleTimeout)
			if filled == 0 {
				firstAt = time.Now()
			}
			filled += k
		}
		if filled > 0 && (filled == len(buf) || err != nil || time.Since(firstAt) >= flushAfter) {
			data := buf[:filled]
			if filled < len(buf)/2 {
				data = append([]byte(nil), data...) // do not pin a mostly empty buffer in a mailbox
			}
			if !ex.sendChunk(pos, data) {
				return
			}
			pos += int64(filled)
			buf = nil
		}
		switch {
		case err == io.EOF:
			ex.emit(api.HubEnd{ReqID: ex.req.id})
			return
		case err != nil:
			ex.failed(ex.bodyError(err, pos, size))
			return
		}
	}
}

// sendChunk sends a chunk and spends its size from the window.
func (ex *exchange) sendChunk(at int64, data []byte) bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.stopped {
		return false
	}
	ex.p.send(ex.key.from, api.HubChunk{ReqID: ex.req.id, Offset: at, Data: data})
	if ex.window > 0 {
		ex.window -= int64(len(data))
	}
	return true
}

// waitWindow waits until the window lets at least one byte through and returns how many bytes
// the next chunk may hold (at most chunk). It returns false when the exchange was closed or
// idled out meanwhile.
func (ex *exchange) waitWindow(chunk int64) (int64, bool) {
	for {
		ex.mu.Lock()
		w := ex.window
		ex.mu.Unlock()
		switch {
		case w < 0:
			return chunk, true
		case w > 0:
			ex.idle.Reset(ex.p.cfg.IdleTimeout)
			return min(w, chunk), true
		}
		select {
		case <-ex.wake:
		case <-ex.ctx.Done():
			return 0, false
		}
	}
}

// bodyError says why a body ended early.
func (ex *exchange) bodyError(err error, pos, size int64) string {
	of := ""
	if size > 0 {
		of = fmt.Sprintf(" of %d", size)
	}
	switch {
	case context.Cause(ex.ctx) == errIdle:
		return fmt.Sprintf("no data after byte %d%s for %v (Config.IdleTimeout)", pos, of, ex.p.cfg.IdleTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("unexpected EOF at byte %d%s", pos, of)
	case isReset(err):
		return fmt.Sprintf("connection reset at byte %d%s", pos, of)
	}
	return fmt.Sprintf("%v at byte %d%s", err, pos, of)
}

// errorResp reads an error answer: status, X-Error-Code, a message, Retry-After.
func (ex *exchange) errorResp(resp *http.Response) api.HubResp {
	out := api.HubResp{ReqID: ex.req.id, Status: resp.StatusCode, ErrorCode: resp.Header.Get("X-Error-Code")}
	out.Message = errorMessage(resp)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		out.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), ex.p.cfg.Clock.Now())
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok {
			out.Size = total
		}
	}
	ex.p.log.Info("hub: error answer", "from", ex.key.from, "req_id", ex.req.id,
		"method", ex.req.method(), "repo", ex.req.repo, "file", ex.req.file, "status", out.Status,
		"code", out.ErrorCode, "retry_after", out.RetryAfter)
	return out
}

// fileURL is {base}/{repo}/resolve/{revision}/{file}, each part path-escaped (a revision such as
// refs/pr/1 becomes one segment, as the hub wants).
func (p *Port) fileURL(r request) string {
	u := *p.base
	u.Path = strings.TrimRight(p.base.Path, "/") + "/" + r.repo + "/resolve/" + r.revision + "/" + r.file
	u.RawPath = strings.TrimRight(p.base.EscapedPath(), "/") + "/" + escapeSegments(r.repo) +
		"/resolve/" + url.PathEscape(r.revision) + "/" + escapeSegments(r.file)
	return u.String()
}

func escapeSegments(s string) string {
	parts := strings.Split(s, "/")
	for i, part := range parts {
		parts[i] = url.PathEscape(part)
	}
	return strings.Join(parts, "/")
}
