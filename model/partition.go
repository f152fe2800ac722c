package model

import (
	"fmt"
	"slices"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// route says where an operation goes.
type route uint8

const (
	routeDrop    route = iota // constrains nothing
	routeOne                  // the partition of one worker
	routeAll                  // every partition
	routeServing              // every worker that may serve the Claim's filter
	routeList                 // every worker that may match the List's filter or is listed
)

// routeOf says where an operation goes and, for routeOne, the worker.
func routeOf(call RegistryCall, ret RegistryReturn) (route, string) {
	if ret.Known && ret.Resp.Err.Code == api.CodeUnavailable {
		return routeDrop, ""
	}
	switch r := call.Req.(type) {
	case api.RegisterReq:
		return routeOne, r.Spec.ID
	case api.HeartbeatReq:
		return routeOne, r.Worker
	case api.GetReq:
		return readRoute(ret, routeOne), r.Worker
	case api.UpdateStateReq:
		return routeOne, r.Worker
	case api.ClaimReq:
		return claimRoute(ret)
	case api.ReleaseReq:
		return routeOne, r.Worker
	case api.RemoveReq:
		return routeOne, r.Worker
	case api.ListReq:
		if ret.Known && !ret.Resp.Err.OK() {
			return routeAll, "" // an error no List may give: illegal everywhere
		}
		return readRoute(ret, routeList), ""
	case nil:
	default:
		panic(fmt.Sprintf("model: unknown registry request %T", r))
	}
	switch o := call.Internal.(type) {
	case api.WorkerHealthChanged:
		return routeOne, o.Worker
	case api.WorkerExpired:
		return routeOne, o.Worker
	case api.QueenStarted:
		return routeAll, ""
	}
	panic(fmt.Sprintf("model: operation with neither a request nor an internal transition: %+v", call))
}

// claimRoute: a successful Claim goes to the worker it returned; NO_WORKER_AVAILABLE or an
// unknown outcome to every worker it may have concerned; any other error everywhere, where
// no state allows it.
func claimRoute(ret RegistryReturn) (route, string) {
	switch {
	case !ret.Known || ret.Resp.Err.Code == api.CodeNoWorkerAvailable:
		return routeServing, ""
	case ret.Resp.Err.OK():
		return routeOne, ret.Resp.Record.ID
	}
	return routeAll, ""
}

// readRoute drops a read-only operation whose reply never came: it changed nothing and shows
// nothing.
func readRoute(ret RegistryReturn, r route) route {
	if !ret.Known {
		return routeDrop
	}
	return r
}

// unpack returns op's call and return, panicking on anything History would not record.
func unpack(op porcupine.Operation) (RegistryCall, RegistryReturn) {
	call, ok1 := op.Input.(RegistryCall)
	ret, ok2 := op.Output.(RegistryReturn)
	if !ok1 || !ok2 {
		panic(fmt.Sprintf("model: registry operation has Input %T and Output %T, want RegistryCall and RegistryReturn", op.Input, op.Output))
	}
	return call, ret
}

// offer is a (model, capability) pair some Register in the history gave a worker.
type offer struct{ model, capability string }

// router knows the partitions of a history: the worker IDs, sorted, and what each worker may
// serve.
type router struct {
	ids    []string
	index  map[string]int
	offers [][]offer       // by partition: every (model, capability) any Register gave it
	cache  map[offer][]int // serving's answers
}

// newRouter collects every worker ID the routed operations name and every offer any
// Register makes (whatever its outcome). A history whose operations name no worker but that
// holds an operation for every partition gets the one partition "", a worker that can never
// be registered, so that the operation is still checked.
func newRouter(ops []porcupine.Operation) *router {
	rt := &router{index: make(map[string]int), cache: make(map[offer][]int)}
	seen := make(map[string][]offer)
	note := func(id string) {
		if _, ok := seen[id]; !ok {
			seen[id] = nil
		}
	}
	global := false
	for _, op := range ops {
		call, ret := unpack(op)
		if r, ok := call.Req.(api.RegisterReq); ok {
			if o := (offer{r.Spec.Model, r.Spec.Capability}); !slices.Contains(seen[r.Spec.ID], o) {
				seen[r.Spec.ID] = append(seen[r.Spec.ID], o)
			}
		}
		switch how, w := routeOf(call, ret); how {
		case routeOne:
			note(w)
		case routeList:
			for _, rec := range ret.Resp.Records {
				note(rec.ID)
			}
			global = global || listBroken(&ret.Resp)
		case routeAll:
			global = true
		}
	}
	if len(seen) == 0 && global {
		note("")
	}
	for id := range seen {
		rt.ids = append(rt.ids, id)
	}
	slices.Sort(rt.ids)
	for i, id := range rt.ids {
		rt.index[id] = i
		rt.offers = append(rt.offers, seen[id])
	}
	return rt
}

// serving returns the partitions of the workers that may ever serve model on capability (""
// matches any), in order. In every other partition a Claim or List with this filter is a
// no-op that always holds (the worker is never eligible, never listed), so leaving it out
// changes no verdict.
func (rt *router) serving(model, capability string) []int {
	key := offer{model, capability}
	if c, ok := rt.cache[key]; ok {
		return c
	}
	c := []int{}
	for i, offers := range rt.offers {
		if slices.ContainsFunc(offers, func(o offer) bool {
			return (model == "" || o.model == model) && (capability == "" || o.capability == capability)
		}) {
			c = append(c, i)
		}
	}
	rt.cache[key] = c
	return c
}

// partitionRegistry splits a history into one sub-history per worker ID (sorted), as
// RegistryModel describes.
func partitionRegistry(ops []porcupine.Operation) [][]porcupine.Operation {
	rt := newRouter(ops)
	parts := make([][]porcupine.Operation, len(rt.ids))
	for _, op := range ops {
		call, ret := unpack(op)
		how, w := routeOf(call, ret)
		var resp *api.RegistryResp // shared by every partition the operation goes to
		if ret.Known && call.Req != nil {
			resp = &ret.Resp
		}
		switch how {
		case routeOne:
			i := rt.index[w]
			parts[i] = append(parts[i], project(op, w, call, ret.Known, resp))
		case routeAll:
			for i, id := range rt.ids {
				parts[i] = append(parts[i], project(op, id, call, ret.Known, resp))
			}
		case routeServing:
			r := call.Req.(api.ClaimReq)
			for _, i := range rt.serving(r.Model, r.Capability) {
				parts[i] = append(parts[i], project(op, rt.ids[i], call, ret.Known, resp))
			}
		case routeList:
			projectList(parts, rt, op, call, resp)
		}
	}
	// A worker named only by replies that changed nothing (UNAVAILABLE) has nothing to check.
	return slices.DeleteFunc(parts, func(p []porcupine.Operation) bool { return len(p) == 0 })
}

// project returns op as worker's partition sees it.
func project(op porcupine.Operation, worker string, call RegistryCall, known bool, resp *api.RegistryResp) porcupine.Operation {
	op.Input = &stepIn{worker: worker, call: call}
	op.Output = &stepOut{known: known, resp: resp}
	return op
}

// projectList appends a List to the partition of every worker that may match its filter or
// that it lists, as that worker's entry in the list.
func projectList(parts [][]porcupine.Operation, rt *router, op porcupine.Operation, call RegistryCall, resp *api.RegistryResp) {
	r := call.Req.(api.ListReq)
	malformed := unsorted(resp.Records)
	everywhere := listBroken(resp)
	entries := make(map[int]api.WorkerRecord, len(resp.Records))
	for _, rec := range resp.Records {
		entries[rt.index[rec.ID]] = rec
	}
	serving := rt.serving(r.Model, r.Capability)
	for i, id := range rt.ids {
		entry, listed := entries[i]
		if !listed && !everywhere && !containsSorted(serving, i) {
			continue
		}
		out := &stepOut{known: true, resp: resp, malformed: malformed, listed: listed, entry: entry}
		p := op
		p.Input = &stepIn{worker: id, call: call}
		p.Output = out
		parts[i] = append(parts[i], p)
	}
}

// listBroken reports whether a List's reply breaks the specification whatever the
// registry holds: records not sorted by ID (or an ID twice), or a Created or Removed flag.
// Such a reply goes to every partition, so that it cannot slip through unchecked.
func listBroken(resp *api.RegistryResp) bool {
	return unsorted(resp.Records) || resp.Created || resp.Removed
}

// unsorted reports whether records are not strictly sorted by ID.
func unsorted(recs []api.WorkerRecord) bool {
	for i := 1; i < len(recs); i++ {
		if recs[i-1].ID >= recs[i].ID {
			return true
		}
	}
	return false
}

// containsSorted reports whether sorted s holds v.
func containsSorted(s []int, v int) bool {
	_, found := slices.BinarySearch(s, v)
	return found
}
