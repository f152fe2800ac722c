package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

func TestParseWorker(t *testing.T) {
	w, size, err := parseWorker("id=w1,model=hf:a/b/c.gguf,slots=4,device=cuda:1,bytes=2GiB")
	want := api.WorkerSpec{ID: "w1", Model: "hf:a/b/c.gguf", Slots: 4, Capability: "cuda:1"}
	if err != nil || w != want || size != 2<<30 {
		t.Fatalf("got %+v %d %v, want %+v %d", w, size, err, want, 2<<30)
	}
	if w, _, err := parseWorker("id=w2,model=m"); err != nil || w.Slots != 1 || w.Capability != "cpu" {
		t.Fatalf("defaults: %+v %v", w, err)
	}
	for _, bad := range []string{"", "id=w1", "model=m", "id=w,model=m,slots=0", "id=w,model=m,colour=red", "id=w,model=m,slots"} {
		if _, _, err := parseWorker(bad); err == nil || !strings.Contains(err.Error(), "--worker") {
			t.Errorf("parseWorker(%q) = %v, want an error that names --worker", bad, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "4KiB": 4096, "16MiB": 16 << 20, "24GiB": 24 << 30, "1.5GB": 1_500_000_000, "80B": 80} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1", "ten"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

// A bad command line is refused with exit code 2 before anything starts.
func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{"--worker", "id=x"}, {"stray"}, {"--device-memory", "cuda:0"}, {"--no-such-flag"},
		// a setting the hive's config refuses: before the port is bound or a key is needed
		{"--worker-binary", "/bin/true", "--status-timeout", "3s", "--listen", "127.0.0.1:0"}} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

// Workers listen where the hive listens and are announced at the host of the hive's URL.
func TestWorkerHosts(t *testing.T) {
	l, a, err := workerHosts("0.0.0.0:7900", "http://10.1.2.3:7900")
	if err != nil || l != "0.0.0.0" || a != "10.1.2.3" {
		t.Fatalf("got %q %q %v", l, a, err)
	}
	if l, a, err := workerHosts("127.0.0.1:7900", "http://127.0.0.1:7900"); err != nil || l != "127.0.0.1" || a != "127.0.0.1" {
		t.Fatalf("loopback: %q %q %v", l, a, err)
	}
	if _, _, err := workerHosts("nonsense", "http://x:1"); err == nil {
		t.Error("a bad listen address was accepted")
	}
}

// The download flags set the provisioner's bandwidth, burst, free-space margin and retries;
// left out, they keep its defaults; a combination the provisioner refuses exits 2.
func TestDownloadFlags(t *testing.T) {
	c := provision.DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	downloadFlags(fs, &c)
	if err := fs.Parse([]string{"--download-bandwidth", "2MiB", "--download-burst", "256KiB", "--free-space-margin", "0", "--download-retries", "3",
		"--download-stall-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	if c.BandwidthBytesPerSec != 2<<20 || c.BurstBytes != 256<<10 || c.FreeSpaceMarginBytes != 0 || c.RetryAttemptsMax != 3 || c.ChunkTimeout != 5*time.Second {
		t.Fatalf("got bandwidth %d, burst %d, margin %d, retries %d, stall timeout %v", c.BandwidthBytesPerSec, c.BurstBytes, c.FreeSpaceMarginBytes, c.RetryAttemptsMax, c.ChunkTimeout)
	}
	d := provision.DefaultConfig()
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	downloadFlags(fs, &d)
	def := provision.DefaultConfig()
	if err := fs.Parse(nil); err != nil || d.BandwidthBytesPerSec != def.BandwidthBytesPerSec || d.BurstBytes != def.BurstBytes ||
		d.FreeSpaceMarginBytes != def.FreeSpaceMarginBytes || d.RetryAttemptsMax != def.RetryAttemptsMax || d.ChunkTimeout != def.ChunkTimeout {
		t.Fatalf("no flags changed the defaults: %+v %v", d, err)
	}
	for _, args := range [][]string{{"--download-bandwidth", "1MiB", "--download-burst", "0"}, {"--download-retries", "0"},
		{"--download-bandwidth", "fast"}, {"--download-stall-timeout", "0s"}} {
		if code := run(append(args, "--inline-workers", "--listen", "127.0.0.1:0")); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
