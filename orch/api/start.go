package api

// Starting a worker on request (rbee-keeper worker start): a client asks a hive for a worker
// of a model on a device; the hive finds the model in its catalog or downloads it from the hub
// and registers it, checks that it fits the device (preflight), spawns the worker process, and
// answers once the worker reported ready and the queen's registry holds it.

// WorkerStartReq asks a hive to start a worker serving a model file of the hub on one of its
// devices. The hive answers with one WorkerStartResp when the worker is ready and registered,
// or when the start failed. A repeat (same sender and ReqID) joins the start in progress or is
// answered again with the same response; it never starts a second worker.
type WorkerStartReq struct {
	ReqID uint64 `json:"req_id"`
	// Provider, Repo, Revision and File name the model on the hub; Provider defaults to "hf",
	// Revision to "main".
	Provider string `json:"provider,omitempty"`
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	File     string `json:"file"`
	// Device is where the worker runs ("cuda:0", "cpu"); Slots how many requests it runs at
	// once (1 to 1024).
	Device string `json:"device"`
	Slots  int    `json:"slots"`
}

// MsgName implements node.Msg.
func (WorkerStartReq) MsgName() string { return "worker.start" }

// Reference is the catalog reference of the model file: repo/file.
func (r WorkerStartReq) Reference() string { return r.Repo + "/" + r.File }

// ModelID is the catalog ID of the model ("provider:repo/file"), which is also the model the
// started worker serves and the model inference requests name.
func (r WorkerStartReq) ModelID() string {
	p := r.Provider
	if p == "" {
		p = "hf"
	}
	return p + ":" + r.Reference()
}

// WorkerStartResp answers a WorkerStartReq: the new worker's ID and the catalog ID of the
// model it serves, or Err.
type WorkerStartResp struct {
	ReqID  uint64 `json:"req_id"`
	Worker string `json:"worker,omitempty"`
	Model  string `json:"model,omitempty"`
	Err    Error  `json:"error"`
}

// MsgName implements node.Msg.
func (WorkerStartResp) MsgName() string { return "worker.start_resp" }

// Error codes of starting a worker.
const (
	// CodeInsufficientVRAM: the model does not fit the device's memory (the preflight).
	CodeInsufficientVRAM Code = "INSUFFICIENT_VRAM"
	// CodeModelNotFound: the model is not in the hive's catalog and the hive cannot download it.
	CodeModelNotFound Code = "MODEL_NOT_FOUND"
	// CodeStartUnsupported: the hive does not start workers (it does not run its worker
	// processes, or keeps no catalog), or is shutting down.
	CodeStartUnsupported Code = "WORKER_START_UNSUPPORTED"
)
