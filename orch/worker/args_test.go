package worker

import (
	"slices"
	"strings"
	"testing"
)

func TestArgsRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.Model, cfg.ModelBytes = "worker-ws-1", "hf:org/tiny-GGUF/tiny.gguf", 1<<30
	cfg.Slots, cfg.QueueMax, cfg.Hive, cfg.Engine = 4, 0, "hive-ws", "worker-ws-1-engine"
	args := cfg.Args()
	want := []string{"--id", "worker-ws-1", "--model", "hf:org/tiny-GGUF/tiny.gguf", "--model-bytes", "1073741824",
		"--slots", "4", "--queue", "0", "--hive", "hive-ws", "--engine", "worker-ws-1-engine"}
	if !slices.Equal(args, want) {
		t.Fatalf("Args() = %q, want %q", args, want)
	}
	got, err := ParseArgs(append(args, "--port", "9300"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cfg.ID || got.Model != cfg.Model || got.ModelBytes != cfg.ModelBytes || got.Slots != cfg.Slots ||
		got.QueueMax != cfg.QueueMax || got.Hive != cfg.Hive || got.Engine != cfg.Engine ||
		got.LoadTimeout != cfg.LoadTimeout || got.StatusInterval != cfg.StatusInterval {
		t.Fatalf("ParseArgs(Args()) = %+v, want %+v", got, cfg)
	}
}

func TestParseArgsDefaultsAndForms(t *testing.T) {
	got, err := ParseArgs([]string{"-id=w", "--model=m", "--hive", "h", "--engine", "e"})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if got.ID != "w" || got.Model != "m" || got.Slots != d.Slots || got.QueueMax != d.QueueMax || got.ModelBytes != 0 {
		t.Fatalf("ParseArgs = %+v, want defaults for the flags not given", got)
	}
}

func TestParseArgsErrors(t *testing.T) {
	base := []string{"--id", "w", "--model", "m", "--hive", "h", "--engine", "e"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", append(slices.Clone(base), "--gpu", "0"), "flag provided but not defined: -gpu"},
		{"bad number", append(slices.Clone(base), "--slots", "two"), "invalid value \"two\" for flag -slots"},
		{"positional", append(slices.Clone(base), "extra"), "unexpected argument \"extra\""},
		{"port out of range", append(slices.Clone(base), "--port", "70000"), "--port 70000 is not a TCP port"},
		{"missing id", []string{"--model", "m", "--hive", "h", "--engine", "e"}, "ID, Hive, Engine and Model must all be set"},
		{"zero slots", append(slices.Clone(base), "--slots", "0"), "Slots 0 must be between"},
		{"help", []string{"--help"}, "not a worker flag"},
	} {
		_, err := ParseArgs(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseArgs(%q) error %v, want one containing %q", tc.name, tc.args, err, tc.want)
		}
		if err != nil && tc.name != "port out of range" && !strings.Contains(err.Error(), "use --id ID") {
			t.Errorf("%s: error %q does not say how the command line should look", tc.name, err)
		}
	}
}
