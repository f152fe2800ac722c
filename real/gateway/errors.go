package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// Error codes the gateway adds to those of orch/api.
const (
	// CodeQueenUnavailable: the queen did not answer within ServerConfig.QueenTimeout (HTTP
	// 503), or went silent in the middle of a stream.
	CodeQueenUnavailable api.Code = "QUEEN_UNAVAILABLE"
	// CodeNotFound: no endpoint at that path (HTTP 404).
	CodeNotFound api.Code = "NOT_FOUND"
	// CodeMethodNotAllowed: the endpoint exists but not for that method (HTTP 405).
	CodeMethodNotAllowed api.Code = "METHOD_NOT_ALLOWED"
)

// httpError is an error answer: the status, the one error body and, for refusals that a retry
// can cure, the Retry-After seconds.
type httpError struct {
	status     int
	err        api.Error
	retryAfter int // seconds; 0: no header
}

// errorFor turns a core error into its HTTP answer.
func errorFor(e api.Error) httpError {
	status, retry := statusFor(e.Code)
	return httpError{status: status, err: e, retryAfter: retry}
}

// statusFor maps an error code to its HTTP status and Retry-After seconds (0: none).
//
//	INVALID_REQUEST 400, UNAUTHORIZED 401, MODEL_NOT_SERVED / NOT_FOUND 404, METHOD_NOT_ALLOWED 405,
//	DEADLINE_EXCEEDED 408, CANCELLED 409, WORKER_LOST / ENGINE_ERROR 502,
//	ALL_SLOTS_BUSY 503 (Retry-After 1), UNAVAILABLE 503 (1), QUEEN_UNAVAILABLE 503 (2),
//	NO_WORKER_AVAILABLE 503 (5), GENERATION_TIMEOUT / LOADING_TIMEOUT / TIMEOUT 504, else 500.
func statusFor(c api.Code) (status, retryAfter int) {
	switch c {
	case api.CodeInvalidRequest:
		return http.StatusBadRequest, 0
	case auth.CodeUnauthorized:
		return http.StatusUnauthorized, 0
	case api.CodeModelNotServed, CodeNotFound:
		return http.StatusNotFound, 0
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed, 0
	case api.CodeDeadlineExceeded:
		return http.StatusRequestTimeout, 0
	case api.CodeCancelled:
		return http.StatusConflict, 0
	case api.CodeWorkerLost, api.CodeEngineError:
		return http.StatusBadGateway, 0
	case api.CodeAllSlotsBusy, api.CodeUnavailable:
		return http.StatusServiceUnavailable, 1
	case CodeQueenUnavailable:
		return http.StatusServiceUnavailable, 2
	case api.CodeNoWorkerAvailable:
		return http.StatusServiceUnavailable, 5
	case api.CodeGenerationTimeout, api.CodeLoadingTimeout, api.CodeTimeout:
		return http.StatusGatewayTimeout, 0
	}
	return http.StatusInternalServerError, 0
}

// openAIType is the OpenAI error type of a status, for clients that read error.type.
func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		return "timeout_error"
	case status == http.StatusServiceUnavailable:
		return "overloaded_error"
	case status < 500:
		return "invalid_request_error"
	}
	return "server_error"
}

// write answers the request with the error: the status, Retry-After when set, and the one
// error body (with "type" when openAI).
func (h httpError) write(w http.ResponseWriter, openAI bool) {
	if h.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(h.retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(h.status)
	json.NewEncoder(w).Encode(errorBody(h.err, h.status, openAI))
}

// errorBody is the one error body of e; openAI adds the OpenAI error type of status.
func errorBody(e api.Error, status int, openAI bool) wire.ErrorBody {
	d := wire.ErrorDetail{Code: e.Code, Message: e.Message, Suggestion: e.Suggestion}
	if openAI {
		d.Type = openAIType(status)
	}
	return wire.ErrorBody{Error: d}
}

// invalid is a 400 INVALID_REQUEST.
func invalid(suggestion, format string, args ...any) httpError {
	return errorFor(api.Errorf(api.CodeInvalidRequest, suggestion, format, args...))
}
