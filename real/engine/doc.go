// Package engine holds the real inference engines behind a worker's engine port: each is a
// real.Port at the engine's address (the worker's Config.Engine) that serves one worker and
// answers it with the same messages and guarantees as the simulator's engine (sim.Engine):
//
//   - EngineLoad -> EngineLoadProgress (rising, 100 last) then exactly one EngineLoaded (Err
//     set when the load failed or timed out: LOADING_TIMEOUT, ENGINE_ERROR). A new EngineLoad
//     supersedes a load in progress (it sends nothing more) and drops running completions
//     without an end, as the simulator does for a restarted worker. A negative size is
//     refused with INVALID_REQUEST.
//   - EngineGenerate -> EngineToken with Index 0, 1, 2, ... then exactly one EngineDone:
//     "stop" (end of sequence or a stop word), "length" (MaxTokens reached) or "error" with
//     Err (ENGINE_ERROR; ALL_SLOTS_BUSY when the server has no room; INVALID_REQUEST for
//     MaxTokens < 1 or PromptTokens < 0). Before a model is loaded, or while it loads, it is
//     refused at once with ENGINE_ERROR. A repeat of a running ReqID is ignored.
//   - EngineStop -> nothing more for that ReqID once Deliver returns, and its slot is free
//     (the HTTP request is cancelled, which closes its connection).
//
// Messages for one ReqID go out in order; completions run concurrently, each on its own
// goroutine (the worker's slots bound how many). Completions are keyed by (sender, ReqID).
// Close sends nothing more, stops every completion and load, waits for the port's goroutines
// and stops a server the engine started. The Send a port is built with must not call back
// into the port.
//
// # The engines
//
// NewCPU: built in, no server, no model file. Its tokens are exactly
// textgen.Completion(prompt, seed, maxTokens, EOSMean): the same as the simulator's with the
// same EOSMean, so checkers judge real runs token by token. CPUConfig sets the pace
// (TokensPerSec, 0 = as fast as possible; PrefillPerToken), the load (LoadTime in LoadSteps
// progress reports) and the clock (nil = the wall clock; a testing/synctest bubble or
// clock.NewMock() for tests).
//
//	mk, err := engine.NewCPU(engine.DefaultCPUConfig())
//	err = rt.AddPort("engine-ws-1", mk)
//
// NewLlamaServer: a llama.cpp server (llama-server). Point LlamaServerConfig.URL at a running
// server to attach to it, or also set Command to have the engine start it on the first
// EngineLoad (and stop it on Close: SIGTERM, then SIGKILL after StopGrace):
//
//	engine.LlamaServerConfig{URL: "http://127.0.0.1:8080",
//		Command: []string{"llama-server", "-m", "/models/tiny.gguf", "--port", "8080", "--parallel", "4"}}
//
// Give llama-server at least as many slots (--parallel) as the worker has. The mapping:
//
//   - Load: GET /health until 200 {"status":"ok"}; 503 ("Loading model") and refused
//     connections mean "not yet". Progress is estimated from the model's size at
//     LoadBytesPerSec (the server does not report it) and capped at 90 until ready. A started
//     server that exits, a 401/403, or LoadTimeout ends the load with an error naming the
//     last answer (and the server's last output).
//   - Admission: GET /slots (when the server has it; 404/501 turn the check off) until a slot
//     is idle ("is_processing": false, or "state": 0), for up to AdmitWait; then the
//     completion is refused with ALL_SLOTS_BUSY.
//   - Generate: POST /completion {"prompt", "n_predict": MaxTokens, "seed", "stream": true,
//     "cache_prompt": true} plus Params. Each "data: {json}" event with non-empty "content" is
//     one EngineToken; the event with "stop": true ends it: "stop_type" "eos"/"word" (or
//     "stopped_eos"/"stopped_word") is stop, "limit" (or "stopped_limit") is length. The seed
//     is folded to 32 bits, never 0xFFFFFFFF (llama.cpp's "random").
//   - Errors: an {"error": {...}} event or an "error:" line, a stream that breaks or ends
//     without its final event, or a non-200 answer end the completion with ENGINE_ERROR; 429
//     and 503 answers with ALL_SLOTS_BUSY (with Retry-After when given).
//   - Stop: the request's context is cancelled (the connection closes); then GET /slots is
//     watched for up to StopCheck and a warning logged if the slot stays busy.
//
// NewOpenAI: an OpenAI-compatible server: vLLM (URL "http://127.0.0.1:8000"), Ollama
// ("http://127.0.0.1:11434"), llama-server's /v1. OpenAIConfig.Model is the server's model
// name (empty = EngineLoad's Model); APIKey is sent as a bearer token.
//
//   - Load: GET /v1/models until Model is among "data"[].id (refused connections and other
//     answers mean "not yet"; 401/403 fail at once), within LoadTimeout.
//   - Generate: POST /v1/completions {"model", "prompt", "max_tokens": MaxTokens, "seed",
//     "stream": true} plus Params. choices[0].text (when not empty) is one EngineToken;
//     finish_reason "stop" is stop, "length" is length, "abort" is an error; "data: [DONE]"
//     ends the stream. The seed is masked to a non-negative int64.
//   - Errors: an {"error": ...} or {"object": "error"} event, a broken stream, or a non-200
//     answer end the completion with ENGINE_ERROR; 429 (with Retry-After) and 503 with
//     ALL_SLOTS_BUSY; 401/403 and 404 say to check APIKey and Model.
//   - A server that ignores "stream" and answers application/json gives one EngineToken with
//     the whole text. Ollama lists pulled models at once and loads one on its first request,
//     so that request's first token comes late.
//
// Set an HTTP engine's LoadTimeout shorter than the worker's (worker.Config.LoadTimeout,
// 30 s by default) for its error to be the one the worker reports; the worker gives up at its
// own timeout either way.
//
// Both HTTP engines read streams leniently: comment lines (":"), blank lines, "event:",
// "id:" and "retry:" lines, unknown JSON fields and lines that are not JSON are skipped
// (malformed ones are logged).
//
// Note for the worker: it ends every failed completion with ENGINE_ERROR whatever the
// engine's code, so ALL_SLOTS_BUSY reaches the client only inside the message.
package engine
