// Package hub is the real runtime's adapter for the Hugging Face hub: a real.Port that turns
// the hub messages of orch/api (HubHeadReq, HubGetReq, HubCredit, HubCancel) into HTTP requests
// to https://huggingface.co (or any server that answers like it, such as real/fakehub) and the
// answers back into HubResp, HubChunk and HubEnd, as the simulated hub of sim/ sends them.
//
// Register it at the hub's address of the hives' provisioners (provision.Config.Hub, "hub" by
// default):
//
//	rt.AddPort("hub", hub.New(hub.Config{}))
//
// The mapping, per request (keyed by sender and ReqID):
//
//   - HubHeadReq: HEAD {BaseURL}/{repo}/resolve/{revision}/{file}. For an LFS file the hub
//     answers 302 to its CDN with the file's size and sha256 in X-Linked-Size and X-Linked-Etag;
//     the adapter stops at that redirect and answers HubResp{Status: 200, Size, SHA256}. A
//     redirect without those headers (a renamed repository) is followed. On a plain 200 the size
//     is Content-Length and the sha256 is the ETag when it is one (64 hex digits; a non-LFS
//     file's ETag is a git sha1, and SHA256 is then left empty).
//   - HubGetReq: GET of the same URL with "Range: bytes=N-" when RangeStart >= 0 (as the
//     simulated hub reads it: a fresh download asks bytes=0- and gets 206 from 0), redirects
//     followed. HubResp{Status 200 or 206, Offset from Content-Range, Size, SHA256} (from the
//     X-Linked headers of the hub's redirect, else from Content-Range and ETag), then the body
//     as HubChunk messages of at most Config.ChunkBytes, in order, then one HubEnd: Err empty
//     when the body completed, otherwise why it did not ("unexpected EOF at byte N of M",
//     "connection reset at byte N").
//   - Window > 0 is flow control: the adapter sends at most Window body bytes, then stops
//     reading the body (TCP pushes back on the server) until HubCredit grants more.
//   - HubCancel closes the request's connection; nothing more is sent for it.
//   - Error answers: HubResp{Status, ErrorCode (X-Error-Code), Message (X-Error-Message, or the
//     body's "error" field, or the body, truncated)}; for 429 and 503 RetryAfter is the
//     Retry-After header (delta seconds or an HTTP date), rounded up to whole seconds.
//   - A request that fails before any answer (DNS, refused connection, TLS, no answer within
//     Config's header timeout) gets HubEnd{Err} and no HubResp: the provisioner retries it with
//     backoff, as it does a connection reset. (A HubResp with Status 0 would be taken for an
//     unexpected answer and end the download for good.)
//
// The token (Authorization: Bearer) is the request's Token, else Config.Token, else the
// HF_TOKEN environment variable read by New. It is only ever sent to the host (and port) of the
// first request: it is removed from a redirect to any other host, including a subdomain (Go's
// client alone keeps it for huggingface.co -> cdn-lfs.huggingface.co and for another port of
// the same host), since the CDN's URLs are signed and a token there is a leak.
//
// Callers' duties: call Close (real.Runtime.Stop does) so that every connection closes; do not
// reuse a ReqID of a sender for a new request while the old one is open (a new request with
// the same sender and ReqID silently replaces the old one, as in the simulated hub).
package hub
