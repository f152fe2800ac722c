package api

// ModelRecord is one model in a hive's catalog, as the wire carries it.
type ModelRecord struct {
	ID            string `json:"id"`
	Provider      string `json:"provider"`
	Reference     string `json:"reference"`
	LocalPath     string `json:"local_path"`
	SizeBytes     int64  `json:"size_bytes"`
	SHA256        string `json:"sha256"`
	Architecture  string `json:"architecture"`
	ContextLength int64  `json:"context_length"`
	Quantization  string `json:"quantization"`
	VRAMRequired  int64  `json:"vram_required"`
	// DownloadedAtUnixNano is when the model file was registered, by the hive's clock.
	DownloadedAtUnixNano int64 `json:"downloaded_at_unix_nano"`
}

// Catalog requests, answered by a hive with one CatalogResp. Each carries a ReqID unique per
// sender; a hive answers a repeat from memory.
type (
	// CatalogRegisterReq registers the model file that is already on the hive's disk at the
	// catalog's path for (Provider, Reference). Registration is idempotent: Inserted says
	// whether this request added the row.
	CatalogRegisterReq struct {
		ReqID        uint64 `json:"req_id"`
		Provider     string `json:"provider"`
		Reference    string `json:"reference"`
		VRAMRequired int64  `json:"vram_required"`
	}
	// CatalogGetReq looks one model up by ID ("provider:reference").
	CatalogGetReq struct {
		ReqID uint64 `json:"req_id"`
		ID    string `json:"id"`
	}
	// CatalogListReq lists one page of a provider's models in ID order.
	CatalogListReq struct {
		ReqID     uint64 `json:"req_id"`
		Provider  string `json:"provider"`
		PageSize  int    `json:"page_size"`
		PageToken string `json:"page_token,omitempty"`
	}
)

// Catalog maintenance requests (rbee-keeper models cleanup / backup / restore).
type (
	// CatalogCleanupReq removes rows whose model file is missing or invalid and, with Adopt,
	// registers valid model files that have no row.
	CatalogCleanupReq struct {
		ReqID uint64 `json:"req_id"`
		Adopt bool   `json:"adopt"`
	}
	// CatalogBackupReq writes a consistent snapshot of the catalog to the file Name on the
	// hive's disk while other requests go on.
	CatalogBackupReq struct {
		ReqID uint64 `json:"req_id"`
		Name  string `json:"name"`
	}
	// CatalogRestoreReq replaces the catalog with the backup Name; the old catalog is kept
	// aside.
	CatalogRestoreReq struct {
		ReqID uint64 `json:"req_id"`
		Name  string `json:"name"`
	}
)

// CleanupSummary says what a cleanup did.
type CleanupSummary struct {
	RowsRemoved  int      `json:"rows_removed"`
	FilesAdopted int      `json:"files_adopted"`
	RemovedIDs   []string `json:"removed_ids,omitempty"`
	AdoptedIDs   []string `json:"adopted_ids,omitempty"`
	Unreadable   []string `json:"unreadable,omitempty"`
}

// CatalogResp answers a catalog request. Err is zero on success.
type CatalogResp struct {
	ReqID     uint64         `json:"req_id"`
	Op        string         `json:"op"`
	Err       Error          `json:"error"`
	Inserted  bool           `json:"inserted,omitempty"`
	Found     bool           `json:"found,omitempty"`
	Model     ModelRecord    `json:"model"`
	Models    []ModelRecord  `json:"models,omitempty"`
	NextToken string         `json:"next_token,omitempty"`
	Cleanup   CleanupSummary `json:"cleanup"`
}

// MsgName implements node.Msg.
func (CatalogCleanupReq) MsgName() string { return "catalog.cleanup" }

// MsgName implements node.Msg.
func (CatalogBackupReq) MsgName() string { return "catalog.backup" }

// MsgName implements node.Msg.
func (CatalogRestoreReq) MsgName() string { return "catalog.restore" }

// Catalog error codes.
const (
	CodeModelFileInvalid   Code = "MODEL_FILE_INVALID"
	CodeCatalogUnavailable Code = "CATALOG_UNAVAILABLE"
	CodeDiskFull           Code = "DISK_FULL"
)

// MsgName implements node.Msg.
func (CatalogRegisterReq) MsgName() string { return "catalog.register" }

// MsgName implements node.Msg.
func (CatalogGetReq) MsgName() string { return "catalog.get" }

// MsgName implements node.Msg.
func (CatalogListReq) MsgName() string { return "catalog.list" }

// MsgName implements node.Msg.
func (CatalogResp) MsgName() string { return "catalog.resp" }

// CatalogRebuilt is what a hive reports through node.Env.Observe after it found its catalog
// corrupt and rebuilt it from the model files on disk: the user-facing event.
type CatalogRebuilt struct {
	Message    string   `json:"message"`
	Backup     string   `json:"backup"`
	Rebuilt    int      `json:"rebuilt"`
	Unreadable []string `json:"unreadable,omitempty"`
	Suggestion string   `json:"suggestion"`
}

// ObservationName implements node.Observation.
func (CatalogRebuilt) ObservationName() string { return "catalog.rebuilt" }

// ModelDownloadReq asks a hive to download a model file from the hub and register it in its
// machine's catalog. The hive answers with one CatalogResp (Op "model.download": Inserted and
// Model as for a registration, or an error such as DOWNLOAD_FAILED) and, while the download
// runs, progress messages. Repeats of the same request (same sender and ReqID) join the same
// download.
type ModelDownloadReq struct {
	ReqID    uint64 `json:"req_id"`
	Provider string `json:"provider"`
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	File     string `json:"file"`
}

// MsgName implements node.Msg.
func (ModelDownloadReq) MsgName() string { return "model.download" }

// Reference is the catalog reference of the downloaded file: repo/file.
func (r ModelDownloadReq) Reference() string { return r.Repo + "/" + r.File }
