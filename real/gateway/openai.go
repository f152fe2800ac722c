package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// The OpenAI-compatible endpoints: POST /v1/completions and POST /v1/chat/completions, in the
// shapes the OpenAI SDKs read. Fields the gateway cannot honour (temperature, top_p, stop,
// logprobs, user, ...) are accepted and ignored; n above 1 and batched prompts are refused.

// streamOptions is OpenAI's stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type completionBody struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Seed          *int64          `json:"seed"`
	N             *int            `json:"n"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

type chatBody struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Seed                *int64          `json:"seed"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Tools               json.RawMessage `json:"tools"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// The OpenAI response shapes.
type (
	// Completion is a text_completion (and, with Object "text_completion" in a stream, a
	// chunk of one).
	Completion struct {
		ID      string             `json:"id"`
		Object  string             `json:"object"`
		Created int64              `json:"created"`
		Model   string             `json:"model"`
		Choices []CompletionChoice `json:"choices"`
		Usage   *Usage             `json:"usage"`
	}
	// CompletionChoice is one choice of a Completion; FinishReason is null until the end.
	CompletionChoice struct {
		Index        int     `json:"index"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Logprobs     any     `json:"logprobs"`
	}
	// ChatCompletion is a chat.completion or a chat.completion.chunk.
	ChatCompletion struct {
		ID      string       `json:"id"`
		Object  string       `json:"object"`
		Created int64        `json:"created"`
		Model   string       `json:"model"`
		Choices []ChatChoice `json:"choices"`
		Usage   *Usage       `json:"usage"`
	}
	// ChatChoice has Message in a chat.completion and Delta in a chunk.
	ChatChoice struct {
		Index        int          `json:"index"`
		Message      *ChatMessage `json:"message,omitempty"`
		Delta        *ChatMessage `json:"delta,omitempty"`
		FinishReason *string      `json:"finish_reason"`
		Logprobs     any          `json:"logprobs"`
	}
	// ChatMessage is an assistant message or a delta of one.
	ChatMessage struct {
		Role    string `json:"role,omitempty"`
		Content string `json:"content"`
	}
)

const (
	completionExample = `{"model": "tinyllama", "prompt": "Hello", "max_tokens": 32}`
	chatExample       = `{"model": "tinyllama", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}`
)

// openAIRequest is what both endpoints have in common once their bodies are read.
type openAIRequest struct {
	model         string // as the client named it, echoed in the answers
	req           api.InferReq
	stream, usage bool
	chat          bool
}

// seedOf converts OpenAI's signed seed (absent: 0) to the core's.
func seedOf(seed *int64) uint64 {
	if seed == nil {
		return 0
	}
	return uint64(*seed)
}

func checkN(n *int, p *problems) {
	if n != nil && *n != 1 {
		p.add(fmt.Sprintf("n is %d: this server makes one choice per request (send n requests with different seeds instead)", *n))
	}
}

// handleCompletions is POST /v1/completions.
func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	var b completionBody
	if e := s.decodeBody(w, r, &b, false, completionExample); e != nil {
		e.write(w, true)
		return
	}
	var p problems
	model, msg := s.checkModel(b.Model)
	p.add(msg)
	prompt, msg := promptOf(b.Prompt)
	p.add(msg)
	maxTokens, msg := checkMaxTokens(b.MaxTokens, s.cfg.DefaultMaxTokens)
	p.add(msg)
	checkN(b.N, &p)
	if e := p.err(completionExample); e != nil {
		e.write(w, true)
		return
	}
	s.serveOpenAI(w, r, openAIRequest{
		model:  b.Model,
		req:    api.InferReq{Model: model, Prompt: prompt, MaxTokens: maxTokens, Seed: seedOf(b.Seed)},
		stream: b.Stream, usage: b.StreamOptions != nil && b.StreamOptions.IncludeUsage,
	})
}

