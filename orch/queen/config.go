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
)

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
	}
}

// Validate checks every field and lists every bad one: MaxWorkers in 1..1,000,000,
// HeartbeatTimeout and StaleGrace positive, DedupEntriesMax and LogCompactRecords in
// 1..1,048,576, and Plants known and compiled in.
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
	if err := plant.Validate(c.Plants.Names()); err != nil {
		errs = append(errs, fmt.Errorf("plants: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("queen config: %w", errors.Join(errs...))
	}
	return nil
}
