package queen

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// persistRetry is how long the queen waits before it tries again to persist the removal of
// an expired worker after a disk error. Until then the worker stays as it was.
const persistRetry = 5 * time.Second

// disarm cancels a worker's timers.
func disarm(env node.Env, w *worker) {
	if w.deadline != 0 {
		env.Cancel(w.deadline)
		w.deadline = 0
	}
	if w.grace != 0 {
		env.Cancel(w.grace)
		w.grace = 0
	}
}

// armDeadline (re)starts a worker's heartbeat deadline under a new generation and cancels any
// stale grace period.
func (q *Queen) armDeadline(env node.Env, w *worker) {
	disarm(env, w)
	q.gen++
	w.gen = q.gen
	w.deadline = env.After(q.cfg.HeartbeatTimeout, deadlineTimer{Worker: w.rec.ID, Gen: w.gen})
}

// becomeHealthy marks a worker healthy after a heartbeat or a confirming registration and re-arms
// its deadline. Health is not logged: a restart makes every worker unconfirmed anyway.
func (q *Queen) becomeHealthy(env node.Env, w *worker) {
	if w.rec.Health == api.HealthStale {
		env.Observe(node.Mark("stale worker revived"))
	}
	w.rec.Health = api.HealthHealthy
	q.armDeadline(env, w)
	q.assertWorker(w)
}

// handleDeadline: no heartbeat (or confirmation) came in HeartbeatTimeout. A busy worker
// becomes stale and gets a grace period; any other is removed.
func (q *Queen) handleDeadline(env node.Env, t deadlineTimer) {
	w := q.workers[t.Worker]
	if w == nil || w.gen != t.Gen {
		return // a timer of an older registration or of an earlier heartbeat
	}
	w.deadline = 0
	if w.rec.Health == api.HealthStale {
		panic(fmt.Sprintf("queen: heartbeat deadline of generation %d fired for worker %s that is already stale", t.Gen, t.Worker))
	}
	if w.rec.State == api.StateBusy {
		q.becomeStale(env, w)
		return
	}
	reason := fmt.Sprintf("no heartbeat for %s", q.cfg.HeartbeatTimeout)
	if !q.expire(env, w, reason) {
		w.deadline = env.After(persistRetry, t)
		return
	}
	env.Observe(node.Mark("worker expired idle"))
}

// becomeStale makes a busy worker stale-but-busy: never handed out, removed when its request
// ends or when StaleGrace passes without a heartbeat.
func (q *Queen) becomeStale(env node.Env, w *worker) {
	w.rec.Health = api.HealthStale
	q.assertWorker(w)
	env.Observe(api.WorkerHealthChanged{Worker: w.rec.ID, Health: api.HealthStale})
	env.Observe(node.Mark("worker stale-but-busy"))
	w.grace = env.After(q.cfg.StaleGrace, graceTimer{Worker: w.rec.ID, Gen: w.gen})
}

// handleGrace: a stale-but-busy worker's grace period ended without a heartbeat.
func (q *Queen) handleGrace(env node.Env, t graceTimer) {
	w := q.workers[t.Worker]
	if w == nil || w.gen != t.Gen {
		return
	}
	w.grace = 0
	if w.rec.Health == api.HealthHealthy {
		panic(fmt.Sprintf("queen: grace timer of generation %d fired for healthy worker %s; a revival must re-arm its timers", t.Gen, t.Worker))
	}
	reason := fmt.Sprintf("no heartbeat for %s and then for the stale grace of %s while busy", q.cfg.HeartbeatTimeout, q.cfg.StaleGrace)
	if !q.expire(env, w, reason) {
		w.grace = env.After(persistRetry, t)
		return
	}
	env.Observe(node.Mark("worker expired after grace"))
}

// expire removes a worker on the queen's own account: the removal is logged first, then
// observed. On a disk error it changes nothing and returns false; the caller retries later.
func (q *Queen) expire(env node.Env, w *worker, reason string) bool {
	if err := q.commit(env, logRecord{Version: q.version, Delete: w.rec.ID}); err != nil {
		env.Log().Error("queen: could not persist the expiry of a worker; retrying", "worker", w.rec.ID, "retry_in", persistRetry, "err", err)
		return false
	}
	env.Log().Info("queen: worker expired", "worker", w.rec.ID, "reason", reason)
	env.Observe(api.WorkerExpired{Worker: w.rec.ID, Reason: reason})
	return true
}
