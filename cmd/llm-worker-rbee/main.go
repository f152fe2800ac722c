// Command llm-worker-rbee is one inference worker: it loads one model into an inference
// engine, runs requests in slots and streams tokens. A hive (rbee-hive) normally spawns it;
// its command line is the core's (orch/worker.ParseArgs: --id, --model, --slots, --queue,
// --hive, --engine, --port) and the runtime settings come from the environment the hive
// sets:
//
//	RBEE_PEERS      routes to the hive and the queen: "hive-1=http://127.0.0.1:7900,queen=..."
//	RBEE_LISTEN_HOST    the host to listen on (the hive's; default 127.0.0.1)
//	RBEE_ADVERTISE_HOST the host the others reach it at (the host of the hive's URL)
//	RBEE_API_KEY, RBEE_CLUSTER_KEY  the keys (see real/daemon; not needed with RBEE_DEV=1)
//	RBEE_DEV        1: dev mode (no key, loopback only)
//	RBEE_DATA_DIR   the data folder (default ~/.rbee); RBEE_MACHINE its machine folder
//	RBEE_ENGINE     which engine serves the model:
//	                  cpu                      the built-in CPU engine (default)
//	                  cpu:RATE                 the same at RATE tokens/s (0: as fast as it can)
//	                  llama-server=URL         a llama.cpp server already running at URL
//	                  openai=URL[,model=NAME]  an OpenAI-compatible server (vLLM, Ollama)
//	RBEE_EOS_MEAN   the CPU engine's mean completion length (default 64)
//	RBEE_RECORD_DIR when set, the history of this process goes to <dir>/<id>.jsonl
//	RBEE_LOG_LEVEL  debug, info, warn or error
//
// SIGTERM (or Ctrl+C) stops it gracefully: it finishes or hands back its requests, then exits.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/worker"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/daemon"
	"github.com/rbee-sim/rbee-sim/real/engine"
	"github.com/rbee-sim/rbee-sim/real/proc"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if daemon.AskedVersion(args) {
		return 0
	}
	cfg, err := worker.ParseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	port := portOf(args)
	if port == 0 {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee: --port is required: the hive gives each worker its own port")
		return 2
	}
	newEngine, err := engineFromEnv(os.Getenv("RBEE_ENGINE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 2
	}
	opts := daemon.Options{
		Name:     "llm-worker-rbee",
		DataDir:  os.Getenv("RBEE_DATA_DIR"),
		Machine:  os.Getenv("RBEE_MACHINE"),
		Listen:   net.JoinHostPort(envOr("RBEE_LISTEN_HOST", "127.0.0.1"), strconv.Itoa(port)),
		Peers:    daemon.PeersFromEnv(),
		Dev:      os.Getenv("RBEE_DEV") == "1",
		LogLevel: envOr("RBEE_LOG_LEVEL", "info"),
	}
	if h := os.Getenv("RBEE_ADVERTISE_HOST"); h != "" {
		opts.Advertise = "http://" + net.JoinHostPort(h, strconv.Itoa(port))
	}
	if dir := os.Getenv("RBEE_RECORD_DIR"); dir != "" {
		opts.Record = filepath.Join(dir, cfg.ID+".jsonl")
	}
	d, err := daemon.Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var exitCode atomic.Int64
	self := node.Addr("proc-" + cfg.ID) // this process, as its own process table: where ProcExit goes
	if err := d.RT.AddPort(cfg.Engine, newEngine); err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 1
	}
	if err := d.RT.AddPort(self, func(real.Send) real.Port {
		return exitPort(func(code int) { exitCode.Store(int64(code)); cancel() })
	}); err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 1
	}
	if err := d.RT.Add(node.Addr(cfg.ID), d.Opts.Machine, func() node.Node { return worker.New(cfg) }); err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 1
	}
	stop := proc.NotifyTerm(ctx, func() { d.RT.Inject(self, node.Addr(cfg.ID), api.ProcTerm{}) })
	defer stop()
	if err := d.RT.StartAll(); err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 1
	}
	if err := d.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "llm-worker-rbee:", err)
		return 1
	}
	return int(exitCode.Load())
}

// exitPort is this process's own process table: the worker sends it ProcExit after a
// graceful stop.
type exitPort func(code int)

func (p exitPort) Deliver(_ node.Addr, m node.Msg) {
	if e, ok := m.(api.ProcExit); ok {
		p(e.Code)
	}
}

func (p exitPort) Close() error { return nil }

// LocalOnly implements real.LocalOnly: only the worker node of this process may end it.
func (p exitPort) LocalOnly() bool { return true }

// portOf finds --port N (or --port=N) on the command line; 0 if missing.
func portOf(args []string) int {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--port=")
		if !ok && a == "--port" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// engineFromEnv builds the engine named by RBEE_ENGINE (see the command's doc).
func engineFromEnv(spec string) (func(real.Send) real.Port, error) {
	kind, arg, _ := strings.Cut(spec, "=")
	switch {
	case spec == "" || kind == "cpu" || strings.HasPrefix(kind, "cpu:"):
		cfg := engine.DefaultCPUConfig()
		if rate, ok := strings.CutPrefix(kind, "cpu:"); ok {
			r, err := strconv.ParseFloat(rate, 64)
			if err != nil {
				return nil, fmt.Errorf("RBEE_ENGINE=%q: the CPU engine's rate must be a number of tokens per second, e.g. cpu:50", spec)
			}
			cfg.TokensPerSec = r
		}
		if s := os.Getenv("RBEE_EOS_MEAN"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("RBEE_EOS_MEAN=%q: want a whole number of tokens, 0 or more", s)
			}
			cfg.EOSMean = n
		}
		return engine.NewCPU(cfg)
	case kind == "llama-server":
		return engine.NewLlamaServer(engine.LlamaServerConfig{URL: arg})
	case kind == "openai":
		url, model, _ := strings.Cut(arg, ",model=")
		return engine.NewOpenAI(engine.OpenAIConfig{URL: url, Model: model, APIKey: os.Getenv("RBEE_ENGINE_API_KEY")})
	}
	return nil, fmt.Errorf("RBEE_ENGINE=%q is not an engine: use cpu, cpu:RATE, llama-server=URL or openai=URL[,model=NAME]", spec)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
