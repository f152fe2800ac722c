// Package plant switches planted bugs on and off.
//
// A planted bug is a known defect compiled into the core only under the `plant` build tag, so
// that tests and the canary can prove the checkers catch it. In a normal build Set.Has is
// constant false and every planted branch is dead code the compiler removes.
//
// A Set travels inside a component's Config, never in global state, so simulations with
// different plants can run side by side.
package plant

import "sort"

// Known lists every planted bug the project has, with what it breaks.
var Known = map[string]string{
	"catalog-ack-before-commit":               "the catalog acknowledges a registration before its transaction commits",
	"catalog-delete-corrupt":                  "catalog recovery deletes the corrupt catalog file instead of backing it up",
	"catalog-no-dedupe":                       "the catalog has no key on the model ID, so a model can be registered twice",
	"failover-duplicate-tokens":               "after a failover the queen relays the regenerated prefix again, so the client receives tokens twice",
	"keeper-no-backoff":                       "on ALL_SLOTS_BUSY the client retries at once instead of backing off",
	"provisioner-double-download":             "hives sharing a disk each download the same model instead of one waiting for the other",
	"provisioner-ignore-bandwidth-limit":      "downloads are never throttled: the hive's bandwidth limit is ignored",
	"provisioner-ignore-retry-after":          "a 429 is retried after the normal backoff, before its Retry-After",
	"provisioner-progress-percent-of-attempt": "progress of a resumed download reports the percent of this attempt's bytes, not of the file",
	"provisioner-resume-wrong-offset":         "a resumed download asks for the wrong range and appends bytes at the wrong place",
	"provisioner-retry-terminal":              "a 404, 401 or 403 from the hub is retried like a 5xx",
	"provisioner-skip-checksum":               "a downloaded file is not checked against the hub's sha256 before it is kept",
	"queen-ignore-client-gone":                "the queen keeps generating for a client whose connection broke",
	"queen-route-to-draining":                 "the queen routes new requests to draining workers",
	"registry-lost-update":                    "the registry's compare-and-set does not compare versions",
	"registry-stale-routing":                  "claims hand out stale-but-busy and unconfirmed workers",
	"worker-slot-leak-on-cancel":              "a cancelled request keeps its slot, so the worker fills up and refuses work",
}

// Names returns the known plant names in sorted order.
func Names() []string {
	names := make([]string, 0, len(Known))
	for n := range Known { //det:sorted
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Set is a set of enabled planted bugs. The zero Set enables none.
type Set struct {
	names []string
}

// NewSet returns a Set with the given plants enabled. It does not check the names; use
// Validate at the edge.
func NewSet(names ...string) Set {
	s := Set{names: append([]string(nil), names...)}
	sort.Strings(s.names)
	return s
}

// Names returns the enabled plant names, sorted.
func (s Set) Names() []string { return append([]string(nil), s.names...) }

func (s Set) contains(name string) bool {
	for _, n := range s.names {
		if n == name {
			return true
		}
	}
	return false
}
