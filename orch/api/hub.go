package api

import (
	"hash/crc32"
	"strconv"
	"time"
)

// Messages between a hive and a model hub, shaped after the Hugging Face hub's HTTP API so
// the real runtime can map them one to one: HEAD and GET of
// /{repo}/resolve/{revision}/{file}, a Range header, and the status codes and headers the hub
// sends (ETag = sha256 of the file for LFS files, X-Linked-Size, Retry-After, X-Error-Code).
type (
	// HubHeadReq asks for a file's metadata (HTTP HEAD).
	HubHeadReq struct {
		ReqID    uint64 `json:"req_id"`
		Repo     string `json:"repo"`
		Revision string `json:"revision"`
		File     string `json:"file"`
		// Token is the bearer token (HF_TOKEN); empty for anonymous access.
		Token string `json:"token,omitempty"`
	}
	// HubGetReq starts a download (HTTP GET). RangeStart >= 0 sends "Range: bytes=N-"; the
	// hub answers 206 from N, or 200 with the whole file, which the client must treat as
	// "start over".
	HubGetReq struct {
		ReqID      uint64 `json:"req_id"`
		Repo       string `json:"repo"`
		Revision   string `json:"revision"`
		File       string `json:"file"`
		Token      string `json:"token,omitempty"`
		RangeStart int64  `json:"range_start"`
		// Window, when positive, is flow control: the hub sends at most Window body bytes until
		// HubCredit grants more (as a receive window does; a client that reads slowly gets the
		// same from TCP). 0 lets the hub send the whole body as fast as it can.
		Window int64 `json:"window,omitempty"`
	}
	// HubCredit lets a flow-controlled download (HubGetReq.Window) send Bytes more.
	HubCredit struct {
		ReqID uint64 `json:"req_id"`
		Bytes int64  `json:"bytes"`
	}
	// HubCancel closes a download's connection.
	HubCancel struct {
		ReqID uint64 `json:"req_id"`
	}
)

// HubResp is the status line and headers of an answer to HubHeadReq or HubGetReq. For a GET
// with status 200 or 206, HubChunk messages follow, then one HubEnd.
type HubResp struct {
	ReqID  uint64 `json:"req_id"`
	Status int    `json:"status"`
	// SHA256 is the file's sha256 in hex (the ETag of an LFS file), on 200/206 and HEAD.
	SHA256 string `json:"sha256,omitempty"`
	// Size is the whole file's size in bytes (X-Linked-Size).
	Size int64 `json:"size,omitempty"`
	// Offset is where the body starts: 0 for 200, the range start for 206.
	Offset int64 `json:"offset,omitempty"`
	// RetryAfter is the Retry-After header of a 429 or 503, rounded up to whole seconds.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// ErrorCode is X-Error-Code: RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound.
	ErrorCode string `json:"error_code,omitempty"`
	// Message is the body of an error answer.
	Message string `json:"message,omitempty"`
}

// HubChunk is a piece of a download's body, in order.
type HubChunk struct {
	ReqID  uint64 `json:"req_id"`
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
}

// WireSize is the chunk's size on the wire: its body plus framing (the simulator's downlink
// model uses it).
func (c HubChunk) WireSize() int { return len(c.Data) + 64 }

// HubEnd ends a download's body: Err is empty when the body is complete, otherwise why the
// connection ended ("connection reset").
type HubEnd struct {
	ReqID uint64 `json:"req_id"`
	Err   string `json:"err,omitempty"`
}

// MsgName implements node.Msg.
func (HubHeadReq) MsgName() string { return "hub.head" }

// MsgName implements node.Msg.
func (HubGetReq) MsgName() string { return "hub.get" }

// MsgName implements node.Msg.
func (HubCancel) MsgName() string { return "hub.cancel" }

// MsgName implements node.Msg.
func (HubCredit) MsgName() string { return "hub.credit" }

// MsgName implements node.Msg.
func (HubResp) MsgName() string { return "hub.resp" }

// MsgName implements node.Msg.
func (HubChunk) MsgName() string { return "hub.chunk" }

// MsgName implements node.Msg.
func (HubEnd) MsgName() string { return "hub.end" }

// AppendCanonical writes a chunk for the simulator's trace as its position, length and CRC32
// instead of every byte.
func (c HubChunk) AppendCanonical(b []byte) []byte {
	b = append(b, "{ReqID:"...)
	b = strconv.AppendUint(b, c.ReqID, 10)
	b = append(b, " Offset:"...)
	b = strconv.AppendInt(b, c.Offset, 10)
	b = append(b, " Len:"...)
	b = strconv.AppendInt(b, int64(len(c.Data)), 10)
	b = append(b, " CRC32:"...)
	b = strconv.AppendUint(b, uint64(crc32.ChecksumIEEE(c.Data)), 16)
	return append(b, '}')
}
