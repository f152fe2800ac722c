package api

import (
	"strconv"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// The inference path. A client (rbee-keeper) sends InferReq to the queen; the queen routes it to
// a worker (llm-worker-rbee) by sending the worker an InferReq of its own (its own ReqID: an
// attempt) and tells the client InferAccepted; the worker streams InferToken messages and ends with exactly one InferDone to
// whoever sent the request; the queen relays tokens and the end to the client. InferCancel
// stops a request at either hop. The real runtime maps these onto
// POST /v1/inference (a server-sent-event stream of tokens, then a done event) and
// DELETE /v1/inference/{id} (204, also for an unknown or finished request).
//
// Every message carries the sender's ReqID: a queen's attempt IDs are its own, never a
// client's. A repeated InferReq with a ReqID the receiver knows is not run twice.
type (
	// InferReq asks for a completion.
	InferReq struct {
		ReqID uint64 `json:"req_id"`
		// Model is the catalog ID of the model, e.g. "hf:TheBloke/TinyLlama-GGUF/tiny.gguf".
		Model  string `json:"model"`
		Prompt string `json:"prompt"`
		// MaxTokens bounds the completion; at least 1.
		MaxTokens int `json:"max_tokens"`
		// Seed makes the completion reproducible: the same model, prompt and seed give the same
		// tokens on any worker (this is what failover relies on).
		Seed uint64 `json:"seed"`
		// Timeout is the time left until the client's deadline when the message was sent; 0
		// means no deadline. Each hop computes its own deadline from its receipt and passes on
		// what is left, never more.
		Timeout time.Duration `json:"timeout,omitempty"`
		// MaxTime caps the generation itself (default DefaultMaxTime); past it the request ends
		// with the tokens so far, finish reason "timeout" and GENERATION_TIMEOUT.
		MaxTime time.Duration `json:"max_time,omitempty"`
	}
	// InferAccepted says a request was taken on (routed to a worker, or queued by one): the
	// stream's response headers. It carries no promise about when the first token comes.
	InferAccepted struct {
		ReqID  uint64    `json:"req_id"`
		Worker node.Addr `json:"worker,omitempty"`
	}
	// InferToken is one generated token. Index counts from 0 and is contiguous: no gap, no
	// duplicate, also across a failover.
	InferToken struct {
		ReqID uint64 `json:"req_id"`
		Index int    `json:"index"`
		Text  string `json:"text"`
	}
	// InferDone ends a request: exactly one per request. Tokens is how many tokens were
	// streamed in all; on an error the tokens already sent stand (partial output).
	InferDone struct {
		ReqID        uint64       `json:"req_id"`
		FinishReason FinishReason `json:"finish_reason"`
		Tokens       int          `json:"tokens"`
		Err          Error        `json:"error"`
		// Worker is the worker that produced the last token (or that refused), for the logs.
		Worker node.Addr `json:"worker,omitempty"`
	}
	// InferCancel stops a request. Cancelling an unknown or finished request is a no-op
	// success: InferCancelResp with no error (the DELETE's 204).
	InferCancel struct {
		ReqID uint64 `json:"req_id"`
	}
	// InferCancelResp answers InferCancel; a running request also ends with InferDone
	// (finish reason "cancelled").
	InferCancelResp struct {
		ReqID uint64 `json:"req_id"`
		Err   Error  `json:"error"`
	}
)

// FinishReason says why a completion ended.
type FinishReason string

// Finish reasons.
const (
	FinishStop      FinishReason = "stop"      // the model produced end-of-sequence
	FinishLength    FinishReason = "length"    // MaxTokens reached
	FinishCancelled FinishReason = "cancelled" // InferCancel, or the client went away
	FinishTimeout   FinishReason = "timeout"   // MaxTime or the client's deadline passed
	FinishError     FinishReason = "error"     // see InferDone.Err
)

// DefaultMaxTime is a generation's time cap when InferReq.MaxTime is 0.
const DefaultMaxTime = 30 * time.Second

// Error codes of the inference path.
const (
	// CodeGenerationTimeout: MaxTime passed; the tokens so far were sent.
	CodeGenerationTimeout Code = "GENERATION_TIMEOUT"
	// CodeDeadlineExceeded: the client's deadline passed (HTTP 408).
	CodeDeadlineExceeded Code = "DEADLINE_EXCEEDED"
	// CodeCancelled: the request was cancelled.
	CodeCancelled Code = "CANCELLED"
	// CodeWorkerLost: the worker died or stalled mid-request and no other worker could
	// continue the stream; the tokens already sent stand.
	CodeWorkerLost Code = "WORKER_LOST"
	// CodeModelNotServed: no worker serves the model.
	CodeModelNotServed Code = "MODEL_NOT_SERVED"
	// CodeEngineError: the inference engine failed (out of memory, crash).
	CodeEngineError Code = "ENGINE_ERROR"
	// CodeLoadingTimeout: a worker did not finish loading its model in time and was killed.
	CodeLoadingTimeout Code = "LOADING_TIMEOUT"
)

// The engine port: what a worker asks of its inference engine (a simulated GPU in the
// simulator; a llama.cpp server in the real runtime) and what comes back. The engine serves one
// worker; ReqID is the worker's.
type (
	// EngineLoad loads the model; the engine answers with EngineLoadProgress messages and one
	// EngineLoaded.
	EngineLoad struct {
		Model     string `json:"model"`
		SizeBytes int64  `json:"size_bytes"`
	}
	// EngineLoadProgress reports loading, 0 to 100.
	EngineLoadProgress struct {
		Percent float64 `json:"percent"`
	}
	// EngineLoaded ends a load; Err is zero on success.
	EngineLoaded struct {
		Err Error `json:"error"`
	}
	// EngineGenerate starts a completion in a slot. PromptTokens is the prompt's length in
	// tokens (prefill); tokens then come one by one.
	EngineGenerate struct {
		ReqID        uint64 `json:"req_id"`
		Prompt       string `json:"prompt"`
		PromptTokens int    `json:"prompt_tokens"`
		MaxTokens    int    `json:"max_tokens"`
		Seed         uint64 `json:"seed"`
	}
	// EngineToken is one token of a completion.
	EngineToken struct {
		ReqID uint64 `json:"req_id"`
		Index int    `json:"index"`
		Text  string `json:"text"`
	}
	// EngineDone ends a completion: Reason is stop, length or error (with Err).
	EngineDone struct {
		ReqID  uint64       `json:"req_id"`
		Reason FinishReason `json:"reason"`
		Err    Error        `json:"error"`
	}
	// EngineStop stops a completion; the engine sends nothing more for it.
	EngineStop struct {
		ReqID uint64 `json:"req_id"`
	}
)

// Between a worker and its hive.
type (
	// WorkerLoading reports a worker's model loading progress to its hive.
	WorkerLoading struct {
		Worker  string  `json:"worker"`
		Percent float64 `json:"percent"`
	}
	// WorkerReady is the worker's ready callback: its model is loaded and it takes requests.
	// Err, when set, says loading failed and the worker is exiting.
	WorkerReady struct {
		Worker string `json:"worker"`
		Slots  int    `json:"slots"`
		Err    Error  `json:"error"`
	}
	// WorkerStatus is the worker's heartbeat to its hive: slots in use and requests queued.
	WorkerStatus struct {
		Worker string `json:"worker"`
		Active int    `json:"active"`
		Queued int    `json:"queued"`
		Slots  int    `json:"slots"`
	}
	// WorkerDrain tells a worker to take no new requests, finish those it has, then report
	// WorkerDrained and exit.
	WorkerDrain struct {
		Worker string `json:"worker"`
	}
	// WorkerDrained: the worker finished its last request after WorkerDrain.
	WorkerDrained struct {
		Worker string `json:"worker"`
	}
)

// MsgName implements node.Msg.
func (InferReq) MsgName() string { return "infer.req" }

// MsgName implements node.Msg.
func (InferAccepted) MsgName() string { return "infer.accepted" }

// MsgName implements node.Msg.
func (InferToken) MsgName() string { return "infer.token" }

// MsgName implements node.Msg.
func (InferDone) MsgName() string { return "infer.done" }

// MsgName implements node.Msg.
func (InferCancel) MsgName() string { return "infer.cancel" }

// MsgName implements node.Msg.
func (InferCancelResp) MsgName() string { return "infer.cancel_resp" }

// MsgName implements node.Msg.
func (EngineLoad) MsgName() string { return "engine.load" }

// MsgName implements node.Msg.
func (EngineLoadProgress) MsgName() string { return "engine.load_progress" }

// MsgName implements node.Msg.
func (EngineLoaded) MsgName() string { return "engine.loaded" }

// MsgName implements node.Msg.
func (EngineGenerate) MsgName() string { return "engine.generate" }

// MsgName implements node.Msg.
func (EngineToken) MsgName() string { return "engine.token" }

// MsgName implements node.Msg.
func (EngineDone) MsgName() string { return "engine.done" }

// MsgName implements node.Msg.
func (EngineStop) MsgName() string { return "engine.stop" }

// MsgName implements node.Msg.
func (WorkerLoading) MsgName() string { return "worker.loading" }

// MsgName implements node.Msg.
func (WorkerReady) MsgName() string { return "worker.ready" }

// MsgName implements node.Msg.
func (WorkerStatus) MsgName() string { return "worker.status" }

// MsgName implements node.Msg.
func (WorkerDrain) MsgName() string { return "worker.drain" }

// MsgName implements node.Msg.
func (WorkerDrained) MsgName() string { return "worker.drained" }

// AppendCanonical implements the trace's canonical form for the hottest message.
func (t InferToken) AppendCanonical(b []byte) []byte {
	b = strconv.AppendUint(b, t.ReqID, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(t.Index), 10)
	b = append(b, ' ')
	return append(b, t.Text...)
}
