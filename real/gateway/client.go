package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// ClientConfig configures the client side of the public API: the port rbee-keeper's Runtime
// registers at the queen's address.
type ClientConfig struct {
	// BaseURL is the queen's public API, e.g. "https://queen.example:7833". Required.
	BaseURL string
	// APIKey is sent as Authorization: Bearer; empty sends none (a dev-mode queen).
	APIKey string
	// HTTPClient makes the calls. Nil means a client with a 5s connect timeout, a 30s wait for
	// response headers and no overall timeout (streams last as long as they last).
	HTTPClient *http.Client
	// DoneCacheMax is how many ended requests are remembered, so that a resent InferReq gets
	// its InferDone again as the queen would answer it. Default 4096.
	DoneCacheMax int
	// Logger receives the port's logs. Nil means discard.
	Logger *slog.Logger
}

// Validate checks that BaseURL is an absolute http(s) URL.
func (c ClientConfig) Validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("gateway: the queen's URL %q is not an http(s) URL; give it as https://HOST:PORT", c.BaseURL)
	}
	if c.DoneCacheMax < 0 {
		return fmt.Errorf("gateway: DoneCacheMax is %d; use a positive count, or 0 for the default", c.DoneCacheMax)
	}
	return nil
}

// NewClient returns the constructor (for Runtime.AddPort) of a port that stands for the queen
// in rbee-keeper's Runtime. Register it at the address the keeper sends to (its
// InferConfig.Queen): the keeper node stays unchanged, and the port carries its messages over
// the public HTTP API.
//
//   - api.InferReq: POST /v1/inference; the stream's events come back as api.InferAccepted,
//     api.InferToken and api.InferDone under the keeper's ReqID. A refusal (an HTTP error
//     before the stream) comes back as an InferDone with the error, as the queen refuses:
//     ALL_SLOTS_BUSY makes the keeper back off and retry. QUEEN_UNAVAILABLE, and an HTTP error
//     without the error body (a proxy's), become UNAVAILABLE.
//   - A resend of an InferReq (same sender and ReqID) while its call is under way is ignored;
//     after its end it gets the same InferDone again; after a transport failure it is a new
//     call. So the keeper's connect retries are the connection retries.
//   - A transport failure (connection refused, DNS, TLS, a reset) delivers nothing, as the
//     simulator delivers nothing when the queen is down: the keeper's connect timer resends
//     and then gives up as unavailable (exit code 3). A stream that breaks after it began
//     delivers nothing either (the simulator's queen crash is silence too; node.PeerGone
//     would only be logged by the keeper, which has no use for it): the keeper's stall timer
//     ends the request as stalled (exit code 4) and keeps its tokens.
//   - api.InferCancel: DELETE /v1/inference/{id} once the request was accepted, then
//     api.InferCancelResp; the stream goes on to its done (finish reason "cancelled"). Before
//     the acceptance the call is abandoned (the gateway cancels it at the queen when the
//     connection closes) and the port answers InferCancelResp and a cancelled InferDone
//     itself. An unknown or ended request gets InferCancelResp at once.
//   - api.ListReq: GET /v1/workers, answered with api.RegistryResp.
//
// Every other message is logged and dropped: the public API carries nothing else (worker starts
// go to a hive, which has no public API).
func NewClient(cfg ClientConfig) (func(real.Send) real.Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		tr.ResponseHeaderTimeout = 30 * time.Second
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.DoneCacheMax == 0 {
		cfg.DoneCacheMax = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return func(send real.Send) real.Port {
		ctx, stop := context.WithCancel(context.Background())
		return &client{cfg: cfg, log: cfg.Logger, send: send, ctx: ctx, stop: stop,
			calls: map[callKey]*call{}, dones: map[callKey]api.InferDone{}}
	}, nil
}

// callKey names a keeper's request: the ReqIDs are the sender's own.
type callKey struct {
	from node.Addr
	id   uint64
}

// call is one POST /v1/inference under way.
type call struct {
	key       callKey
	cancel    context.CancelFunc
	gatewayID string // the request_id of the accepted event; "" before it
	cancelled bool   // the keeper cancelled it before it was accepted
}

type client struct {
	cfg  ClientConfig
	log  *slog.Logger
	send real.Send
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	calls     map[callKey]*call         // under way
	dones     map[callKey]api.InferDone // ended, for resends; looked up only
	doneOrder []callKey                 // oldest first
}

// Deliver implements real.Port.
func (c *client) Deliver(from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.InferReq:
		c.infer(from, m)
	case api.InferCancel:
		c.cancelReq(from, m)
	case api.ListReq:
		c.goRun(func() { c.listWorkers(from, m) })
	default:
		c.log.Warn("gateway client: the queen's public API does not carry this message; dropping it",
			"from", from, "msg", m.MsgName())
	}
}

