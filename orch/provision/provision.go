// Package provision downloads model files from a model hub (the simulated Hugging Face hub of
// sim/, or the real one through the real runtime) onto a machine's disk. It is a state machine
// driven by messages, part of the deterministic core: no goroutines, no wall clock, every
// effect through node.Env.
//
// A download is single-flight per (disk, model file) across every process sharing the disk: the
// process that writes it holds a lease file next to the model (<path>.lease) that it renews
// every Config.LeaseRenew and that expires Config.LeaseTTL after the last renewal if its holder
// crashes; others wait for the holder to finish, or take the lease over once it has expired and
// resume from the holder's partial file. The body goes into <path>.partial, fetched with HEAD
// (size and sha256) then a ranged GET that resumes after any interruption, a restart included;
// the file is checked (its sha256, kept running as the body is written, so that only a resumed
// part is ever read back, once; and gguf.Validate, which reads the header only) before it is
// renamed into place, and a file that fails is removed and fetched again, a bounded number of
// times.
//
// Caller's duties (the hive): call Start once per incarnation before anything else; pass every
// message to Handle first and drop those it claims (hub answers from Config.Hub and the
// provisioner's own timers); register the model in the catalog when a Done without error
// arrives (Done is sent to the Request's Requester, which may be the hive itself). The
// provisioner never touches the catalog.
package provision

