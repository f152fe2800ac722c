package gateway

import (
	"errors"
	"net/http"
	"slices"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// WorkersResponse is the body of GET /v1/workers: the queen's registry records, sorted by
// worker ID, and the queen's boot epoch.
type WorkersResponse struct {
	Workers []api.WorkerRecord `json:"workers"`
	Epoch   uint64             `json:"epoch"`
}

// ModelList is the body of GET /v1/models, in OpenAI's list shape.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// Model is one entry of ModelList: a catalog ID served by a registered worker, or an alias of
// one (Root then names the catalog ID).
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	Root    string `json:"root,omitempty"`
}

// Health is the body of GET /health.
type Health struct {
	Status string `json:"status"`
	Queen  string `json:"queen"`
}

// registry asks the queen for its records and answers the failure itself (ok false).
func (s *Server) registry(w http.ResponseWriter, r *http.Request, model, capability string, openAI bool) (api.RegistryResp, bool) {
	resp, err := s.list(r.Context(), model, capability, s.cfg.QueenTimeout)
	switch {
	case errors.Is(err, errTimeout), errors.Is(err, errQueenGone):
		s.errUnavailable("the registry listing", s.cfg.QueenTimeout).write(w, openAI)
		return resp, false
	case err != nil: // the client went away
		return resp, false
	case !resp.Err.OK():
		errorFor(resp.Err).write(w, openAI)
		return resp, false
	}
	return resp, true
}

// handleWorkers is GET /v1/workers[?model=M&capability=C].
func (s *Server) handleWorkers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	model := q.Get("model")
	if model != "" {
		model = s.resolve(model)
	}
	resp, ok := s.registry(w, r, model, q.Get("capability"), false)
	if !ok {
		return
	}
	recs := resp.Records
	if recs == nil {
		recs = []api.WorkerRecord{}
	}
	writeJSON(w, http.StatusOK, WorkersResponse{Workers: recs, Epoch: resp.Epoch})
}

// handleModels is GET /v1/models: every model a registered worker serves (whatever its state),
// then every alias of one of them, each sorted by ID.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	resp, ok := s.registry(w, r, "", "", true)
	if !ok {
		return
	}
	var served []string
	for _, rec := range resp.Records {
		if !slices.Contains(served, rec.Model) {
			served = append(served, rec.Model)
		}
	}
	slices.Sort(served)
	list := ModelList{Object: "list", Data: []Model{}}
	for _, id := range served {
		list.Data = append(list.Data, Model{ID: id, Object: "model", OwnedBy: "rbee"})
	}
	for _, alias := range sortedKeys(s.cfg.Aliases) {
		if target := s.cfg.Aliases[alias]; slices.Contains(served, target) && !slices.Contains(served, alias) {
			list.Data = append(list.Data, Model{ID: alias, Object: "model", OwnedBy: "rbee", Root: target})
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// handleHealth is GET /health: 200 {"status":"ok","queen":"reachable"} when the queen answers
// a registry listing within HealthTimeout, else 503 {"status":"degraded","queen":"unreachable"}.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if _, err := s.list(r.Context(), "", "", s.cfg.HealthTimeout); err != nil {
		if r.Context().Err() == nil {
			writeJSON(w, http.StatusServiceUnavailable, Health{Status: "degraded", Queen: "unreachable"})
		}
		return
	}
	writeJSON(w, http.StatusOK, Health{Status: "ok", Queen: "reachable"})
}
