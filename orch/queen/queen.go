// Package queen is queen-rbee's worker registry, written as a sans-IO node.Node.
//
// Hives register their workers, heartbeat them, and report state changes; routers claim idle,
// healthy workers and release them. The registry implements exactly the sequential
// specification at the end of orch/api/registry.go, which model/ checks recorded histories
// against. On top of it the queen adds what a distributed registry needs: it answers retried
// and duplicated requests from a cache instead of applying them twice, expires workers whose
// heartbeats stop (keeping busy ones as stale for a grace period), and persists every
// client-visible change to an append-only, checksummed log on its disk before it answers
// ("persist before you acknowledge"), so a restarted queen restores its workers (as
// unconfirmed) and its answered requests.
//
// The queen also routes inference (infer.go): it picks a healthy, least-loaded worker for each
// client request, relays the worker's tokens, and fails a request over to another worker when
// its worker fails, stalls or leaves the registry. That state is volatile: a crash loses it.
//
// Callers' duties: validate the Config first (New panics on a bad one); call Start once per
// process incarnation before any Handle; never call a Queen from two goroutines at once; give
// the queen a disk on which it alone owns the files under "queen/".
package queen

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Queen is the worker registry node. Its zero value is not usable; call New.
type Queen struct {
	cfg     Config
	started bool
	ready   bool   // recovery from disk finished; until then every request gets UNAVAILABLE
	epoch   uint64 // boot epoch: grows at every start
	version uint64 // registry-wide version counter: the last value next() handed out
	seq     uint64 // sequence number of the last applied log record
	claims  uint64 // claims granted in this epoch
	gen     uint64 // last timer generation handed out

	workers map[string]*worker // looked up by ID only; never iterated
	sorted  []*worker          // the workers sorted by ID: the only order the queen iterates in
	dedup   dedupCache
	wal     wal

	scratch []*worker // reused by handleClaim for its eligible workers

	infer inferState // inference routing; volatile: a crash loses it (see infer.go)
}

// worker is one registered worker with its timers.
type worker struct {
	rec      api.WorkerRecord
	gen      uint64       // generation of the worker's current timers; older timers are ignored
	deadline node.TimerID // heartbeat deadline, zero when none is set
	grace    node.TimerID // stale grace, zero when none is set

	outstanding int // inference attempts running on it: len(q.infer.load[ID]), kept here for the router's scan
}

var _ node.Node = (*Queen)(nil)

// New returns a queen with the given config. It panics if cfg.Validate fails: callers
// validate configs at the edge, so a bad one here is a programming error.
func New(cfg Config) *Queen {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("queen.New: invalid config: %v", err))
	}
	q := &Queen{cfg: cfg, infer: newInferState(cfg)}
	q.reset()
	return q
}

// reset forgets all registry state, before a (re)load from disk.
func (q *Queen) reset() {
	q.version, q.seq = 0, 0
	q.workers = map[string]*worker{}
	q.sorted = nil
	q.dedup = newDedupCache(q.cfg.DedupEntriesMax)
}

// Len is the number of registered workers.
func (q *Queen) Len() int { return len(q.sorted) }

// Epoch is the queen's boot epoch (zero before Start).
func (q *Queen) Epoch() uint64 { return q.epoch }

// Config returns the queen's configuration.
func (q *Queen) Config() Config { return q.cfg }

// Records returns a copy of every worker record, sorted by ID.
func (q *Queen) Records() []api.WorkerRecord {
	out := make([]api.WorkerRecord, 0, len(q.sorted))
	for _, w := range q.sorted {
		out = append(out, w.rec)
	}
	return out
}

// put inserts or replaces a worker's record, keeping ids sorted.
func (q *Queen) put(rec api.WorkerRecord) *worker {
	if w := q.workers[rec.ID]; w != nil {
		w.rec = rec
		return w
	}
	w := &worker{rec: rec}
	q.workers[rec.ID] = w
	i, _ := slices.BinarySearchFunc(q.sorted, rec.ID, byID)
	q.sorted = slices.Insert(q.sorted, i, w)
	return w
}

// byID orders workers by ID for binary search.
func byID(w *worker, id string) int { return strings.Compare(w.rec.ID, id) }

// drop removes a worker and returns it (nil if absent).
func (q *Queen) drop(id string) *worker {
	w := q.workers[id]
	if w == nil {
		return nil
	}
	delete(q.workers, id)
	i, found := slices.BinarySearchFunc(q.sorted, id, byID)
	if !found || q.sorted[i] != w {
		panic(fmt.Sprintf("queen: worker %q in the map but not in the sorted list (found %v at %d of %d)", id, found, i, len(q.sorted)))
	}
	q.sorted = slices.Delete(q.sorted, i, i+1)
	return w
}

// assertWorker panics if a worker's record breaks an invariant the registry keeps.
func (q *Queen) assertWorker(w *worker) {
	r := w.rec
	if r.Health == api.HealthStale && r.State != api.StateBusy {
		panic(fmt.Sprintf("queen: worker %s is stale but %s; only busy workers become stale: %+v", r.ID, r.State, r))
	}
	if r.ClaimID != "" && r.State != api.StateBusy {
		panic(fmt.Sprintf("queen: worker %s holds claim %s but is %s: %+v", r.ID, r.ClaimID, r.State, r))
	}
	if r.Version > q.version {
		panic(fmt.Sprintf("queen: worker %s has version %d above the registry's counter %d", r.ID, r.Version, q.version))
	}
	if len(q.sorted) != len(q.workers) {
		panic(fmt.Sprintf("queen: %d sorted workers but %d in the map", len(q.sorted), len(q.workers)))
	}
}
