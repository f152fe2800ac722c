package worker

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// The command line of llm-worker-rbee, as a hive spawns it (api.ProcSpawn.Args):
//
//	--id ID --model MODEL --model-bytes N --slots N --queue N --hive ADDR --engine ADDR [--port N]
//
// Flags may be written -flag or --flag, with the value after a space or an equals sign.
// --port is the port the process listens on; the runtime binds it (in the simulator the
// process's address comes from the spawn instead), so Config has no field for it: ParseArgs
// checks it and Args leaves it out. LoadTimeout, StatusInterval and Plants have no flags: a
// parsed Config has their defaults.

// portMax is the largest TCP port.
const portMax = 65535

// argsUsage lists the flags for error messages.
const argsUsage = "--id ID --model MODEL --model-bytes N --slots N --queue N --hive ADDR --engine ADDR [--port N]"

// ParseArgs builds a Config from a command line (the arguments after the binary), starting
// from DefaultConfig. An unknown flag, a malformed number, an argument that is not a flag, a
// port outside 1 to 65535, or a Config that fails Validate is an error that says which and
// how the command line should look.
func ParseArgs(args []string) (Config, error) {
	cfg := DefaultConfig()
	var hive, engine string
	port := -1
	fs := flag.NewFlagSet("llm-worker-rbee", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.ID, "id", "", "worker ID")
	fs.StringVar(&cfg.Model, "model", "", "model ID")
	fs.Int64Var(&cfg.ModelBytes, "model-bytes", cfg.ModelBytes, "model size in bytes")
	fs.IntVar(&cfg.Slots, "slots", cfg.Slots, "inference slots")
	fs.IntVar(&cfg.QueueMax, "queue", cfg.QueueMax, "queue length")
	fs.StringVar(&hive, "hive", "", "hive address")
	fs.StringVar(&engine, "engine", "", "engine address")
	fs.IntVar(&port, "port", port, "listen port")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			err = errors.New("-h/--help is not a worker flag")
		}
		return Config{}, fmt.Errorf("llm-worker-rbee: bad command line %q: %v; use %s", args, err, argsUsage)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("llm-worker-rbee: bad command line %q: unexpected argument %q; use %s",
			args, fs.Arg(0), argsUsage)
	}
	if port != -1 && (port < 1 || port > portMax) {
		return Config{}, fmt.Errorf("llm-worker-rbee: --port %d is not a TCP port; give one from 1 to %d", port, portMax)
	}
	cfg.Hive, cfg.Engine = node.Addr(hive), node.Addr(engine)
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("llm-worker-rbee: bad command line %q: %v; use %s", args, err, argsUsage)
	}
	return cfg, nil
}

// Args is the command line that ParseArgs turns back into c (every flag, in a fixed order;
// no --port: see above). Fields without a flag are not carried.
func (c Config) Args() []string {
	return []string{
		"--id", c.ID,
		"--model", c.Model,
		"--model-bytes", strconv.FormatInt(c.ModelBytes, 10),
		"--slots", strconv.Itoa(c.Slots),
		"--queue", strconv.Itoa(c.QueueMax),
		"--hive", string(c.Hive),
		"--engine", string(c.Engine),
	}
}
