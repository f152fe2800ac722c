package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// sseWriter writes a text/event-stream response, flushing after every event so that each
// token reaches the client as it comes. The first write error sticks: later writes do nothing.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

// startSSE sends the 200 and the headers of an event stream.
func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.flush()
	return s
}

// event writes "event: name" and one data line with v as JSON; an empty name writes only the
// data line (the OpenAI form).
func (s *sseWriter) event(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gateway: cannot encode the %q event: %v", name, err))
	}
	var buf bytes.Buffer
	if name != "" {
		buf.WriteString("event: " + name + "\n")
	}
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	return s.write(buf.Bytes())
}

// done writes the OpenAI end of stream, "data: [DONE]".
func (s *sseWriter) done() error { return s.write([]byte("data: [DONE]\n\n")) }

// comment writes an SSE comment: a keepalive that every client ignores.
func (s *sseWriter) comment(text string) error { return s.write([]byte(": " + text + "\n\n")) }

func (s *sseWriter) write(b []byte) error {
	if s.err != nil {
		return s.err
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	s.flush()
	return s.err
}

func (s *sseWriter) flush() {
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
	}
}

// sseEvent is one server-sent event: its type ("message" when the stream named none) and its
// data lines joined by "\n".
type sseEvent struct {
	Event string
	Data  string
}

// sseReader reads server-sent events (the WHATWG rules: "event:" and "data:" fields, one
// optional space after the colon, comments starting with ':', an event ends at a blank line).
type sseReader struct {
	r *bufio.Reader
}

// maxSSELine bounds one line of a stream: a token or a done event is far smaller.
const maxSSELine = 1 << 20

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReaderSize(r, 64<<10)} }

// next returns the next event with data; io.EOF when the stream ended cleanly between events,
// io.ErrUnexpectedEOF when it ended inside one.
func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && seen {
				return sseEvent{}, io.ErrUnexpectedEOF
			}
			return sseEvent{}, err
		}
		if line == "" {
			if len(data) == 0 {
				ev, seen = sseEvent{}, false
				continue
			}
			if ev.Event == "" {
				ev.Event = "message"
			}
			ev.Data = strings.Join(data, "\n")
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		}
	}
}

// readLine reads one line without its end ("\n", "\r\n" or a lone "\r" before "\n").
func (r *sseReader) readLine() (string, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := r.r.ReadLine()
		if err != nil {
			return "", err
		}
		buf = append(buf, chunk...)
		if len(buf) > maxSSELine {
			return "", fmt.Errorf("an event stream line is longer than %d bytes", maxSSELine)
		}
		if !isPrefix {
			return string(buf), nil
		}
	}
}
