package api

import "time"

// UseReq asks a hive to run one piece of work on one of its workers, under a claim from the
// registry. Work is how long the work takes. The hive answers with one UseResp and answers a
// repeated (sender, ReqID) with the same response.
type UseReq struct {
	ReqID       uint64        `json:"req_id"`
	Worker      string        `json:"worker"`
	Incarnation uint64        `json:"incarnation"`
	ClaimID     string        `json:"claim_id,omitempty"`
	Work        time.Duration `json:"work"`
}

// UseResp ends a UseReq: Err is zero when the work completed.
type UseResp struct {
	ReqID  uint64 `json:"req_id"`
	Worker string `json:"worker"`
	Err    Error  `json:"error"`
}

// DeviceFault is what a device port tells its hive: the device failed (a GPU driver crash) and
// the workers on it fall back to Fallback ("cpu").
type DeviceFault struct {
	Device   string `json:"device"`
	Fallback string `json:"fallback"`
}

// WorkerHang is what the process port tells its hive: a worker stops answering health probes
// for For, while any work it is doing goes on.
type WorkerHang struct {
	Worker string        `json:"worker"`
	For    time.Duration `json:"for"`
}

// Error codes of the hive and its workers.
const (
	CodeAllSlotsBusy Code = "ALL_SLOTS_BUSY"
)

// MsgName implements node.Msg.
func (UseReq) MsgName() string { return "worker.use" }

// MsgName implements node.Msg.
func (UseResp) MsgName() string { return "worker.use_resp" }

// MsgName implements node.Msg.
func (DeviceFault) MsgName() string { return "device.fault" }

// MsgName implements node.Msg.
func (WorkerHang) MsgName() string { return "process.worker_hang" }
