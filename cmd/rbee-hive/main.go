// Command rbee-hive is the pool manager of one machine: it keeps the machine's model catalog
// (SQLite), downloads models from the Hugging Face hub, checks resources, starts, watches and
// stops its workers (llm-worker-rbee processes), and registers them with queen-rbee.
//
//	rbee-hive --dev --queen-url http://127.0.0.1:7833 \
//	    --worker id=w1,model=hf:TheBloke/TinyLlama-GGUF/tiny.gguf,slots=2,device=cpu
//
// Run rbee-hive --help for every flag.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real/daemon"
	"github.com/rbee-sim/rbee-sim/real/gpu"
	"github.com/rbee-sim/rbee-sim/real/hub"
	"github.com/rbee-sim/rbee-sim/real/proc"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

func main() { os.Exit(run(os.Args[1:])) }

// settings are rbee-hive's own flags.
type settings struct {
	addr, queen, queenURL       string
	workers                     []api.WorkerSpec
	modelBytes                  map[string]int64
	inline                      bool
	workerBinary, engine        string
	eosMean                     int
	basePort                    int
	catalog                     bool
	hubURL                      string
	heartbeat, retry, statusTTL time.Duration
	loadTimeout, idleTimeout    time.Duration
	stopGrace                   time.Duration
	deviceMemory                map[string]int64
	// download is the provisioner's settings: the defaults, with the download flags applied.
	download provision.Config
}

func run(args []string) int {
	if daemon.AskedVersion(args) {
		return 0
	}
	host, _ := os.Hostname()
	opts := daemon.Options{Name: "rbee-hive", Listen: "127.0.0.1:7900"}
	s := settings{modelBytes: map[string]int64{}, deviceMemory: map[string]int64{}, download: provision.DefaultConfig()}
	fs := flag.NewFlagSet("rbee-hive", flag.ContinueOnError)
	opts.Flags(fs)
	fs.StringVar(&opts.Machine, "machine", "local", "this machine's folder under --data-dir (hives on one machine share it)")
	fs.StringVar(&s.addr, "addr", "hive-"+host, "this hive's address in the cluster")
	fs.StringVar(&s.queen, "queen", "queen", "the queen's address")
	fs.StringVar(&s.queenURL, "queen-url", "http://127.0.0.1:7833", "the queen's base URL")
	fs.Func("worker", "a worker this hive runs: id=ID,model=MODEL,slots=N,device=cpu|cuda:N[,bytes=SIZE] (repeatable)", func(v string) error {
		w, size, err := parseWorker(v)
		if err != nil {
			return err
		}
		s.workers = append(s.workers, w)
		if size > 0 {
			s.modelBytes[w.Model] = size
		}
		return nil
	})
	fs.BoolVar(&s.inline, "inline-workers", false, "run work in the hive itself instead of worker processes (the registry-only mode of the registry scenarios)")
	fs.StringVar(&s.workerBinary, "worker-binary", "", "the llm-worker-rbee program (default: next to rbee-hive, else on PATH)")
	fs.StringVar(&s.engine, "engine", "cpu", "the workers' engine: cpu, cpu:RATE, llama-server=URL or openai=URL[,model=NAME]")
	fs.IntVar(&s.eosMean, "eos-mean", 64, "the CPU engine's mean completion length in tokens (0: always max_tokens)")
	fs.IntVar(&s.basePort, "base-port", 9300, "the first port given to worker processes")
	fs.BoolVar(&s.catalog, "catalog", true, "keep the machine's model catalog and download models")
	fs.StringVar(&s.hubURL, "hub-url", hub.DefaultBaseURL, "the model hub (HF_TOKEN is sent when set)")
	fs.DurationVar(&s.heartbeat, "heartbeat", 15*time.Second, "heartbeat interval to the queen")
	fs.DurationVar(&s.retry, "retry", time.Second, "how long an unanswered registry request waits before it is resent")
	fs.DurationVar(&s.statusTTL, "status-timeout", 15*time.Second, "a worker silent this long is counted dead (more than the 5s between a worker's status reports)")
	fs.DurationVar(&s.loadTimeout, "load-timeout", 30*time.Second, "a worker not ready after this long is killed and respawned")
	fs.DurationVar(&s.idleTimeout, "idle-timeout", 0, "stop workers idle this long (0: never)")
	fs.DurationVar(&s.stopGrace, "stop-grace", 10*time.Second, "how long a stopping worker has before it is killed")
	fs.Func("device-memory", "a device's memory for the start preflight: cuda:0=24GiB (repeatable; default: read from nvidia-smi)", func(v string) error {
		dev, size, ok := strings.Cut(v, "=")
		n, err := parseSize(size)
		if !ok || err != nil {
			return fmt.Errorf("--device-memory %q: want DEVICE=SIZE, e.g. cuda:0=24GiB", v)
		}
		s.deviceMemory[dev] = n
		return nil
	})
	downloadFlags(fs, &s.download)
	if code, ok := daemon.ParseFlags(fs, args); !ok {
		return code
	}
	return serve(opts, s)
}