// promptOf reads a completion prompt: a string, or an array of exactly one string.
func promptOf(raw json.RawMessage) (string, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", "prompt is missing: give the text to complete"
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if strings.TrimSpace(one) == "" {
			return "", "the prompt is empty: give the text to complete"
		}
		return one, ""
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", "prompt must be a string (token arrays are not supported)"
	}
	if len(many) != 1 {
		return "", fmt.Sprintf("prompt is an array of %d strings: this server completes one prompt per request (send one request per prompt)", len(many))
	}
	return promptOf(json.RawMessage(mustJSON(many[0])))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// handleChat is POST /v1/chat/completions.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var b chatBody
	if e := s.decodeBody(w, r, &b, false, chatExample); e != nil {
		e.write(w, true)
		return
	}
	var p problems
	model, msg := s.checkModel(b.Model)
	p.add(msg)
	prompt, msg := chatPrompt(b.Messages)
	p.add(msg)
	mt := b.MaxCompletionTokens
	if mt == nil {
		mt = b.MaxTokens
	}
	maxTokens, msg := checkMaxTokens(mt, s.cfg.DefaultMaxTokens)
	p.add(msg)
	checkN(b.N, &p)
	if len(b.Tools) > 0 && string(b.Tools) != "null" && string(b.Tools) != "[]" {
		p.add("tools are not supported by this server: send the request without tools")
	}
	if e := p.err(chatExample); e != nil {
		e.write(w, true)
		return
	}
	s.serveOpenAI(w, r, openAIRequest{
		model:  b.Model,
		req:    api.InferReq{Model: model, Prompt: prompt, MaxTokens: maxTokens, Seed: seedOf(b.Seed)},
		stream: b.Stream, usage: b.StreamOptions != nil && b.StreamOptions.IncludeUsage, chat: true,
	})
}

// The chat template's markers (ChatML).
const (
	imStart = "<|im_start|>"
	imEnd   = "<|im_end|>"
)

// chatPrompt turns chat messages into one prompt with the ChatML template:
//
//	<|im_start|>system
//	You are terse.<|im_end|>
//	<|im_start|>user
//	Hello<|im_end|>
//	<|im_start|>assistant
//
// Each message becomes "<|im_start|>ROLE\nCONTENT<|im_end|>\n" and the prompt ends with an open
// assistant turn. Roles are system (and developer, taken as system), user and assistant;
// content is a string or an array of text parts. A content that holds a template marker is
// refused, so that no message can forge another role's turn. The second result says what is
// wrong, or is empty.
func chatPrompt(msgs []chatMessage) (string, string) {
	if len(msgs) == 0 {
		return "", "messages is empty: send at least one message, e.g. {\"role\": \"user\", \"content\": \"Hello\"}"
	}
	var b strings.Builder
	for i, m := range msgs {
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		default:
			return "", fmt.Sprintf("messages[%d] has role %q: the roles supported are system, developer, user and assistant", i, m.Role)
		}
		text, msg := contentText(m.Content)
		if msg != "" {
			return "", fmt.Sprintf("messages[%d]: %s", i, msg)
		}
		if strings.Contains(text, imStart) || strings.Contains(text, imEnd) {
			return "", fmt.Sprintf("messages[%d] contains the chat template marker %s or %s, which would let it forge another role's turn: remove it", i, imStart, imEnd)
		}
		b.WriteString(imStart + role + "\n" + text + imEnd + "\n")
	}
	b.WriteString(imStart + "assistant\n")
	return b.String(), ""
}

// contentText reads a message's content: a string, null (empty), or an array of text parts.
func contentText(raw json.RawMessage) (string, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, ""
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", "content must be a string or an array of text parts"
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", fmt.Sprintf("content part %d is of type %q: only text parts are supported", j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), ""
}

// finishReasonOf is the OpenAI finish reason of an end: "stop", or "length" when the output
// was cut (max_tokens, or the generation's time cap: GENERATION_TIMEOUT keeps its tokens).
func finishReasonOf(d api.InferDone) *string {
	r := "stop"
	if d.FinishReason == api.FinishLength || d.FinishReason == api.FinishTimeout {
		r = "length"
	}
	return &r
}

// truncatedOK says whether an end counts as a (possibly cut) success for an OpenAI client.
func truncatedOK(d api.InferDone) bool {
	return d.Err.OK() || d.Err.Code == api.CodeGenerationTimeout
}

