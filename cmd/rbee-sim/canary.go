//go:build plant

package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// canaryResult is one planted bug's line in the canary's report.
type canaryResult = reports.CanaryPlant

// cmdCanary runs every planted bug against the scenario that must catch it, within its budget
// of seeds, and reports per plant whether it was caught, after how many seeds and seconds, by
// which checker, with the failing run's folder and replay command. A plant not caught (or
// only by an invalid run) fails the canary.
func cmdCanary(args []string) error {
	fs := flag.NewFlagSet("canary", flag.ContinueOnError)
	out := fs.String("out", "rbee-sim-canary", "folder for canary.json and the failure folder of each caught plant")
	shrink := fs.Bool("shrink", true, "minimise each caught failure (up to 60 runs) and report its size")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("canary takes no arguments, got %v", fs.Args())}
	}
	cases := map[string]scenario.PlantCase{}
	for _, pc := range scenario.PlantCases() {
		cases[pc.Plant] = pc
	}
	var results []canaryResult
	failed := false
	for _, name := range plant.Names() {
		r := canaryResult{Plant: name, Breaks: plant.Known[name]}
		pc, ok := cases[name]
		if !ok {
			r.Problem = "no scenario is declared to catch it (scenario.PlantCases)"
			results, failed = append(results, r), true
			continue
		}
		r.Scenario, r.Budget = pc.Scenario, pc.Seeds
		e, err := scenario.Lookup(pc.Scenario)
		if err != nil {
			r.Problem = err.Error()
			results, failed = append(results, r), true
			continue
		}
		start := time.Now()
		for seed := uint64(1); seed <= pc.Seeds && !r.Caught && r.Problem == ""; seed++ {
			sc := e.Generate(seed, scenario.Knobs{})
			sc.Plants = []string{name}
			res := scenario.Run(sc, scenario.Options{KeepTraceLines: true})
			r.Seeds = seed
			c := res.FirstFailure()
			switch {
			case c == nil:
			case c.Stage == "assumptions":
				r.Problem = fmt.Sprintf("seed %d: the plant made the run invalid instead of being caught: %s", seed, c.Detail)
			default:
				r.Caught, r.Seed, r.Stage, r.Checker, r.Detail, r.Faults = true, seed, c.Stage, c.Name, c.Detail, len(sc.Faults)
				if *shrink {
					small, st := scenario.Shrink(sc, 60)
					sc, r.Shrunk = small, &st
					res = scenario.Run(sc, scenario.Options{KeepTraceLines: true})
				}
				dir := reports.FailureDir(*out, sc)
				file, werr := reports.WriteFolder(dir, sc, &res)
				if werr != nil {
					r.Problem = fmt.Sprintf("caught, but the failure folder could not be written: %v", werr)
				} else {
					r.Replay, r.Folder = reports.ReplayCommand(sc, file), filepath.Base(dir)
				}
			}
		}
		r.Seconds = time.Since(start).Seconds()
		if !r.Caught && r.Problem == "" {
			r.Problem = fmt.Sprintf("not caught by %s within %d seeds", pc.Scenario, pc.Seeds)
		}
		if !r.Caught || r.Problem != "" {
			failed = true
		}
		results = append(results, r)
		printCanary(r)
	}
	sort.Slice(results, func(i, j int) bool { return results[i].Plant < results[j].Plant })
	rep := &reports.CanaryReport{Plants: results, CaughtAll: !failed}
	path, err := reports.WriteCanary(*out, rep)
	if err != nil {
		return err
	}
	fmt.Printf("\ncanary: %d of %d planted bugs caught; report %s\n", rep.Caught(), len(results), path)
	fmt.Printf("include it in a soak's report: rbee-sim soak --canary %s ... or rbee-sim report merge --canary %s ...\n", path, path)
	if failed {
		return errFailed
	}
	return nil
}

func printCanary(r canaryResult) {
	if r.Caught && r.Problem == "" {
		fmt.Printf("CAUGHT %-40s by %-30s seed %-3d after %5.2fs: [%s] %s\n", r.Plant, r.Scenario, r.Seed, r.Seconds, r.Stage, r.Checker)
		if r.Shrunk != nil {
			fmt.Printf("       shrunk %d -> %d events (%.1fx), faults %d -> %d, nodes %d -> %d, clients %d -> %d\n", r.Shrunk.FromEvents, r.Shrunk.ToEvents,
				r.Shrunk.Factor(), r.Shrunk.FromFaults, r.Shrunk.ToFaults, r.Shrunk.FromNodes, r.Shrunk.ToNodes, r.Shrunk.FromClients, r.Shrunk.ToClients)
		}
		fmt.Printf("       replay: %s\n", r.Replay)
		return
	}
	fmt.Printf("MISSED %-40s %s\n", r.Plant, r.Problem)
}