func serve(opts daemon.Options, s settings) int {
	opts.Peers = append(opts.Peers, s.queen+"="+s.queenURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The hive's config first, so that a setting it refuses exits 2 before anything starts.
	self := node.Addr(s.addr)
	cfg := hive.DefaultConfig(node.Addr(s.queen))
	cfg.Workers, cfg.HeartbeatInterval, cfg.RetryInterval = s.workers, s.heartbeat, s.retry
	cfg.WorkerStatusTimeout, cfg.LoadTimeout, cfg.IdleTimeout, cfg.StopGrace = s.statusTTL, s.loadTimeout, s.idleTimeout, s.stopGrace
	cfg.Catalog, cfg.Version = s.catalog, daemon.Version
	if s.catalog {
		pcfg := s.download
		pcfg.Hub = "hub"
		if err := pcfg.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, "rbee-hive: the download flags:", err)
			return 2
		}
		cfg.Provision = &pcfg
	}
	if !s.inline {
		bin, err := workerBinary(s.workerBinary)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rbee-hive:", err)
			return 1
		}
		cfg.WorkerProcesses, cfg.WorkerBinary, cfg.BasePort = true, bin, s.basePort
		cfg.WorkerModelBytes = s.modelBytes
		cfg.ProcessTable = node.Addr("procs@" + opts.Machine)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "rbee-hive:", err)
		return 2
	}
	d, err := daemon.Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := d.Log
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "rbee-hive:", err)
		d.Close()
		return 1
	}
	var exitCode atomic.Int64
	if len(s.deviceMemory) == 0 {
		gpus, err := gpu.Discover(ctx)
		if err != nil {
			log.Info("no NVIDIA GPU found: CPU workers only", "why", err)
		}
		for _, g := range gpus {
			if g.MemoryTotal > 0 {
				s.deviceMemory[g.Capability()] = g.MemoryTotal
			}
		}
	}
	cfg.DeviceMemoryBytes = s.deviceMemory
	if s.catalog {
		if err := d.RT.AddPort("hub", hub.New(hub.Config{BaseURL: s.hubURL, Logger: log})); err != nil {
			return fail(err)
		}
	}
	var table *proc.Table
	if !s.inline {
		listenHost, advertiseHost, err := workerHosts(opts.Listen, d.URL)
		if err != nil {
			return fail(err)
		}
		env := []string{
			"RBEE_PEERS=" + s.addr + "=" + d.URL + "," + s.queen + "=" + s.queenURL,
			// Workers listen where the hive listens and are announced on the hive's host, so
			// a queen on another machine reaches them as it reaches the hive.
			"RBEE_LISTEN_HOST=" + listenHost, "RBEE_ADVERTISE_HOST=" + advertiseHost,
			"RBEE_DATA_DIR=" + d.Opts.DataDir, "RBEE_MACHINE=" + opts.Machine,
			"RBEE_ENGINE=" + s.engine, "RBEE_EOS_MEAN=" + strconv.Itoa(s.eosMean), "RBEE_LOG_LEVEL=" + opts.LogLevel,
		}
		if opts.Dev {
			env = append(env, "RBEE_DEV=1")
		}
		if opts.Record != "" {
			env = append(env, "RBEE_RECORD_DIR="+filepath.Dir(opts.Record))
		}
		stateDir := filepath.Join(d.Opts.DataDir, opts.Machine, "procs", s.addr)
		table, err = proc.Open(proc.Config{
			StateDir: stateDir,
			LogDir:   filepath.Join(d.Opts.DataDir, opts.Machine, "logs"),
			Env:      env,
			OnSpawn: func(a node.Addr, port int) {
				if err := d.Transport.Learn(a, "http://"+net.JoinHostPort(advertiseHost, strconv.Itoa(port))); err != nil {
					log.Warn("cannot route to a spawned worker", "worker", a, "err", err)
				}
			},
			Exit:   func(code int) { exitCode.Store(int64(code)); cancel() },
			Logger: log,
		})
		if err != nil {
			return fail(err)
		}
		if err := d.RT.AddPort(cfg.ProcessTable, table.Bind); err != nil {
			table.Close()
			return fail(err)
		}
	}
	if err := d.RT.Add(self, opts.Machine, func() node.Node { return hive.New(cfg) }); err != nil {
		return fail(err)
	}
	d.Mux.Handle("GET "+WorkersPath, d.Policy.Middleware(workersHandler(d, self)))
	stop := proc.NotifyTerm(ctx, func() {
		if table != nil {
			table.Term(self) // the hive stops its workers, then exits through the table
			return
		}
		cancel()
	})
	defer stop()
	if err := d.RT.StartAll(); err != nil {
		return fail(err)
	}
	if err := d.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rbee-hive:", err)
		return 1
	}
	return int(exitCode.Load())
}

