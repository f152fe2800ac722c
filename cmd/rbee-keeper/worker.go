package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/proc"
)

// workerCmd is `rbee-keeper worker start`: a hive downloads the model into its catalog (a
// progress bar), checks the device, spawns a worker and answers once the worker has loaded
// the model and the queen's registry holds it (a line that counts the seconds meanwhile).
func workerCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "start" {
		fmt.Fprintln(stderr, "usage: rbee-keeper worker start --hive ADDR --model hf:REPO/FILE [--device cpu] [--slots 1] [--hive-url URL]")
		return 2
	}
	var hiveURL, hiveAddr, model, logLevel string
	req := api.WorkerStartReq{Provider: "hf", Revision: "main", Device: "cpu", Slots: 1}
	fs := flag.NewFlagSet("worker start", flag.ContinueOnError)
	fs.StringVar(&hiveURL, "hive-url", "http://127.0.0.1:7900", "the hive's base URL")
	fs.StringVar(&hiveAddr, "hive", "", "the hive's address, as its --addr (required)")
	fs.StringVar(&model, "model", "", "the model: hf:OWNER/REPO/FILE (required)")
	fs.StringVar(&req.Revision, "revision", req.Revision, "the revision of the model's repository")
	fs.StringVar(&req.Device, "device", req.Device, "the device: cpu or cuda:N")
	fs.IntVar(&req.Slots, "slots", req.Slots, "requests the worker runs at once")
	fs.StringVar(&logLevel, "log-level", "error", "log level on stderr")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: wait as long as it takes)")
	if code, ok := parse(fs, args[1:], stderr); !ok {
		return code
	}
	ref, ok := strings.CutPrefix(model, "hf:")
	i := strings.LastIndex(ref, "/")
	if hiveAddr == "" || !ok || i <= 0 || i == len(ref)-1 {
		fmt.Fprintln(stderr, "rbee-keeper worker start: --hive and --model hf:OWNER/REPO/FILE are required, e.g. --hive hive-1 --model hf:TheBloke/TinyLlama-GGUF/tiny.gguf")
		return 2
	}
	req.Repo, req.File = ref[:i], ref[i+1:]
	h, err := startHiveClient(hiveAddr, hiveURL, logLevel, stderr)
	if err != nil {
		return 1
	}
	defer h.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	stop := proc.NotifyTerm(ctx, cancel)
	defer stop()
	bar := &progressBar{w: stderr, name: model}
	spin := &spinner{w: stderr, what: "starting the worker (spawn, load the model, register)"}
	send, answers, err := h.listen(bar, spin)
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	go h.d.Serve(ctx)

	// The download first, for its progress bar (a model already in the catalog is answered at
	// once); then the start itself.
	dl := api.ModelDownloadReq{ReqID: rand.Uint64(), Provider: req.Provider, Repo: req.Repo, Revision: req.Revision, File: req.File}
	m, code := ask(ctx, send, node.Addr(hiveAddr), dl, answers, func(m node.Msg) bool {
		r, ok := m.(api.CatalogResp)
		return ok && r.ReqID == dl.ReqID
	}, nil)
	bar.finish()
	if code != 0 {
		return askFailed(code, hiveAddr, hiveURL, stderr)
	}
	if r := m.(api.CatalogResp); !r.Err.OK() {
		return printErr(stderr, "download", r.Err)
	}
	req.ReqID = rand.Uint64()
	m, code = ask(ctx, send, node.Addr(hiveAddr), req, answers, func(m node.Msg) bool {
		r, ok := m.(api.WorkerStartResp)
		return ok && r.ReqID == req.ReqID
	}, spin.tick)
	spin.finish()
	if code != 0 {
		return askFailed(code, hiveAddr, hiveURL, stderr)
	}
	r := m.(api.WorkerStartResp)
	if !r.Err.OK() {
		return printErr(stderr, "worker start", r.Err)
	}
	fmt.Fprintf(stdout, "worker %s serves %s on %s of %s\n", r.Worker, r.Model, req.Device, hiveAddr)
	return 0
}

// ask sends m to the hive every 2 s (the hive joins repeats with the same ReqID) until an
// answer matches; code is 4 on timeout and 130 on Ctrl+C. tick, when set, runs every second.
func ask(ctx context.Context, send real.Send, to node.Addr, m node.Msg, answers <-chan node.Msg,
	match func(node.Msg) bool, tick func()) (node.Msg, int) {
	resend := time.NewTicker(2 * time.Second)
	defer resend.Stop()
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	send(to, m)
	for {
		select {
		case a := <-answers:
			if match(a) {
				return a, 0
			}
		case <-resend.C:
			send(to, m)
		case <-sec.C:
			if tick != nil {
				tick()
			}
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return nil, 4
			}
			return nil, 130
		}
	}
}

func askFailed(code int, hive, url string, stderr io.Writer) int {
	if code == 4 {
		fmt.Fprintf(stderr, "rbee-keeper: no answer from %s at %s in time; is rbee-hive running there with --addr %s? (what the hive started goes on)\n", hive, url, hive)
	} else {
		fmt.Fprintln(stderr, "rbee-keeper: interrupted; what the hive started goes on")
	}
	return code
}

func printErr(stderr io.Writer, what string, e api.Error) int {
	fmt.Fprintf(stderr, "rbee-keeper %s: %s: %s\n", what, e.Code, e.Message)
	if e.Suggestion != "" {
		fmt.Fprintf(stderr, "  what to do: %s\n", e.Suggestion)
	}
	return 1
}

// spinner writes "what ... 12s" on one line, once a second.
type spinner struct {
	mu      sync.Mutex
	w       io.Writer
	what    string
	start   time.Time
	drew    bool
	percent float64 // the worker's model loading, forwarded by the hive, once loaded is set
	loaded  bool
}

// loading notes the worker's model loading progress and draws it at once.
func (s *spinner) loading(percent float64) {
	s.mu.Lock()
	s.percent, s.loaded = percent, true
	s.mu.Unlock()
	s.tick()
}

func (s *spinner) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		s.start = time.Now().Add(-time.Second)
	}
	load := ""
	if s.loaded {
		load = fmt.Sprintf(", loading the model %3.0f%%", s.percent)
	}
	fmt.Fprintf(s.w, "\r%s ... %ds%s ", s.what, int(time.Since(s.start).Seconds()), load)
	s.drew = true
}

func (s *spinner) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drew {
		fmt.Fprintln(s.w)
	}
}
