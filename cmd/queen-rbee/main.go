// Command queen-rbee is the cluster's orchestrator: the worker registry the hives register
// with, the router that sends each inference request to a healthy, least-loaded worker (and
// fails it over when the worker dies), and the public HTTP API (see package real/gateway):
//
//	POST   /v1/inference          start an inference; tokens stream back as server-sent events
//	DELETE /v1/inference/{id}     cancel it
//	GET    /v1/workers            the registry
//	GET    /v1/models             the models the workers serve
//	GET    /health                is the queen up
//	POST   /v1/completions        OpenAI-compatible (stream or not)
//	POST   /v1/chat/completions   OpenAI-compatible (stream or not)
//
//	RBEE_API_KEY=$(openssl rand -hex 24) queen-rbee --listen 0.0.0.0:7833
//	queen-rbee --dev                          # loopback only, no key
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/daemon"
	"github.com/rbee-sim/rbee-sim/real/gateway"
	"github.com/rbee-sim/rbee-sim/real/proc"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if daemon.AskedVersion(args) {
		return 0
	}
	opts := daemon.Options{Name: "queen-rbee", Listen: "127.0.0.1:7833", Machine: "queen"}
	qcfg := queen.DefaultConfig()
	addr := "queen"
	aliases := map[string]string{}
	fs := flag.NewFlagSet("queen-rbee", flag.ContinueOnError)
	opts.Flags(fs)
	fs.StringVar(&addr, "addr", addr, "the queen's address in the cluster (hives send to it)")
	fs.IntVar(&qcfg.MaxWorkers, "max-workers", qcfg.MaxWorkers, "the most workers the registry holds")
	fs.DurationVar(&qcfg.HeartbeatTimeout, "heartbeat-timeout", qcfg.HeartbeatTimeout, "a worker without a heartbeat this long is stale")
	fs.DurationVar(&qcfg.StaleGrace, "stale-grace", qcfg.StaleGrace, "how long a stale busy worker is kept before removal")
	fs.Func("alias", "a short model name for clients: NAME=MODEL_ID (repeatable), e.g. tinyllama=hf:TheBloke/TinyLlama-GGUF/tiny.gguf", func(v string) error {
		name, id, ok := strings.Cut(v, "=")
		if !ok || name == "" || id == "" {
			return fmt.Errorf("--alias %q: want NAME=MODEL_ID", v)
		}
		aliases[name] = id
		return nil
	})
	if code, ok := daemon.ParseFlags(fs, args); !ok {
		return code
	}
	if err := qcfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "queen-rbee:", err)
		return 2
	}
	d, err := daemon.Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "queen-rbee:", err)
		d.Close()
		return 1
	}
	gw, err := gateway.NewServer(gateway.ServerConfig{Queen: node.Addr(addr), Policy: d.Policy, Aliases: aliases, Logger: d.Log})
	if err != nil {
		return fail(err)
	}
	if err := d.RT.AddPort("api", func(send real.Send) real.Port { return gw.Port(send) }); err != nil {
		return fail(err)
	}
	if err := d.RT.Add(node.Addr(addr), opts.Machine, func() node.Node { return queen.New(qcfg) }); err != nil {
		return fail(err)
	}
	d.Mux.Handle("/", gw.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := proc.NotifyTerm(ctx, cancel)
	defer stop()
	if err := d.RT.StartAll(); err != nil {
		return fail(err)
	}
	start := time.Now()
	err = d.Serve(ctx)
	d.Log.Info("queen-rbee stopped", "uptime", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "queen-rbee:", err)
		return 1
	}
	return 0
}
