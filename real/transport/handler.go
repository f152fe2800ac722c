package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// CodeUnknownMessage is the error code of a batch refused because one of its envelopes names
// a message this process does not know (the sender runs a newer version).
const CodeUnknownMessage api.Code = "UNKNOWN_MESSAGE"

// batchIn is a batch as the receiver reads it.
type batchIn struct {
	FromURL   string              `json:"from_url"`
	FromBoot  int64               `json:"from_boot"`
	Routes    map[node.Addr]Route `json:"routes"`
	Envelopes []wire.Envelope     `json:"envelopes"`
}

// batchReply answers an accepted batch.
type batchReply struct {
	Boot      int64       `json:"boot"`
	Delivered int         `json:"delivered"`
	NotHere   []node.Addr `json:"not_here,omitempty"`
}

// Handler serves POST /rbee/v1/envelopes (behind Config.Policy) and GET /rbee/v1/health.
// Every error answer carries the standard error body.
func (t *Transport) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+EnvelopesPath, t.cfg.Policy.Middleware(http.HandlerFunc(t.serveEnvelopes)))
	mux.HandleFunc(EnvelopesPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		wire.WriteError(w, http.StatusMethodNotAllowed, api.Errorf(api.CodeInvalidRequest,
			"POST a batch of envelopes here", "%s %s is not allowed", r.Method, r.URL.Path))
	})
	mux.HandleFunc("GET "+HealthPath, t.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, api.Errorf(api.CodeInvalidRequest,
			"the transport serves POST "+EnvelopesPath+" and GET "+HealthPath,
			"no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (t *Transport) serveHealth(w http.ResponseWriter, _ *http.Request) {
	status, code := "ok", http.StatusOK
	if t.isClosed() {
		status, code = "closed", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"status": status, "boot": t.boot})
}

// serveEnvelopes decodes a whole batch, refuses it whole if any envelope is undecodable,
// learns its routes, then delivers its messages in order.
func (t *Transport) serveEnvelopes(w http.ResponseWriter, r *http.Request) {
	if t.isClosed() {
		wire.WriteError(w, http.StatusServiceUnavailable, api.Errorf(api.CodeUnavailable,
			"retry later, or at the process that now runs the addresses", "this process's transport is closed: it is shutting down"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	var b batchIn
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		t.log.Warn("transport: refused a batch that is not valid JSON", "remote", r.RemoteAddr, "err", err)
		wire.WriteError(w, status, api.Errorf(api.CodeInvalidRequest,
			"send a JSON object {\"envelopes\": [...], \"routes\": {...}, \"from_url\": ...} of at most 16 MiB",
			"the batch is not a valid envelope batch: %v", err))
		return
	}
	msgs := make([]node.Msg, len(b.Envelopes))
	for i, e := range b.Envelopes {
		m, err := t.reg.Decode(e)
		if err != nil {
			t.refuse(w, r, b, i, err)
			return
		}
		msgs[i] = m
	}
	t.learnFrom(b)
	reply := batchReply{Boot: t.boot}
	for i, e := range b.Envelopes {
		if !t.cfg.Local(e.To) {
			t.drop(1)
			if !slices.Contains(reply.NotHere, e.To) {
				reply.NotHere = append(reply.NotHere, e.To)
			}
			t.log.Debug("transport: message for an address this process does not have dropped",
				"from", e.From, "to", e.To, "msg", e.Msg, "sender", b.FromURL)
			continue
		}
		t.cfg.Deliver(e.From, e.To, msgs[i])
		t.stats.received.Add(1)
		reply.Delivered++
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(reply)
}

// refuse answers 400 for the batch's undecodable envelope i, naming its message.
func (t *Transport) refuse(w http.ResponseWriter, r *http.Request, b batchIn, i int, err error) {
	e := b.Envelopes[i]
	t.stats.refused.Add(1)
	code, suggestion := api.CodeInvalidRequest, "the sender encoded the message wrongly: run the same rbee version on every machine"
	if !slices.Contains(t.reg.Names(), e.Msg) {
		code, suggestion = CodeUnknownMessage, "the sender runs a version with messages this one lacks: upgrade this process, or run the same rbee version on every machine"
	}
	if t.once("refuse\x00" + b.FromURL + "\x00" + e.Msg) {
		t.log.Warn("transport: refused a batch with a message this process cannot decode; nothing of it was delivered",
			"msg", e.Msg, "from", e.From, "to", e.To, "sender", b.FromURL, "remote", r.RemoteAddr, "err", err,
			"fix", suggestion)
	}
	w.Header().Set(RefusedHeader, strconv.Itoa(i))
	wire.WriteError(w, http.StatusBadRequest, api.Error{Code: code,
		Message:    fmt.Sprintf("envelope %d of %d (message %q from %q to %q) cannot be decoded, so none of the batch was delivered: %v", i, len(b.Envelopes), e.Msg, e.From, e.To, err),
		Suggestion: suggestion + "; resend the batch without envelope " + strconv.Itoa(i),
	})
}

// learnFrom records the batch's gossip and that its senders live at from_url.
func (t *Transport) learnFrom(b batchIn) {
	accept := func(a node.Addr, r Route) {
		if a == "" || r.URL == t.self || t.cfg.Local(a) {
			return
		}
		if t.routes.learn(a, r) {
			t.log.Debug("transport: learned a route", "addr", a, "url", r.URL, "boot", r.Boot, "from", b.FromURL)
		}
	}
	for a, r := range b.Routes {
		u, err := baseURL(r.URL)
		if err != nil {
			t.log.Debug("transport: ignored a gossiped route with a bad URL", "addr", a, "err", err, "from", b.FromURL)
			continue
		}
		accept(a, Route{URL: u, Boot: r.Boot})
	}
	if b.FromURL == "" {
		return
	}
	from, err := baseURL(b.FromURL)
	if err != nil {
		t.log.Debug("transport: ignored a batch's bad from_url", "err", err)
		return
	}
	var last node.Addr
	for _, e := range b.Envelopes {
		if e.From != last {
			last = e.From
			accept(e.From, Route{URL: from, Boot: b.FromBoot})
		}
	}
}
