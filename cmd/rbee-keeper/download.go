package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/daemon"
	"github.com/rbee-sim/rbee-sim/real/proc"
)

// downloadCmd asks a hive to download a model into its catalog (api.ModelDownloadReq, over
// the cluster's message transport) and draws the hive's progress reports as a bar.
func downloadCmd(args []string, stdout, stderr io.Writer) int {
	var hiveURL, hiveAddr, logLevel string
	req := api.ModelDownloadReq{Provider: "hf", Revision: "main"}
	fs := flag.NewFlagSet("download", flag.ContinueOnError)
	fs.StringVar(&hiveURL, "hive-url", "http://127.0.0.1:7900", "the hive's base URL")
	fs.StringVar(&hiveAddr, "hive", "", "the hive's address, as its --addr (required)")
	fs.StringVar(&req.Repo, "repo", "", "the Hugging Face repository, e.g. TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF (required)")
	fs.StringVar(&req.File, "file", "", "the file in the repository, e.g. tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf (required)")
	fs.StringVar(&req.Revision, "revision", req.Revision, "the revision")
	fs.StringVar(&logLevel, "log-level", "error", "log level on stderr")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: wait as long as it takes)")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if hiveAddr == "" || req.Repo == "" || req.File == "" {
		fmt.Fprintln(stderr, "rbee-keeper download: --hive, --repo and --file are required")
		return 2
	}
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
	bar := &progressBar{w: stderr, name: req.Repo + "/" + req.File}
	send, answers, err := h.listen(bar, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return 1
	}
	go h.d.Serve(ctx)
	req.ReqID = rand.Uint64()
	m, code := ask(ctx, send, node.Addr(hiveAddr), req, answers, func(m node.Msg) bool {
		r, ok := m.(api.CatalogResp)
		return ok && r.ReqID == req.ReqID
	}, nil)
	bar.finish()
	if code != 0 {
		return askFailed(code, hiveAddr, hiveURL, stderr)
	}
	r := m.(api.CatalogResp)
	if !r.Err.OK() {
		return printErr(stderr, "download", r.Err)
	}
	fmt.Fprintf(stdout, "%s is in the catalog of %s: %s\n", r.Model.ID, hiveAddr, r.Model.LocalPath)
	return 0
}

// portFunc is a Port made of a function.
type portFunc func(from node.Addr, m node.Msg)

func (f portFunc) Deliver(from node.Addr, m node.Msg) { f(from, m) }
func (f portFunc) Close() error                       { return nil }

// progressBar draws "name [#####-----] 45% 1.2 GB/2.6 GB 35 MB/s" on one line.
type progressBar struct {
	mu   sync.Mutex
	w    io.Writer
	name string
	drew bool
}

func (b *progressBar) update(p provision.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const width = 30
	filled := int(p.Percent / 100 * width)
	filled = max(0, min(width, filled))
	resumed := ""
	if p.Resumed {
		resumed = fmt.Sprintf(" (resumed from %.0f%%)", p.ResumedFromPercent)
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %5.1f%% %s/%s %s/s%s ", b.name, strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		p.Percent, size(p.Bytes), size(p.Total), size(p.BytesPerSec), resumed)
	b.drew = true
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drew {
		fmt.Fprintln(b.w)
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// hiveClient is this command's own process in the cluster, for talking to a hive over the
// transport: the hive answers there.
type hiveClient struct {
	d   *daemon.D
	dir string
}

// startHiveClient starts a listener on loopback with a route to the hive. Without a key that
// is dev mode, which is loopback only anyway.
func startHiveClient(hiveAddr, hiveURL, logLevel string, stderr io.Writer) (*hiveClient, error) {
	dir, err := os.MkdirTemp("", "rbee-keeper-")
	if err != nil {
		fmt.Fprintln(stderr, "rbee-keeper:", err)
		return nil, err
	}
	d, err := daemon.Start(daemon.Options{Name: "rbee-keeper", DataDir: dir, Listen: "127.0.0.1:0",
		Peers: []string{hiveAddr + "=" + hiveURL}, Dev: os.Getenv(daemon.KeyEnv) == "" && os.Getenv(daemon.ClusterKeyEnv) == "", LogLevel: logLevel})
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(stderr, err)
		return nil, err
	}
	return &hiveClient{d: d, dir: dir}, nil
}

// listen adds the command's port: download progress goes to bar, a started worker's loading
// to spin (when set), every other message to answers; it returns the port's Send.
func (h *hiveClient) listen(bar *progressBar, spin *spinner) (real.Send, <-chan node.Msg, error) {
	answers := make(chan node.Msg, 16)
	var send real.Send
	err := h.d.RT.AddPort("keeper", func(s real.Send) real.Port {
		send = s
		return portFunc(func(_ node.Addr, m node.Msg) {
			switch m := m.(type) {
			case provision.Progress:
				bar.update(m)
				return
			case api.WorkerLoading:
				if spin != nil {
					spin.loading(m.Percent)
				}
				return
			}
			select {
			case answers <- m:
			default: // nobody reads any more (answered, or given up): never block the transport
			}
		})
	})
	return send, answers, err
}

func (h *hiveClient) close() {
	h.d.Close()
	os.RemoveAll(h.dir)
}
