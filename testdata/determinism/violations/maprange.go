package violations

import "maps"

type byName map[string]int

type registry struct {
	workers map[string]int
	order   []string
}

func leak(r *registry, m byName, f func() map[int]bool) []string {
	var out []string
	for k := range r.workers { // want maprange untyped
		out = append(out, k)
	}
	for k, v := range m { // want maprange untyped
		out = append(out, k, string(rune(v)))
	}
	for _, v := range f() { // want maprange
		_ = v
	}
	for k := range maps.Keys(m) { // want maprange untyped
		out = append(out, k)
	}
	local := map[string]bool{}
	for k := range local { // want maprange untyped
		out = append(out, k)
	}
	//det:sorted (on the line above the for, so it does not count)
	for k := range r.workers { // want maprange untyped
		out = append(out, k)
	}
	for k := range r.workers { // det:sorted (with a space it is not the marker) // want maprange untyped
		out = append(out, k)
	}
	for range m { // no key and no value: iterations are indistinguishable
		out = append(out, "x")
	}
	for _, k := range r.order {
		out = append(out, k)
	}
	return out
}