// serveOpenAI runs an OpenAI-compatible request and answers in its shape.
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request, o openAIRequest) {
	st, e := s.open(r.Context(), o.req)
	if e != nil {
		e.write(w, true)
		return
	}
	defer st.close()
	prefix, object := "cmpl-", "text_completion"
	if o.chat {
		prefix, object = "chatcmpl-", "chat.completion"
	}
	id, created := prefix+st.idString(), s.cfg.Now().Unix()
	if o.stream {
		s.streamOpenAI(w, r, st, o, id, created)
		return
	}
	var text strings.Builder
	for {
		m, err := st.next(r.Context())
		if err != nil {
			if d, ok := st.abandoned(err); ok {
				errorFor(d.Err).write(w, true)
			}
			return
		}
		switch m := m.(type) {
		case api.InferToken:
			text.WriteString(m.Text)
		case api.InferDone:
			if !truncatedOK(m) {
				he := errorFor(m.Err)
				he.err.Message = fmt.Sprintf("%s (%d tokens had been generated and are lost to a non-streaming request; use stream: true to keep partial output)", he.err.Message, m.Tokens)
				he.write(w, true)
				return
			}
			u := usageOf(o.req.Prompt, m.Tokens)
			if o.chat {
				writeJSON(w, http.StatusOK, ChatCompletion{ID: id, Object: object, Created: created, Model: o.model, Usage: &u,
					Choices: []ChatChoice{{Message: &ChatMessage{Role: "assistant", Content: text.String()}, FinishReason: finishReasonOf(m)}}})
				return
			}
			writeJSON(w, http.StatusOK, Completion{ID: id, Object: object, Created: created, Model: o.model, Usage: &u,
				Choices: []CompletionChoice{{Text: text.String(), FinishReason: finishReasonOf(m)}}})
			return
		}
	}
}

// streamOpenAI answers with "data: {chunk}" events and "data: [DONE]". A failure after the
// stream began is a "data: {"error": {...}}" event (which the OpenAI SDKs raise), then
// [DONE].
func (s *Server) streamOpenAI(w http.ResponseWriter, r *http.Request, st *stream, o openAIRequest, id string, created int64) {
	out := startSSE(w)
	chunk := func(text string, finish *string, first bool) any {
		if o.chat {
			delta := &ChatMessage{Content: text}
			if first {
				delta.Role = "assistant"
			}
			if finish != nil {
				delta = &ChatMessage{}
			}
			return ChatCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: o.model,
				Choices: []ChatChoice{{Delta: delta, FinishReason: finish}}}
		}
		return Completion{ID: id, Object: "text_completion", Created: created, Model: o.model,
			Choices: []CompletionChoice{{Text: text, FinishReason: finish}}}
	}
	if o.chat {
		out.event("", chunk("", nil, true))
	}
	for {
		m, err := st.next(r.Context())
		if err != nil {
			if d, ok := st.abandoned(err); ok {
				he := errorFor(d.Err)
				out.event("", errorBody(he.err, he.status, true))
				out.done()
			}
			return
		}
		switch m := m.(type) {
		case keepAlive:
			out.comment("keepalive")
		case api.InferToken:
			out.event("", chunk(m.Text, nil, false))
		case api.InferDone:
			if !truncatedOK(m) {
				he := errorFor(m.Err)
				out.event("", errorBody(he.err, he.status, true))
				out.done()
				return
			}
			out.event("", chunk("", finishReasonOf(m), false))
			if o.usage {
				u := usageOf(o.req.Prompt, m.Tokens)
				if o.chat {
					out.event("", ChatCompletion{ID: id, Object: "chat.completion.chunk", Created: created, Model: o.model,
						Choices: []ChatChoice{}, Usage: &u})
				} else {
					out.event("", Completion{ID: id, Object: "text_completion", Created: created, Model: o.model,
						Choices: []CompletionChoice{}, Usage: &u})
				}
			}
			out.done()
			return
		}
		if out.err != nil {
			st.cancel()
			return
		}
	}
}
