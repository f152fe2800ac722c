package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/daemon"
	"github.com/rbee-sim/rbee-sim/real/gateway"
	"github.com/rbee-sim/rbee-sim/real/proc"
)

var version = daemon.Version

// commonFlags are the flags every command that talks to the queen has.
type commonFlags struct {
	queenURL string
	logLevel string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RBEE_QUEEN_URL")
	if def == "" {
		def = "http://127.0.0.1:7833"
	}
	fs.StringVar(&c.queenURL, "queen-url", def, "the queen's base URL (default $RBEE_QUEEN_URL or http://127.0.0.1:7833)")
	fs.StringVar(&c.logLevel, "log-level", "error", "log level on stderr: debug, info, warn or error")
}

// parse parses flags; ok false means return code.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rbee-keeper %s: unexpected argument %q (put the prompt in --prompt \"...\")\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func inferCmd(args []string, stdout, stderr io.Writer) int {
	var c commonFlags
	spec := keeper.InferSpec{MaxTokens: 128}
	var seed int64 = -1
	fs := flag.NewFlagSet("infer", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&spec.Model, "model", "", "the model: a catalog ID (hf:REPO/FILE) or an alias the queen knows (required)")
	fs.StringVar(&spec.Prompt, "prompt", "", "the prompt; - reads it from stdin (required)")
	fs.IntVar(&spec.MaxTokens, "max-tokens", spec.MaxTokens, "the most tokens to generate")
	fs.Int64Var(&seed, "seed", seed, "the sampling seed (same model, prompt and seed: same answer); default random")
	fs.DurationVar(&spec.Timeout, "timeout", 0, "give up after this long (0: no deadline)")
	fs.BoolVar(&spec.AllowInjection, "allow-system-instructions", false, "send a prompt that contains system-instruction patterns")
	stall := fs.Duration("stall-timeout", 60*time.Second, "cancel a stream that sends no token for this long")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if spec.Prompt == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			fmt.Fprintln(stderr, "rbee-keeper infer: cannot read the prompt from stdin:", err)
			return 2
		}
		spec.Prompt = strings.TrimRight(string(b), "\n")
	}
	if spec.Model == "" || spec.Prompt == "" {
		fmt.Fprintln(stderr, "rbee-keeper infer: --model and --prompt are required, e.g. rbee-keeper infer --model tinyllama --prompt \"Write a haiku about bees\"")
		return 2
	}
	if !strings.Contains(spec.Model, ":") {
		spec.Model = resolveAlias(c, spec.Model, stderr)
	}
	if seed >= 0 {
		spec.Seed = uint64(seed)
	} else {
		spec.Seed = uint64(time.Now().UnixNano())
	}
	// Real networks and a queen that routes under load need more than the simulator's 200 ms
	// before a resend; the gateway itself answers within 5 s (QUEEN_UNAVAILABLE) when it can.
	icfg := keeper.InferConfig{Queen: "queen", Requests: []keeper.InferSpec{spec}, StallTimeout: *stall, ConnectTimeout: 2 * time.Second}
	if err := icfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper infer:", err)
		return 2
	}
	log, err := daemon.NewLogger(c.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "rbee-keeper-")
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	done := make(chan struct{})
	var once sync.Once
	rt, err := real.New(real.Config{DataDir: dir, Seed: uint64(time.Now().UnixNano()), Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	defer rt.Stop()
	client, err := gateway.NewClient(gateway.ClientConfig{BaseURL: c.queenURL, APIKey: firstKey(), Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper infer:", err)
		return 2
	}
	if err := rt.AddPort("queen", client); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	out := &streamer{w: stdout}
	if err := rt.Add("keeper", "keeper", func() node.Node {
		return &printing{InferClient: keeper.NewInferClient(icfg), out: out, done: func() { once.Do(func() { close(done) }) }}
	}); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := proc.NotifyTerm(ctx, func() { rt.Inject("keeper", "keeper", keeper.Interrupt{}) })
	defer stop()
	if err := rt.StartAll(); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	<-done
	var res keeper.InferResult
	rt.Inspect("keeper", func(n node.Node) { res = n.(*printing).Results()[0] })
	return report(res, out, stderr)
}

// printing is the inference client with its tokens printed as they come: each index once, in
// order, as the client itself accepts them.
type printing struct {
	*keeper.InferClient
	out  *streamer
	done func()
}

func (p *printing) Handle(env node.Env, from node.Addr, m node.Msg) {
	p.InferClient.Handle(env, from, m)
	if _, ok := m.(api.InferToken); ok {
		r := p.Results()[0]
		p.out.upTo(r.Tokens)
	}
	if p.Done() {
		p.done()
	}
}

// streamer writes token texts once each, in index order.
type streamer struct {
	w       io.Writer
	printed int
}

func (s *streamer) upTo(tokens []api.InferToken) {
	for s.printed < len(tokens) && tokens[s.printed].Index == s.printed {
		fmt.Fprint(s.w, tokens[s.printed].Text)
		s.printed++
	}
}

// report ends the output and says how the request ended; the exit code is the keeper's.
func report(r keeper.InferResult, out *streamer, stderr io.Writer) int {
	if out.printed > 0 {
		fmt.Fprintln(out.w)
	}
	took := ""
	if !r.SentAt.IsZero() && !r.DoneAt.IsZero() {
		took = " in " + r.DoneAt.Sub(r.SentAt).Round(time.Millisecond).String()
	}
	switch r.ExitCode {
	case keeper.ExitOK:
		fmt.Fprintf(stderr, "[%d tokens%s, finish reason %s, worker %s]\n", len(r.Tokens), took, r.FinishReason, r.Worker)
	default:
		msg := r.Err.Message
		if msg == "" {
			msg = string(r.Outcome)
		}
		fmt.Fprintf(stderr, "rbee-keeper infer: %s (%s): %s\n", r.Outcome, r.Err.Code, msg)
		if r.Err.Suggestion != "" {
			fmt.Fprintf(stderr, "  what to do: %s\n", r.Err.Suggestion)
		}
		if len(r.Tokens) > 0 {
			fmt.Fprintf(stderr, "  the %d tokens received before that are printed above\n", len(r.Tokens))
		}
	}
	return int(r.ExitCode)
}

// resolveAlias turns a short model name the queen knows (queen-rbee --alias) into its catalog
// ID, so that the request passes validation; a name the queen does not list is kept as it is,
// and validation then says how a model is written.
func resolveAlias(c commonFlags, name string, stderr io.Writer) string {
	var list struct {
		Data []struct {
			ID   string `json:"id"`
			Root string `json:"root"`
		} `json:"data"`
	}
	if err := getJSON(c, "/v1/models", &list); err != nil {
		return name
	}
	for _, m := range list.Data {
		if m.ID == name && strings.Contains(m.Root, ":") {
			return m.Root
		}
	}
	return name
}

func firstKey() string {
	for _, env := range []string{daemon.KeyEnv, daemon.ClusterKeyEnv} { // as the queen falls back
		if k := strings.TrimSpace(strings.Split(os.Getenv(env), ",")[0]); k != "" {
			return k
		}
	}
	return ""
}
