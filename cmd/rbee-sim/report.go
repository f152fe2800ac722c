package main

import (
	"flag"
	"fmt"

	"github.com/rbee-sim/rbee-sim/reports"
)

// cmdReport handles `rbee-sim report merge --out DIR [--canary FILE] SHARD_DIR...`: it merges
// the soak reports of the shards of one soak into one summary.json and index.html, with the
// canary's report when given.
func cmdReport(args []string) error {
	if len(args) == 0 || args[0] != "merge" {
		return usageError{"report needs a subcommand: rbee-sim report merge --out DIR SHARD_DIR..."}
	}
	fs := flag.NewFlagSet("report merge", flag.ContinueOnError)
	out := fs.String("out", "rbee-sim-soak-merged", "folder for the merged summary.json and index.html")
	canary := fs.String("canary", "", "include this canary report (canary.json of rbee-sim canary, or its folder); a plant it missed fails the report")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"report merge needs the shards' soak folders"}
	}
	var parts []*reports.SoakSummary
	for _, d := range fs.Args() {
		s, err := reports.ReadSoak(d)
		if err != nil {
			return err
		}
		parts = append(parts, s)
	}
	m := reports.MergeSoak(*out, fs.Args(), parts)
	m.Flags.Command = append([]string{"rbee-sim", "report"}, args...)
	if *canary != "" {
		c, err := reports.ReadCanary(*canary, *out)
		if err != nil {
			return err
		}
		m.Canary, m.Flags.Canary = c, *canary
	}
	if err := reports.WriteSoak(*out, m); err != nil {
		return err
	}
	fmt.Printf("merged %d shards: %d runs, %d passed, %d failed, %d invalid; report %s/index.html\n",
		len(parts), m.Totals.Runs, m.Totals.Passed, m.Totals.Failed, m.Totals.Invalid, *out)
	if c := m.Canary; c != nil {
		fmt.Printf("canary: %d of %d planted bugs caught\n", c.Caught(), len(c.Plants))
	}
	if !m.Passed() {
		return errFailed
	}
	return nil
}
