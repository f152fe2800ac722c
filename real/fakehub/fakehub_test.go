package fakehub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
)

// noFollow is a client that returns redirects instead of following them.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, b
}

func newServer(t *testing.T, cfg Config) (*Server, *httptest.Server, []byte, File) {
	t.Helper()
	s := New(cfg)
	data := []byte("0123456789abcdefghij") // 20 bytes
	f := s.AddFile("acme/m", "main", "dir/m.bin", data)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv, data, f
}

func TestRedirectCarriesLinkedHeaders(t *testing.T) {
	s, srv, data, f := newServer(t, Config{})
	sum := sha256.Sum256(data)
	if f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != 20 {
		t.Fatalf("AddFile returned %+v", f)
	}
	for _, method := range []string{"HEAD", "GET"} {
		resp, _ := do(t, noFollow, method, srv.URL+"/acme/m/resolve/main/dir/m.bin", nil)
		h := resp.Header
		if resp.StatusCode != 302 || h.Get("Location") != "/cdn/"+f.SHA256 || h.Get("X-Linked-Size") != "20" ||
			h.Get("X-Linked-Etag") != `"`+f.SHA256+`"` || h.Get("ETag") != `"`+f.SHA256+`"` || len(h.Get("X-Repo-Commit")) != 40 {
			t.Fatalf("%s answered %d %v", method, resp.StatusCode, h)
		}
	}
	resp, b := do(t, http.DefaultClient, "GET", srv.URL+"/acme/m/resolve/main/dir/m.bin", nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, data) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("followed GET answered %d %q", resp.StatusCode, b)
	}
	st := s.Stats()
	if st.Requests != 4 || st.ByMethodStatus["HEAD 302"] != 1 || st.ByMethodStatus["GET 302"] != 2 ||
		st.ByMethodStatus["GET 200"] != 1 || st.BytesServed != 20 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRanges(t *testing.T) {
	_, srv, data, f := newServer(t, Config{NoRedirect: true})
	url := srv.URL + "/acme/m/resolve/main/dir/m.bin"
	for _, tc := range []struct {
		rng          string
		status       int
		body         string
		contentRange string
	}{
		{"", 200, string(data), ""},
		{"bytes=5-", 206, string(data[5:]), "bytes 5-19/20"},
		{"bytes=5-9", 206, string(data[5:10]), "bytes 5-9/20"},
		{"bytes=5-99", 206, string(data[5:]), "bytes 5-19/20"},
		{"bytes=-4", 206, string(data[16:]), "bytes 16-19/20"},
		{"bytes=0-", 206, string(data), "bytes 0-19/20"},
		{"bytes=20-", 416, "", "bytes */20"},
		{"bytes=1-2,4-5", 200, string(data), ""},
		{"pages=1-", 200, string(data), ""},
		{"bytes=x-", 200, string(data), ""},
	} {
		resp, b := do(t, http.DefaultClient, "GET", url, map[string]string{"Range": tc.rng})
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange ||
			(tc.status != 416 && string(b) != tc.body) {
			t.Errorf("Range %q: %d %q Content-Range %q; want %d %q %q", tc.rng, resp.StatusCode, b,
				resp.Header.Get("Content-Range"), tc.status, tc.body, tc.contentRange)
		}
		if tc.status != 416 && resp.Header.Get("ETag") != `"`+f.SHA256+`"` {
			t.Errorf("Range %q: ETag %q", tc.rng, resp.Header.Get("ETag"))
		}
	}
}

func TestErrorsAsTheHubSendsThem(t *testing.T) {
	s, srv, _, _ := newServer(t, Config{})
	s.AddFile("acme/g", "main", "g.bin", []byte("x"))
	s.Gate("acme/g", "hf_ok")
	for _, tc := range []struct {
		path, token string
		status      int
		code        string
	}{
		{"/acme/none/resolve/main/m.bin", "", 404, "RepoNotFound"},
		{"/acme/m/resolve/v2/dir/m.bin", "", 404, "RevisionNotFound"},
		{"/acme/m/resolve/main/other.bin", "", 404, "EntryNotFound"},
		{"/acme/g/resolve/main/g.bin", "", 401, "GatedRepo"},
		{"/acme/g/resolve/main/g.bin", "hf_no", 403, "GatedRepo"},
		{"/acme/g/resolve/v2/g.bin", "", 401, "GatedRepo"}, // access before the revision
		{"/acme/g/resolve/main/g.bin", "hf_ok", 302, ""},
		{"/nothing/here", "", 404, ""},
	} {
		hdr := map[string]string{}
		if tc.token != "" {
			hdr["Authorization"] = "Bearer " + tc.token
		}
		resp, b := do(t, noFollow, "GET", srv.URL+tc.path, hdr)
		if resp.StatusCode != tc.status || resp.Header.Get("X-Error-Code") != tc.code {
			t.Errorf("%s (token %q): %d %q, want %d %q", tc.path, tc.token, resp.StatusCode,
				resp.Header.Get("X-Error-Code"), tc.status, tc.code)
		}
		if tc.status >= 400 {
			var j struct{ Error string }
			if json.Unmarshal(b, &j) != nil || j.Error == "" || resp.Header.Get("X-Error-Message") != j.Error {
				t.Errorf("%s: error body %q, X-Error-Message %q", tc.path, b, resp.Header.Get("X-Error-Message"))
			}
		}
	}
	s.Ungate("acme/g")
	if resp, _ := do(t, noFollow, "GET", srv.URL+"/acme/g/resolve/main/g.bin", nil); resp.StatusCode != 302 {
		t.Errorf("after Ungate: %d", resp.StatusCode)
	}
}

