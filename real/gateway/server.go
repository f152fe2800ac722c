package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
)

// ServerConfig configures the queen's public HTTP API.
type ServerConfig struct {
	// Queen is the address of the queen node in the same Runtime. Required.
	Queen node.Addr
	// Policy authenticates every request (auth.Policy.Middleware); it must pass Validate.
	Policy auth.Policy
	// Aliases maps model names clients may use (for example "tinyllama") to catalog IDs
	// ("hf:TheBloke/TinyLlama-GGUF/tiny.gguf"). A name that is no alias is taken as a catalog
	// ID. May be nil.
	Aliases map[string]string
	// QueenTimeout is how long a request waits for the queen's first answer (its acceptance or
	// refusal, a registry listing, a cancel's confirmation) before the gateway answers 503
	// QUEEN_UNAVAILABLE. Default 5s.
	QueenTimeout time.Duration
	// HealthTimeout is how long GET /health waits for the queen. Default 1s.
	HealthTimeout time.Duration
	// ResendInterval is how often an unanswered request is sent to the queen again under the
	// same ReqID (the queen runs it once): it covers a queen that is restarting. Default 500ms.
	ResendInterval time.Duration
	// KeepAlive is the interval of the SSE comments sent while a stream has nothing else to
	// say, so that proxies do not close an idle connection. Default 15s.
	KeepAlive time.Duration
	// StreamStallTimeout ends a stream (error QUEEN_UNAVAILABLE) after the queen sent nothing
	// for it this long: the queen guarantees an end, so such silence means it is gone. It must
	// exceed the queen's own stall timeout times its failovers and a worker's queueing. Default
	// 2m.
	StreamStallTimeout time.Duration
	// DefaultMaxTokens is the max_tokens of an OpenAI-compatible request that gives none.
	// Default 256.
	DefaultMaxTokens int
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// Logger receives the gateway's logs. Nil means discard.
	Logger *slog.Logger
	// Now is the clock of the "created" fields. Nil means time.Now.
	Now func() time.Time
}

// Limits of a request.
const (
	// MaxTokensLimit bounds max_tokens.
	MaxTokensLimit = 1 << 20
	// maxDuration bounds timeout_ms and max_time_ms: one day.
	maxDuration = 24 * time.Hour
)

func (c ServerConfig) withDefaults() ServerConfig {
	if c.QueenTimeout == 0 {
		c.QueenTimeout = 5 * time.Second
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = time.Second
	}
	if c.ResendInterval == 0 {
		c.ResendInterval = 500 * time.Millisecond
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.StreamStallTimeout == 0 {
		c.StreamStallTimeout = 2 * time.Minute
	}
	if c.DefaultMaxTokens == 0 {
		c.DefaultMaxTokens = 256
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate lists every problem with the config.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.Queen == "" {
		errs = append(errs, errors.New("Queen is empty: set it to the queen node's address in the Runtime"))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"QueenTimeout", c.QueenTimeout}, {"HealthTimeout", c.HealthTimeout}, {"ResendInterval", c.ResendInterval},
		{"KeepAlive", c.KeepAlive}, {"StreamStallTimeout", c.StreamStallTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %v; use a positive duration, or 0 for the default", d.name, d.v))
		}
	}
	if c.DefaultMaxTokens < 0 || c.DefaultMaxTokens > MaxTokensLimit {
		errs = append(errs, fmt.Errorf("DefaultMaxTokens is %d, want 1 to %d (0: the default)", c.DefaultMaxTokens, MaxTokensLimit))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBodyBytes is %d; use a positive size, or 0 for the default", c.MaxBodyBytes))
	}
	for _, alias := range sortedKeys(c.Aliases) {
		target := c.Aliases[alias]
		if alias == "" || target == "" || hasSpaceOrControl(alias) || hasSpaceOrControl(target) {
			errs = append(errs, fmt.Errorf("alias %q -> %q: both must be non-empty, without whitespace or control characters", alias, target))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("gateway: invalid server config: %w", errors.Join(errs...))
	}
	return nil
}

// Server is the queen's public HTTP API. It is an http.Handler, and one real.Port (Port) at its
// own address in the queen's Runtime, through which it talks to the queen node.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	handler http.Handler

	mu      sync.Mutex
	send    real.Send
	boxes   map[uint64]*inbox        // requests waiting for the queen, by the gateway's ReqID
	cancels map[uint64][]chan string // DELETE calls waiting for InferCancelResp, by ReqID
	closed  chan struct{}
	isDown  bool
}

// NewServer returns the gateway for cfg. Register it in the queen's Runtime with
// rt.AddPort(addr, s.Port) and serve s (or s.Handler()) with an http.Server.
//
// The http.Server must not set WriteTimeout (it would cut long streams); ReadHeaderTimeout and
// IdleTimeout are fine.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg.withDefaults(),
		boxes:   map[uint64]*inbox{},
		cancels: map[uint64][]chan string{},
		closed:  make(chan struct{}),
	}
	s.log = s.cfg.Logger
	s.handler = s.routes()
	return s, nil
}

