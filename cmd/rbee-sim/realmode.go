package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/real/realrun"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// runReal runs one scenario on real processes (package realrun) and prints its verdict.
func runReal(sc scenario.Scenario, f runFlags) error {
	if err := realrun.Check(sc); err != nil {
		return fmt.Errorf("%s: %w", sc.ID, err)
	}
	dir := filepath.Join(f.out, "real", fmt.Sprintf("%s-seed-%d-%s", sanitize(sc.ID), sc.Seed, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bins := cluster.Bins{Dir: f.binDir}
	if f.binDir == "" {
		root, err := cluster.ModuleRoot(".")
		if err != nil {
			return fmt.Errorf("%w (or pass --bin-dir with built binaries)", err)
		}
		fmt.Printf("building the rbee binaries into %s ...\n", filepath.Join(dir, "bin"))
		if bins, err = cluster.Build(ctx, root, filepath.Join(dir, "bin")); err != nil {
			return err
		}
	}
	fmt.Printf("real run of %s seed %d in %s (logs/, records/, result.json)\n", sc.ID, sc.Seed, dir)
	res, err := realrun.Run(ctx, sc, realrun.Options{Bins: bins, Dir: dir, Chaos: f.chaos, Settle: f.settle, Progress: os.Stdout})
	if err != nil {
		return err
	}
	for _, c := range res.Checkers {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Printf("  %s [%s] %s: %s\n", mark, c.Stage, c.Name, c.Detail)
	}
	verdict := "PASS"
	if !res.Passed {
		verdict = "FAIL"
	}
	fmt.Printf("%s %s seed %d on real processes: %d events recorded in %.1fs; report in %s\n", verdict, sc.ID, sc.Seed, res.Events, res.WallSeconds, dir)
	if !res.Passed {
		return errFailed
	}
	return nil
}

func sanitize(id string) string {
	out := []rune(id)
	for i, r := range out {
		if r == '/' {
			out[i] = '-'
		}
	}
	return string(out)
}
