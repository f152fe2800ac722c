package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// cmdShrink minimises a failing scenario file: fewer clients, faults and requests, smaller
// workloads, while the same checker keeps failing; it writes the minimal scenario's failure
// folder and prints the sizes before and after and its replay command.
func cmdShrink(args []string) error {
	fs := flag.NewFlagSet("shrink", flag.ContinueOnError)
	budget := fs.Int("budget", 200, "the most runs to spend")
	out := fs.String("out", "", "folder for the minimal scenario's report (default: under rbee-sim-shrunk)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 || *budget < 1 {
		return usageError{"shrink needs exactly one scenario file and a budget of at least 1 run"}
	}
	sc, err := scenario.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	small, st := scenario.Shrink(sc, *budget)
	if st.Checker == "" {
		return fmt.Errorf("shrink: %s does not fail (or only its assumptions do): nothing to minimise", fs.Arg(0))
	}
	dir := *out
	if dir == "" {
		dir = reports.FailureDir("rbee-sim-shrunk", small)
	}
	res := scenario.Run(small, scenario.Options{})
	file, err := reports.WriteFolder(dir, small, &res)
	if err != nil {
		return err
	}
	fmt.Printf("shrunk %s (failing %q) in %d runs:\n", fs.Arg(0), st.Checker, st.Runs)
	for _, line := range strings.Split(strings.TrimSuffix(st.String(), "\n"), "\n") {
		fmt.Printf("  %s\n", line)
	}
	fmt.Printf("  replay: %s\n", reports.ReplayCommand(small, file))
	return nil
}
