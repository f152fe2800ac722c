package model

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"pgregory.net/rapid"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// refMaxWorkers is the reference registry's limit in the property tests: below the number
// of worker IDs, so that REGISTRY_FULL happens.
const refMaxWorkers = 4

var (
	propWorkers = []string{"w1", "w2", "w3", "w4", "w5"}
	propModels  = []string{"m1", "m2"}
	propCaps    = []string{"cpu", "cuda:0"}
	propClients = []node.Addr{"c1", "c2", "c3"}
	propStates  = []api.WorkerState{api.StateIdle, api.StateBusy, api.StateLoading, api.StateDraining}
)

// event is one step of a generated sequential history.
type event struct {
	client        node.Addr
	req           api.RegistryRequest // nil for an internal transition
	obs           node.Observation
	resp          api.RegistryResp
	lost          bool // the reply never came
	presentBefore bool // the worker the request names was registered before it
}

// genEvents draws a sequential history of up to 60 steps from the reference registry. With
// allowLost, some replies are lost (the request applied or not, as rapid draws).
func genEvents(t *rapid.T, allowLost bool) []event {
	ref := newRefRegistry(refMaxWorkers)
	// Most histories start with a few workers registered (rapid shrinks toward all of them).
	setup := refMaxWorkers - rapid.IntRange(0, refMaxWorkers).Draw(t, "fewer workers at start")
	var evs []event
	for i := range setup {
		req := api.RegisterReq{ReqID: uint64(i + 1), Spec: spec(propWorkers[i], 1), State: api.StateIdle}
		evs = append(evs, event{client: "hive", req: req, resp: ref.apply(req, nil)})
	}
	n := rapid.IntRange(1, 60).Draw(t, "steps")
	for i := range n {
		if ev, ok := genEvent(t, ref, uint64(setup+i+1), allowLost); ok {
			evs = append(evs, ev)
		}
	}
	return evs
}

// genEvent draws one step; false when the drawn internal transition does not apply.
func genEvent(t *rapid.T, ref *refRegistry, reqID uint64, allowLost bool) (event, bool) {
	id := genWorker(t, ref)
	switch rapid.IntRange(0, 12).Draw(t, "kind") {
	case 10:
		return event{client: QueenClient, obs: stale(id)}, ref.stale(id)
	case 11:
		return event{client: QueenClient, obs: expired(id)}, ref.expire(id)
	case 12:
		ref.restart()
		return event{client: QueenClient, obs: started(reqID)}, true
	}
	req := withReqID(genRequest(t, ref, id), reqID)
	_, present := ref.workers[api.WorkerOf(req)]
	ev := event{client: rapid.SampledFrom(propClients).Draw(t, "client"), req: req, presentBefore: present}
	pick := func(n int) int { return rapid.IntRange(0, n-1).Draw(t, "pick") }
	// rapid draws small values most often (and shrinks toward them): 0 is a plain reply.
	switch mode := rapid.IntRange(0, 15).Draw(t, "mode"); {
	case mode == 15:
		ev.resp = errResp(api.CodeUnavailable)
		ev.resp.ReqID = reqID
	case mode == 14 && allowLost:
		ev.lost = true
		if rapid.Bool().Draw(t, "applied") {
			ref.apply(req, pick)
		}
	default:
		ev.resp = ref.apply(req, pick)
	}
	return ev, true
}

// genWorker draws a worker ID, mostly one that is registered.
func genWorker(t *rapid.T, ref *refRegistry) string {
	if ids := ref.ids(); len(ids) > 0 && rapid.IntRange(0, 3).Draw(t, "any worker") < 3 {
		return rapid.SampledFrom(ids).Draw(t, "registered worker")
	}
	return rapid.SampledFrom(propWorkers).Draw(t, "worker")
}

// genRequest draws a request about worker id, often one that the registry's state makes
// interesting (the current version, incarnation or claim).
func genRequest(t *rapid.T, ref *refRegistry, id string) api.RegistryRequest {
	cur := ref.workers[id]
	switch rapid.IntRange(0, 8).Draw(t, "request") {
	case 0, 1:
		return api.ClaimReq{Model: rapid.SampledFrom(propModels).Draw(t, "model"),
			Capability: rapid.SampledFrom(append(propCaps, "")).Draw(t, "cap")}
	case 2:
		return genRelease(t, ref, id)
	case 3:
		return api.HeartbeatReq{Worker: id, Incarnation: genIncarnation(t, cur)}
	case 4:
		expect := cur.Version
		if rapid.IntRange(0, 3).Draw(t, "stale expect") == 3 {
			expect = uint64(rapid.IntRange(0, int(ref.version)+1).Draw(t, "expect"))
		}
		to := rapid.SampledFrom(append(propStates, "asleep")).Draw(t, "to")
		return api.UpdateStateReq{Worker: id, ExpectVersion: expect, To: to}
	case 5:
		return api.GetReq{Worker: id}
	case 6:
		return genRegister(t, id, genIncarnation(t, cur))
	case 7:
		return api.RemoveReq{Worker: id}
	default:
		return api.ListReq{Model: rapid.SampledFrom(append(propModels, "")).Draw(t, "model"),
			Capability: rapid.SampledFrom(append(propCaps, "")).Draw(t, "cap")}
	}
}

