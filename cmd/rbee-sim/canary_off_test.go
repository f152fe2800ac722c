//go:build !plant

package main

import (
	"errors"
	"strings"
	"testing"
)

// TestCanaryNeedsPlantBuild: a normal build refuses the canary with the command that works.
func TestCanaryNeedsPlantBuild(t *testing.T) {
	err := cmdCanary(nil)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-tags plant") {
		t.Fatalf("canary in a normal build: %v, want a usage error naming -tags plant", err)
	}
}
