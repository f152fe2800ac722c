// Package wire is the JSON form of core messages between OS processes: a registry from each
// message's stable name (node.Msg.MsgName) to its Go type, and the envelope that carries a
// message from one address to another.
//
// An envelope on the wire:
//
//	{"from": "hive-ws", "to": "queen-1", "msg": "registry.heartbeat", "body": {...}}
//
// body is the message's own JSON encoding (its struct tags). A receiver that does not know
// msg refuses the envelope with an error that names it, never guesses.
package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// Envelope is one message on the wire.
type Envelope struct {
	From node.Addr       `json:"from"`
	To   node.Addr       `json:"to"`
	Msg  string          `json:"msg"`
	Body json.RawMessage `json:"body"`
}

// Registry maps message names to their Go types. The zero value is empty; Default holds every
// message the core sends between processes. Safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	types map[string]reflect.Type
}

// Register adds message types (a zero value of each). Registering a name twice with another
// type panics: two types may never share a wire name.
func (r *Registry) Register(msgs ...node.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.types == nil {
		r.types = map[string]reflect.Type{}
	}
	for _, m := range msgs {
		t := reflect.TypeOf(m)
		if t.Kind() == reflect.Pointer {
			panic(fmt.Sprintf("wire: register %s as a value type, not a pointer", t))
		}
		name := m.MsgName()
		if old, ok := r.types[name]; ok && old != t {
			panic(fmt.Sprintf("wire: message name %q is taken by %s and %s", name, old, t))
		}
		r.types[name] = t
	}
}

// Names returns every registered message name, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Encode wraps m in an envelope.
func (r *Registry) Encode(from, to node.Addr, m node.Msg) (Envelope, error) {
	name := m.MsgName()
	r.mu.RLock()
	t, ok := r.types[name]
	r.mu.RUnlock()
	if !ok {
		return Envelope{}, fmt.Errorf("wire: message %q (%T) is not registered: add it to wire.Default", name, m)
	}
	if reflect.TypeOf(m) != t {
		return Envelope{}, fmt.Errorf("wire: message %q is %T here but registered as %s", name, m, t)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Envelope{}, fmt.Errorf("wire: encode %q: %w", name, err)
	}
	return Envelope{From: from, To: to, Msg: name, Body: body}, nil
}

// Decode turns an envelope back into its message.
func (r *Registry) Decode(e Envelope) (node.Msg, error) {
	r.mu.RLock()
	t, ok := r.types[e.Msg]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("wire: unknown message %q from %q to %q: the sender runs a version with messages this one lacks",
			e.Msg, e.From, e.To)
	}
	p := reflect.New(t)
	body := e.Body
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, p.Interface()); err != nil {
		return nil, fmt.Errorf("wire: malformed %q from %q: %w", e.Msg, e.From, err)
	}
	return p.Elem().Interface().(node.Msg), nil
}

// Default holds every message the core sends between processes.
var Default = &Registry{}

func init() {
	Default.Register(
		node.PeerGone{},
		// registry
		api.RegisterReq{}, api.HeartbeatReq{}, api.UpdateStateReq{}, api.RemoveReq{}, api.GetReq{},
		api.ListReq{}, api.ClaimReq{}, api.ReleaseReq{}, api.RegistryResp{},
		// work and worker processes
		api.UseReq{}, api.UseResp{}, api.DeviceFault{}, api.WorkerHang{},
		api.WorkerStartReq{}, api.WorkerStartResp{},
		api.WorkerLoading{}, api.WorkerReady{}, api.WorkerStatus{}, api.WorkerDrain{}, api.WorkerDrained{},
		// catalog and downloads
		api.CatalogRegisterReq{}, api.CatalogGetReq{}, api.CatalogListReq{}, api.CatalogCleanupReq{},
		api.CatalogBackupReq{}, api.CatalogRestoreReq{}, api.CatalogResp{}, api.ModelDownloadReq{},
		provision.Progress{}, provision.Done{},
		// hub
		api.HubHeadReq{}, api.HubGetReq{}, api.HubCredit{}, api.HubCancel{}, api.HubResp{}, api.HubChunk{}, api.HubEnd{},
		// inference
		api.InferReq{}, api.InferAccepted{}, api.InferToken{}, api.InferDone{}, api.InferCancel{}, api.InferCancelResp{},
		// engine
		api.EngineLoad{}, api.EngineLoadProgress{}, api.EngineLoaded{}, api.EngineGenerate{}, api.EngineToken{},
		api.EngineDone{}, api.EngineStop{},
		// process table
		api.ProcSpawn{}, api.ProcSpawned{}, api.ProcSignal{}, api.ProcExited{}, api.ProcTerm{}, api.ProcExit{},
		api.ProcListReq{}, api.ProcListResp{},
	)
}
