package gguf

import (
	"errors"
	"fmt"
)

// Sentinel errors: every *FormatError matches exactly one of them with errors.Is.
var (
	// ErrBadMagic: the file does not start with "GGUF"; it is not a GGUF file at all.
	ErrBadMagic = errors.New("not a GGUF file")
	// ErrUnsupportedVersion: the GGUF version is not 2 or 3.
	ErrUnsupportedVersion = errors.New("unsupported GGUF version")
	// ErrTruncated: the header or the tensor data it declares runs past the end of the file,
	// as after an interrupted download.
	ErrTruncated = errors.New("truncated GGUF file")
	// ErrLimit: the header declares more than the reader's Limits allow.
	ErrLimit = errors.New("GGUF header exceeds a reader limit")
	// ErrInvalid: the header breaks a rule of the format (unknown value type, duplicate key,
	// bad alignment, misaligned tensor offset, ...).
	ErrInvalid = errors.New("invalid GGUF header")
	// ErrMissingKey: a metadata key that Info needs is absent.
	ErrMissingKey = errors.New("GGUF metadata key missing")
)

// FormatError says what is wrong with a GGUF file and where.
type FormatError struct {
	// Offset is the byte offset in the file where the problem was found, or -1 when it is not
	// tied to one place (a missing metadata key).
	Offset int64
	// Reason says what was wrong, in words.
	Reason string
	// Err is the sentinel the error matches: ErrBadMagic, ErrUnsupportedVersion,
	// ErrTruncated, ErrLimit, ErrInvalid or ErrMissingKey.
	Err error
}

// Error implements error.
func (e *FormatError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("gguf: %v: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("gguf: %v at offset %d: %s", e.Err, e.Offset, e.Reason)
}

// Unwrap returns the sentinel, so that errors.Is(err, ErrTruncated) and the like work.
func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(sentinel error, off int64, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}
