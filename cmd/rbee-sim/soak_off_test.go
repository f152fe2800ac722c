//go:build !plant

package main

import (
	"strings"
	"testing"
)

// TestSoakPlantNeedsPlantBuild: --plant in a normal build is bad usage naming -tags plant.
func TestSoakPlantNeedsPlantBuild(t *testing.T) {
	code, _, stderr := capture(t, "soak", "--plant", "registry-lost-update", "--out", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "-tags plant") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
