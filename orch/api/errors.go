package api

import "fmt"

// Code is a machine-readable error code. The empty code means success.
type Code string

// Error codes of the worker registry. Every code a person may see is listed here.
const (
	CodeOK                 Code = ""
	CodeInvalidRequest     Code = "INVALID_REQUEST"
	CodeRegistryFull       Code = "REGISTRY_FULL"
	CodeUnknownWorker      Code = "UNKNOWN_WORKER"
	CodeStaleIncarnation   Code = "STALE_INCARNATION"
	CodeIncarnationChanged Code = "WORKER_INCARNATION_CHANGED"
	CodeWorkerAlreadyBusy  Code = "WORKER_ALREADY_BUSY"
	CodeVersionConflict    Code = "VERSION_CONFLICT"
	CodeWorkerStale        Code = "WORKER_STALE"
	CodeNoWorkerAvailable  Code = "NO_WORKER_AVAILABLE"
	CodeClaimNotHeld       Code = "CLAIM_NOT_HELD"
	CodeUnavailable        Code = "UNAVAILABLE"
	CodeTimeout            Code = "TIMEOUT"
)

// Error is the one error body every component uses: what happened (Code, Message) and what to
// do about it (Suggestion). The zero Error means success.
type Error struct {
	Code       Code   `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	Suggestion string `json:"suggestion,omitempty"`
}

// OK reports whether e is the zero Error, i.e. success.
func (e Error) OK() bool { return e.Code == CodeOK }

// Error implements error.
func (e Error) Error() string {
	if e.Suggestion == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Suggestion)
}

// Errorf builds an Error with a formatted message and a suggestion.
func Errorf(code Code, suggestion, format string, args ...any) Error {
	return Error{Code: code, Message: fmt.Sprintf(format, args...), Suggestion: suggestion}
}