// genIncarnation draws the worker's current incarnation half of the time.
func genIncarnation(t *rapid.T, cur api.WorkerRecord) uint64 {
	if !rapid.Bool().Draw(t, "other incarnation") && cur.Incarnation > 0 {
		return cur.Incarnation
	}
	return uint64(rapid.IntRange(1, 3).Draw(t, "incarnation"))
}

// genRelease draws a release, mostly of a busy worker under its claim.
func genRelease(t *rapid.T, ref *refRegistry, id string) api.ReleaseReq {
	if busy := ref.busy(); len(busy) > 0 && !rapid.Bool().Draw(t, "release any worker") {
		id = rapid.SampledFrom(busy).Draw(t, "busy worker")
	}
	cur := ref.workers[id]
	claimID := []string{cur.ClaimID, cur.ClaimID, "cZ", ""}[rapid.IntRange(0, 3).Draw(t, "other claim")]
	return api.ReleaseReq{Worker: id, Incarnation: genIncarnation(t, cur), ClaimID: claimID}
}

// genRegister draws a registration, sometimes an invalid one.
func genRegister(t *rapid.T, id string, inc uint64) api.RegisterReq {
	return api.RegisterReq{
		Spec: api.WorkerSpec{ID: id, Hive: "hive-a", Incarnation: inc,
			Model:      rapid.SampledFrom(propModels).Draw(t, "model"),
			Capability: rapid.SampledFrom(propCaps).Draw(t, "cap"),
			Slots:      1 - rapid.IntRange(0, 9).Draw(t, "no slots")/9},
		State: []api.WorkerState{api.StateIdle, api.StateIdle, api.StateIdle, api.StateLoading, api.StateBusy}[rapid.IntRange(0, 4).Draw(t, "state")],
	}
}

// recordEvents records events as non-overlapping operations, 10 ns apart.
func recordEvents(evs []event) []porcupine.Operation {
	h := NewHistory()
	for i, ev := range evs {
		at := int64(10 * (i + 1))
		switch {
		case ev.req == nil:
			h.Internal(ev.obs, at)
		default:
			h.Invoke(ev.client, ev.req, at)
			if !ev.lost {
				h.Return(ev.client, ev.resp, at+5)
			}
		}
	}
	return h.Operations()
}

// dump describes a history for a failure message.
func dump(ops []porcupine.Operation) string {
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "\n  [%d, %d] %s", op.Call, op.Return, describeOperation(op.Input, op.Output))
	}
	return b.String()
}

// TestRegistryAcceptsReferenceHistories: every sequential history of the naive reference
// registry, with UNAVAILABLE replies and lost replies, is linearizable (registry/linearizable).
func TestRegistryAcceptsReferenceHistories(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops := recordEvents(genEvents(t, true))
		if res := CheckRegistry(ops, 10*time.Second); res.Verdict != porcupine.Ok {
			t.Fatalf("verdict %s for a reference history:%s", res.Verdict, dump(ops))
		}
	})
}

// TestRegistryRejectsCorruptedOutputs: corrupting one reply of a reference history (no lost
// replies) in a way the specification forbids makes it illegal (registry/linearizable).
func TestRegistryRejectsCorruptedOutputs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		evs := genEvents(t, false)
		var candidates []int
		for i, ev := range evs {
			if ev.req != nil && ev.resp.Err.Code != api.CodeUnavailable {
				candidates = append(candidates, i)
			}
		}
		if len(candidates) == 0 {
			t.Skip("no reply to corrupt")
		}
		i := rapid.SampledFrom(candidates).Draw(t, "victim")
		cs := corruptions(evs[i])
		c := rapid.SampledFrom(cs).Draw(t, "corruption")
		before := describeReturn(RegistryReturn{Known: true, Resp: evs[i].resp})
		c.apply(&evs[i].resp)
		ops := recordEvents(evs)
		if res := CheckRegistry(ops, 10*time.Second); res.Verdict != porcupine.Illegal {
			t.Fatalf("verdict %s after corruption %q of step %d (was %s):%s", res.Verdict, c.name, i, before, dump(ops))
		}
	})
}

