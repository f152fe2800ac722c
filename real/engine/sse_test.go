package engine

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadSSE(t *testing.T) {
	cases := []struct {
		name, in string
		want     []sseEvent
	}{
		{"plain", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []sseEvent{{"", `{"a":1}`}, {"", "[DONE]"}}},
		{"crlf and no space", "data:{\"a\":1}\r\n\r\n", []sseEvent{{"", `{"a":1}`}}},
		{"comments, ids, retries, junk", ": hi\nid: 1\nretry: 5\njunk line\n\ndata: x\n\n", []sseEvent{{"", "x"}}},
		{"multi-line data", "data: {\"a\":\ndata: 1}\n\n", []sseEvent{{"", "{\"a\":\n1}"}}},
		{"no blank lines", "data: {\"a\":1}\ndata: {\"a\":2}\ndata: [DONE]\n", []sseEvent{{"", `{"a":1}`}, {"", `{"a":2}`}, {"", "[DONE]"}}},
		{"event type", "event: error\ndata: {\"m\":1}\n\ndata: 2\n\n", []sseEvent{{"error", `{"m":1}`}, {"", "2"}}},
		{"error field", "data: 1\nerror: {\"m\":1}\ndata: 2\n", []sseEvent{{"", "1"}, {"error", `{"m":1}`}, {"", "2"}}},
		{"event without data", "event: ping\n\ndata: 1\n\n", []sseEvent{{"", "1"}}},
		{"no newline at the end", "data: 1", []sseEvent{{"", "1"}}},
		{"empty", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []sseEvent
			err := readSSE(strings.NewReader(c.in), func(ev sseEvent) bool { got = append(got, ev); return false })
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
	var n int
	err := readSSE(strings.NewReader("data: 1\n\ndata: 2\n\ndata: 3\n\n"), func(sseEvent) bool { n++; return n == 2 })
	if err != nil || n != 2 {
		t.Errorf("stop after the second event: %d events, %v", n, err)
	}
	boom := errors.New("connection reset")
	err = readSSE(io.MultiReader(strings.NewReader("data: 1\n\n"), iotest.ErrReader(boom)), func(sseEvent) bool { return false })
	if !errors.Is(err, boom) {
		t.Errorf("a failing reader gave %v, want %v", err, boom)
	}
}

func TestErrorText(t *testing.T) {
	cases := map[string]string{
		``:              "",
		`null`:          "",
		`"plain words"`: "plain words",
		`{"code":500,"message":"boom","type":"server_error"}`: "boom (type server_error, code 500)",
		`{"message":"m"}`:            "m",
		`{"other":1}`:                `{"other":1}`,
		`{"type":"x"}`:               " (type x)",
		`{"code":"E","message":"m"}`: "m (code E)",
	}
	for in, want := range cases {
		if got := errorText(json.RawMessage(in)); strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("errorText(%s) = %q, want %q", in, got, want)
		}
	}
	if got := bodyText([]byte(`{"detail":"Not Found"}`)); got != "Not Found" {
		t.Errorf("bodyText of FastAPI's detail: %q", got)
	}
	if got := bodyText(nil); got != "(no body)" {
		t.Errorf("bodyText of nothing: %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{"": 0, "7": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format("Mon, 02 Jan 2006 15:04:05 GMT"): 90 * time.Second} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
