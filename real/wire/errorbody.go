package wire

import (
	"encoding/json"
	"net/http"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// ErrorBody is the one error body of every rbee HTTP endpoint:
//
//	{"error": {"code": "MODEL_NOT_SERVED", "message": "...", "suggestion": "..."}}
//
// code is machine-readable (api.Code); message says what happened and why; suggestion says
// what to do. OpenAI-compatible endpoints add "type" for clients that read it.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code       api.Code `json:"code"`
	Message    string   `json:"message"`
	Suggestion string   `json:"suggestion,omitempty"`
	Type       string   `json:"type,omitempty"`
}

// WriteError writes status and the error body.
func WriteError(w http.ResponseWriter, status int, e api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message, Suggestion: e.Suggestion}})
}

// ReadError decodes an error body; ok is false when body is not one.
func ReadError(body []byte) (api.Error, bool) {
	var b ErrorBody
	if err := json.Unmarshal(body, &b); err != nil || b.Error.Code == "" {
		return api.Error{}, false
	}
	return api.Error{Code: b.Error.Code, Message: b.Error.Message, Suggestion: b.Error.Suggestion}, true
}
