package main

import (
	"flag"
	"os"

	"github.com/rbee-sim/rbee-sim/reports"
	"github.com/rbee-sim/rbee-sim/scenario"
)

func cmdReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	out := fs.String("out", "", "report folder (default: a folder named after the scenario under rbee-sim-replays)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"replay needs exactly one scenario file"}
	}
	sc, err := scenario.Load(fs.Arg(0))
	if err != nil {
		return err // Load's error says what is wrong, planted bugs that need -tags plant included
	}
	dir := *out
	if dir == "" {
		dir = reports.FailureDir("rbee-sim-replays", sc)
	}
	res := scenario.Run(sc, scenario.Options{})
	if _, err := reports.WriteFolder(dir, sc, &res); err != nil {
		return err
	}
	o := outcome{sc: sc, res: res}
	if err := report([]outcome{o}, runFlags{json: *asJSON}, os.Stdout); err != nil {
		return err
	}
	return nil
}
