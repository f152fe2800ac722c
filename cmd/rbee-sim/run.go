package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
	"github.com/rbee-sim/rbee-sim/sim"
)

func cmdList(args []string) error {
	if len(args) > 0 {
		return usageError{"list takes no arguments"}
	}
	for _, e := range scenario.Catalogue() {
		fmt.Println(e.ID)
	}
	return nil
}

type runFlags struct {
	scenario    string
	seed        string
	seeds       string
	json        bool
	trace       string
	determinism bool
	plants      string
	out         string
	parallel    int
	// Real mode (--mode real): see realrun.
	mode          string
	binDir        string
	chaos, settle time.Duration
}

func parseRunFlags(args []string) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "*", "scenario ID or glob (registry/*); rbee-sim list names them")
	fs.StringVar(&f.seed, "seed", "", "one seed")
	fs.StringVar(&f.seeds, "seeds", "", "a range of seeds, A-B (default 1-3)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per run instead of text")
	fs.StringVar(&f.trace, "trace", "", "write the trace of the (single) run to FILE as JSON lines")
	fs.BoolVar(&f.determinism, "check-determinism", false, "run every seed twice and fail on a trace hash mismatch, naming the first divergent event")
	fs.StringVar(&f.plants, "plant", "", "switch on planted bugs, comma-separated (needs -tags plant)")
	fs.StringVar(&f.out, "out", "rbee-sim-failures", "folder for failure reports")
	fs.IntVar(&f.parallel, "parallel", runtime.GOMAXPROCS(0), "simulations to run at once")
	fs.StringVar(&f.mode, "mode", "sim", "sim: the deterministic simulator; real: real processes on 127.0.0.1 (one scenario, one seed)")
	fs.StringVar(&f.binDir, "bin-dir", "", "real mode: the folder of the built rbee binaries (default: build them into the run folder)")
	fs.DurationVar(&f.chaos, "chaos", 20*time.Second, "real mode: the longest chaos phase, in wall-clock time")
	fs.DurationVar(&f.settle, "settle", 15*time.Second, "real mode: the longest settle phase, in wall-clock time")
	if err := fs.Parse(args); err != nil {
		return f, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return f, usageError{fmt.Sprintf("unexpected arguments %v", fs.Args())}
	}
	if f.seed != "" && f.seeds != "" {
		return f, usageError{"give --seed or --seeds, not both"}
	}
	if f.parallel < 1 {
		return f, usageError{"--parallel must be at least 1"}
	}
	if f.mode != "sim" && f.mode != "real" {
		return f, usageError{fmt.Sprintf("--mode %q: want sim or real", f.mode)}
	}
	if f.mode == "real" && (f.determinism || f.trace != "" || f.plants != "") {
		return f, usageError{"--check-determinism, --trace and --plant are for the simulator; a real run is not deterministic"}
	}
	return f, nil
}

// parseSeeds reads "N" or "A-B".
func parseSeeds(one, span string) ([]uint64, error) {
	if one != "" {
		n, err := strconv.ParseUint(one, 10, 64)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--seed %q is not a whole number", one)}
		}
		return []uint64{n}, nil
	}
	if span == "" {
		span = "1-3"
	}
	a, b, ok := strings.Cut(span, "-")
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || hi < lo || hi-lo > 1_000_000 {
		return nil, usageError{fmt.Sprintf("--seeds %q is not a range A-B with A <= B (at most a million seeds)", span)}
	}
	var seeds []uint64
	for s := lo; s <= hi; s++ {
		seeds = append(seeds, s)
	}
	return seeds, nil
}

func selectEntries(glob string) ([]scenario.Entry, error) {
	var out []scenario.Entry
	for _, e := range scenario.Catalogue() {
		ok, err := path.Match(glob, e.ID)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--scenario %q is not a valid pattern: %v", glob, err)}
		}
		if ok || glob == "*" {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		_, err := scenario.Lookup(glob)
		return nil, usageError{err.Error()}
	}
	return out, nil
}

func cmdRun(args []string) error {
	f, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	seeds, err := parseSeeds(f.seed, f.seeds)
	if err != nil {
		return err
	}
	entries, err := selectEntries(f.scenario)
	if err != nil {
		return err
	}
	var plants []string
	if f.plants != "" {
		plants = strings.Split(f.plants, ",")
	}
	if err := plant.Validate(plants); err != nil {
		return usageError{err.Error()}
	}
	var jobs []scenario.Scenario
	for _, e := range entries {
		for _, seed := range seeds {
			sc := e.Generate(seed, scenario.Knobs{})
			sc.Plants = plants
			jobs = append(jobs, sc)
		}
	}
	if f.trace != "" && len(jobs) != 1 {
		return usageError{fmt.Sprintf("--trace writes one run's trace, but this selects %d runs; pick one scenario and one seed", len(jobs))}
	}
	if f.mode == "real" {
		if len(jobs) != 1 {
			return usageError{fmt.Sprintf("--mode real runs one scenario with one seed, but this selects %d runs; give --scenario ID --seed N", len(jobs))}
		}
		return runReal(jobs[0], f)
	}
	return runJobs(jobs, f)
}

