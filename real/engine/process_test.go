package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// The test binary doubles as a fake llama-server process when RBEE_ENGINE_TEST_SERVER says
// how: "serve" (the fake at RBEE_ENGINE_TEST_ADDR, loading for two polls), "stubborn" (the
// same, ignoring SIGTERM), "fail" (a failed model load: a message and exit status 1).
func TestMain(m *testing.M) {
	if mode := os.Getenv("RBEE_ENGINE_TEST_SERVER"); mode != "" {
		os.Exit(fakeServerMain(mode))
	}
	os.Exit(m.Run())
}

func fakeServerMain(mode string) int {
	switch mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "llama_model_load: error loading model: failed to open /models/missing.gguf")
		return 1
	case "serve", "stubborn":
		if mode == "stubborn" {
			signal.Ignore(syscall.SIGTERM)
		}
		addr := os.Getenv("RBEE_ENGINE_TEST_ADDR")
		f := &fakeLlama{slots: make([]bool, 2), loadingPolls: 2}
		fmt.Println("fake llama-server: listening on", addr)
		err := (&http.Server{Addr: addr, Handler: f.mux()}).ListenAndServe()
		fmt.Fprintln(os.Stderr, "fake llama-server:", err)
		return 2
	}
	fmt.Fprintln(os.Stderr, "unknown RBEE_ENGINE_TEST_SERVER mode", mode)
	return 3
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverConfig starts this test binary as a fake llama-server in mode.
func serverConfig(t *testing.T, mode string) (LlamaServerConfig, *logBuffer) {
	port := freePort(t)
	out := &logBuffer{}
	cfg := llamaConfig(fmt.Sprintf("http://127.0.0.1:%d", port))
	cfg.Command = []string{os.Args[0], "-test.run=^$"}
	cfg.Env = []string{"RBEE_ENGINE_TEST_SERVER=" + mode, fmt.Sprintf("RBEE_ENGINE_TEST_ADDR=127.0.0.1:%d", port)}
	cfg.Output = out
	return cfg, out
}

// refused reports whether nothing answers at url any more.
func refused(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		return false
	}
	return strings.Contains(err.Error(), "connection refused")
}

// The engine starts the server on EngineLoad, waits for it, generates through it, starts it
// again on the next EngineLoad after it died, and stops it with SIGTERM on Close.
func TestLlamaStartsAndStopsServer(t *testing.T) {
	cfg, out := serverConfig(t, "serve")
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 1, Prompt: "hello", PromptTokens: 1, MaxTokens: 6, Seed: 9})
	texts, _ := textgen.Completion("hello", uint64(llamaSeed(9)), 6, 0)
	if toks, done := completion(rec.waitDone(t, 1), 1); !slices.Equal(toks, texts) || done.Reason != api.FinishLength {
		t.Fatalf("got %q then %+v, want %q then length", toks, *done, texts)
	}
	if !strings.Contains(out.String(), "listening on") {
		t.Errorf("the server's output did not reach Output: %q", out)
	}

	// The server dies: a completion fails; the next EngineLoad starts it again.
	l := p.(*port).be.(*llama)
	first := l.proc
	first.cmd.Process.Kill()
	<-first.done
	p.Deliver(workerAddr, api.EngineGenerate{ReqID: 2, Prompt: "hello", PromptTokens: 1, MaxTokens: 6, Seed: 9})
	_, done := completion(rec.waitDone(t, 2), 2)
	wantError(t, done, api.CodeEngineError, "POST /completion")
	n := len(loads(rec.all()))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m"})
	rec.waitFor(t, "the second EngineLoaded", func(s []sent) bool { return len(loads(s)) > n })
	if l := loads(rec.all()); !l[n].Err.OK() {
		t.Fatalf("second load: %v", l[n].Err)
	}
	if l.proc == first || l.proc.exited() {
		t.Fatalf("the second load did not start a new server")
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !l.proc.exited() || !refused(cfg.URL) {
		t.Errorf("the server still runs after Close")
	}
}

// A server that ignores SIGTERM is killed after StopGrace, and Close says so.
func TestLlamaKillsStubbornServer(t *testing.T) {
	cfg, _ := serverConfig(t, "stubborn")
	cfg.StopGrace = 200 * time.Millisecond
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	load(t, p, rec, 0)
	err := p.Close()
	if err == nil || !strings.Contains(err.Error(), "SIGKILL") {
		t.Errorf("Close: %v, want an error saying the server was killed", err)
	}
	if !refused(cfg.URL) {
		t.Errorf("the server still runs after Close")
	}
}

// A server that exits while loading, or a command that cannot start, fails the load at once
// with what it said.
func TestLlamaServerFailsToStart(t *testing.T) {
	cfg, _ := serverConfig(t, "fail")
	cfg.LoadTimeout = time.Hour
	p, rec := mkPort(t)(NewLlamaServer(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m"})
	l, _ := rec.waitLoaded(t)
	if l.Err.Code != api.CodeEngineError {
		t.Fatalf("EngineLoaded %+v, want ENGINE_ERROR", l)
	}
	checkMessage(t, l.Err, "exited before it became healthy", "exit status 1", "failed to open /models/missing.gguf")

	cfg.Command = []string{"/nonexistent/llama-server", "-m", "x.gguf"}
	p, rec = mkPort(t)(NewLlamaServer(cfg))
	p.Deliver(workerAddr, api.EngineLoad{Model: "m"})
	l, _ = rec.waitLoaded(t)
	if l.Err.Code != api.CodeEngineError {
		t.Fatalf("EngineLoaded %+v, want ENGINE_ERROR", l)
	}
	checkMessage(t, l.Err, "could not start llama-server", "/nonexistent/llama-server")
}
