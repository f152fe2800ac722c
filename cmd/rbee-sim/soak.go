package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

type soakFlags struct {
	duration time.Duration // zero: seed-count mode
	seeds    int
	parallel int
	scenario string
	baseSeed uint64
	shardI   int
	shardN   int
	out      string
	swarm    bool
	liveness float64
	shrink   int    // runs per failure; 0: no shrinking
	canary   string // canary.json (or its folder) to include
	plants   []string
	args     []string
}

func (f soakFlags) record() reports.SoakFlags {
	r := reports.SoakFlags{Parallel: f.parallel, Scenario: f.scenario, BaseSeed: f.baseSeed,
		Shard: fmt.Sprintf("%d/%d", f.shardI, f.shardN), Out: f.out, Swarm: f.swarm, Liveness: f.liveness,
		ShrinkBudget: f.shrink, Canary: f.canary, Plants: f.plants, Command: append([]string{"rbee-sim", "soak"}, f.args...)}
	if f.duration > 0 {
		r.Duration = f.duration.String()
	} else {
		r.Seeds = f.seeds
	}
	return r
}

func parseSoakFlags(args []string) (soakFlags, error) {
	f := soakFlags{shardN: 1, args: args}
	var shard string
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.DurationVar(&f.duration, "duration", 0, "run until this much wall time has passed (runs in flight finish); not with --seeds")
	fs.IntVar(&f.seeds, "seeds", 20, "seeds per scenario: base-seed .. base-seed+N-1; not with --duration")
	fs.IntVar(&f.parallel, "parallel", runtime.NumCPU(), "simulations to run at once")
	fs.StringVar(&f.scenario, "scenario", "*", "scenario ID or glob (registry/*); rbee-sim list names them")
	fs.Uint64Var(&f.baseSeed, "base-seed", 1, "the first seed")
	fs.StringVar(&shard, "shard", "0/1", "i/n: take only the seeds whose index (seed - base-seed) % n == i")
	fs.StringVar(&f.out, "out", "rbee-sim-soak", "folder for summary.json, index.html and failures/")
	fs.BoolVar(&f.swarm, "swarm", true, "swarm testing: each run enables a random subset of its scenario's fault kinds, each with a random intensity")
	fs.Float64Var(&f.liveness, "liveness", 0.25, "share of runs (0 to 1) in liveness mode: the faults stop at a random point and the cluster must converge within the settle phase")
	fs.IntVar(&f.shrink, "shrink", 100, "the most runs to spend minimising each failure (0: do not shrink)")
	var plants string
	fs.StringVar(&plants, "plant", "", "switch on planted bugs in every run, comma-separated (needs -tags plant): a soak that must fail")
	fs.StringVar(&f.canary, "canary", "", "include this canary report (canary.json of rbee-sim canary, or its folder); a plant it missed fails the soak")
	if err := fs.Parse(args); err != nil {
		return f, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return f, usageError{fmt.Sprintf("soak: unexpected arguments %v", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["duration"] && set["seeds"] {
		return f, usageError{"soak: give --duration or --seeds, not both"}
	}
	if set["duration"] && f.duration <= 0 {
		return f, usageError{fmt.Sprintf("soak: --duration %v must be positive", f.duration)}
	}
	if f.duration == 0 && f.seeds < 1 {
		return f, usageError{fmt.Sprintf("soak: --seeds %d must be at least 1", f.seeds)}
	}
	if f.parallel < 1 {
		return f, usageError{"soak: --parallel must be at least 1"}
	}
	a, b, ok := strings.Cut(shard, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return f, usageError{fmt.Sprintf("soak: --shard %q is not i/n with 0 <= i < n (e.g. 0/4)", shard)}
	}
	f.shardI, f.shardN = i, n
	if f.liveness < 0 || f.liveness > 1 || math.IsNaN(f.liveness) {
		return f, usageError{fmt.Sprintf("soak: --liveness %v must be a share from 0 to 1", f.liveness)}
	}
	if plants != "" {
		f.plants = strings.Split(plants, ",")
	}
	if err := plant.Validate(f.plants); err != nil {
		return f, usageError{"soak: " + err.Error()}
	}
	if f.shrink < 0 {
		return f, usageError{fmt.Sprintf("soak: --shrink %d must not be negative", f.shrink)}
	}
	if f.out == "" {
		return f, usageError{"soak: --out must name a folder"}
	}
	return f, nil
}

// soakJob is one run of a soak.
type soakJob struct {
	entry scenario.Entry
	seed  uint64
}

// soakJobs returns the generator of a soak's jobs: job k of the unsharded sequence is scenario
// k % len(entries) with seed index k / len(entries), so the scenarios take turns and a soak cut
// short by --duration covers all of them. The shard keeps the seed indices ≡ i (mod n). In
// seed-count mode the generator ends after --seeds seed indices.
func soakJobs(entries []scenario.Entry, f soakFlags) func() (soakJob, bool) {
	s := uint64(len(entries))
	k := uint64(0)
	return func() (soakJob, bool) {
		for {
			idx := k / s
			if f.duration == 0 && idx >= uint64(f.seeds) {
				return soakJob{}, false
			}
			if idx%uint64(f.shardN) != uint64(f.shardI) {
				k = (idx + 1) * s
				continue
			}
			j := soakJob{entry: entries[k%s], seed: f.baseSeed + idx}
			k++
			return j, true
		}
	}
}

// soakRecord is what a soak keeps of each run besides the summary (the tests compare them).
type soakRecord struct {
	scenario  string
	seed      uint64
	passed    bool
	traceHash string
}

// soak runs the jobs and returns the summary (not yet written) and one record per run.
func soak(f soakFlags, entries []scenario.Entry, stderr io.Writer) (*reports.SoakSummary, []soakRecord) {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	failRoot := filepath.Join(f.out, "failures")
	coll := reports.NewSoakCollector(f.out, ids)
	opts := scenario.SwarmOptions{Swarm: f.swarm, Liveness: f.liveness}
	var mu sync.Mutex
	var records []soakRecord

	started := time.Now()
	var stop <-chan time.Time
	if f.duration > 0 {
		stop = time.After(f.duration)
	}
	jobs := make(chan soakJob)
	go func() {
		defer close(jobs)
		next := soakJobs(entries, f)
		for {
			j, ok := next()
			if !ok {
				return
			}
			select {
			case jobs <- j:
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range f.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				run := soakOne(j, opts, f.plants, f.shrink, failRoot, stderr)
				mu.Lock()
				coll.AddRun(run)
				records = append(records, soakRecord{run.Scenario.ID, run.Scenario.Seed, run.Result.Passed, run.Result.TraceHash})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return coll.Summary(f.record(), started, time.Now()), records
}

// soakOne runs one job. A failing run gets its failure folder under failRoot, and, when it
// failed a checker past its assumptions and shrink > 0, a minimal scenario's folder in it
// (minimal/), shrunk within shrink runs.
func soakOne(j soakJob, opts scenario.SwarmOptions, plants []string, shrink int, failRoot string, stderr io.Writer) reports.SoakRun {
	sc, variant := j.entry.GenerateVariant(j.seed, scenario.Knobs{}, opts)
	sc.Plants = plants
	start := time.Now()
	res := scenario.Run(sc, scenario.Options{})
	run := reports.SoakRun{Scenario: sc, Result: &res, Variant: variant, Started: start, Finished: time.Now(),
		Available: j.entry.AvailableKinds(sc)}
	if !res.Passed {
		dir := reports.FailureDir(failRoot, sc)
		if _, err := reports.WriteFolder(dir, sc, &res); err != nil {
			fmt.Fprintf(stderr, "rbee-sim: %s seed %d failed, and its report could not be written: %v\n", sc.ID, sc.Seed, err)
		}
		first := res.FirstFailure()
		switch {
		case shrink == 0:
		case first == nil || first.Stage == "assumptions":
			run.ShrinkProblem = "an invalid run (its assumptions failed) has no failure to keep while shrinking"
		default:
			small, st := scenario.Shrink(sc, shrink)
			if st.Checker == "" {
				run.ShrinkProblem = "the failure did not reproduce when the shrink ran it again"
				break
			}
			smallRes := scenario.Run(small, scenario.Options{})
			file, err := reports.WriteFolder(filepath.Join(dir, "minimal"), small, &smallRes)
			if err != nil {
				run.ShrinkProblem = fmt.Sprintf("the minimal scenario's folder could not be written: %v", err)
				break
			}
			run.Shrunk, run.MinimalFile = &st, file
		}
	}
	res.Compact()
	return run
}

func cmdSoak(args []string) error {
	f, err := parseSoakFlags(args)
	if err != nil {
		return err
	}
	entries, err := selectEntries(f.scenario)
	if err != nil {
		return err
	}
	var canary *reports.CanaryReport
	if f.canary != "" {
		// Read before the soak runs, so that a wrong path fails at once.
		if canary, err = reports.ReadCanary(f.canary, f.out); err != nil {
			return err
		}
	}
	sum, _ := soak(f, entries, os.Stderr)
	sum.Canary = canary
	if err := reports.WriteSoak(f.out, sum); err != nil {
		return err
	}
	printSoak(os.Stdout, sum)
	if !sum.Passed() || sum.Totals.Runs == 0 {
		return errFailed
	}
	return nil
}

// printSoak is the one-screen text summary.
func printSoak(w io.Writer, s *reports.SoakSummary) {
	t := s.Totals
	verdict := "PASSED"
	if !s.Passed() || t.Runs == 0 {
		verdict = "FAILED"
	}
	mode := fmt.Sprintf("%d seeds", s.Flags.Seeds)
	if s.Flags.Duration != "" {
		mode = s.Flags.Duration
	}
	fmt.Fprintf(w, "soak %s: %d runs of %d scenarios (%s from seed %d, shard %s, parallel %d) in %.1fs\n",
		verdict, t.Runs, len(s.Scenarios), mode, s.Flags.BaseSeed, s.Flags.Shard, s.Flags.Parallel, s.WallSeconds)
	fmt.Fprintf(w, "  %d passed, %d failed, %d invalid; %d swarm runs, %d in liveness mode\n", t.Passed, t.Failed, t.Invalid, t.SwarmRuns, t.LivenessRuns)
	fmt.Fprintf(w, "  %d events, %.0f simulated seconds: %.0f seeds/minute, %.0f events/s, %.0fx faster than real time\n",
		t.Events, t.SimSeconds, s.SeedsPerMinute, s.EventsPerWallSecond, s.Compression)
	lo, hi := -1, 0
	var unrun []string
	for _, sc := range s.Scenarios {
		if sc.Runs == 0 {
			unrun = append(unrun, sc.ID)
		}
		if lo < 0 || sc.Runs < lo {
			lo = sc.Runs
		}
		hi = max(hi, sc.Runs)
	}
	fmt.Fprintf(w, "  each scenario ran %d to %d times\n", lo, hi)
	if len(unrun) > 0 {
		fmt.Fprintf(w, "  never ran (too short a soak?): %s\n", strings.Join(unrun, ", "))
	}
	fired := 0
	for _, fk := range s.Faults {
		if fk.Activations > 0 {
			fired++
		}
	}
	fmt.Fprintf(w, "  %d of %d fault kinds fired; %d coverage marks reached\n", fired, len(s.Faults), len(s.Marks))
	const show = 10
	for i, fl := range s.Failures {
		if i == show {
			fmt.Fprintf(w, "  ... and %d more failures (summary.json lists them all)\n", len(s.Failures)-show)
			break
		}
		kind := "FAIL"
		if fl.Invalid {
			kind = "INVALID"
		}
		fmt.Fprintf(w, "  %s %s seed %d: [%s] %s\n", kind, fl.Scenario, fl.Seed, fl.Stage, fl.Checker)
		if fl.Replay != "" {
			fmt.Fprintf(w, "       %s\n", fl.Replay)
		}
		if st := fl.Shrunk; st != nil {
			fmt.Fprintf(w, "       minimal: %d -> %d events, %d -> %d faults, %d -> %d nodes: %s\n", st.FromEvents, st.ToEvents,
				st.FromFaults, st.ToFaults, st.FromNodes, st.ToNodes, fl.MinimalReplay)
		}
	}
	if c := s.Canary; c != nil {
		fmt.Fprintf(w, "  canary: %d of %d planted bugs caught\n", c.Caught(), len(c.Plants))
		for _, p := range c.Plants {
			if !p.OK() {
				fmt.Fprintf(w, "  MISSED %s: %s\n", p.Plant, p.Problem)
			}
		}
	}
	fmt.Fprintf(w, "report: %s\n", filepath.Join(s.Flags.Out, "index.html"))
}
