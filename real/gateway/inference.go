package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// inferBody is the body of POST /v1/inference.
type inferBody struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	MaxTokens *int   `json:"max_tokens"`
	Seed      uint64 `json:"seed"`
	TimeoutMS int64  `json:"timeout_ms"`
	MaxTimeMS int64  `json:"max_time_ms"`
}

const inferExample = `{"model": "hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", "prompt": "Hello", "max_tokens": 32}`

// Usage counts a completion's tokens. Prompt tokens are counted as the worker counts them:
// whitespace-separated words, at least 1.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(prompt string, completion int) Usage {
	p := max(1, len(strings.Fields(prompt)))
	return Usage{PromptTokens: p, CompletionTokens: completion, TotalTokens: p + completion}
}

// The events of POST /v1/inference.
type (
	// AcceptedEvent is the data of "event: accepted".
	AcceptedEvent struct {
		RequestID string    `json:"request_id"`
		Worker    node.Addr `json:"worker,omitempty"`
	}
	// TokenEvent is the data of "event: token".
	TokenEvent struct {
		Index int    `json:"index"`
		Text  string `json:"text"`
	}
	// DoneEvent is the data of "event: done", the last event of a stream.
	DoneEvent struct {
		RequestID    string           `json:"request_id"`
		FinishReason api.FinishReason `json:"finish_reason"`
		Usage        Usage            `json:"usage"`
		Worker       node.Addr        `json:"worker,omitempty"`
		Error        *api.Error       `json:"error,omitempty"`
	}
)

// checkModel validates a model name given by a client and resolves it.
func (s *Server) checkModel(name string) (string, string) {
	switch {
	case name == "":
		return "", "no model is given: name the model to run (its catalog ID, or an alias from GET /v1/models)"
	case hasSpaceOrControl(name):
		return "", fmt.Sprintf("model %q contains whitespace or a control character", name)
	}
	return s.resolve(name), ""
}

// checkMaxTokens validates max_tokens; nil takes def.
func checkMaxTokens(n *int, def int) (int, string) {
	if n == nil {
		if def > 0 {
			return def, ""
		}
		return 0, "max_tokens is missing: ask for at least 1 token"
	}
	if *n < 1 || *n > MaxTokensLimit {
		return 0, fmt.Sprintf("max_tokens is %d: ask for 1 to %d tokens", *n, MaxTokensLimit)
	}
	return *n, ""
}

// problems collects what is wrong with a body, to refuse it with one 400 that lists them all.
type problems []string

func (p *problems) add(msg string) {
	if msg != "" {
		*p = append(*p, msg)
	}
}

func (p problems) err(example string) *httpError {
	if len(p) == 0 {
		return nil
	}
	e := invalid("fix the fields named and send it again, e.g. "+example, "the request is not valid: %s", strings.Join(p, "; "))
	return &e
}

func msDuration(name string, ms int64, p *problems) time.Duration {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case ms < 0:
		p.add(fmt.Sprintf("%s is %d: use a positive number of milliseconds, or 0 for none", name, ms))
	case d > maxDuration:
		p.add(fmt.Sprintf("%s is %d: at most %d (a day)", name, ms, maxDuration.Milliseconds()))
	}
	return d
}