func TestFailNext(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 3, 1, 12, 0, 0, 250e6, time.UTC))
	for _, tc := range []struct {
		cfg    Config
		status int
		wait   time.Duration
		header string
	}{
		{Config{}, 429, 7 * time.Second, "7"},
		{Config{}, 503, 1500 * time.Millisecond, "2"},
		{Config{}, 500, 0, ""},
		{Config{RetryAfterDate: true, Clock: mock}, 429, 7 * time.Second, "Sun, 01 Mar 2026 12:00:08 GMT"},
	} {
		s, srv, _, _ := newServer(t, tc.cfg)
		s.FailNext(2, tc.status, tc.wait)
		for i := range 3 {
			resp, _ := do(t, noFollow, "HEAD", srv.URL+"/acme/m/resolve/main/dir/m.bin", nil)
			want, header := tc.status, tc.header
			if i == 2 {
				want, header = 302, ""
			}
			if resp.StatusCode != want || resp.Header.Get("Retry-After") != header {
				t.Errorf("FailNext(2, %d, %v) request %d: %d Retry-After %q; want %d %q", tc.status, tc.wait, i,
					resp.StatusCode, resp.Header.Get("Retry-After"), want, header)
			}
		}
		if st := s.Stats(); st.Failed != 2 || st.ByStatus[tc.status] != 2 {
			t.Errorf("stats %+v", st)
		}
		if got := s.Requests()[0].RetryAfter; tc.header != "" && got%time.Second != 0 || got < tc.wait || got >= tc.wait+time.Second {
			t.Errorf("FailNext(2, %d, %v): the request log says Retry-After %v", tc.status, tc.wait, got)
		}
	}
}

