// Package properties holds the property-based tests of the cluster: `go test ./properties`.
//
// Each test draws scenarios with rapid (a run seed, workload knobs and an explicit fault
// schedule as a slice, so rapid can shrink it), runs them in the simulator, and asserts that
// every checker held. A failure writes the shrunk scenario as JSON and prints the one command
// that replays it. RBEE_CHECKS sets how many scenarios each property draws (default 40); the
// nightly soak sets it high.
package properties
