package queen

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// recoverRetry is how long the queen waits before it tries again to read its registry after
// a disk read error. Meanwhile it answers every request UNAVAILABLE.
const recoverRetry = 5 * time.Second

// handleRecover retries loading the registry from disk.
func (q *Queen) handleRecover(env node.Env) {
	if !q.ready {
		q.recover(env)
	}
}

// recover loads the registry from disk and then becomes ready: every restored worker is
// unconfirmed under a fresh heartbeat deadline, and the new boot epoch is stored.
func (q *Queen) recover(env node.Env) {
	lastEpoch, restored, err := q.load(env)
	if err != nil {
		q.reset()
		env.Log().Error("queen: could not read the registry from disk; answering UNAVAILABLE and retrying", "retry_in", recoverRetry, "err", err)
		env.After(recoverRetry, recoverTimer{})
		return
	}
	q.epoch = lastEpoch + 1
	if err := node.WriteFileAtomic(env.Disk(), epochFile, encodeLine(epochRecord{Epoch: q.epoch})); err != nil {
		// Still safe: every record this epoch logs carries it, and the next start takes the
		// highest epoch it finds, so claim IDs stay unique.
		env.Log().Warn("queen: could not store the boot epoch", "epoch", q.epoch, "err", err)
	}
	for _, w := range q.sorted {
		w.rec.Health = api.HealthUnconfirmed
		q.armDeadline(env, w)
	}
	q.ready = true
	env.Log().Info("queen: started", "epoch", q.epoch, "workers", len(q.sorted), "log_seq", q.seq)
	env.Observe(api.QueenStarted{Epoch: q.epoch, Workers: len(q.sorted)})
	if restored {
		env.Observe(node.Mark("registry restored from log"))
	}
}

// load rebuilds the registry from the snapshot and the log, truncating a torn or corrupt log
// tail. It returns the highest boot epoch found and whether anything was restored. Only read
// errors are errors; a corrupt snapshot is kept aside and the log replayed without it.
func (q *Queen) load(env node.Env) (lastEpoch uint64, restored bool, err error) {
	q.reset()
	disk := env.Disk()
	snap, haveSnap, err := readSnapshot(env)
	if err != nil {
		return 0, false, err
	}
	if haveSnap {
		q.restoreSnapshot(snap)
		lastEpoch = snap.Epoch
	}
	if q.wal.f != nil {
		q.wal.f.Close()
	}
	f, err := disk.Open(logFile, true)
	if err != nil {
		return 0, false, fmt.Errorf("opening %s: %w", logFile, err)
	}
	q.wal = wal{f: f}
	logEpoch, replayed, err := q.replay(env, haveSnap)
	if err != nil {
		return 0, false, err
	}
	lastEpoch = max(lastEpoch, logEpoch)
	var e epochRecord
	if data, err := node.ReadFile(disk, epochFile); err == nil {
		if _, err := decodeLine(data, &e); err != nil {
			env.Log().Warn("queen: epoch file is corrupt; using the highest epoch in the log", "err", err)
		}
	} else if !node.IsNotExist(err) {
		return 0, false, fmt.Errorf("reading %s: %w", epochFile, err)
	}
	return max(lastEpoch, e.Epoch), haveSnap || replayed > 0, nil
}

// readSnapshot reads the snapshot file. A missing file is no snapshot; a corrupt one is
// renamed aside (kept for a person to inspect) and treated as missing.
func readSnapshot(env node.Env) (snapshot, bool, error) {
	var snap snapshot
	data, err := node.ReadFile(env.Disk(), snapshotFile)
	if node.IsNotExist(err) {
		return snap, false, nil
	}
	if err != nil {
		return snap, false, fmt.Errorf("reading %s: %w", snapshotFile, err)
	}
	_, err = decodeLine(data, &snap)
	if err == nil {
		err = snap.valid()
	}
	if err != nil {
		aside := snapshotFile + ".corrupt"
		env.Log().Error("queen: registry snapshot is corrupt; keeping it aside and restoring from the log alone", "file", aside, "err", err)
		env.Observe(node.Mark("corrupt registry snapshot set aside"))
		if rerr := env.Disk().Rename(snapshotFile, aside); rerr != nil {
			return snap, false, fmt.Errorf("setting aside the corrupt %s: %w", snapshotFile, rerr)
		}
		return snapshot{}, false, nil
	}
	return snap, true, nil
}

// restoreSnapshot loads a valid snapshot into the (empty) registry.
func (q *Queen) restoreSnapshot(s snapshot) {
	q.seq, q.version = s.Seq, s.Version
	for _, rec := range s.Records {
		q.put(rec)
	}
	for _, e := range s.Dedup {
		q.dedup.add(dedupKey{From: e.From, ReqID: e.ReqID}, e.Resp, true)
	}
}

// replay applies the log's records after the snapshot, in order, and truncates the file at
// the first record that is torn, corrupt, invalid or out of sequence. It returns the highest
// epoch seen and the number of records applied.
func (q *Queen) replay(env node.Env, haveSnap bool) (lastEpoch uint64, applied int, err error) {
	data, err := node.ReadFile(env.Disk(), logFile)
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", logFile, err)
	}
	var off int64
	for off < int64(len(data)) {
		var r logRecord
		n, err := decodeLine(data[off:], &r)
		if err == nil {
			err = r.valid()
		}
		if err == nil && ((applied > 0 && r.Seq != q.seq+1) || (applied == 0 && haveSnap && r.Seq > q.seq+1)) {
			err = fmt.Errorf("record %d follows record %d", r.Seq, q.seq)
		}
		if err == nil && r.Seq > q.seq && r.Version < q.version {
			err = fmt.Errorf("record %d has version %d below %d", r.Seq, r.Version, q.version)
		}
		if err != nil {
			return lastEpoch, applied, q.truncateTail(env, off, int64(len(data)), err)
		}
		if r.Seq > q.seq { // records the snapshot already holds are skipped
			q.apply(r)
			applied++
		}
		lastEpoch = max(lastEpoch, r.Epoch)
		off += int64(n)
		q.wal.size, q.wal.records = off, q.wal.records+1
	}
	return lastEpoch, applied, nil
}

// truncateTail cuts the log at off, the end of its last good record.
func (q *Queen) truncateTail(env node.Env, off, size int64, why error) error {
	env.Log().Warn("queen: truncating a torn or corrupt log tail", "file", logFile, "at", off, "dropped_bytes", size-off, "why", why)
	q.wal.size = off
	if err := q.wal.cut(); err != nil {
		return fmt.Errorf("truncating %s at %d: %w", logFile, off, err)
	}
	env.Observe(node.Mark("torn log tail truncated"))
	return nil
}
