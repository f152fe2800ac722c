package queen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Files of the queen on its disk.
const (
	logFile      = "queen/registry.log"  // append-only log of changes since the snapshot
	snapshotFile = "queen/registry.snap" // the registry as of a log sequence number
	epochFile    = "queen/epoch"         // the boot epoch of the last start
)

// logRecord is one durable change. Records are applied, never re-executed: Put holds the
// worker's whole record after the change, so replay gives exactly what the live queen had.
type logRecord struct {
	Seq     uint64            `json:"seq"`     // position in the log; grows by one per record, across compactions
	Epoch   uint64            `json:"epoch"`   // boot epoch of the queen that wrote it
	Version uint64            `json:"version"` // the registry's version counter after the change
	Put     *api.WorkerRecord `json:"put,omitempty"`
	Delete  string            `json:"delete,omitempty"`
	Dedup   *dedupEntry       `json:"dedup,omitempty"` // the answer that acknowledged the change
}

// valid checks a record read from disk: a sequence number, exactly one of Put and Delete, a
// and a valid put record whose version is within the counter.
func (r logRecord) valid() error {
	switch {
	case r.Seq == 0:
		return fmt.Errorf("sequence number 0")
	case (r.Put == nil) == (r.Delete == ""):
		return fmt.Errorf("record %d: want exactly one of put and delete", r.Seq)
	case r.Put != nil:
		return validRecord(*r.Put, r.Version)
	}
	return nil
}

// validRecord checks a worker record read from disk against the registry's invariants.
func validRecord(w api.WorkerRecord, counter uint64) error {
	if err := w.WorkerSpec.Validate(); err != nil {
		return err
	}
	switch {
	case !w.State.Valid():
		return fmt.Errorf("worker %q: state %q", w.ID, w.State)
	case w.Version == 0 || w.Version > counter:
		return fmt.Errorf("worker %q: version %d outside 1..%d", w.ID, w.Version, counter)
	case w.ClaimID != "" && w.State != api.StateBusy:
		return fmt.Errorf("worker %q: claim %q while %s", w.ID, w.ClaimID, w.State)
	}
	return nil
}

// snapshot is the whole durable registry as of log record Seq.
type snapshot struct {
	Seq     uint64             `json:"seq"`
	Epoch   uint64             `json:"epoch"`
	Version uint64             `json:"version"`
	Records []api.WorkerRecord `json:"records"` // sorted by ID
	Dedup   []dedupEntry       `json:"dedup"`   // oldest first
}

// valid checks a snapshot read from disk: records valid, sorted and unique.
func (s snapshot) valid() error {
	for i, w := range s.Records {
		if err := validRecord(w, s.Version); err != nil {
			return err
		}
		if i > 0 && s.Records[i-1].ID >= w.ID {
			return fmt.Errorf("records not sorted by id at %q", w.ID)
		}
	}
	return nil
}

// epochRecord is the content of epochFile.
type epochRecord struct {
	Epoch uint64 `json:"epoch"`
}

// encodeLine frames v as one line: 8 hex digits of the CRC-32 (IEEE) of its JSON, a space,
// the JSON, a newline. JSON never holds a raw newline, so a line is a record.
func encodeLine(v any) []byte {
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queen: cannot encode %T: %v", v, err))
	}
	line := make([]byte, 0, len(body)+10)
	line = fmt.Appendf(line, "%08x ", crc32.ChecksumIEEE(body))
	line = append(line, body...)
	return append(line, '\n')
}

// decodeLine reads the first line of data into v and returns its length with the newline.
// A missing newline (a torn write), a bad checksum or bad JSON is an error.
func decodeLine(data []byte, v any) (int, error) {
	end := bytes.IndexByte(data, '\n')
	if end < 0 {
		return 0, fmt.Errorf("%d bytes without a newline (a torn write)", len(data))
	}
	line := data[:end]
	if len(line) < 10 || line[8] != ' ' {
		return 0, fmt.Errorf("line of %d bytes has no checksum", len(line))
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad checksum field %q", line[:8])
	}
	body := line[9:]
	if got := crc32.ChecksumIEEE(body); uint64(got) != want {
		return 0, fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return 0, err
	}
	return end + 1, nil
}

