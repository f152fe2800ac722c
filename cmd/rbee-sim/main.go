// Command rbee-sim runs the rbee orchestrator core in the deterministic cluster simulator:
// it lists the scenarios, runs and judges them for seeds, checks that runs are deterministic,
// and replays saved failures.
//
//	rbee-sim list
//	rbee-sim run [--scenario GLOB] [--seed N | --seeds A-B] [--json] [--trace FILE]
//	             [--check-determinism] [--plant NAME] [--out DIR] [--parallel N]
//	rbee-sim replay [--json] [--out DIR] FILE
//	rbee-sim shrink [--budget N] [--out DIR] FILE
//	rbee-sim soak [--duration D | --seeds N] [--parallel N] [--scenario GLOB] [--base-seed N] [--shard i/n] [--out DIR]
//	              [--swarm=false] [--liveness SHARE] [--shrink RUNS] [--canary FILE]
//	rbee-sim report merge [--out DIR] [--canary FILE] SHARD_DIR...
//	rbee-sim canary [--out DIR]   (a -tags plant build)
//
// Exit status: 0 when every run passed; 1 when a run failed or was invalid; 2 on bad usage.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
)

// errFailed says some run failed; its details were already printed.
var errFailed = errors.New("a run failed")

// usageError is bad input from the user: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `rbee-sim: the rbee cluster simulator

Commands:
  rbee-sim list                      print the scenario IDs, one per line
  rbee-sim run [flags]               run scenarios and judge them (no flags: every scenario, seeds 1-3)
  rbee-sim replay [flags] FILE       re-run a saved scenario file; same trace hash, same verdict
  rbee-sim shrink [flags] FILE       minimise a failing scenario file while the same checker fails
  rbee-sim soak [flags]              run many seeds for a duration or a seed count, in parallel, and write a report
  rbee-sim report merge --out DIR SHARD_DIR...   merge the soak reports of the shards of one soak
  rbee-sim canary [flags]            (built with -tags plant) prove every planted bug is caught, and how fast
  rbee-sim fakehub [flags]           serve a local fake of the Hugging Face hub with synthetic GGUF models

Run 'rbee-sim run -h' or 'rbee-sim replay -h' for their flags.
`

func main() {
	// SQLite draws journal nonces from crypto/rand; a simulation process makes them
	// deterministic so that the bytes on every simulated disk replay exactly.
	rand.Reader = sqlitevfs.DeterministicRandom(0)
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "list":
		err = cmdList(args[1:])
	case "run":
		err = cmdRun(args[1:])
	case "replay":
		err = cmdReplay(args[1:])
	case "shrink":
		err = cmdShrink(args[1:])
	case "soak":
		err = cmdSoak(args[1:])
	case "canary":
		err = cmdCanary(args[1:])
	case "report":
		err = cmdReport(args[1:])
	case "fakehub":
		err = cmdFakehub(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "rbee-sim: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, errFailed):
		return 1
	default:
		fmt.Fprintf(os.Stderr, "rbee-sim: %v\n", err)
		return 1
	}
}
