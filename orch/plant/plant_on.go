//go:build plant

package plant

import "fmt"

// Compiled reports whether planted bugs are compiled into this binary.
const Compiled = true

// Has reports whether the plant is enabled.
func (s Set) Has(name string) bool { return s.contains(name) }

// Validate checks that every name is a known plant.
func Validate(names []string) error {
	for _, n := range names {
		if _, ok := Known[n]; !ok {
			return fmt.Errorf("unknown planted bug %q; known: %v", n, Names())
		}
	}
	return nil
}
