package main

import (
	"strings"
	"testing"
)

func TestPortOf(t *testing.T) {
	for args, want := range map[string]int{"--id w --port 9301": 9301, "--port=9302 --id w": 9302, "--id w": 0} {
		if got := portOf(strings.Fields(args)); got != want {
			t.Errorf("portOf(%q) = %d, want %d", args, got, want)
		}
	}
}

func TestEngineFromEnv(t *testing.T) {
	for _, ok := range []string{"", "cpu", "cpu:0", "cpu:25.5", "llama-server=http://127.0.0.1:8080", "openai=http://127.0.0.1:8000,model=tiny"} {
		if _, err := engineFromEnv(ok); err != nil {
			t.Errorf("engineFromEnv(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"cpu:fast", "gpu", "llama-server=", "openai=not a url"} {
		if _, err := engineFromEnv(bad); err == nil {
			t.Errorf("engineFromEnv(%q) accepted", bad)
		}
	}
}

// A command line the core refuses, or one without --port, exits 2 before anything starts.
func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{"--id", "w"}, {"--id", "w", "--model", "m", "--hive", "h", "--engine", "e"}, {"--bogus"}} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
