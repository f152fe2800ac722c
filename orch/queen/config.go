package queen

import (
	"errors"
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/plant"
)

// Upper bounds of the config fields: past them a queen would hold more in memory or on disk
// than a single process should, so Validate refuses them.
const (
	maxWorkersLimit        = 1_000_000
	dedupEntriesLimit      = 1 << 20
	logCompactRecordsLimit = 1 << 20
	failoverLimit          = 16
	queueAllowanceLimit    = 1 << 20
)

// QueueAllowanceSlots is the value of Config.QueueAllowance that lets each worker queue as
// many requests as it has slots (the default).
const QueueAllowanceSlots = -1

// Config is the worker registry's configuration. Start from DefaultConfig and change fields;
// New panics on a config that Validate refuses.
type Config struct {
	// MaxWorkers is the most workers the registry holds at once, a count. Default 1000. Zero
	// is invalid. Registering one more gets REGISTRY_FULL.
	MaxWorkers int
	// HeartbeatTimeout is how long a worker may go without a heartbeat (or, after a queen
	// restart, without a confirmation) before the queen acts: an idle, loading or draining
	// worker is removed, a busy one goes stale. Default 120s. Zero is invalid.
	HeartbeatTimeout time.Duration
	// StaleGrace is how long a stale-but-busy worker is kept after its heartbeat deadline
	// passed, so that its running request can end; then it is removed. Default 5m. Zero is
	// invalid.
	StaleGrace time.Duration
	// DedupEntriesMax is how many answered requests, keyed by (sender, ReqID), the queen
	// remembers to answer retries and duplicates without applying them twice; the oldest is
	// forgotten first. Default 4096. Zero is invalid.
	DedupEntriesMax int
	// LogCompactRecords is how many records the registry's log holds before the queen writes
	// a snapshot and starts a new log, a count. Default 1000. Zero is invalid.
	LogCompactRecords int
	// StallTimeout is how long an inference attempt may go without a token or its end from
	// its worker before the queen cancels it and fails the request over to another worker.
	// Default 10s. Zero is invalid.
	StallTimeout time.Duration
	// FailoverMax is how many times one inference request may move to another worker after
	// its worker failed, stalled or was lost, a count. Default 2. Zero means never: the first
	// failure ends the request with WORKER_LOST. A re-route after a worker's ALL_SLOTS_BUSY
	// before any token does not count.
	FailoverMax int
	// QueueAllowance is how many inference requests the queen lets each worker have queued
	// beyond its slots, a count: a worker is full at Slots + QueueAllowance outstanding
	// attempts. Default QueueAllowanceSlots (-1): as many as the worker has slots. Zero means
	// no queueing: at most Slots per worker.
	QueueAllowance int
	// InferDedupEntriesMax is how many finished inference requests, keyed by (client, ReqID),
	// the queen remembers to answer a repeated request with its InferDone again instead of
	// running it twice; the oldest is forgotten first. Default 4096. Zero is invalid.
	InferDedupEntriesMax int
	// Plants enables planted bugs (builds with -tags plant only). Default, and the zero Set:
	// none.
	Plants plant.Set
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		MaxWorkers:        1000,
		HeartbeatTimeout:  120 * time.Second,
		StaleGrace:        5 * time.Minute,
		DedupEntriesMax:   4096,
		LogCompactRecords: 1000,

		StallTimeout:         10 * time.Second,
		FailoverMax:          2,
		QueueAllowance:       QueueAllowanceSlots,
		InferDedupEntriesMax: 4096,
	}
}

// Validate checks every field and lists every bad one: MaxWorkers in 1..1,000,000,
// HeartbeatTimeout, StaleGrace and StallTimeout positive, DedupEntriesMax, LogCompactRecords
// and InferDedupEntriesMax in 1..1,048,576, FailoverMax in 0..16, QueueAllowance in
// -1..1,048,576, and Plants known and compiled in.
func (c Config) Validate() error {
	var errs []error
	if c.MaxWorkers < 1 || c.MaxWorkers > maxWorkersLimit {
		errs = append(errs, fmt.Errorf("max_workers is %d, want 1 to %d", c.MaxWorkers, maxWorkersLimit))
	}
	if c.HeartbeatTimeout <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat_timeout is %s, want a positive duration", c.HeartbeatTimeout))
	}
	if c.StaleGrace <= 0 {
		errs = append(errs, fmt.Errorf("stale_grace is %s, want a positive duration", c.StaleGrace))
	}
	if c.DedupEntriesMax < 1 || c.DedupEntriesMax > dedupEntriesLimit {
		errs = append(errs, fmt.Errorf("dedup_entries_max is %d, want 1 to %d", c.DedupEntriesMax, dedupEntriesLimit))
	}
	if c.LogCompactRecords < 1 || c.LogCompactRecords > logCompactRecordsLimit {
		errs = append(errs, fmt.Errorf("log_compact_records is %d, want 1 to %d", c.LogCompactRecords, logCompactRecordsLimit))
	}
	if c.StallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("stall_timeout is %s, want a positive duration", c.StallTimeout))
	}
	if c.FailoverMax < 0 || c.FailoverMax > failoverLimit {
		errs = append(errs, fmt.Errorf("failover_max is %d, want 0 to %d", c.FailoverMax, failoverLimit))
	}
	if c.QueueAllowance < QueueAllowanceSlots || c.QueueAllowance > queueAllowanceLimit {
		errs = append(errs, fmt.Errorf("queue_allowance is %d, want %d (as many as the worker's slots) or 0 to %d", c.QueueAllowance, QueueAllowanceSlots, queueAllowanceLimit))
	}
	if c.InferDedupEntriesMax < 1 || c.InferDedupEntriesMax > dedupEntriesLimit {
		errs = append(errs, fmt.Errorf("infer_dedup_entries_max is %d, want 1 to %d", c.InferDedupEntriesMax, dedupEntriesLimit))
	}
	if err := plant.Validate(c.Plants.Names()); err != nil {
		errs = append(errs, fmt.Errorf("plants: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("queen config: %w", errors.Join(errs...))
	}
	return nil
}
