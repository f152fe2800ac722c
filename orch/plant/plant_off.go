//go:build !plant

package plant

import "fmt"

// Compiled reports whether planted bugs are compiled into this binary.
const Compiled = false

// Has reports whether the plant is enabled: never, in a build without the plant tag.
func (s Set) Has(name string) bool { return false }

// Validate refuses any plant in a build without the plant tag.
func Validate(names []string) error {
	if len(names) > 0 {
		return fmt.Errorf("planted bugs %v need a binary built with -tags plant (go run -tags plant ./cmd/rbee-sim ...)", names)
	}
	return nil
}
