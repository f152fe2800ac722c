package transport

import (
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// A route stamped with a newer boot replaces an older one whatever order they arrive in; an
// equal stamp replaces (the later word wins); static routes are never replaced; forget only
// removes a route that still leads where the peer said it does not.
func TestRouteStamps(t *testing.T) {
	rt := newRouteTable(map[node.Addr]string{"s": "http://static:1"})
	steps := []struct {
		r       Route
		changed bool
		want    string
	}{
		{Route{URL: "http://old:1", Boot: 10}, true, "http://old:1"},
		{Route{URL: "http://new:1", Boot: 20}, true, "http://new:1"},
		{Route{URL: "http://old:1", Boot: 10}, false, "http://new:1"}, // relayed late
		{Route{URL: "http://hint:1"}, false, "http://new:1"},          // a static/Learn relay
		{Route{URL: "http://new:2", Boot: 20}, true, "http://new:2"},
	}
	for i, s := range steps {
		if got := rt.learn("c", s.r); got != s.changed {
			t.Errorf("step %d: learn(%+v) changed = %v, want %v", i, s.r, got, s.changed)
		}
		if got, _ := rt.lookup("c"); got != s.want {
			t.Errorf("step %d: route %q, want %q", i, got, s.want)
		}
	}
	if rt.learn("s", Route{URL: "http://x:1", Boot: 99}) {
		t.Error("a gossiped route replaced a static one")
	}
	if rt.forget("c", "http://new:1") {
		t.Error("forget removed a route that leads elsewhere")
	}
	if !rt.forget("c", "http://new:2") {
		t.Error("forget kept the route")
	}
	if _, ok := rt.lookup("c"); ok {
		t.Error("the route survived forget")
	}
}