// corruption changes a reply in a way the specification forbids.
type corruption struct {
	name  string
	apply func(r *api.RegistryResp)
}

// String names the corruption in rapid's output.
func (c corruption) String() string { return c.name }

// corruptions lists the forbidden changes that apply to ev's reply. The history around it
// has no lost replies, so the model knows every field it compares.
func corruptions(ev event) []corruption {
	cs := codeCorruptions(ev)
	if ev.resp.Err.Code != api.CodeOK {
		return cs
	}
	cs = append(cs,
		corruption{"set Created", func(r *api.RegistryResp) { r.Created = !r.Created }},
		corruption{"flip Removed", func(r *api.RegistryResp) { r.Removed = !r.Removed }})
	if _, isList := ev.req.(api.ListReq); isList {
		return append(cs, listCorruptions(ev.resp.Records)...)
	}
	return append(cs, recordCorruptions(ev)...)
}

// codeCorruptions replace the code with one the specification cannot give here: any code but
// the right one, UNAVAILABLE (always allowed), TIMEOUT (recorded as no reply) and, for a
// Register of an absent worker, REGISTRY_FULL (the model does not count workers).
func codeCorruptions(ev event) []corruption {
	codes := []api.Code{api.CodeOK, api.CodeInvalidRequest, api.CodeRegistryFull, api.CodeUnknownWorker,
		api.CodeStaleIncarnation, api.CodeIncarnationChanged, api.CodeWorkerAlreadyBusy, api.CodeVersionConflict,
		api.CodeWorkerStale, api.CodeNoWorkerAvailable, api.CodeClaimNotHeld}
	_, isRegister := ev.req.(api.RegisterReq)
	var cs []corruption
	for _, code := range codes {
		if code == ev.resp.Err.Code || (code == api.CodeRegistryFull && isRegister && !ev.presentBefore) {
			continue
		}
		cs = append(cs, corruption{"code " + string(code), func(r *api.RegistryResp) { r.Err.Code = code }})
	}
	return cs
}

// recordCorruptions change the record of a successful reply.
func recordCorruptions(ev event) []corruption {
	rec := ev.resp.Record
	if rec == (api.WorkerRecord{}) {
		return nil
	}
	cs := []corruption{
		{"state", func(r *api.RegistryResp) { r.Record.State = otherState(r.Record.State) }},
		{"health", func(r *api.RegistryResp) { r.Record.Health = otherHealth(r.Record.Health) }},
		{"incarnation", func(r *api.RegistryResp) { r.Record.Incarnation++ }},
		{"model", func(r *api.RegistryResp) { r.Record.Model = "mX" }},
		{"version 0", func(r *api.RegistryResp) { r.Record.Version = 0 }},
	}
	switch q := ev.req.(type) {
	case api.ClaimReq:
		cs = append(cs, corruption{"no claim ID", func(r *api.RegistryResp) { r.Record.ClaimID = "" }})
	case api.GetReq, api.HeartbeatReq:
		cs = append(cs,
			corruption{"old version", func(r *api.RegistryResp) { r.Record.Version-- }},
			corruption{"claim ID", func(r *api.RegistryResp) { r.Record.ClaimID += "x" }})
	case api.UpdateStateReq:
		cs = append(cs, corruption{"version not grown", func(r *api.RegistryResp) { r.Record.Version = q.ExpectVersion }})
	}
	return cs
}

// listCorruptions change the records of a successful List.
func listCorruptions(recs []api.WorkerRecord) []corruption {
	if len(recs) == 0 {
		return nil
	}
	cs := []corruption{
		{"drop a record", func(r *api.RegistryResp) { r.Records = r.Records[1:] }},
		{"a record twice", func(r *api.RegistryResp) { r.Records = append([]api.WorkerRecord{r.Records[0]}, r.Records...) }},
		{"old version", func(r *api.RegistryResp) {
			r.Records = append([]api.WorkerRecord(nil), r.Records...)
			r.Records[0].Version--
		}},
	}
	if len(recs) > 1 {
		cs = append(cs, corruption{"unsorted", func(r *api.RegistryResp) {
			r.Records = append([]api.WorkerRecord{r.Records[1], r.Records[0]}, r.Records[2:]...)
		}})
	}
	return cs
}

func otherState(s api.WorkerState) api.WorkerState {
	if s == api.StateIdle {
		return api.StateBusy
	}
	return api.StateIdle
}

func otherHealth(h api.Health) api.Health {
	if h == api.HealthHealthy {
		return api.HealthStale
	}
	return api.HealthHealthy
}
