//go:build !plant

package main

// cmdCanary needs the planted bugs, which only a -tags plant build contains.
func cmdCanary(args []string) error {
	return usageError{"canary runs the planted bugs, which this binary does not contain; build it with them: go run -tags plant ./cmd/rbee-sim canary"}
}
