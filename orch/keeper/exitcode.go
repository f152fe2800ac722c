package keeper

import (
	"strconv"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// ExitCode is rbee-keeper's process exit status for one request. Scripts rely on these
// values: they never change meaning.
//
//	code  name              meaning
//	   0  ExitOK            the completion finished (stop or length)
//	   1  ExitFailed        the request failed on the server side (worker lost, engine error, ...)
//	   2  ExitUsage         usage or validation error: nothing was sent, or the server refused
//	                        the request as invalid
//	   3  ExitUnavailable   the cluster is unavailable: no answer after the resends, all slots
//	                        busy after the backoff, no worker for the model
//	   4  ExitTimeout       timed out: the deadline or the generation's time cap passed, or the
//	                        stream stalled
//	 130  ExitInterrupted   interrupted (Ctrl+C: 128 + SIGINT), the request cancelled
type ExitCode int

// Exit codes; see ExitCode.
const (
	ExitOK          ExitCode = 0
	ExitFailed      ExitCode = 1
	ExitUsage       ExitCode = 2
	ExitUnavailable ExitCode = 3
	ExitTimeout     ExitCode = 4
	ExitInterrupted ExitCode = 130
)

// String names the exit code.
func (c ExitCode) String() string {
	switch c {
	case ExitOK:
		return "ok"
	case ExitFailed:
		return "failed"
	case ExitUsage:
		return "usage"
	case ExitUnavailable:
		return "unavailable"
	case ExitTimeout:
		return "timeout"
	case ExitInterrupted:
		return "interrupted"
	}
	return "exit-" + strconv.Itoa(int(c))
}

// ExitCodeFor maps how a request ended on the server (an InferDone's finish reason and error)
// to the exit code. The error code decides when it is one this table knows; otherwise the
// finish reason does, and an unknown error code, or an "error" finish without a code, is a
// server-side failure (1). A finish of stop or length with no error is success.
func ExitCodeFor(reason api.FinishReason, err api.Error) ExitCode {
	switch err.Code {
	case api.CodeOK:
	case api.CodeInvalidRequest:
		return ExitUsage
	case api.CodeUnavailable, api.CodeAllSlotsBusy, api.CodeNoWorkerAvailable, api.CodeModelNotServed:
		return ExitUnavailable
	case api.CodeTimeout, api.CodeDeadlineExceeded, api.CodeGenerationTimeout:
		return ExitTimeout
	case api.CodeCancelled:
		return ExitInterrupted
	default:
		return ExitFailed
	}
	switch reason {
	case api.FinishStop, api.FinishLength:
		return ExitOK
	case api.FinishTimeout:
		return ExitTimeout
	case api.FinishCancelled:
		return ExitInterrupted
	}
	return ExitFailed
}
