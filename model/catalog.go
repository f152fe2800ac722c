package model

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// CatalogCall is the Input of a recorded catalog operation: a client's request to a hive, on
// the catalog of the hive's machine, or a hive's report that it rebuilt that catalog.
type CatalogCall struct {
	Client  node.Addr
	Machine string
	// Req is api.CatalogRegisterReq, api.ModelDownloadReq (which registers what it downloads),
	// api.CatalogGetReq, or a machine-wide api.CatalogCleanupReq or api.CatalogRestoreReq; nil
	// for a rebuild.
	Req node.Msg
	// Rebuilt is set for a rebuild: every model of the machine's catalog may have changed.
	Rebuilt bool
}

// CatalogReturn is the Output of a recorded catalog operation; Known is false when no reply
// came.
type CatalogReturn struct {
	Known bool
	Resp  api.CatalogResp
}

// CatalogHistory records catalog operations at the client side, with one clock. List requests
// are not recorded: they are read-only and span models, and dropping read-only operations keeps
// a non-linearizable history non-linearizable.
type CatalogHistory struct {
	ops  []catalogOp
	keys map[opKey]int
	ids  map[node.Addr]int
}

type catalogOp struct {
	client int
	call   CatalogCall
	ret    CatalogReturn
	start  int64
	end    int64
}

// NewCatalogHistory returns an empty history.
func NewCatalogHistory() *CatalogHistory {
	return &CatalogHistory{keys: map[opKey]int{}, ids: map[node.Addr]int{}}
}

func (h *CatalogHistory) clientID(a node.Addr) int {
	id, ok := h.ids[a]
	if !ok {
		id = len(h.ids)
		h.ids[a] = id
	}
	return id
}

// Invoke records the first send of a register, get, cleanup or restore request to a hive on
// machine.
func (h *CatalogHistory) Invoke(client node.Addr, machine string, req node.Msg, reqID uint64, at int64) {
	switch req.(type) {
	case api.CatalogRegisterReq, api.CatalogGetReq, api.CatalogCleanupReq, api.CatalogRestoreReq, api.ModelDownloadReq:
	default:
		return
	}
	key := opKey{client, reqID}
	if _, seen := h.keys[key]; seen {
		return
	}
	h.keys[key] = len(h.ops)
	h.ops = append(h.ops, catalogOp{client: h.clientID(client), call: CatalogCall{Client: client, Machine: machine, Req: req},
		start: at, end: math.MaxInt64})
}

// Return records the first reply to an open operation.
func (h *CatalogHistory) Return(client node.Addr, resp api.CatalogResp, at int64) {
	i, ok := h.keys[opKey{client, resp.ReqID}]
	if !ok || h.ops[i].ret.Known {
		return
	}
	h.ops[i].ret = CatalogReturn{Known: true, Resp: resp}
	h.ops[i].end = at
}

// Rebuilt records that a hive on machine rebuilt the catalog at time at.
func (h *CatalogHistory) Rebuilt(hive node.Addr, machine string, at int64) {
	h.ops = append(h.ops, catalogOp{client: h.clientID(hive), call: CatalogCall{Client: hive, Machine: machine, Rebuilt: true},
		start: at, end: at, ret: CatalogReturn{Known: true}})
}

// Len is the number of recorded operations.
func (h *CatalogHistory) Len() int { return len(h.ops) }

// Operations returns the history for porcupine.
func (h *CatalogHistory) Operations() []porcupine.Operation {
	out := make([]porcupine.Operation, len(h.ops))
	for i, o := range h.ops {
		out[i] = porcupine.Operation{ClientId: o.client, Input: o.call, Output: o.ret, Call: o.start, Return: o.end}
	}
	return out
}

// catalogState is one (machine, model) partition's state. A field that is not known (after a
// rebuild or an operation whose outcome is unknown) is a wildcard the next reply resolves.
type catalogState struct {
	presenceKnown bool
	present       bool
	recKnown      bool
	rec           api.ModelRecord
}

func catalogKey(c CatalogCall) string {
	switch r := c.Req.(type) {
	case api.CatalogRegisterReq:
		return c.Machine + "|" + r.Provider + ":" + r.Reference
	case api.CatalogGetReq:
		return c.Machine + "|" + r.ID
	case api.ModelDownloadReq:
		return c.Machine + "|" + r.Provider + ":" + r.Reference()
	}
	return ""
}

// machineWide reports whether an operation may change every model of its machine's catalog:
// a rebuild, a cleanup or a restore.
func machineWide(c CatalogCall) bool {
	switch c.Req.(type) {
	case api.CatalogCleanupReq, api.CatalogRestoreReq:
		return true
	}
	return c.Rebuilt
}