// wal is the open log file.
type wal struct {
	f       node.File
	size    int64 // bytes of good records; the next record goes here
	records int   // records in the file, skipped ones included
	dirty   bool  // bytes after size may hold a failed write: truncate before appending
}

// append writes and syncs one record. On an error the file is cut back to size (now, or
// before the next append), so a record whose write failed can never be replayed.
func (l *wal) append(r logRecord) error {
	if l.dirty {
		if err := l.cut(); err != nil {
			return fmt.Errorf("cutting a failed write off the log: %w", err)
		}
	}
	line := encodeLine(r)
	if _, err := l.f.WriteAt(line, l.size); err != nil {
		l.dirty = l.cut() != nil
		return fmt.Errorf("writing %s: %w", logFile, err)
	}
	if err := l.f.Sync(); err != nil {
		l.dirty = l.cut() != nil
		return fmt.Errorf("syncing %s: %w", logFile, err)
	}
	l.size += int64(len(line))
	l.records++
	return nil
}

// cut truncates the file to size and syncs.
func (l *wal) cut() error {
	if err := l.f.Truncate(l.size); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	l.dirty = false
	return nil
}

// commit makes a change durable, then applies it to memory: persist before you acknowledge.
// The caller fills Version (and Put or Delete, and Dedup); commit numbers the record. On an
// error memory is unchanged. After LogCompactRecords records it compacts the log.
func (q *Queen) commit(env node.Env, r logRecord) error {
	r.Seq, r.Epoch = q.seq+1, q.epoch
	if err := r.valid(); err != nil {
		panic(fmt.Sprintf("queen: built an invalid log record %+v: %v", r, err))
	}
	if err := q.wal.append(r); err != nil {
		return err
	}
	if removed := q.apply(r); removed != nil {
		disarm(env, removed)
	}
	if q.wal.records >= q.cfg.LogCompactRecords {
		q.compact(env)
	}
	return nil
}

// apply changes memory by one record, live or in replay, and returns a removed worker.
func (q *Queen) apply(r logRecord) *worker {
	if r.Seq <= q.seq || r.Version < q.version {
		panic(fmt.Sprintf("queen: applying record %d (version %d) after record %d (version %d)", r.Seq, r.Version, q.seq, q.version))
	}
	q.seq, q.version = r.Seq, r.Version
	var removed *worker
	if r.Put != nil {
		q.put(*r.Put)
	} else {
		removed = q.drop(r.Delete)
	}
	if r.Dedup != nil {
		q.dedup.add(dedupKey{From: r.Dedup.From, ReqID: r.Dedup.ReqID}, r.Dedup.Resp, true)
	}
	return removed
}

// compact writes a snapshot of the registry as of the last record, atomically, and then
// empties the log. A crash at any point is recoverable: before the rename the old snapshot and
// the full log hold everything; after it, replay skips log records the snapshot covers. If
// emptying the log fails, appends wait until it succeeds (see wal.dirty).
func (q *Queen) compact(env node.Env) {
	snap := snapshot{Seq: q.seq, Epoch: q.epoch, Version: q.version, Records: q.Records(), Dedup: q.dedup.durableEntries()}
	if err := node.WriteFileAtomic(env.Disk(), snapshotFile, encodeLine(snap)); err != nil {
		env.Log().Warn("queen: could not write a registry snapshot; the log keeps growing until one succeeds", "err", err)
		return
	}
	q.wal.size, q.wal.records = 0, 0
	if err := q.wal.cut(); err != nil {
		q.wal.dirty = true
		env.Log().Warn("queen: could not empty the log after a snapshot; retrying before the next write", "err", err)
	}
	env.Observe(node.Mark("log compacted"))
}
