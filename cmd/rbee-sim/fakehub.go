package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
)

// cmdFakehub serves a local fake of the Hugging Face hub (real/fakehub) with synthetic GGUF
// models: what the README's local demo and the real-mode runs download from.
func cmdFakehub(args []string) error {
	fs := flag.NewFlagSet("fakehub", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8900", "host:port to serve on")
	var models []string
	fs.Func("gguf", "a synthetic GGUF model to serve: REPO/FILE[:SIZE], e.g. TheBloke/TinyLlama-GGUF/tiny.gguf:64MiB (repeatable)", func(v string) error {
		models = append(models, v)
		return nil
	})
	fail429 := fs.Int("fail-first", 0, "answer the first N downloads 429 with Retry-After 1s (to watch the hive back off)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if len(models) == 0 {
		models = []string{"TheBloke/TinyLlama-GGUF/tiny.gguf:16MiB"}
	}
	hub := fakehub.New(fakehub.Config{})
	for _, m := range models {
		ref, sz, _ := strings.Cut(m, ":")
		i := strings.LastIndex(ref, "/")
		if i <= 0 || i == len(ref)-1 {
			return usageError{fmt.Sprintf("--gguf %q: want REPO/FILE[:SIZE], e.g. TheBloke/TinyLlama-GGUF/tiny.gguf:64MiB", m)}
		}
		size := int64(16 << 20)
		if sz != "" {
			var err error
			if size, err = parseBytes(sz); err != nil {
				return usageError{fmt.Sprintf("--gguf %q: %v", m, err)}
			}
		}
		f, err := hub.AddGGUF(ref[:i], ref[i+1:], gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 22,
			Name: ref[i+1:], PayloadBytes: size / 4 * 4, Seed: uint64(len(ref))})
		if err != nil {
			return err
		}
		fmt.Printf("serving %s/resolve/main/%s (%d bytes, sha256 %s)\n", ref[:i], ref[i+1:], f.Size, f.SHA256)
	}
	if *fail429 > 0 {
		hub.FailNext(*fail429, http.StatusTooManyRequests, 1e9)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("fakehub: cannot listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: hub}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Printf("fake hub at http://%s (rbee-hive --hub-url http://%s)\n", ln.Addr(), ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// parseBytes reads 1234, 16KiB, 64MiB, 2GiB.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.n
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB, MiB or GiB", s)
	}
	return n * mult, nil
}
