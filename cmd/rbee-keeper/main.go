// Command rbee-keeper is what people type: it runs inferences through queen-rbee and
// streams the tokens as they come, lists workers and models, and asks a hive to download a
// model (with a progress bar).
//
//	rbee-keeper infer --model tinyllama --prompt "Write a haiku about bees"
//	rbee-keeper workers
//	rbee-keeper models
//	rbee-keeper download --hive-url http://127.0.0.1:7900 --hive hive-1 --repo TheBloke/TinyLlama-GGUF --file tiny.gguf
//	rbee-keeper worker start --hive hive-1 --model hf:TheBloke/TinyLlama-GGUF/tiny.gguf --slots 2
//
// The queen is found at --queen-url, or RBEE_QUEEN_URL, or http://127.0.0.1:7833; the key is
// RBEE_API_KEY. Exit codes (orch/keeper/exitcode.go): 0 ok, 1 failed, 2 usage, 3 unavailable,
// 4 timeout, 130 interrupted (Ctrl+C, which cancels the request at the queen).
package main

import (
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: rbee-keeper COMMAND [flags]

commands:
  infer      run one inference and stream its tokens
  workers    list the workers registered with the queen
  models     list the models the workers serve
  download   have a hive download a model into its catalog, with a progress bar
  worker start   have a hive start a worker for a model (downloading it first)
  version    print the version

rbee-keeper COMMAND --help shows a command's flags.`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "infer":
		return inferCmd(args[1:], stdout, stderr)
	case "workers":
		return workersCmd(args[1:], stdout, stderr)
	case "models":
		return modelsCmd(args[1:], stdout, stderr)
	case "download":
		return downloadCmd(args[1:], stdout, stderr)
	case "worker":
		return workerCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "rbee-keeper: unknown command %q\n\n%s\n", args[0], usage)
	return 2
}
