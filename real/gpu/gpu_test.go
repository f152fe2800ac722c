package gpu

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fake(t *testing.T, name string) Config {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Config{NvidiaSMI: p, Timeout: 5 * time.Second}
}

func TestDiscoverTwoGPUs(t *testing.T) {
	gpus, err := fake(t, "nvidia-smi-2gpus").Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{
		{Index: 0, UUID: "GPU-5b8f1c2e-7a3d-4e91-9c0f-2d6e8a4b1f37", Name: "NVIDIA H100 80GB HBM3",
			MemoryTotal: 81559 << 20, MemoryUsed: 1 << 20, MemoryFree: 81080 << 20, DriverVersion: "550.90.07"},
		{Index: 1, UUID: "GPU-9e2a4d6c-1b8f-4c37-a5e0-7f3d2c9b8a61", Name: "NVIDIA GeForce RTX 4090",
			MemoryTotal: 24564 << 20, MemoryUsed: 1835 << 20, MemoryFree: 22318 << 20, DriverVersion: "550.90.07"},
	}
	if !reflect.DeepEqual(gpus, want) {
		t.Errorf("got  %+v\nwant %+v", gpus, want)
	}
	if got := Capabilities(gpus); !reflect.DeepEqual(got, []string{"cuda:0", "cuda:1", "cpu"}) {
		t.Errorf("capabilities %v", got)
	}
	if got := gpus[1].Capability(); got != "cuda:1" {
		t.Errorf("capability %q", got)
	}
}

func TestDiscoverUnknownValues(t *testing.T) {
	gpus, err := fake(t, "nvidia-smi-na").Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{
		{Index: 0, UUID: "GPU-aaaaaaaa-0000-0000-0000-000000000000", Name: "Tesla K80, Rev 2",
			MemoryTotal: 11441 << 20, MemoryUsed: (11441 - 11000) << 20, MemoryFree: 11000 << 20},
		{Index: 1, UUID: "GPU-aaaaaaaa-0000-0000-0000-000000000001", Name: "NVIDIA A100-SXM4-40GB",
			MemoryTotal: 40960 << 20, MemoryUsed: Unknown, MemoryFree: Unknown, DriverVersion: "535.104.05"},
	}
	if !reflect.DeepEqual(gpus, want) {
		t.Errorf("got  %+v\nwant %+v", gpus, want)
	}
}

// TestNoNVIDIA: every way of having no usable GPU gives no GPUs and an error that is
// ErrNoNVIDIA and says why and what to do.
func TestNoNVIDIA(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		reason string
		is     error
	}{
		{"missing", Config{NvidiaSMI: "nvidia-smi-not-installed-here"}, "was not found", exec.ErrNotFound},
		{"driver failure", fake(t, "nvidia-smi-driver-failure"), "cannot talk to the NVIDIA driver", nil},
		{"no devices", fake(t, "nvidia-smi-no-devices"), "found no NVIDIA GPU", nil},
		{"garbage", fake(t, "nvidia-smi-garbage"), "cannot read the output", nil},
		{"empty", fake(t, "nvidia-smi-empty"), "listed no GPU", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gpus, err := tc.cfg.Discover(context.Background())
			checkNoNVIDIA(t, gpus, err, tc.reason)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not match %v: %v", tc.is, err)
			}
		})
	}
}

func checkNoNVIDIA(t *testing.T, gpus []GPU, err error, reason string) {
	t.Helper()
	if gpus != nil {
		t.Errorf("GPUs %+v, want none", gpus)
	}
	if !errors.Is(err, ErrNoNVIDIA) {
		t.Fatalf("error %v is not ErrNoNVIDIA", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Suggestion == "" {
		t.Errorf("error %#v has no suggestion", err)
	}
	if msg := err.Error(); !strings.Contains(msg, reason) || !strings.Contains(msg, "CPU only") {
		t.Errorf("error %q does not say %q and that it runs on CPU only", msg, reason)
	}
}

func TestDriverFailureKeepsItsOutput(t *testing.T) {
	_, err := fake(t, "nvidia-smi-driver-failure").Discover(context.Background())
	if !strings.Contains(err.Error(), "NVIDIA-SMI has failed because it couldn't communicate") {
		t.Errorf("error %q lacks what nvidia-smi said", err)
	}
}

func TestHangTimesOut(t *testing.T) {
	cfg := fake(t, "nvidia-smi-hang")
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	gpus, err := cfg.Discover(context.Background())
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Discover took %v with a 200ms timeout", d)
	}
	checkNoNVIDIA(t, gpus, err, "did not answer within 200ms")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not match context.DeadlineExceeded: %v", err)
	}
}

func TestCallerCancelIsNotNoNVIDIA(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := fake(t, "nvidia-smi-hang").Discover(ctx)
	if err == nil || errors.Is(err, ErrNoNVIDIA) || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want a cancellation that is not ErrNoNVIDIA", err)
	}
}

func TestParse(t *testing.T) {
	bad := []string{
		"0, GPU-x, Foo, 1, 2, 3",                   // 6 fields
		"x, GPU-x, Foo, 1, 2, 3, 4",                // index
		"0, GPU-x, Foo, lots, 2, 3, 4",             // memory
		"0, GPU-x, Foo, -5, 2, 3, 4",               // negative
		"0, a, b, 1, 2, 3, 4\n0, c, d, 1, 2, 3, 4", // twice
	}
	for _, s := range bad {
		if g, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", s, g)
		}
	}
	g, err := Parse("0, GPU-x, Foo, 1024 MiB, N/A, 1000 MiB, 550.1\n")
	if err != nil || len(g) != 1 || g[0].MemoryTotal != 1024<<20 || g[0].MemoryUsed != 24<<20 {
		t.Errorf("Parse with units and N/A: %+v, %v", g, err)
	}
	if g, err := Parse(""); err != nil || len(g) != 0 {
		t.Errorf("Parse(\"\") = %+v, %v", g, err)
	}
}

func TestCapabilitiesWithoutGPUs(t *testing.T) {
	if got := Capabilities(nil); !reflect.DeepEqual(got, []string{"cpu"}) {
		t.Errorf("Capabilities(nil) = %v", got)
	}
	if got := Capabilities([]GPU{{Index: 2}, {Index: 0}}); !reflect.DeepEqual(got, []string{"cuda:0", "cuda:2", "cpu"}) {
		t.Errorf("Capabilities = %v", got)
	}
}
