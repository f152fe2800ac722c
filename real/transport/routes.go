package transport

import (
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Route is where an address lives, as gossiped between processes.
type Route struct {
	// URL is the base URL of the process that runs the address.
	URL string `json:"url"`
	// Boot is the boot time (Unix nanoseconds) of the process that announced the route: its
	// own address's process, or 0 for a route that came from static configuration or Learn.
	// A higher Boot replaces a lower one.
	Boot int64 `json:"boot,omitempty"`
}

// routeTable holds the static and the learned routes. Safe for concurrent use.
type routeTable struct {
	static map[node.Addr]string // fixed at New

	mu      sync.RWMutex
	learned map[node.Addr]Route
}

func newRouteTable(static map[node.Addr]string) *routeTable {
	return &routeTable{static: static, learned: map[node.Addr]Route{}}
}

// lookup returns the base URL of addr's route.
func (rt *routeTable) lookup(addr node.Addr) (string, bool) {
	if u, ok := rt.static[addr]; ok {
		return u, true
	}
	rt.mu.RLock()
	r, ok := rt.learned[addr]
	rt.mu.RUnlock()
	return r.URL, ok
}

// learn records r for addr unless a static route exists or the known route is newer (a
// higher Boot). An equal Boot replaces: the later word wins. It reports whether the table
// changed.
func (rt *routeTable) learn(addr node.Addr, r Route) bool {
	if _, ok := rt.static[addr]; ok {
		return false
	}
	rt.mu.RLock()
	cur, ok := rt.learned[addr]
	rt.mu.RUnlock()
	if ok && (cur == r || cur.Boot > r.Boot) {
		return false
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if cur, ok := rt.learned[addr]; ok && (cur == r || cur.Boot > r.Boot) {
		return false
	}
	rt.learned[addr] = r
	return true
}

// set records r for addr whatever is known (Learn).
func (rt *routeTable) set(addr node.Addr, r Route) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.learned[addr] = r
}

// forget removes addr's learned route if it still leads to url.
func (rt *routeTable) forget(addr node.Addr, url string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if r, ok := rt.learned[addr]; ok && r.URL == url {
		delete(rt.learned, addr)
		return true
	}
	return false
}

// all returns every route with its stamp: the learned ones and the static ones (stamp 0;
// learn never records an address that has a static route).
func (rt *routeTable) all() map[node.Addr]Route {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	out := make(map[node.Addr]Route, len(rt.static)+len(rt.learned))
	for a, r := range rt.learned {
		out[a] = r
	}
	for a, u := range rt.static {
		out[a] = Route{URL: u}
	}
	return out
}
