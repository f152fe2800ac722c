package keeper

import (
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Handle implements node.Node.
func (k *Keeper) Handle(env node.Env, from node.Addr, m node.Msg) {
	switch m := m.(type) {
	case thinkDone:
		if k.phase == phaseThinking {
			k.acquire(env)
		}
	case retryTick:
		if k.cur != nil && m.ReqID == k.curID {
			env.Send(k.curTo, k.cur)
			env.After(k.cfg.RetryInterval, m)
		}
	case useTimeout:
		if k.phase == phaseUsing && m.ReqID == k.curID {
			env.Observe(node.Mark("keeper gave up waiting for work"))
			k.stats.Failed++
			k.release(env)
		}
	case api.RegistryResp:
		if from == k.cfg.Queen && k.cur != nil && m.ReqID == k.curID && k.phase != phaseUsing {
			k.cur = nil
			k.handleRegistryResp(env, m)
		}
	case api.UseResp:
		if k.phase == phaseUsing && k.cur != nil && m.ReqID == k.curID {
			k.cur = nil
			k.handleUseResp(env, m)
		}
	default:
		env.Log().Warn("keeper ignores an unknown message", "from", from, "msg", m.MsgName())
	}
}

func (k *Keeper) think(env node.Env) {
	if k.cfg.Acquisitions > 0 && k.stats.Acquired+k.stats.Unserved >= k.cfg.Acquisitions {
		k.phase = phaseDone
		return
	}
	k.phase = phaseThinking
	env.After(k.expDuration(env, k.cfg.ThinkTime), thinkDone{})
}

func (k *Keeper) expDuration(env node.Env, mean time.Duration) time.Duration {
	return time.Duration(env.Rand().ExpFloat64()*float64(mean)) + time.Millisecond
}

// request sends a request and keeps resending it with the same ID until it is answered.
func (k *Keeper) request(env node.Env, to node.Addr, id uint64, m node.Msg) {
	k.cur, k.curTo, k.curID = m, to, id
	env.Send(to, m)
	env.After(k.cfg.RetryInterval, retryTick{ReqID: id})
}

func (k *Keeper) nextID() uint64 {
	k.reqN++
	return k.reqBase + k.reqN
}

func (k *Keeper) acquire(env node.Env) {
	k.model = k.cfg.Models[env.Rand().IntN(len(k.cfg.Models))]
	k.viaCAS = env.Rand().IntN(100) < k.cfg.CASPercent
	id := k.nextID()
	if k.viaCAS {
		k.phase = phaseListing
		k.request(env, k.cfg.Queen, id, api.ListReq{ReqID: id, Model: k.model, Capability: k.cfg.Capability})
		return
	}
	k.phase = phaseClaiming
	k.request(env, k.cfg.Queen, id, api.ClaimReq{ReqID: id, Model: k.model, Capability: k.cfg.Capability})
}

func (k *Keeper) handleRegistryResp(env node.Env, r api.RegistryResp) {
	switch k.phase {
	case phaseListing:
		k.listed(env, r)
	case phaseCAS, phaseClaiming:
		k.acquired(env, r)
	case phaseReleasing:
		if !r.Err.OK() {
			env.Log().Info("release refused", "worker", k.held.ID, "code", r.Err.Code, "message", r.Err.Message)
		}
		k.think(env)
	}
}

// listed picks an idle, healthy worker from a listing and tries to move it to busy.
func (k *Keeper) listed(env node.Env, r api.RegistryResp) {
	var idle []api.WorkerRecord
	for _, w := range r.Records {
		if w.State == api.StateIdle && w.Health == api.HealthHealthy {
			idle = append(idle, w)
		}
	}
	if !r.Err.OK() || len(idle) == 0 {
		k.stats.Unserved++
		k.think(env)
		return
	}
	w := idle[env.Rand().IntN(len(idle))]
	k.phase = phaseCAS
	id := k.nextID()
	k.request(env, k.cfg.Queen, id, api.UpdateStateReq{ReqID: id, Worker: w.ID, ExpectVersion: w.Version, To: api.StateBusy})
}

func (k *Keeper) acquired(env node.Env, r api.RegistryResp) {
	switch r.Err.Code {
	case api.CodeOK:
	case api.CodeWorkerAlreadyBusy, api.CodeVersionConflict:
		env.Observe(node.Mark("keeper lost a compare-and-set"))
		k.stats.CASLost++
		k.think(env)
		return
	default:
		k.stats.Unserved++
		k.think(env)
		return
	}
	k.stats.Acquired++
	k.held = r.Record
	k.phase = phaseUsing
	id := k.nextID()
	// Work lengths are exponential but capped at workTimeCapFactor times the mean, so a
	// scenario can bound how long any worker stays busy.
	work := min(k.expDuration(env, k.cfg.WorkTime), workTimeCapFactor*k.cfg.WorkTime)
	k.request(env, r.Record.Hive, id, api.UseReq{ReqID: id, Worker: r.Record.ID, Incarnation: r.Record.Incarnation,
		ClaimID: r.Record.ClaimID, Work: work})
	env.After(k.cfg.UseTimeout, useTimeout{ReqID: id})
}

func (k *Keeper) handleUseResp(env node.Env, r api.UseResp) {
	if r.Err.OK() {
		k.stats.Completed++
	} else {
		k.stats.Failed++
		if r.Err.Code == api.CodeIncarnationChanged {
			env.Observe(node.Mark("keeper saw its work stopped by a capability change"))
		}
	}
	k.release(env)
}

// release gives the held worker back: Release for a claim, a compare-and-set to idle otherwise.
// The CAS uses the version the keeper's own write produced; if anything changed the worker
// since, the queen refuses and the keeper leaves it alone.
func (k *Keeper) release(env node.Env) {
	k.phase = phaseReleasing
	id := k.nextID()
	w := k.held
	if k.viaCAS {
		k.request(env, k.cfg.Queen, id, api.UpdateStateReq{ReqID: id, Worker: w.ID, ExpectVersion: w.Version, To: api.StateIdle})
		return
	}
	k.request(env, k.cfg.Queen, id, api.ReleaseReq{ReqID: id, Worker: w.ID, Incarnation: w.Incarnation, ClaimID: w.ClaimID})
}
