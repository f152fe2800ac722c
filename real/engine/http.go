package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// Defaults of the HTTP engines.
const (
	// DefaultLoadTimeout is how long a load may wait for the server when the config says 0.
	DefaultLoadTimeout = 5 * time.Minute
	// DefaultPollInterval is the period of the load's health polls when the config says 0.
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultLoadBytesPerSec is the loading rate that load progress is estimated with when the
	// config says 0: 1 GiB/s. Servers do not report how far a load is.
	DefaultLoadBytesPerSec int64 = 1 << 30
	// probeTimeout bounds one health, model list or slots request.
	probeTimeout = 10 * time.Second
	// errorBodyMax bounds how much of an error answer is read.
	errorBodyMax = 64 << 10
)

// httpCommon is what the HTTP engines share: the server's base URL, the client, the key.
type httpCommon struct {
	what    string // "llama-server at http://..." for messages
	base    string // the base URL, no trailing slash
	client  *http.Client
	ownIdle bool // the client is the engine's own: close its idle connections on Close
	apiKey  string
	clock   clock.Clock
	log     *slog.Logger
	poll    time.Duration
	timeout time.Duration // the load timeout
	rate    int64         // bytes/s for load progress estimates
}

// newHTTPCommon checks a base URL and fills the shared defaults.
func newHTTPCommon(kind, rawURL string, client *http.Client, apiKey string, clk clock.Clock, log *slog.Logger,
	poll, timeout time.Duration, rate int64) (httpCommon, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return httpCommon{}, fmt.Errorf("%s engine: URL %q is not an http(s) base URL; give one like http://127.0.0.1:8080",
			kind, rawURL)
	}
	if poll < 0 || timeout < 0 || rate < 0 {
		return httpCommon{}, fmt.Errorf("%s engine: PollInterval %v, LoadTimeout %v and LoadBytesPerSec %d must not be negative",
			kind, poll, timeout, rate)
	}
	c := httpCommon{base: strings.TrimRight(u.String(), "/"), client: client, apiKey: apiKey, clock: clk,
		log: orDiscard(log), poll: poll, timeout: timeout, rate: rate}
	c.what = kind + " at " + c.base
	if c.client == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			t = &http.Transport{Proxy: http.ProxyFromEnvironment}
		}
		t = t.Clone()
		t.MaxIdleConnsPerHost = 64
		c.client, c.ownIdle = &http.Client{Transport: t}, true
	}
	if c.clock == nil {
		c.clock = clock.New()
	}
	if c.poll == 0 {
		c.poll = DefaultPollInterval
	}
	if c.timeout == 0 {
		c.timeout = DefaultLoadTimeout
	}
	if c.rate == 0 {
		c.rate = DefaultLoadBytesPerSec
	}
	return c, nil
}

// request builds a request to path on the server, with the key and a JSON body if given.
func (c *httpCommon) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	return req, nil
}

// get does a short GET of path and returns the status and up to errorBodyMax of the body.
func (c *httpCommon) get(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, sseMaxLine))
	return resp.StatusCode, body, err
}

// closeIdle drops the engine's idle connections on Close.
func (c *httpCommon) closeIdle() {
	if c.ownIdle {
		c.client.CloseIdleConnections()
	}
}

// probe is one answer of a load poll: ready, or why not (for the timeout's message), or a
// failure that waiting will not cure.
type probe struct {
	ready bool
	last  string    // the answer, e.g. `503 "Loading model"` or "connection refused"
	fatal api.Error // not zero: stop polling and fail the load with it
}

// pollLoad polls until ready, fatal, the load timeout or ctx, estimating progress from the
// model's size. exited, when not nil, is checked each round: a server process that ended.
func (c *httpCommon) pollLoad(ctx context.Context, m api.EngineLoad, progress func(float64), hint string,
	check func(context.Context) probe, exited func() api.Error) api.Error {
	start := c.clock.Now()
	deadline := start.Add(c.timeout)
	expected := time.Duration(float64(m.SizeBytes) / float64(c.rate) * float64(time.Second))
	for round := 0; ; round++ {
		p := check(ctx)
		if ctx.Err() != nil {
			return cancelled(ctx)
		}
		if p.ready {
			return api.Error{}
		}
		if !p.fatal.OK() {
			return p.fatal
		}
		if exited != nil {
			if err := exited(); !err.OK() {
				return err
			}
		}
		now := c.clock.Now()
		if expected > 0 {
			// Servers do not say how far a load is: estimate from the size, in steps of 10%,
			// never 100 until the server says it is ready.
			pct := math.Floor(10*float64(now.Sub(start))/float64(expected)) * 10
			progress(min(pct, 90))
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return api.Errorf(api.CodeLoadingTimeout, hint,
				"%s did not become ready within %v: last answer %s", c.what, c.timeout, p.last)
		}
		if round%20 == 19 {
			c.log.Info("engine: waiting for the server", "server", c.what, "last", p.last, "left", left.Round(time.Second))
		}
		if !sleep(ctx, c.clock, min(c.poll, left)) {
			return cancelled(ctx)
		}
	}
}

// describeErr names a transport error briefly for messages ("connection refused").
func describeErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if i := strings.LastIndex(s, "connect: "); i >= 0 {
		return s[i+len("connect: "):]
	}
	return s
}

// describeAnswer names a status and body briefly for messages: `503 "Loading model"`.
func describeAnswer(status int, body []byte) string {
	return fmt.Sprintf("%d %q", status, bodyText(body))
}

// busyError is the refusal of a completion that the server has no room for: ALL_SLOTS_BUSY,
// which a worker may treat as "try later or elsewhere".
func busyError(what string, reqID uint64, why string, retryAfter time.Duration) api.Error {
	sugg := "retry later or route the request to another worker; give the server more slots (--parallel) if this persists"
	if retryAfter > 0 {
		sugg = fmt.Sprintf("retry after %v or route the request to another worker", retryAfter)
	}
	return api.Errorf(api.CodeAllSlotsBusy, sugg, "%s is busy and did not start request %d: %s", what, reqID, why)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); 0 when absent or bad.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}

// streamError is the EngineDone error of a completion whose stream failed.
func streamError(what string, reqID uint64, tokens int, format string, args ...any) api.Error {
	return api.Errorf(api.CodeEngineError,
		"retry the request; if it keeps failing, check the server's log and that it is still running",
		"%s failed request %d after %d tokens: %s", what, reqID, tokens, fmt.Sprintf(format, args...))
}

// mergeParams returns the request body: params first, then the fields the engine sets, which
// win.
func mergeParams(params map[string]any, fields map[string]any) map[string]any {
	body := make(map[string]any, len(params)+len(fields))
	for k, v := range params {
		body[k] = v
	}
	for k, v := range fields {
		body[k] = v
	}
	return body
}