// Close implements real.Port: every call is abandoned (the gateway cancels them at the queen
// as their connections close) and Close waits for their goroutines.
func (c *client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	return nil
}

// goRun runs f on a goroutine that Close waits for, unless the port is closed.
func (c *client) goRun(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *client) infer(from node.Addr, r api.InferReq) {
	k := callKey{from, r.ReqID}
	c.mu.Lock()
	if _, busy := c.calls[k]; busy {
		c.mu.Unlock()
		c.log.Debug("gateway client: a resend of a request under way; ignored", "from", from, "req_id", r.ReqID)
		return
	}
	if d, ok := c.dones[k]; ok {
		c.mu.Unlock()
		c.send(from, d)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	cl := &call{key: k, cancel: cancel}
	c.calls[k] = cl
	c.mu.Unlock()
	if !c.goRun(func() { c.stream(ctx, cl, r) }) {
		cancel()
		c.forget(cl)
	}
}

// forget removes a call that ended without a done (a transport failure), so that a resend
// makes a new one.
func (c *client) forget(cl *call) {
	c.mu.Lock()
	if c.calls[cl.key] == cl {
		delete(c.calls, cl.key)
	}
	c.mu.Unlock()
	cl.cancel()
}

// ended records a call's InferDone and delivers it.
func (c *client) ended(cl *call, d api.InferDone) {
	c.mu.Lock()
	if c.calls[cl.key] == cl {
		delete(c.calls, cl.key)
	}
	if _, ok := c.dones[cl.key]; !ok {
		c.dones[cl.key] = d
		c.doneOrder = append(c.doneOrder, cl.key)
		for len(c.doneOrder) > c.cfg.DoneCacheMax {
			delete(c.dones, c.doneOrder[0])
			c.doneOrder = c.doneOrder[1:]
		}
	}
	c.mu.Unlock()
	cl.cancel()
	c.send(cl.key.from, d)
}

// ceilMS is d in whole milliseconds, rounded up.
func ceilMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func (c *client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	auth.SetBearer(req, c.cfg.APIKey)
	return req, nil
}

// stream runs one POST /v1/inference and relays its events to the keeper.
func (c *client) stream(ctx context.Context, cl *call, r api.InferReq) {
	to, id := cl.key.from, r.ReqID
	mt := r.MaxTokens
	body := inferBody{Model: r.Model, Prompt: r.Prompt, MaxTokens: &mt, Seed: r.Seed,
		TimeoutMS: ceilMS(r.Timeout), MaxTimeMS: ceilMS(r.MaxTime)}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/inference", body)
	if err != nil {
		c.log.Error("gateway client: cannot build the request", "err", err)
		c.forget(cl)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.transportFailed(cl, "sending the request", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.ended(cl, api.InferDone{ReqID: id, FinishReason: api.FinishError, Err: c.httpFailure(resp, "the inference request")})
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		c.ended(cl, api.InferDone{ReqID: id, FinishReason: api.FinishError, Err: api.Errorf(api.CodeUnavailable,
			"check that the URL points at queen-rbee's API, not at another server or a proxy's page",
			"%s answered the inference request with %s instead of an event stream", c.cfg.BaseURL, ct)})
		return
	}
	events := newSSEReader(resp.Body)
	for {
		ev, err := events.next()
		if err != nil {
			c.transportFailed(cl, "reading the stream", err)
			return
		}
		switch ev.Event {
		case "accepted":
			var a AcceptedEvent
			if c.decodeEvent(ev, &a) {
				c.mu.Lock()
				cl.gatewayID = a.RequestID
				c.mu.Unlock()
				c.send(to, api.InferAccepted{ReqID: id, Worker: a.Worker})
			}
		case "token":
			var t TokenEvent
			if c.decodeEvent(ev, &t) {
				c.send(to, api.InferToken{ReqID: id, Index: t.Index, Text: t.Text})
			}
		case "done":
			var d DoneEvent
			if c.decodeEvent(ev, &d) {
				done := api.InferDone{ReqID: id, FinishReason: d.FinishReason, Tokens: d.Usage.CompletionTokens, Worker: d.Worker}
				if d.Error != nil {
					done.Err = *d.Error
				}
				c.ended(cl, done)
				return
			}
		default:
			c.log.Debug("gateway client: ignoring an unknown event", "event", ev.Event)
		}
	}
}

func (c *client) decodeEvent(ev sseEvent, v any) bool {
	if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
		c.log.Warn("gateway client: ignoring an event it cannot read", "event", ev.Event, "err", err)
		return false
	}
	return true
}

// transportFailed ends a call that broke: nothing is delivered (see NewClient), unless the
// keeper cancelled it before it was accepted, which is answered here.
func (c *client) transportFailed(cl *call, doing string, err error) {
	c.mu.Lock()
	cancelled, accepted, closed := cl.cancelled, cl.gatewayID != "", c.closed
	c.mu.Unlock()
	if cancelled { // the keeper cancelled it before its acceptance came: answer the cancel here
		c.ended(cl, api.InferDone{ReqID: cl.key.id, FinishReason: api.FinishCancelled, Err: api.Errorf(api.CodeCancelled,
			"nothing to do; send the request again (with a new request id) to run it",
			"the request was cancelled before the queen accepted it")})
		c.send(cl.key.from, api.InferCancelResp{ReqID: cl.key.id})
		return
	}
	c.forget(cl)
	if closed {
		return
	}
	if accepted {
		c.log.Warn("gateway client: the stream from the queen broke; the keeper's stall timer will end the request",
			"req_id", cl.key.id, "url", c.cfg.BaseURL, "while", doing, "err", err)
		return
	}
	c.log.Warn("gateway client: cannot reach the queen; the keeper will resend",
		"req_id", cl.key.id, "url", c.cfg.BaseURL, "while", doing, "err", err)
}

// httpFailure reads an HTTP error answer as the core error it carries.
func (c *client) httpFailure(resp *http.Response, what string) api.Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e, ok := wire.ReadError(body)
	if !ok {
		excerpt := strings.TrimSpace(string(body))
		if len(excerpt) > 200 {
			excerpt = excerpt[:200] + "..."
		}
		return api.Errorf(api.CodeUnavailable,
			"check that the URL points at queen-rbee's API and that no proxy in between fails; retry",
			"%s answered %s with HTTP %d and no rbee error body: %q", c.cfg.BaseURL, what, resp.StatusCode, excerpt)
	}
	if e.Code == CodeQueenUnavailable {
		e.Code, e.Message = api.CodeUnavailable, "the queen's API is up but the queen is not answering: "+e.Message
	}
	if e.Code == auth.CodeUnauthorized {
		e.Message = fmt.Sprintf("the queen at %s refused the request: %s", c.cfg.BaseURL, e.Message)
	}
	return e
}

