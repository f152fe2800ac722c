package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// newClient returns the client of the port: c (copied) or a default one, with a CheckRedirect
// that keeps the token on the first host and reads the hub's X-Linked headers on the way.
func (p *Port) newClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.ResponseHeaderTimeout = DefaultHeaderTimeout
		t.MaxIdleConnsPerHost = 16
		out.Transport = t
	}
	out.CheckRedirect = checkRedirect(out.CheckRedirect)
	return &out
}

// checkRedirect wraps a client's CheckRedirect (nil: at most redirectsMax redirects):
//   - the Authorization header is removed from any request to a host (host:port) other than the
//     first request's, or from https to http: Go's client would keep it for a subdomain and for
//     another port of the same host;
//   - the X-Linked-Size and X-Linked-Etag of each redirect are recorded, and a HEAD stops at the
//     first redirect that has them (that redirect is the hub's answer).
func checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0]
		if req.URL.Host != first.URL.Host || (first.URL.Scheme == "https" && req.URL.Scheme != "https") {
			req.Header.Del("Authorization")
		}
		if l, ok := req.Context().Value(linkedKey{}).(*linked); ok && req.Response != nil {
			l.take(req.Response.Header)
			if l.head && l.found() {
				return http.ErrUseLastResponse
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= redirectsMax {
			return fmt.Errorf("the hub redirected %d times in a row; stopped", len(via))
		}
		return nil
	}
}

// linkedKey is the context key of a request's *linked.
type linkedKey struct{}

// linked gathers the hub's X-Linked-Size and X-Linked-Etag from the answers of one request and
// its redirects (the hub puts them on its redirect to the CDN). It is written by the client's
// redirect handling and the exchange's goroutine, one after the other, never at once.
type linked struct {
	head    bool // a HEAD: stop at the first redirect with linked headers
	hasSize bool
	size    int64
	sha     string
}

func (l *linked) take(h http.Header) {
	if v := h.Get("X-Linked-Size"); v != "" && !l.hasSize {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
			l.size, l.hasSize = n, true
		}
	}
	if v := h.Get("X-Linked-Etag"); v != "" && l.sha == "" {
		l.sha = sha256Tag(v)
	}
}

func (l *linked) found() bool { return l.hasSize || l.sha != "" }

// sha256Tag returns the sha256 an entity tag carries (`"<64 hex>"`, weak or not), in lowercase,
// or "" when it is something else (a git sha1, an S3 md5).
func sha256Tag(tag string) string {
	tag = strings.TrimSpace(tag)
	tag = strings.TrimPrefix(tag, "W/")
	tag = strings.Trim(tag, `"`)
	if len(tag) != 64 {
		return ""
	}
	for _, c := range tag {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return ""
		}
	}
	return strings.ToLower(tag)
}

// parseContentRange reads "bytes START-END/SIZE", "bytes START-END/*" (size -1) and
// "bytes */SIZE" (start -1).
func parseContentRange(v string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	size = -1
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		size = n
	}
	if rng == "*" {
		return -1, size, size >= 0
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (size >= 0 && end >= size) {
		return 0, 0, false
	}
	return start, size, true
}

// parseRetryAfter reads a Retry-After header, delta seconds or an HTTP date (against now),
// rounded up to whole seconds; 0 when absent, unreadable or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, math.MaxInt64/int64(time.Second))) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// errorMessage is what an error answer says: X-Error-Message, else the body's JSON "error"
// field, else the body's text; at most MessageBytesMax bytes.
func errorMessage(resp *http.Response) string {
	msg := resp.Header.Get("X-Error-Message")
	if msg == "" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4*MessageBytesMax))
		var j struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &j) == nil && j.Error != "" {
			msg = j.Error
		} else {
			msg = strings.TrimSpace(string(body))
		}
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return truncate(msg, MessageBytesMax)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "connection reset")
}