func TestBreakNextCutsTheBody(t *testing.T) {
	s := New(Config{})
	f, err := s.AddGGUF("acme/big", "big.gguf", gguf.Spec{Architecture: "llama", PayloadBytes: 1 << 20, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	s.BreakNext(1, 1000)
	resp, err := http.Get(srv.URL + "/acme/big/resolve/main/big.gguf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 1000 {
		t.Fatalf("broken body: %d bytes, err %v; want 1000 bytes and an unexpected EOF", len(b), err)
	}
	resp, b = do(t, http.DefaultClient, "GET", srv.URL+"/acme/big/resolve/main/big.gguf", nil)
	sum := sha256.Sum256(b)
	if resp.StatusCode != 200 || int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
		t.Fatalf("the next GET: %d, %d bytes", resp.StatusCode, len(b))
	}
	if !bytes.Equal(b, gguf.Bytes(gguf.Spec{Architecture: "llama", PayloadBytes: 1 << 20, Seed: 3})) {
		t.Fatal("AddGGUF serves other bytes than gguf.Bytes(spec)")
	}
	if st := s.Stats(); st.Broken != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// CorruptNext flips the middle byte of the next bodies (of a range too), headers unchanged;
// IgnoreRangeNext answers ranged GETs with the whole file; both count down, and the request
// log names them, with the time each request arrived.
func TestCorruptNextAndIgnoreRangeNext(t *testing.T) {
	mock := clock.NewMock()
	s, srv, data, f := newServer(t, Config{Clock: mock})
	url := srv.URL + "/cdn/" + f.SHA256
	s.CorruptNext(2)
	resp, b := do(t, http.DefaultClient, "GET", url, nil)
	want := bytes.Clone(data)
	want[10] ^= 0xFF
	if resp.StatusCode != 200 || !bytes.Equal(b, want) || resp.Header.Get("ETag") != `"`+f.SHA256+`"` {
		t.Fatalf("corrupt body: %d %q, want %q with the true ETag", resp.StatusCode, b, want)
	}
	resp, b = do(t, http.DefaultClient, "GET", url, map[string]string{"Range": "bytes=4-7"})
	if resp.StatusCode != 206 || string(b) != "45"+string([]byte{'6' ^ 0xFF})+"7" {
		t.Fatalf("corrupt range: %d %q", resp.StatusCode, b)
	}
	if resp, b = do(t, http.DefaultClient, "GET", url, nil); !bytes.Equal(b, data) {
		t.Fatalf("CorruptNext(2) corrupted a third body: %d %q", resp.StatusCode, b)
	}
	s.IgnoreRangeNext(1)
	mock.Add(time.Minute)
	resp, b = do(t, http.DefaultClient, "GET", url, map[string]string{"Range": "bytes=5-"})
	if resp.StatusCode != 200 || !bytes.Equal(b, data) || resp.Header.Get("Content-Range") != "" {
		t.Fatalf("ignored range: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if resp, b = do(t, http.DefaultClient, "GET", url, map[string]string{"Range": "bytes=5-"}); resp.StatusCode != 206 || string(b) != string(data[5:]) {
		t.Fatalf("the next range: %d %q", resp.StatusCode, b)
	}
	reqs := s.Requests()
	if st := s.Stats(); st.Corrupted != 2 || st.RangesIgnored != 1 || reqs[0].Fault != "corrupt" || reqs[3].Fault != "ignore-range" ||
		reqs[4].Fault != "" || !reqs[0].At.Equal(mock.Now().Add(-time.Minute)) || !reqs[3].At.Equal(mock.Now()) {
		t.Fatalf("stats %+v, requests %+v", st, reqs)
	}
}

// HangNext leaves requests to /resolve/ unanswered until the client gives up; the next one is
// answered.
func TestHangNext(t *testing.T) {
	s, srv, _, _ := newServer(t, Config{})
	s.HangNext(1)
	c := &http.Client{Timeout: 200 * time.Millisecond, CheckRedirect: noFollow.CheckRedirect}
	start := time.Now()
	if resp, err := c.Head(srv.URL + "/acme/m/resolve/main/dir/m.bin"); err == nil {
		resp.Body.Close()
		t.Fatalf("a hung request was answered %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the hung request ended after %v", took)
	}
	if resp, _ := do(t, noFollow, "HEAD", srv.URL+"/acme/m/resolve/main/dir/m.bin", nil); resp.StatusCode != 302 {
		t.Fatalf("the next request: %d", resp.StatusCode)
	}
	if st, reqs := s.Stats(), s.Requests(); st.Hung != 1 || reqs[0].Fault != "hang" || reqs[0].Status != 0 {
		t.Fatalf("stats %+v, requests %+v", st, reqs)
	}
}

func TestAddGGUFRejectsABadSpec(t *testing.T) {
	if _, err := New(Config{}).AddGGUF("a/b", "c.gguf", gguf.Spec{PayloadBytes: 3}); err == nil {
		t.Fatal("a spec without an architecture was accepted")
	}
}

func TestBandwidthLimit(t *testing.T) {
	s := New(Config{BandwidthBytesPerSec: 200 << 10})
	data := make([]byte, 100<<10)
	s.AddFile("acme/m", "main", "m.bin", data)
	srv := httptest.NewServer(s)
	defer srv.Close()
	start := time.Now()
	resp, b := do(t, http.DefaultClient, "GET", srv.URL+"/acme/m/resolve/main/m.bin", nil)
	// A lower bound only: 100 KiB at 200 KiB/s cannot take less than half a second.
	if took := time.Since(start); resp.StatusCode != 200 || len(b) != len(data) || took < 450*time.Millisecond {
		t.Fatalf("%d, %d bytes in %v; want the file, in at least 0.5s", resp.StatusCode, len(b), took)
	}
}

// Faults and files change while many requests are served (run with -race).
func TestConcurrentUse(t *testing.T) {
	s, srv, data, _ := newServer(t, Config{NoRedirect: true})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				switch j % 4 {
				case 0:
					s.FailNext(1, 429, time.Second)
				case 1:
					s.BreakNext(1, 5)
				case 2:
					s.Gate("acme/x"+strconv.Itoa(i), "t")
					s.SetBandwidth(0)
				case 3:
					s.AddFile("acme/x"+strconv.Itoa(i), "main", fmt.Sprint(j), data)
				}
				resp, err := http.Get(srv.URL + "/acme/m/resolve/main/dir/m.bin")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				_ = s.Stats()
				_ = s.Requests()
			}
		}()
	}
	wg.Wait()
	if st := s.Stats(); st.Requests != 160 {
		t.Fatalf("stats %+v, want 160 requests", st)
	}
}

func TestRequestLogIsBounded(t *testing.T) {
	s, srv, _, _ := newServer(t, Config{LogMax: 5})
	for range 12 {
		do(t, noFollow, "HEAD", srv.URL+"/acme/m/resolve/main/dir/m.bin", nil)
	}
	if n := len(s.Requests()); n < 5 || n > 10 {
		t.Fatalf("%d requests kept with LogMax 5", n)
	}
	if st := s.Stats(); st.Requests != 12 {
		t.Fatalf("stats %+v", st)
	}
}
