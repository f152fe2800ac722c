package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// sseMaxLine bounds one line of a server-sent-event stream.
const sseMaxLine = 8 << 20

// sseEvent is one event of a server-sent-event stream: its type ("" for the default
// "message"; "error" also for llama.cpp's non-standard "error: ..." lines) and its data.
type sseEvent struct {
	typ  string
	data string
}

// readSSE reads a server-sent-event stream and calls each for every event with data, until
// each returns true (done), the stream ends (nil) or reading fails (the error). It is lenient:
// comment lines (":..."), "id:" and "retry:" lines, lines without a field name and blank
// lines between events are skipped; an event is dispatched at a blank line, at the end of the
// stream, and (for servers that leave out the blank line) when a "data:" line follows data
// that is already a complete JSON value or "[DONE]".
func readSSE(body io.Reader, each func(sseEvent) bool) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), sseMaxLine)
	var typ string
	var data []string
	dispatch := func() bool {
		if len(data) == 0 {
			typ = ""
			return false
		}
		ev := sseEvent{typ: typ, data: strings.Join(data, "\n")}
		typ, data = "", data[:0]
		return each(ev)
	}
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if dispatch() {
				return nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment (keep-alive)
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			if len(data) > 0 && complete(strings.Join(data, "\n")) && dispatch() {
				return nil
			}
			data = append(data, value)
		case "error": // llama.cpp's "error: {...}" line
			if dispatch() {
				return nil
			}
			typ, data = "error", append(data, value)
			if dispatch() {
				return nil
			}
		case "event":
			typ = value
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	dispatch()
	return nil
}

// complete reports whether an event's data is already whole: "[DONE]" or a JSON value.
func complete(s string) bool {
	s = strings.TrimSpace(s)
	return s == "[DONE]" || json.Valid([]byte(s))
}

// errorText is a server's account of an error from a JSON error value, as the engines' servers
// write it: an object {"message","type","code"} (llama.cpp, OpenAI, vLLM, Ollama) or a plain
// string. It returns "" when raw holds no error.
func errorText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return "(an empty error)"
		}
		return s
	}
	var o struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(raw, &o) != nil || (o.Message == "" && o.Type == "") {
		return clip(string(raw), 300)
	}
	var parts []string
	if o.Message != "" {
		parts = append(parts, o.Message)
	}
	var extra []string
	if o.Type != "" {
		extra = append(extra, "type "+o.Type)
	}
	if c := strings.Trim(string(bytes.TrimSpace(o.Code)), `"`); c != "" && c != "null" {
		extra = append(extra, "code "+c)
	}
	if len(extra) > 0 {
		parts = append(parts, "("+strings.Join(extra, ", ")+")")
	}
	return strings.Join(parts, " ")
}

// bodyText is what a non-2xx answer says: its error value if it has one, else its text.
func bodyText(body []byte) string {
	var o struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &o) == nil {
		if t := errorText(o.Error); t != "" {
			return t
		}
		if o.Message != "" {
			return o.Message
		}
		if t := errorText(o.Detail); t != "" {
			return t
		}
	}
	t := strings.TrimSpace(string(body))
	if t == "" {
		return "(no body)"
	}
	return clip(t, 300)
}

// clip shortens s to at most n bytes for a message, saying so.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}