// handleInference is POST /v1/inference: the native streaming endpoint.
func (s *Server) handleInference(w http.ResponseWriter, r *http.Request) {
	var b inferBody
	if e := s.decodeBody(w, r, &b, true, inferExample); e != nil {
		e.write(w, false)
		return
	}
	var p problems
	model, msg := s.checkModel(b.Model)
	p.add(msg)
	if strings.TrimSpace(b.Prompt) == "" {
		p.add("the prompt is empty: give the text to complete")
	}
	maxTokens, msg := checkMaxTokens(b.MaxTokens, 0)
	p.add(msg)
	timeout := msDuration("timeout_ms", b.TimeoutMS, &p)
	maxTime := msDuration("max_time_ms", b.MaxTimeMS, &p)
	if e := p.err(inferExample); e != nil {
		e.write(w, false)
		return
	}
	req := api.InferReq{Model: model, Prompt: b.Prompt, MaxTokens: maxTokens, Seed: b.Seed, Timeout: timeout, MaxTime: maxTime}
	st, e := s.open(r.Context(), req)
	if e != nil {
		e.write(w, false)
		return
	}
	defer st.close()
	out := startSSE(w)
	out.event("accepted", AcceptedEvent{RequestID: st.idString(), Worker: st.accepted.Worker})
	for {
		m, err := st.next(r.Context())
		if err != nil {
			if d, ok := st.abandoned(err); ok {
				out.event("done", st.doneEvent(d))
			}
			return
		}
		switch m := m.(type) {
		case keepAlive:
			out.comment("keepalive")
		case api.InferToken:
			out.event("token", TokenEvent{Index: m.Index, Text: m.Text})
		case api.InferDone:
			out.event("done", st.doneEvent(m))
			return
		}
		if out.err != nil { // the client is gone: the next call to next sees its context end
			st.cancel()
			return
		}
	}
}

// handleCancel is DELETE /v1/inference/{id}: InferCancel to the queen; 204 once the queen
// confirms, also for an unknown or finished request.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := parseRequestID(raw)
	if err != nil {
		invalid("use the request_id of the accepted event (or the id of an OpenAI-compatible response)",
			"%q is not a request id: %v", raw, err).write(w, false)
		return
	}
	s.mu.Lock()
	if s.send == nil || s.isDown {
		s.mu.Unlock()
		s.errUnavailable("the cancel", 0).write(w, false)
		return
	}
	c := make(chan string, 1)
	s.cancels[id] = append(s.cancels[id], c)
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		list := s.cancels[id]
		for i, x := range list {
			if x == c {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(s.cancels, id)
		} else {
			s.cancels[id] = list
		}
	}
	s.toQueen(api.InferCancel{ReqID: id})
	t := time.NewTimer(s.cfg.QueenTimeout)
	defer t.Stop()
	select {
	case <-c:
		w.WriteHeader(http.StatusNoContent)
	case <-t.C:
		forget()
		s.errUnavailable("the cancel of request "+raw, s.cfg.QueenTimeout).write(w, false)
	case <-r.Context().Done():
		forget()
	case <-s.closed:
		forget()
		s.errUnavailable("the cancel", 0).write(w, false)
	}
}

// parseRequestID reads a request id: the decimal ReqID, optionally with the prefix of an
// OpenAI-compatible id ("cmpl-", "chatcmpl-").
func parseRequestID(s string) (uint64, error) {
	for _, p := range []string{"chatcmpl-", "cmpl-"} {
		s = strings.TrimPrefix(s, p)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("want a decimal number")
	}
	if id == 0 {
		return 0, errors.New("0 is never a request id")
	}
	return id, nil
}

// stream is one inference request the queen accepted, as a handler follows it.
type stream struct {
	s         *Server
	id        uint64
	box       *inbox
	req       api.InferReq
	accepted  api.InferAccepted
	lastHeard time.Time
	ended     bool
}

// keepAlive is what next returns when the stream was quiet for KeepAlive.
type keepAlive struct{}

func (keepAlive) MsgName() string { return "gateway.keepalive" }

var (
	errStalled = errors.New("stalled")
	errClosed  = errors.New("closed")
)

