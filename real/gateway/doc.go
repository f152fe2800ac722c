// Package gateway is the queen's public HTTP API (Server, in queen-rbee's process) and its
// client side (NewClient, in rbee-keeper's process).
//
// # Server
//
// The Server is one real.Port in the queen's Runtime: it sends the queen node api.InferReq,
// api.InferCancel and api.ListReq under ReqIDs of its own (64 random bits each, so a restarted
// gateway never reuses one the queen still remembers) and hands the queen's answers, by ReqID,
// to the HTTP handlers waiting for them. A request the queen does not answer is sent again
// every ResendInterval under the same ReqID (the queen runs it once), and refused with 503
// QUEEN_UNAVAILABLE after QueenTimeout.
//
// Every endpoint is behind the auth policy (Authorization: Bearer <key>) and speaks JSON.
// Errors use the one error body of real/wire,
//
//	{"error": {"code": "ALL_SLOTS_BUSY", "message": "what happened and why", "suggestion": "what to do"}}
//
// with "type" added on the OpenAI-compatible endpoints (authentication_error,
// invalid_request_error, not_found_error, timeout_error, overloaded_error, server_error).
// Statuses: INVALID_REQUEST 400 (413 for a body over the limit, 415 for a body that is not
// JSON), UNAUTHORIZED 401, MODEL_NOT_SERVED and NOT_FOUND 404, METHOD_NOT_ALLOWED 405,
// DEADLINE_EXCEEDED 408, CANCELLED 409, WORKER_LOST and ENGINE_ERROR 502, ALL_SLOTS_BUSY 503
// with Retry-After: 1, UNAVAILABLE 503 (Retry-After: 1), QUEEN_UNAVAILABLE 503 (Retry-After: 2),
// NO_WORKER_AVAILABLE 503 (Retry-After: 5), GENERATION_TIMEOUT 504, anything else 500.
//
// Endpoints:
//
//	POST   /v1/inference          {"model", "prompt", "max_tokens", "seed", "timeout_ms", "max_time_ms"}
//	                              -> text/event-stream (below); a refusal before acceptance is a
//	                              plain JSON error with its status. Unknown fields are refused.
//	DELETE /v1/inference/{id}     cancel; 204, also for an unknown or finished request. {id} is
//	                              the request_id of the accepted event ("cmpl-"/"chatcmpl-" ids
//	                              of the OpenAI endpoints work too).
//	GET    /v1/workers            {"workers": [registry records], "epoch": N}; ?model= and
//	                              ?capability= filter.
//	GET    /v1/models             {"object": "list", "data": [{"id", "object": "model",
//	                              "created": 0, "owned_by": "rbee"}]}: every model a registered
//	                              worker serves, then each alias of one ("root": its catalog ID).
//	GET    /health                200 {"status": "ok", "queen": "reachable"}, or
//	                              503 {"status": "degraded", "queen": "unreachable"} when the
//	                              queen does not answer a listing within HealthTimeout.
//	POST   /v1/completions        OpenAI-compatible (below).
//	POST   /v1/chat/completions   OpenAI-compatible (below).
//
// Model names are catalog IDs ("hf:owner/repo/file.gguf") or aliases of ServerConfig.Aliases.
//
// # The event stream of POST /v1/inference
//
// Each event is flushed as it comes:
//
//	event: accepted
//	data: {"request_id":"1234567890","worker":"worker-ws-1"}
//
//	event: token
//	data: {"index":0,"text":"Hello"}
//
//	event: token
//	data: {"index":1,"text":" world"}
//
//	event: done
//	data: {"request_id":"1234567890","finish_reason":"length","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"worker":"worker-ws-1"}
//
// request_id is a decimal string (a 64-bit number does not fit a JavaScript number). Token
// indexes count from 0 without gaps. There is exactly one done, last; finish_reason is stop,
// length, cancelled, timeout or error, and "error" ({"code", "message", "suggestion"}) is set
// when the request failed after its acceptance; the tokens already sent stand. usage counts
// prompt tokens as the worker does (whitespace-separated words, at least 1). Lines starting
// with ":" are keepalive comments, sent every KeepAlive of silence. A client that closes the
// connection cancels the request at the queen. If the queen goes silent for
// StreamStallTimeout, the stream ends with a done carrying QUEEN_UNAVAILABLE.
//
// # OpenAI-compatible endpoints
//
// POST /v1/completions takes {"model", "prompt" (a string, or an array of one string),
// "max_tokens" (default DefaultMaxTokens), "seed", "stream", "stream_options":
// {"include_usage"}}; POST /v1/chat/completions takes {"model", "messages": [{"role",
// "content"}], "max_tokens" or "max_completion_tokens", "seed", "stream", "stream_options"}.
// Other fields (temperature, top_p, stop, user, ...) are accepted and ignored; n above 1, more
// than one prompt, token-array prompts, tools and non-text content parts are refused with 400.
// A missing seed is 0: the same prompt gives the same completion.
//
// Without "stream" the answer is a text_completion ({"id": "cmpl-N", "object":
// "text_completion", "created", "model", "choices": [{"index": 0, "text", "finish_reason",
// "logprobs": null}], "usage"}) or a chat.completion (choices[0].message {"role": "assistant",
// "content"}). With "stream": true it is a stream of "data: {chunk}" events: text_completion
// chunks with choices[0].text, or chat.completion.chunk chunks whose first delta is {"role":
// "assistant", "content": ""} and whose next deltas carry "content"; then a chunk with the
// finish_reason; with include_usage a chunk with empty choices and the usage; then "data:
// [DONE]". finish_reason is "stop", or "length" when max_tokens or the generation's time cap
// (GENERATION_TIMEOUT) cut the output. A failure after the stream began is sent as
// "data: {"error": {...}}" (the OpenAI SDKs raise it), then "data: [DONE]"; without stream it is
// the error answer.
//
// Chat messages become one prompt with the ChatML template: each message is
// "<|im_start|>ROLE\nCONTENT<|im_end|>\n" (developer is taken as system; system, user and
// assistant are the other roles), and the prompt ends with "<|im_start|>assistant\n". A
// message that contains <|im_start|> or <|im_end|> is refused, so that no message can forge
// another role's turn.
//
// # Client
//
// NewClient is the other end, for rbee-keeper: a port registered in the keeper's Runtime at
// the queen's address, which carries the unchanged keeper node's InferReq, InferCancel and
// ListReq over this API and turns the answers back into the queen's messages. See NewClient
// for how transport failures map onto what the keeper expects.
package gateway
