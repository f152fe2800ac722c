package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

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
}

func (f soakFlags) record() reports.SoakFlags {
	r := reports.SoakFlags{Parallel: f.parallel, Scenario: f.scenario, BaseSeed: f.baseSeed,
		Shard: fmt.Sprintf("%d/%d", f.shardI, f.shardN), Out: f.out}
	if f.duration > 0 {
		r.Duration = f.duration.String()
	} else {
		r.Seeds = f.seeds
	}
	return r
}

func parseSoakFlags(args []string) (soakFlags, error) {
	f := soakFlags{shardN: 1}
	var shard string
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.DurationVar(&f.duration, "duration", 0, "run until this much wall time has passed (runs in flight finish); not with --seeds")
	fs.IntVar(&f.seeds, "seeds", 20, "seeds per scenario: base-seed .. base-seed+N-1; not with --duration")
	fs.IntVar(&f.parallel, "parallel", runtime.NumCPU(), "simulations to run at once")
	fs.StringVar(&f.scenario, "scenario", "*", "scenario ID or glob (registry/*); rbee-sim list names them")
	fs.Uint64Var(&f.baseSeed, "base-seed", 1, "the first seed")
	fs.StringVar(&shard, "shard", "0/1", "i/n: take only the seeds whose index (seed - base-seed) % n == i")
	fs.StringVar(&f.out, "out", "rbee-sim-soak", "folder for summary.json, index.html and failures/")
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
				sc := j.entry.Generate(j.seed, scenario.Knobs{})
				res := scenario.Run(sc, scenario.Options{})
				if !res.Passed {
					if _, err := reports.WriteFolder(reports.FailureDir(failRoot, sc), sc, &res); err != nil {
						fmt.Fprintf(stderr, "rbee-sim: %s seed %d failed, and its report could not be written: %v\n", sc.ID, sc.Seed, err)
					}
				}
				available := j.entry.AvailableKinds(sc)
				res.Compact()
				mu.Lock()
				coll.Add(sc, &res, available)
				records = append(records, soakRecord{sc.ID, sc.Seed, res.Passed, res.TraceHash})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return coll.Summary(f.record(), started, time.Now()), records
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
	sum, _ := soak(f, entries, os.Stderr)
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
	fmt.Fprintf(w, "  %d passed, %d failed, %d invalid\n", t.Passed, t.Failed, t.Invalid)
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
	}
	fmt.Fprintf(w, "report: %s\n", filepath.Join(s.Flags.Out, "index.html"))
}