// partitionCatalog splits the history by (machine, model ID); a machine-wide operation goes to
// every partition of its machine.
func partitionCatalog(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var rebuilds []porcupine.Operation
	for _, op := range ops {
		c := op.Input.(CatalogCall)
		if machineWide(c) {
			rebuilds = append(rebuilds, op)
			continue
		}
		k := catalogKey(c)
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey { //det:sorted
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		part := byKey[k]
		machine := part[0].Input.(CatalogCall).Machine
		for _, rb := range rebuilds {
			if rb.Input.(CatalogCall).Machine == machine {
				part = append(part, rb)
			}
		}
		out = append(out, part)
	}
	return out
}

// CatalogModel is the porcupine model of a machine's model catalog, partitioned by (machine,
// model ID): Register is idempotent and says whether it inserted; Get sees exactly what was
// registered; a failed or unanswered Register may or may not have taken effect; a rebuild, a
// cleanup or a restore makes every model of the machine unknown until a reply shows it again
// (whether each row should survive them is judged on the final state, by the harness).
func CatalogModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionCatalog,
		// Unknown at the start: a machine may begin with a catalog (an old one to migrate).
		Init: func() []any { return []any{catalogState{}} },
		Step: func(state, input, output any) []any {
			return stepCatalog(state.(catalogState), input.(CatalogCall), output.(CatalogReturn))
		},
		Equal: func(a, b any) bool { return a.(catalogState) == b.(catalogState) },
		DescribeOperation: func(input, output any) string {
			c, r := input.(CatalogCall), output.(CatalogReturn)
			if c.Rebuilt {
				return "rebuild " + c.Machine
			}
			if machineWide(c) {
				return c.Req.MsgName() + " " + c.Machine
			}
			if !r.Known {
				return fmt.Sprintf("%s %s -> ?", c.Req.MsgName(), catalogKey(c))
			}
			return fmt.Sprintf("%s %s -> err=%q inserted=%v found=%v", c.Req.MsgName(), catalogKey(c), r.Resp.Err.Code, r.Resp.Inserted, r.Resp.Found)
		},
		DescribeState: func(state any) string { return fmt.Sprintf("%+v", state.(catalogState)) },
	}
	return nm.ToModel()
}

func stepCatalog(s catalogState, c CatalogCall, r CatalogReturn) []any {
	if machineWide(c) {
		return []any{catalogState{}}
	}
	switch c.Req.(type) {
	case api.CatalogRegisterReq, api.ModelDownloadReq:
		// A download that succeeds registers the file: the same as a registration.
		return stepRegisterModel(s, r)
	case api.CatalogGetReq:
		return stepGetModel(s, r)
	}
	return nil
}

func stepRegisterModel(s catalogState, r CatalogReturn) []any {
	switch {
	case !r.Known || r.Resp.Err.Code == api.CodeCatalogUnavailable || r.Resp.Err.Code == api.CodeDiskFull:
		applied := s
		if !s.presenceKnown || !s.present {
			applied = catalogState{presenceKnown: true, present: true}
		}
		return []any{s, applied}
	case !r.Resp.Err.OK():
		return []any{s} // the file was refused: nothing changed
	case r.Resp.Inserted:
		if s.presenceKnown && s.present {
			return nil // inserted a model that was already there: a duplicate row
		}
		return []any{catalogState{presenceKnown: true, present: true, recKnown: true, rec: r.Resp.Model}}
	default:
		if s.presenceKnown && !s.present {
			return nil // "already registered" for a model that is not
		}
		return matchRecord(s, r.Resp.Model)
	}
}

func stepGetModel(s catalogState, r CatalogReturn) []any {
	switch {
	case !r.Known || !r.Resp.Err.OK():
		return []any{s}
	case r.Resp.Found:
		if s.presenceKnown && !s.present {
			return nil
		}
		return matchRecord(s, r.Resp.Model)
	default:
		if s.presenceKnown && s.present {
			return nil // a registered model is gone
		}
		return []any{catalogState{presenceKnown: true}}
	}
}

func matchRecord(s catalogState, rec api.ModelRecord) []any {
	if s.recKnown && s.rec != rec {
		return nil
	}
	return []any{catalogState{presenceKnown: true, present: true, recKnown: true, rec: rec}}
}

// CatalogResult is the verdict of CheckCatalog.
type CatalogResult struct {
	Verdict    porcupine.CheckResult
	Info       porcupine.LinearizationInfo
	Ops        int
	Partitions int
	Elapsed    time.Duration
}

// CheckCatalog checks a catalog history for linearizability. Unknown (a timeout) means "not
// proven", never a pass.
func CheckCatalog(ops []porcupine.Operation, timeout time.Duration) CatalogResult {
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(CatalogModel(), ops, timeout)
	return CatalogResult{Verdict: res, Info: info, Ops: len(ops), Partitions: len(partitionCatalog(ops)), Elapsed: time.Since(start)}
}

// WriteVisualization writes porcupine's HTML view of the checked history.
func (r CatalogResult) WriteVisualization(path string, annotations []porcupine.Annotation) error {
	r.Info.AddAnnotations(annotations)
	return porcupine.VisualizePath(CatalogModel(), r.Info, path)
}