// WorkersPath answers GET with the workers this hive runs now, {"workers": [WorkerSpec...]}:
// its configured workers less those stopped for good (idled out, failed) or drained. It is
// the list the simulator's liveness check compares the queen's registry with, and what a
// real-mode run reads at its end.
const WorkersPath = "/v1/hive/workers"

func workersHandler(d *daemon.D, self node.Addr) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		out := []api.WorkerSpec{}
		if err := d.RT.Inspect(self, func(n node.Node) { out = n.(*hive.Hive).Workers() }); err != nil {
			wire.WriteError(w, http.StatusServiceUnavailable, api.Errorf(api.CodeUnavailable,
				"retry in a moment; if it persists, read the hive's log", "the hive is not running: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"workers": out})
	})
}

// parseWorker reads id=ID,model=MODEL,slots=N,device=D[,bytes=SIZE].
func parseWorker(v string) (api.WorkerSpec, int64, error) {
	w := api.WorkerSpec{Slots: 1, Capability: "cpu"}
	var size int64
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return w, 0, fmt.Errorf("--worker %q: %q is not key=value; want id=ID,model=MODEL,slots=N,device=cpu", v, kv)
		}
		switch k {
		case "id":
			w.ID = val
		case "model":
			w.Model = val
		case "slots":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return w, 0, fmt.Errorf("--worker %q: slots must be a whole number of 1 or more", v)
			}
			w.Slots = n
		case "device":
			w.Capability = val
		case "bytes":
			n, err := parseSize(val)
			if err != nil {
				return w, 0, fmt.Errorf("--worker %q: %v", v, err)
			}
			size = n
		default:
			return w, 0, fmt.Errorf("--worker %q: unknown key %q; the keys are id, model, slots, device and bytes", v, k)
		}
	}
	if w.ID == "" || w.Model == "" {
		return w, 0, fmt.Errorf("--worker %q: id and model are required", v)
	}
	return w, size, nil
}

// parseSize reads 123, 4KiB, 16MiB, 24GiB (also KB/MB/GB as powers of 1000).
func parseSize(s string) (int64, error) {
	units := map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "B": 1}
	keys := make([]string, 0, len(units))
	for k := range units {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	mult := int64(1)
	for _, u := range keys {
		if n, ok := strings.CutSuffix(s, u); ok {
			s, mult = n, units[u]
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, e.g. 24GiB", s)
	}
	return int64(n * float64(mult)), nil
}

// downloadFlags are the flags of the provisioner's settings, read into c (which holds the
// defaults): --download-bandwidth, --download-burst, --free-space-margin, --download-retries,
// --download-stall-timeout.
func downloadFlags(fs *flag.FlagSet, c *provision.Config) {
	fs.Var(sizeFlag{&c.BandwidthBytesPerSec}, "download-bandwidth", "the download rate limit in bytes per second (`SIZE`, e.g. 8MiB; 0: unlimited)")
	fs.Var(sizeFlag{&c.BurstBytes}, "download-burst", "the download rate limit's burst, the bytes that may come at once (`SIZE`)")
	fs.Var(sizeFlag{&c.FreeSpaceMarginBytes}, "free-space-margin", "the space a download must leave free on the disk (`SIZE`)")
	fs.IntVar(&c.RetryAttemptsMax, "download-retries", c.RetryAttemptsMax, "consecutive failed attempts of a download (5xx, 429, resets, stalls, bad bodies) before it fails")
	fs.DurationVar(&c.ChunkTimeout, "download-stall-timeout", c.ChunkTimeout, "how long a download may go without an answer or body bytes before it is counted as stalled and retried")
}

// sizeFlag is a flag of a size in bytes, read by parseSize (123, 64KiB, 8MiB, 1GiB).
type sizeFlag struct{ p *int64 }

func (f sizeFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatInt(*f.p, 10)
}

func (f sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*f.p = n
	return nil
}

// workerHosts are where worker processes listen (the hive's listen host) and the host they
// are announced at (the host of the hive's advertised URL).
func workerHosts(listen, advertised string) (listenHost, advertiseHost string, err error) {
	listenHost, _, err = net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("--listen %q: %v", listen, err)
	}
	u, err := url.Parse(advertised)
	if err != nil || u.Hostname() == "" {
		return "", "", fmt.Errorf("the hive's URL %q has no host: pass --advertise http://HOST:PORT", advertised)
	}
	return listenHost, u.Hostname(), nil
}

// workerBinary finds llm-worker-rbee: the flag, else next to this program, else on PATH.
func workerBinary(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "llm-worker-rbee")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("llm-worker-rbee"); err == nil {
		return p, nil
	}
	return "", errors.New("llm-worker-rbee was not found next to rbee-hive nor on PATH: build it (go build ./cmd/llm-worker-rbee), or pass --worker-binary PATH, or use --inline-workers")
}