import (
	"fmt"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Error codes of the provisioner (package api has none for downloads yet).
const (
	// CodeDownloadFailed ends a download that cannot succeed without a person acting: a missing
	// repository, revision or file, a gated model, a full disk, or retries exhausted.
	CodeDownloadFailed api.Code = "DOWNLOAD_FAILED"
	// CodeDownloadCancelled ends a download that Cancel stopped; its partial file is kept.
	CodeDownloadCancelled api.Code = "DOWNLOAD_CANCELLED"
)

// Planted bugs of this package (see orch/plant; each is in plant.Known).
const (
	// PlantIgnoreRetryAfter retries a 429 after the normal backoff, not after Retry-After.
	PlantIgnoreRetryAfter = "provisioner-ignore-retry-after"
	// PlantResumeWrongOffset resumes with Range one byte past the partial file's end.
	PlantResumeWrongOffset = "provisioner-resume-wrong-offset"
	// PlantSkipChecksum renames a downloaded file into place without checking its sha256.
	PlantSkipChecksum = "provisioner-skip-checksum"
	// PlantProgressPercentOfAttempt reports the percent of the current attempt's bytes, not of
	// the file, once a download has resumed.
	PlantProgressPercentOfAttempt = "provisioner-progress-percent-of-attempt"
	// PlantDoubleDownload ignores another process's live lease and downloads anyway.
	PlantDoubleDownload = "provisioner-double-download"
)

// Config is a provisioner's configuration. Build it from DefaultConfig and check it with
// Validate.
type Config struct {
	// Hub is the model hub's address; default "hub".
	Hub node.Addr
	// Token is the bearer token sent to the hub (HF_TOKEN); empty for anonymous access.
	Token string
	// ModelsDir is the folder of model files on the disk; default "models/".
	ModelsDir string
	// ChunkTimeout is how long a request may go without an answer or a body chunk before it is
	// counted as stalled, closed and retried; default 30s.
	ChunkTimeout time.Duration
	// RetryAttemptsMax bounds consecutive failed attempts (5xx, resets, stalls, 429s, bodies
	// that fail verification) before a download ends with CodeDownloadFailed; default 5.
	RetryAttemptsMax int
	// BackoffBase and BackoffMax bound the capped, jittered exponential backoff between
	// attempts: attempt n waits a random time in [d/2, d] with d = min(Max, Base*2^(n-1));
	// defaults 1s and 60s.
	BackoffBase, BackoffMax time.Duration
	// BandwidthBytesPerSec limits the hive's download rate with a token bucket; 0 (default)
	// means unlimited. The hub pushes bodies, so the limit is kept by closing a download when the
	// bucket is empty and resuming it with Range once the bucket is full again.
	BandwidthBytesPerSec int64
	// BurstBytes is the token bucket's size, in bytes; default 16 MiB; unused when unlimited.
	BurstBytes int64
	// FreeSpaceMarginBytes is the space a download must leave free on a disk that can report
	// its free space (an optional FreeSpacer); default 1 GiB. Other disks are checked by
	// handling ENOSPC.
	FreeSpaceMarginBytes int64
	// LeaseTTL is how long a download lease lives after its last renewal; default 60s.
	LeaseTTL time.Duration
	// LeaseRenew is how often a holder renews its lease; default 20s; less than LeaseTTL.
	LeaseRenew time.Duration
	// LeasePoll is how often a process waiting on another's lease looks again; default 5s.
	LeasePoll time.Duration
	// ProgressInterval is the period of Progress messages; default 1s.
	ProgressInterval time.Duration
	// SyncEveryBytes is how many written bytes the partial file may hold unsynced; default 8 MiB.
	SyncEveryBytes int64
	// Plants enables planted bugs (tests and the canary only).
	Plants plant.Set
}

// DefaultConfig returns the defaults listed on Config's fields.
func DefaultConfig() Config {
	return Config{
		Hub: "hub", ModelsDir: "models/", ChunkTimeout: 30 * time.Second, RetryAttemptsMax: 5,
		BackoffBase: time.Second, BackoffMax: 60 * time.Second, BurstBytes: 16 << 20,
		FreeSpaceMarginBytes: 1 << 30, LeaseTTL: 60 * time.Second, LeaseRenew: 20 * time.Second,
		LeasePoll: 5 * time.Second, ProgressInterval: time.Second, SyncEveryBytes: 8 << 20,
	}
}

// Validate checks: Hub and ModelsDir set; every duration positive; LeaseRenew < LeaseTTL;
// BackoffBase <= BackoffMax; RetryAttemptsMax >= 1; BandwidthBytesPerSec and
// FreeSpaceMarginBytes >= 0; BurstBytes > 0 when the bandwidth is limited; SyncEveryBytes > 0;
// every plant known to this build.
func (c Config) Validate() error {
	switch {
	case c.Hub == "" || c.ModelsDir == "":
		return fmt.Errorf("provision: Hub and ModelsDir must be set")
	case c.ChunkTimeout <= 0 || c.BackoffBase <= 0 || c.LeaseTTL <= 0 || c.LeaseRenew <= 0 ||
		c.LeasePoll <= 0 || c.ProgressInterval <= 0:
		return fmt.Errorf("provision: every duration must be positive: %+v", c)
	case c.LeaseRenew >= c.LeaseTTL:
		return fmt.Errorf("provision: LeaseRenew %v must be less than LeaseTTL %v", c.LeaseRenew, c.LeaseTTL)
	case c.BackoffBase > c.BackoffMax:
		return fmt.Errorf("provision: BackoffBase %v exceeds BackoffMax %v", c.BackoffBase, c.BackoffMax)
	case c.RetryAttemptsMax < 1:
		return fmt.Errorf("provision: RetryAttemptsMax %d must be at least 1", c.RetryAttemptsMax)
	case c.BandwidthBytesPerSec < 0 || c.FreeSpaceMarginBytes < 0 || c.SyncEveryBytes <= 0:
		return fmt.Errorf("provision: negative bandwidth or margin, or SyncEveryBytes <= 0")
	case c.BandwidthBytesPerSec > 0 && c.BurstBytes <= 0:
		return fmt.Errorf("provision: BurstBytes must be positive when the bandwidth is limited")
	}
	for _, n := range c.Plants.Names() {
		if !strings.HasPrefix(n, "provisioner-") {
			return fmt.Errorf("provision: plant %q is not a provisioner plant", n)
		}
	}
	return nil
}

// Request asks for a model file.
type Request struct {
	// Repo, Revision and File name the file on the hub; Revision defaults to "main".
	Repo, Revision, File string
	// Provider is the catalog's provider of the model; default "hf".
	Provider string
	// Requester receives Progress and Done messages, tagged with ReqID.
	Requester node.Addr
	ReqID     uint64
}

// Progress reports a running download to its requesters, at most once per
// Config.ProgressInterval.
type Progress struct {
	ID    string `json:"id"`
	ReqID uint64 `json:"req_id"`
	// Bytes is how much of the file is on disk; Total its size; Percent is 100*Bytes/Total.
	Bytes   int64   `json:"bytes"`
	Total   int64   `json:"total"`
	Percent float64 `json:"percent"`
	// BytesPerSec is the rate over the last interval.
	BytesPerSec int64 `json:"bytes_per_sec"`
	// Resumed says the download continued a partial file, from ResumedFromPercent.
	Resumed            bool    `json:"resumed,omitempty"`
	ResumedFromPercent float64 `json:"resumed_from_percent,omitempty"`
}

// Done ends a download for one requester: Err is zero on success, and then Path (the model
// file's name on the disk), SHA256 and Size describe the verified file.
type Done struct {
	ID     string    `json:"id"`
	ReqID  uint64    `json:"req_id"`
	Err    api.Error `json:"err"`
	Path   string    `json:"path,omitempty"`
	SHA256 string    `json:"sha256,omitempty"`
	Size   int64     `json:"size,omitempty"`
}

// MsgName implements node.Msg.
func (Progress) MsgName() string { return "provision.progress" }

// MsgName implements node.Msg.
func (Done) MsgName() string { return "provision.done" }

// FreeSpacer is an optional ability of a node.Disk: its free space in bytes. When the disk has
// it, a download that would leave less than Config.FreeSpaceMarginBytes free does not start.
type FreeSpacer interface {
	FreeBytes() (int64, error)
}

// normalize fills a Request's defaults and checks it.
func (r Request) normalize() (Request, error) {
	if r.Revision == "" {
		r.Revision = "main"
	}
	if r.Provider == "" {
		r.Provider = "hf"
	}
	switch {
	case r.Repo == "" || r.File == "" || r.Requester == "":
		return r, fmt.Errorf("Repo, File and Requester must be set")
	case strings.HasSuffix(r.File, ".partial") || strings.HasSuffix(r.File, ".tmp") ||
		strings.HasSuffix(r.File, ".lease"):
		return r, fmt.Errorf("file name %q has a reserved suffix", r.File)
	}
	return r, nil
}

// modelPath is where the model file of r lives: the catalog's path of reference Repo/File.
// The revision is not part of it, as in the catalog.
func (p *Provisioner) modelPath(r Request) string {
	return catalog.ModelPath(p.cfg.ModelsDir, r.Provider, r.Repo+"/"+r.File)
}