// Port is the constructor for Runtime.AddPort: the gateway's end of the queen's message
// protocol. Call it once.
func (s *Server) Port(send real.Send) real.Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.send != nil {
		panic("gateway: Server.Port called twice; one Server is one port")
	}
	s.send = send
	return serverPort{s}
}

// Handler returns the HTTP handler of every endpoint, authentication included.
func (s *Server) Handler() http.Handler { return s.handler }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// serverPort is the Server as a real.Port.
type serverPort struct{ s *Server }

// Deliver hands an answer of the queen to the HTTP handler waiting for its ReqID. An answer
// nobody waits for (its client went away, or it came after a timeout) is dropped.
func (p serverPort) Deliver(from node.Addr, m node.Msg) {
	s := p.s
	if from != s.cfg.Queen {
		s.log.Warn("gateway: dropping a message that does not come from the queen", "from", from, "msg", m.MsgName())
		return
	}
	var id uint64
	switch m := m.(type) {
	case api.InferAccepted:
		id = m.ReqID
	case api.InferToken:
		id = m.ReqID
	case api.InferDone:
		id = m.ReqID
	case api.RegistryResp:
		id = m.ReqID
	case api.InferCancelResp:
		s.mu.Lock()
		waiters := s.cancels[m.ReqID]
		delete(s.cancels, m.ReqID)
		s.mu.Unlock()
		for _, c := range waiters {
			c <- m.Err.Message
		}
		return
	default:
		s.log.Debug("gateway: ignoring a message it has no use for", "msg", m.MsgName())
		return
	}
	s.mu.Lock()
	box := s.boxes[id]
	s.mu.Unlock()
	if box == nil {
		s.log.Debug("gateway: dropping an answer nobody waits for", "req_id", id, "msg", m.MsgName())
		return
	}
	box.push(m)
}

// Close ends every stream in progress (their clients get a done event with
// QUEEN_UNAVAILABLE) and makes new requests fail with 503.
func (p serverPort) Close() error {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isDown {
		s.isDown = true
		close(s.closed)
	}
	return nil
}

// inbox is one request's queue of the queen's answers: push never blocks (Deliver runs on
// the queen's goroutine), and sig wakes the handler.
type inbox struct {
	mu  sync.Mutex
	q   []node.Msg
	sig chan struct{}
}

func (b *inbox) push(m node.Msg) {
	b.mu.Lock()
	b.q = append(b.q, m)
	b.mu.Unlock()
	select {
	case b.sig <- struct{}{}:
	default:
	}
}

// unshift puts m back at the front of the queue.
func (b *inbox) unshift(m node.Msg) {
	b.mu.Lock()
	b.q = append([]node.Msg{m}, b.q...)
	b.mu.Unlock()
}

func (b *inbox) pop() (node.Msg, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) == 0 {
		return nil, false
	}
	m := b.q[0]
	b.q[0] = nil
	b.q = b.q[1:]
	return m, true
}

// errQueenGone is what a request gets when the gateway has no queen to talk to.
var errQueenGone = errors.New("the gateway is not connected to the queen")

// register allocates a ReqID and its inbox. ReqIDs are 64 random bits (crypto/rand), never 0
// and never one in use: a restarted gateway does not reuse the IDs the queen still remembers
// from its previous life, and clients cannot guess each other's IDs.
func (s *Server) register() (uint64, *inbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.send == nil || s.isDown {
		return 0, nil, errQueenGone
	}
	var b [8]byte
	for {
		rand.Read(b[:])
		id := binary.LittleEndian.Uint64(b[:])
		if _, used := s.boxes[id]; id != 0 && !used {
			box := &inbox{sig: make(chan struct{}, 1)}
			s.boxes[id] = box
			return id, box, nil
		}
	}
}

func (s *Server) unregister(id uint64) {
	s.mu.Lock()
	delete(s.boxes, id)
	s.mu.Unlock()
}

// toQueen sends m to the queen node.
func (s *Server) toQueen(m node.Msg) {
	s.mu.Lock()
	send := s.send
	s.mu.Unlock()
	if send != nil {
		send(s.cfg.Queen, m)
	}
}

// errUnavailable is the 503 QUEEN_UNAVAILABLE of a queen that did not answer in time.
func (s *Server) errUnavailable(what string, waited time.Duration) httpError {
	return errorFor(api.Errorf(CodeQueenUnavailable,
		"retry in a few seconds; if it persists, check the queen-rbee process and its logs",
		"the queen did not answer %s within %v: it is down, restarting or overloaded", what, waited))
}

