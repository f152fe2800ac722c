package queen

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// dedupKey names a request: its sender and the sender's ReqID.
type dedupKey struct {
	From  node.Addr
	ReqID uint64
}

// dedupEntry is a remembered answer, as the log and the snapshot store it.
type dedupEntry struct {
	From  node.Addr        `json:"from"`
	ReqID uint64           `json:"req_id"`
	Resp  api.RegistryResp `json:"resp"`
}

type cached struct {
	resp    api.RegistryResp
	durable bool // persisted with a mutation; goes into snapshots
}

// dedupCache remembers the answers to at most max requests and forgets the oldest first.
// The map is only looked up; order lives in the FIFO slice.
type dedupCache struct {
	max     int
	entries map[dedupKey]cached
	order   []dedupKey // oldest first
}

func newDedupCache(max int) dedupCache {
	return dedupCache{max: max, entries: map[dedupKey]cached{}}
}

// get returns the remembered answer to k.
func (d *dedupCache) get(k dedupKey) (api.RegistryResp, bool) {
	c, ok := d.entries[k]
	return c.resp, ok
}

// add remembers resp as the answer to k, forgetting the oldest entries beyond max. A key
// already present keeps its first answer.
func (d *dedupCache) add(k dedupKey, resp api.RegistryResp, durable bool) {
	if _, ok := d.entries[k]; ok {
		return
	}
	d.entries[k] = cached{resp: resp, durable: durable}
	d.order = append(d.order, k)
	for len(d.order) > d.max {
		delete(d.entries, d.order[0])
		d.order = d.order[1:]
	}
	if len(d.entries) != len(d.order) {
		panic(fmt.Sprintf("queen: dedup cache holds %d entries but orders %d", len(d.entries), len(d.order)))
	}
}

// durableEntries returns the persisted entries, oldest first, for a snapshot.
func (d *dedupCache) durableEntries() []dedupEntry {
	var out []dedupEntry
	for _, k := range d.order {
		if c := d.entries[k]; c.durable {
			out = append(out, dedupEntry{From: k.From, ReqID: k.ReqID, Resp: c.resp})
		}
	}
	return out
}

// len is the number of remembered answers.
func (d *dedupCache) len() int { return len(d.order) }
