package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

func runKeeper(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"fly"}, {"infer"}, {"infer", "--model", "hf:a/b/c"}, {"infer", "--prompt", "x", "stray"}, {"download", "--hive", "h"}, {"worker"}, {"worker", "stop"}, {"worker", "start", "--hive", "h", "--model", "tiny"}, {"worker", "start", "--model", "hf:a/b/c"}} {
		if code, _, stderr := runKeeper(args...); code != 2 || stderr == "" {
			t.Errorf("rbee-keeper %q: exit %d, stderr %q; want 2 with a message", args, code, stderr)
		}
	}
}

// Without a queen the list commands say where they looked and exit 3 (unavailable).
func TestNoQueen(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	code, _, stderr := runKeeper("workers", "--queen-url", url)
	if code != 3 || !strings.Contains(stderr, url) || !strings.Contains(stderr, "queen-rbee") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// An error body from the queen reaches the person with its code and suggestion.
func TestQueenErrorBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		w.Write([]byte(`{"error":{"code":"UNAUTHORIZED","message":"no key","suggestion":"set RBEE_API_KEY"}}`))
	}))
	defer srv.Close()
	code, _, stderr := runKeeper("models", "--queen-url", srv.URL)
	if code != 3 || !strings.Contains(stderr, "UNAUTHORIZED") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestWorkersTable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"workers":[{"id":"w1","hive":"hive-1","model":"hf:a/b/c","capability":"cpu","slots":2,"state":"idle","health":"healthy","incarnation":1,"version":3}],"epoch":1}`))
	}))
	defer srv.Close()
	code, stdout, _ := runKeeper("workers", "--queen-url", srv.URL)
	if code != 0 || !strings.Contains(stdout, "w1") || !strings.Contains(stdout, "healthy") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

// The streamer prints each index once, in order, whatever arrives.
func TestStreamerPrintsEachTokenOnce(t *testing.T) {
	var b bytes.Buffer
	s := &streamer{w: &b}
	toks := []api.InferToken{{Index: 0, Text: "a"}, {Index: 1, Text: "b"}}
	s.upTo(toks[:1])
	s.upTo(toks)
	s.upTo(toks)
	s.upTo(append(toks, api.InferToken{Index: 3, Text: "gap"}))
	if b.String() != "ab" {
		t.Errorf("printed %q, want \"ab\"", b.String())
	}
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := &progressBar{w: &b, name: "m.gguf"}
	p.update(provision.Progress{Bytes: 50 << 20, Total: 100 << 20, Percent: 50, BytesPerSec: 10 << 20, Resumed: true, ResumedFromPercent: 20})
	p.finish()
	got := b.String()
	for _, want := range []string{"m.gguf", "50.0%", "50.0 MiB/100.0 MiB", "10.0 MiB/s", "resumed from 20%", strings.Repeat("#", 15) + strings.Repeat("-", 15)} {
		if !strings.Contains(got, want) {
			t.Errorf("bar %q lacks %q", got, want)
		}
	}
}

func TestSpinnerShowsLoading(t *testing.T) {
	var b bytes.Buffer
	s := &spinner{w: &b, what: "starting"}
	s.tick()
	s.loading(45)
	s.finish()
	if got := b.String(); !strings.Contains(got, "starting ... 1s") || !strings.Contains(got, "loading the model  45%") {
		t.Errorf("spinner wrote %q", got)
	}
}