// ask sends a request to the queen (again every ResendInterval under the same ReqID) and
// waits for its first answer for up to timeout.
func (s *Server) ask(ctx context.Context, id uint64, box *inbox, m node.Msg, timeout time.Duration) (node.Msg, error) {
	s.toQueen(m)
	resend := time.NewTicker(s.cfg.ResendInterval)
	defer resend.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got, ok := box.pop(); ok {
			return got, nil
		}
		select {
		case <-box.sig:
		case <-resend.C:
			s.toQueen(m)
		case <-deadline.C:
			return nil, errTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, errQueenGone
		}
	}
}

var errTimeout = errors.New("timeout")

// list asks the queen for its registry records (filtered when model or capability is set).
func (s *Server) list(ctx context.Context, model, capability string, timeout time.Duration) (api.RegistryResp, error) {
	id, box, err := s.register()
	if err != nil {
		return api.RegistryResp{}, err
	}
	defer s.unregister(id)
	for {
		m, err := s.ask(ctx, id, box, api.ListReq{ReqID: id, Model: model, Capability: capability}, timeout)
		if err != nil {
			return api.RegistryResp{}, err
		}
		if r, ok := m.(api.RegistryResp); ok {
			return r, nil
		}
	}
}

// routes builds the endpoints. Every one is behind the auth policy; the OpenAI-compatible
// ones answer a refused key in their own error shape (with "type").
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	plain := func(h http.HandlerFunc) http.Handler { return s.cfg.Policy.Middleware(h) }
	openAI := func(h http.HandlerFunc) http.Handler { return s.openAIAuth(h) }
	mux.Handle("POST /v1/inference", plain(s.handleInference))
	mux.Handle("DELETE /v1/inference/{id}", plain(s.handleCancel))
	mux.Handle("GET /v1/workers", plain(s.handleWorkers))
	mux.Handle("GET /v1/models", plain(s.handleModels))
	mux.Handle("GET /health", plain(s.handleHealth))
	mux.Handle("POST /v1/completions", openAI(s.handleCompletions))
	mux.Handle("POST /v1/chat/completions", openAI(s.handleChat))
	allowed := map[string]string{
		"/v1/inference":        "POST",
		"/v1/inference/{id}":   "DELETE",
		"/v1/workers":          "GET",
		"/v1/models":           "GET",
		"/health":              "GET",
		"/v1/completions":      "POST",
		"/v1/chat/completions": "POST",
	}
	for _, path := range sortedKeys(allowed) {
		method := allowed[path]
		mux.Handle(path, plain(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			errorFor(api.Errorf(CodeMethodNotAllowed, "use "+method+" "+r.URL.Path,
				"%s %s is not an endpoint of this API", r.Method, r.URL.Path)).write(w, strings.Contains(path, "completions"))
		}))
	}
	mux.Handle("/", plain(func(w http.ResponseWriter, r *http.Request) {
		errorFor(api.Errorf(CodeNotFound,
			"the endpoints are POST /v1/inference, DELETE /v1/inference/{id}, GET /v1/workers, GET /v1/models, GET /health, POST /v1/completions and POST /v1/chat/completions",
			"there is no endpoint at %s", r.URL.Path)).write(w, false)
	}))
	return mux
}

// openAIAuth is Policy.Middleware for the OpenAI-compatible endpoints: the same check, with
// the refusal in their error shape.
func (s *Server) openAIAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.cfg.Policy.Check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rbee"`)
			errorFor(api.Error{Code: auth.CodeUnauthorized, Message: err.Error(),
				Suggestion: "send the cluster's API key as Authorization: Bearer <key> (for OpenAI clients: api_key=<key>)"}).write(w, true)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// decodeBody reads a JSON body into v; strict refuses unknown fields (the native API), the
// OpenAI-compatible endpoints ignore them (their SDKs send many).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, strict bool, example string) *httpError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		e := invalid("send the body as JSON with Content-Type: application/json", "the body's Content-Type is %q, not application/json", ct)
		e.status = http.StatusUnsupportedMediaType
		return &e
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("the body holds more than one JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		e := invalid("send a smaller prompt", "the body is larger than %d bytes", s.cfg.MaxBodyBytes)
		e.status = http.StatusRequestEntityTooLarge
		return &e
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the body is empty")
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		err = fmt.Errorf("field %s must be %s, not a JSON %s", typeErr.Field, kindOf(typeErr.Type.Kind()), typeErr.Value)
	}
	e := invalid("send a JSON object such as "+example, "the request body is not valid: %s", strings.TrimPrefix(err.Error(), "json: "))
	return &e
}

// kindOf names what a JSON value must be to fit a Go kind, for error messages.
func kindOf(k reflect.Kind) string {
	switch k {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// resolve maps a model name to its catalog ID through the aliases.
func (s *Server) resolve(name string) string {
	if id, ok := s.cfg.Aliases[name]; ok {
		return id
	}
	return name
}

// writeJSON answers 200 with v.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