func (c *client) cancelReq(from node.Addr, m api.InferCancel) {
	k := callKey{from, m.ReqID}
	c.mu.Lock()
	cl := c.calls[k]
	var gid string
	if cl != nil {
		gid = cl.gatewayID
		if gid == "" {
			cl.cancelled = true
		}
	}
	c.mu.Unlock()
	switch {
	case cl == nil: // unknown, ended, or broken: nothing runs here
		c.send(from, api.InferCancelResp{ReqID: m.ReqID})
	case gid == "":
		cl.cancel() // the stream's goroutine answers (transportFailed)
	default:
		c.goRun(func() { c.deleteCall(from, m.ReqID, gid) })
	}
}

// deleteCall is DELETE /v1/inference/{id}; its 204 is the keeper's InferCancelResp. A failure
// delivers nothing: the keeper sends the cancel again.
func (c *client) deleteCall(from node.Addr, reqID uint64, gatewayID string) {
	req, err := c.newRequest(c.ctx, http.MethodDelete, "/v1/inference/"+url.PathEscape(gatewayID), nil)
	if err != nil {
		c.log.Error("gateway client: cannot build the cancel", "err", err)
		return
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.log.Warn("gateway client: cannot send the cancel to the queen; the keeper will resend", "req_id", reqID, "err", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		c.log.Warn("gateway client: the queen did not confirm the cancel; the keeper will resend", "req_id", reqID,
			"status", resp.StatusCode, "error", c.httpFailure(resp, "the cancel"))
		return
	}
	c.send(from, api.InferCancelResp{ReqID: reqID})
}

// listWorkers is GET /v1/workers for a ListReq.
func (c *client) listWorkers(from node.Addr, m api.ListReq) {
	q := url.Values{}
	if m.Model != "" {
		q.Set("model", m.Model)
	}
	if m.Capability != "" {
		q.Set("capability", m.Capability)
	}
	path := "/v1/workers"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.newRequest(c.ctx, http.MethodGet, path, nil)
	if err != nil {
		c.log.Error("gateway client: cannot build the listing", "err", err)
		return
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.log.Warn("gateway client: cannot reach the queen to list workers; the keeper will resend", "err", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.send(from, api.RegistryResp{ReqID: m.ReqID, Op: m.MsgName(), Err: c.httpFailure(resp, "the worker listing")})
		return
	}
	var wr WorkersResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&wr); err != nil {
		c.log.Warn("gateway client: cannot read the worker listing; the keeper will resend", "err", err)
		return
	}
	c.send(from, api.RegistryResp{ReqID: m.ReqID, Op: m.MsgName(), Records: wr.Workers, Epoch: wr.Epoch})
}