// open sends the request to the queen and waits for its first answer: the acceptance, or a
// refusal (an InferDone before any acceptance) or no answer in QueenTimeout, which come back
// as errors to answer with.
func (s *Server) open(ctx context.Context, req api.InferReq) (*stream, *httpError) {
	id, box, err := s.register()
	if err != nil {
		e := s.errUnavailable("the request", 0)
		e.err.Message = "the gateway is not connected to the queen (shutting down or not started)"
		return nil, &e
	}
	req.ReqID = id
	st := &stream{s: s, id: id, box: box, req: req}
	m, err := s.ask(ctx, id, box, req, s.cfg.QueenTimeout)
	if err != nil {
		st.cancel()
		s.unregister(id)
		e := s.errUnavailable("the inference request", s.cfg.QueenTimeout)
		if errors.Is(err, errQueenGone) {
			e.err.Message = "the gateway is shutting down"
		}
		return nil, &e
	}
	switch m := m.(type) {
	case api.InferAccepted:
		st.accepted = m
	case api.InferDone:
		if !m.Err.OK() {
			s.unregister(id)
			e := errorFor(m.Err)
			return nil, &e
		}
		box.unshift(m) // an end without an acceptance or an error: an empty completion
	default: // a token: the acceptance was lost, the token says it all the same
		box.unshift(m)
	}
	st.lastHeard = time.Now()
	s.log.Info("gateway: inference accepted", "req_id", id, "model", req.Model, "worker", st.accepted.Worker)
	return st, nil
}

func (st *stream) idString() string { return strconv.FormatUint(st.id, 10) }

// next returns the next token or the done, keepAlive after KeepAlive of quiet, or an error:
// the client went away (its context), the queen went silent for StreamStallTimeout
// (errStalled), or the gateway closed (errClosed).
func (st *stream) next(ctx context.Context) (node.Msg, error) {
	cfg := st.s.cfg
	for {
		if m, ok := st.box.pop(); ok {
			st.lastHeard = time.Now()
			switch m := m.(type) {
			case api.InferAccepted: // a repeat, for a resend
				continue
			case api.RegistryResp:
				continue
			case api.InferDone:
				st.ended = true
				return m, nil
			default:
				return m, nil
			}
		}
		quiet := time.Since(st.lastHeard)
		if quiet >= cfg.StreamStallTimeout {
			return nil, errStalled
		}
		t := time.NewTimer(min(cfg.KeepAlive, cfg.StreamStallTimeout-quiet))
		select {
		case <-st.box.sig:
			t.Stop()
		case <-t.C:
			if time.Since(st.lastHeard) < cfg.StreamStallTimeout {
				return keepAlive{}, nil
			}
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-st.s.closed:
			t.Stop()
			return nil, errClosed
		}
	}
}

// cancel tells the queen to stop the request: its client is gone or the stream is abandoned.
func (st *stream) cancel() {
	if !st.ended {
		st.ended = true
		st.s.toQueen(api.InferCancel{ReqID: st.id})
	}
}

// close forgets the request; answers for it that come later are dropped.
func (st *stream) close() {
	st.cancel()
	st.s.unregister(st.id)
}

// abandoned handles a stream that ended without its done: the queen is told to stop, and,
// when the client is still there to read it, the done to send it comes back with ok.
func (st *stream) abandoned(err error) (api.InferDone, bool) {
	st.cancel()
	switch {
	case errors.Is(err, errStalled):
		st.s.log.Warn("gateway: the queen went silent on a stream; ending it", "req_id", st.id,
			"silent_for", st.s.cfg.StreamStallTimeout)
		return api.InferDone{ReqID: st.id, FinishReason: api.FinishError, Err: api.Errorf(CodeQueenUnavailable,
			"the tokens received stand; retry the request, and check the queen-rbee process if this repeats",
			"the queen sent nothing for this request for %v; it has probably restarted and lost the request",
			st.s.cfg.StreamStallTimeout)}, true
	case errors.Is(err, errClosed):
		return api.InferDone{ReqID: st.id, FinishReason: api.FinishError, Err: api.Errorf(CodeQueenUnavailable,
			"the tokens received stand; retry the request once the queen is back", "the gateway is shutting down")}, true
	}
	st.s.log.Info("gateway: the client went away; cancelling its request at the queen", "req_id", st.id)
	return api.InferDone{}, false
}

// doneEvent is the data of the final event.
func (st *stream) doneEvent(d api.InferDone) DoneEvent {
	ev := DoneEvent{RequestID: st.idString(), FinishReason: d.FinishReason, Usage: usageOf(st.req.Prompt, d.Tokens), Worker: d.Worker}
	if !d.Err.OK() {
		e := d.Err
		ev.Error = &e
	}
	return ev
}