// outcome is one job's result, plus a determinism mismatch when checked.
type outcome struct {
	sc         scenario.Scenario
	res        scenario.Result
	divergence string
	err        error
}

func runJobs(jobs []scenario.Scenario, f runFlags) error {
	outs := make([]outcome, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, f.parallel)
	for i, sc := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outs[i] = runOne(sc, f)
		}()
	}
	wg.Wait()
	return report(outs, f, os.Stdout)
}

func runOne(sc scenario.Scenario, f runFlags) outcome {
	o := outcome{sc: sc}
	opts := scenario.Options{KeepTraceLines: f.determinism}
	if f.trace != "" {
		file, err := os.Create(f.trace)
		if err != nil {
			o.err = fmt.Errorf("cannot create the trace file: %w", err)
			return o
		}
		defer file.Close()
		opts.Trace = file
	}
	o.res = scenario.Run(sc, opts)
	if f.determinism {
		again := scenario.Run(sc, scenario.Options{KeepTraceLines: true})
		if again.TraceHash != o.res.TraceHash {
			i, a, b := sim.FirstDivergence(o.res.TraceLines(), again.TraceLines())
			o.divergence = fmt.Sprintf("trace hashes differ (%s vs %s); first divergent event #%d:\n    run 1: %s\n    run 2: %s",
				o.res.TraceHash, again.TraceHash, i, a, b)
			o.res.Passed = false
			o.res.Checkers = append(o.res.Checkers, scenario.CheckerResult{Name: "deterministic", Stage: "determinism", Detail: o.divergence})
		} else {
			o.res.Checkers = append(o.res.Checkers, scenario.CheckerResult{Name: "deterministic", Stage: "determinism", OK: true,
				Detail: "two runs gave trace hash " + o.res.TraceHash})
		}
	}
	if !o.res.Passed {
		if _, err := reports.WriteFolder(reports.FailureDir(f.out, sc), sc, &o.res); err != nil {
			o.err = fmt.Errorf("the run failed, and its report could not be written: %w", err)
		}
	}
	o.res.Compact()
	return o
}

func report(outs []outcome, f runFlags, w io.Writer) error {
	var failed, events int
	var simS, wallS float64
	for _, o := range outs {
		if o.err != nil {
			fmt.Fprintf(os.Stderr, "rbee-sim: %s seed %d: %v\n", o.sc.ID, o.sc.Seed, o.err)
		}
		if !o.res.Passed || o.err != nil {
			failed++
		}
		events += int(o.res.Events)
		simS += o.res.SimSeconds
		wallS += o.res.WallSeconds
		if f.json {
			b, _ := json.Marshal(o.res)
			fmt.Fprintln(w, string(b))
			continue
		}
		printHuman(w, o)
	}
	if !f.json {
		fmt.Fprintf(w, "\n%d runs: %d passed, %d failed. %d events, %.0f simulated seconds in %.2f s of simulation (%.0fx faster than real time).\n",
			len(outs), len(outs)-failed, failed, events, simS, wallS, simS/max(wallS, 1e-9))
	}
	if failed > 0 {
		return errFailed
	}
	return nil
}

func printHuman(w io.Writer, o outcome) {
	verdict := "PASS"
	if !o.res.Passed {
		verdict = "FAIL"
	}
	plants := ""
	if len(o.sc.Plants) > 0 {
		plants = " plant=" + strings.Join(o.sc.Plants, ",")
	}
	fmt.Fprintf(w, "%s %-34s seed %-4d%s %7d events %5.0fs simulated in %.2fs  hash %s\n", verdict, o.sc.ID, o.sc.Seed, plants,
		o.res.Events, o.res.SimSeconds, o.res.WallSeconds, o.res.TraceHash)
	if o.res.Passed {
		return
	}
	for _, c := range o.res.Checkers {
		if !c.OK {
			fmt.Fprintf(w, "     [%s] %s: %s\n", c.Stage, c.Name, c.Detail)
		}
	}
	if o.res.FailureFile != "" {
		fmt.Fprintf(w, "     report: %s\n     replay: %s\n", path.Dir(o.res.FailureFile), reports.ReplayCommand(o.sc, o.res.FailureFile))
	}
}
