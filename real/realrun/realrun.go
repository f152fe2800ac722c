// Package realrun runs a scenario (the same JSON the simulator runs) against real OS
// processes on this machine and judges the recorded history with the simulator's checkers:
// `rbee-sim run --mode real`.
//
// Each queen and hive of the scenario is a real queen-rbee or rbee-hive process with its own
// port, data folder, log and history file; each client (registry keeper, inference client) is
// a node in a process of its own inside the harness (a real.Runtime with its own transport and
// listener). Every process reaches every other through a TCP proxy of its own (real/chaos), so
// the scenario's partitions cut exactly the links they name. Faults are injected for real:
// crash-restart is SIGKILL and a restart, pause is SIGSTOP and SIGCONT, partitions are proxy
// partitions, network delay and loss are proxy delay and resets. Fault kinds with no real
// injector (clock and power faults, disk faults other than corrupting the catalog file,
// duplication, reordering) are left out and listed in the result, never silently dropped.
//
// A scenario's hub is a fake hub (real/fakehub) in the harness, which each hive reaches
// through a proxy of its own (--hub-url); the hub faults are its FailNext, HangNext,
// BreakNext, CorruptNext and IgnoreRangeNext (see hubActionOf). Model files are written into
// the machines' folders (<Dir>/data/<machine>/) with the simulator's bytes: those present at
// the start before the hives start, with the schema-v1 catalogs some scenarios start with;
// later ones (and deletions by hand) at their scaled times. The catalog's disk faults corrupt
// the real catalog file (chaos.CorruptFile). Catalog clients run in harness processes, like
// the other clients.
//
// A real run is not deterministic and runs in wall-clock time, so the scenario's chaos and
// settle phases are capped (Options.Chaos, Options.Settle) and faults that start after the cap
// are left out (and listed). The judge (scenario.JudgeRecorded) runs porcupine on the
// wall-clock history, the registry monitors, the inference clients' streams against the exact
// completions, and registry convergence at the end.
package realrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/real/record"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// Options configure a real run.
type Options struct {
	// Bins holds the built binaries (cluster.Build).
	Bins cluster.Bins
	// Dir is the run's folder: data/, logs/, records/ and result.json go there. Required.
	Dir string
	// Chaos and Settle cap the scenario's phases in wall-clock time; zero means 20s and 15s.
	Chaos, Settle time.Duration
	// Heartbeat is the hives' heartbeat interval; zero means 2s (the simulator's 15s would
	// need minutes of settling).
	Heartbeat time.Duration
	// Logger receives the harness's own logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, gets a line per step of the run (started, fault injected, ...).
	Progress io.Writer
}

// Unsupported says why a scenario cannot run on real processes.
type Unsupported struct{ Why []string }

func (u Unsupported) Error() string {
	return "this scenario cannot run on real processes yet: " + strings.Join(u.Why, "; ")
}

// requiredByFault are required paths that only a fault kind with no real injector reaches:
// a scenario that requires one is about that fault and cannot be judged on real processes.
var requiredByFault = map[string]string{
	"worker fell back after device fault": "device-fault",
	"worker stale-but-busy":               "worker-hang",
}

// Check says whether sc can run on real processes.
func Check(sc scenario.Scenario) error {
	var why []string
	for _, m := range sc.Require {
		if k, ok := requiredByFault[m]; ok {
			why = append(why, fmt.Sprintf("it is about %q, which only %s faults reach, and they have no real injector", m, k))
		}
	}
	if err := checkHub(sc); err != nil {
		why = append(why, err.Error())
	}
	for _, h := range sc.Hives {
		switch {
		case h.MissingBinary || h.WorkerVersion != "" || len(h.IgnoreTerm) > 0 || len(h.HeldPorts) > 0 || h.ShutdownAt > 0:
			why = append(why, fmt.Sprintf("hive %s uses lifecycle set-ups (missing binary, versions, held ports, workers ignoring TERM, a shutdown at a time)", h.Addr))
		}
	}
	if len(sc.Drains) > 0 {
		why = append(why, "it drains workers")
	}
	if len(sc.WorkerStarts) > 0 {
		why = append(why, "it starts workers late")
	}
	if len(sc.Plants) > 0 {
		why = append(why, "it switches planted bugs on (the binaries are built without the plant tag)")
	}
	if len(why) > 0 {
		return Unsupported{Why: why}
	}
	return nil
}

// proc is one server process of the run (a queen or a hive).
type proc struct {
	addr node.Addr
	p    *cluster.Proc
	port int
}

// run is one real run in progress.
type run struct {
	sc    scenario.Scenario
	o     Options
	k     float64 // the compression of the scenario's times (see compression)
	start time.Time
	log   *slog.Logger

	// endpoints: every process (server or client) by address, with its listening port.
	ports   map[node.Addr]int
	servers map[node.Addr]*proc
	clients map[node.Addr]*cluster.Harness
	writers []*record.Writer
	proxies map[[2]node.Addr]*chaos.Proxy // [from, to] -> the proxy from's messages to to cross
	hub     *hubRun                       // the scenario's hub, if it has one

	mu       sync.Mutex
	injected map[string]int
	marks    map[string]int // the harness's coverage marks
	timeline []chaos.Event
	net      netFaults // under mu
}

// netFaults are the network faults on at the moment, so that the end of one leaves the others
// on: as in the simulator, overlapping faults combine (delays add, losses compound) and a link
// stays cut while any partition that cuts it lasts.
type netFaults struct {
	cuts   map[*chaos.Proxy]int // how many partitions cut each link
	delays []time.Duration
	losses []float64 // per fault: the chance that a message is lost
}

// Run runs sc on real processes and judges it. The error is for runs that could not be set up
// or torn down; a run that ran is judged in the Result (Passed false when a checker failed).
func Run(ctx context.Context, sc scenario.Scenario, o Options) (scenario.Result, error) {
	if err := Check(sc); err != nil {
		return scenario.Result{}, err
	}
	if o.Dir == "" {
		return scenario.Result{}, errors.New("realrun: Options.Dir is empty: give the run a folder")
	}
	if o.Chaos == 0 {
		o.Chaos = 20 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 15 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, d := range []string{"data", "logs", "records"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return scenario.Result{}, err
		}
	}
	r := &run{sc: sc, o: o, log: o.Logger, ports: map[node.Addr]int{}, servers: map[node.Addr]*proc{},
		clients: map[node.Addr]*cluster.Harness{}, proxies: map[[2]node.Addr]*chaos.Proxy{}, injected: map[string]int{},
		marks: map[string]int{}, net: netFaults{cuts: map[*chaos.Proxy]int{}}}
	r.k = compression(sc.Chaos, o.Chaos)
	defer r.teardown()
	if err := r.setUp(ctx); err != nil {
		return scenario.Result{}, err
	}
	chaosFor := min(sc.Chaos, o.Chaos)
	settleFor := min(sc.Settle, o.Settle)
	steps, skipped := r.steps(chaosFor)
	r.say("chaos phase: %v, %d faults (%d left out), the scenario's fault times scaled by %.3f", chaosFor, len(steps), len(skipped), r.k)
	// Model files that appear or are deleted during the run are steps too (not faults).
	msteps, mskipped := r.modelSteps(chaosFor, r.k)
	steps, skipped = append(steps, msteps...), append(skipped, mskipped...)
	if len(sc.Downlinks) > 0 {
		skipped = append(skipped, "the machines' downlink limits (downlinks: no real injector; the hives' downloads and control traffic share no limited link)")
	}
	cctx, cancel := context.WithTimeout(ctx, chaosFor)
	clientsStarted := r.clientStarts(r.k)
	// It undoes every fault still on when it ends. A step that failed is in the timeline with
	// its error (and was said as it happened); the run goes on and is judged without it.
	tl, _ := chaos.Run(cctx, steps, clock.New())
	<-cctx.Done() // the chaos phase lasts its time, faults or not
	cancel()
	if err := clientsStarted(); err != nil {
		return scenario.Result{}, err
	}
	r.timeline = tl
	r.healAll()
	r.say("settle phase: %v", settleFor)
	select {
	case <-ctx.Done():
		return scenario.Result{}, interrupted(ctx, o.Dir)
	case <-time.After(settleFor):
	}
	if !r.waitInferClients(ctx, settleFor) {
		r.say("inference clients still had open requests %v after the settle phase", settleFor)
	}
	rr := r.collect()
	rr.Skipped = skipped
	r.stopAll()
	evs, err := r.readRecords()
	if err != nil {
		return scenario.Result{}, err
	}
	rr.Events = evs
	rr.Wall = time.Since(r.start)
	hl := r.hub.log(sc)
	for m, n := range harnessMarks(sc, evs, hl) { //det:sorted (a sum)
		rr.Marks[m] += n
	}
	res := judge(sc, rr, hl)
	if err := r.writeResult(res, rr, hl); err != nil {
		return res, err
	}
	return res, nil
}

// interrupted is the error of a run stopped by its context (Ctrl+C): it is not judged, and
// what it recorded stays in its folder.
func interrupted(ctx context.Context, dir string) error {
	return fmt.Errorf("realrun: the run was stopped before its end (%w), so it was not judged; its logs and history files so far are in %s", ctx.Err(), dir)
}

func (r *run) say(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "%6.1fs  %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// addrs returns every process's address: the queen, the hives, the clients.
func (r *run) addrs() []node.Addr {
	out := []node.Addr{r.sc.Queen.Addr}
	for _, h := range r.sc.Hives {
		out = append(out, h.Addr)
	}
	out = append(out, r.clientAddrs()...)
	return out
}

func (r *run) clientAddrs() []node.Addr {
	var out []node.Addr
	for _, c := range r.sc.Clients {
		out = append(out, c.Addr)
	}
	for _, c := range r.sc.InferClients {
		out = append(out, c.Addr)
	}
	for _, c := range r.sc.CatalogClients {
		out = append(out, c.Addr)
	}
	return out
}

// setUp gives every process a port, puts a proxy on every link, and starts the queen, the
// hives and the clients.
func (r *run) setUp(ctx context.Context) error {
	r.start = time.Now()
	all := r.addrs()
	used := map[int]bool{}
	for _, a := range all {
		p, err := lowPort(used)
		if err != nil {
			return err
		}
		r.ports[a] = p
	}
	for _, from := range all {
		for _, to := range all {
			if from == to {
				continue
			}
			px, err := chaos.NewProxyConfig(chaos.ProxyConfig{Target: "127.0.0.1:" + strconv.Itoa(r.ports[to]), Seed: r.sc.Seed})
			if err != nil {
				return fmt.Errorf("realrun: proxy %s -> %s: %w", from, to, err)
			}
			r.proxies[[2]node.Addr{from, to}] = px
		}
	}
	if err := r.placeModels(); err != nil {
		return err
	}
	if r.sc.Hub != nil {
		if err := r.startHub(); err != nil {
			return err
		}
	}
	if err := r.startQueen(ctx); err != nil {
		return err
	}
	for _, h := range r.sc.Hives {
		if err := r.startHive(ctx, h); err != nil {
			return err
		}
	}
	r.say("queen and %d hives up", len(r.sc.Hives))
	return r.startClients()
}

// lowPort picks a free port below Linux's ephemeral range (32768 and up), where the proxies'
// and clients' own listeners (port 0) cannot take it between now and the process's start.
func lowPort(used map[int]bool) (int, error) {
	for try := 0; try < 1000; try++ {
		p := 10000 + rand.IntN(9000)
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		used[p] = true
		return p, nil
	}
	return 0, errors.New("realrun: no free port between 10000 and 19000")
}

// peersOf are the static routes of a process: every other process through its proxy.
func (r *run) peersOf(from node.Addr) []string {
	var out []string
	for _, to := range r.addrs() {
		if to != from {
			out = append(out, string(to)+"=http://"+r.proxies[[2]node.Addr{from, to}].Addr())
		}
	}
	return out
}

func (r *run) peerMap(from node.Addr) map[node.Addr]string {
	m := map[node.Addr]string{}
	for _, p := range r.peersOf(from) {
		a, u, _ := strings.Cut(p, "=")
		m[node.Addr(a)] = u
	}
	return m
}

func (r *run) common(a node.Addr) []string {
	args := []string{"--dev", "--listen", "127.0.0.1:" + strconv.Itoa(r.ports[a]),
		"--data-dir", filepath.Join(r.o.Dir, "data"), "--record", filepath.Join(r.o.Dir, "records", string(a)+".jsonl"),
		"--log-level", "debug"}
	for _, p := range r.peersOf(a) {
		args = append(args, "--peer", p)
	}
	return args
}

func (r *run) startQueen(ctx context.Context) error {
	q := r.sc.Queen
	args := append(r.common(q.Addr), "--addr", string(q.Addr), "--max-workers", strconv.Itoa(q.MaxWorkers))
	// The queen's timeouts are compressed with the rest, but never below what the hives'
	// heartbeats need: a timeout of three heartbeats, a grace of two.
	if q.HeartbeatTimeout > 0 {
		args = append(args, "--heartbeat-timeout", max(r.scaled(q.HeartbeatTimeout), 3*r.o.Heartbeat).String())
	}
	if q.StaleGrace > 0 {
		args = append(args, "--stale-grace", max(r.scaled(q.StaleGrace), 2*r.o.Heartbeat).String())
	}
	return r.startServer(ctx, q.Addr, cluster.Queen, args)
}

func (r *run) startHive(ctx context.Context, h scenario.HiveSpec) error {
	machine := h.Machine
	if machine == "" {
		machine = string(h.Addr)
	}
	queenURL := "http://" + r.proxies[[2]node.Addr{h.Addr, r.sc.Queen.Addr}].Addr()
	args := append(r.common(h.Addr), "--addr", string(h.Addr), "--machine", machine, "--queen", string(r.sc.Queen.Addr),
		"--queen-url", queenURL, "--heartbeat", r.o.Heartbeat.String(), "--catalog="+strconv.FormatBool(h.Catalog))
	for _, w := range h.Workers {
		args = append(args, "--worker", fmt.Sprintf("id=%s,model=%s,slots=%d,device=%s", w.ID, w.Model, w.Slots, w.Capability))
	}
	devs := make([]string, 0, len(h.DeviceMemory))
	for d := range h.DeviceMemory {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, d := range devs {
		args = append(args, "--device-memory", fmt.Sprintf("%s=%d", d, h.DeviceMemory[d]))
	}
	if !h.WorkerProcesses {
		args = append(args, "--inline-workers")
	} else {
		// Worker processes are spawned by the hive (in the simulator the harness may start
		// them itself; the workers are the same). The CPU engine runs at the scenario
		// engine's decode rate and gives the same completions.
		rate := 0.0
		if r.sc.Engine != nil {
			rate = r.sc.Engine.DecodeTokensPerSec
		}
		if rate == 0 {
			rate = 40
		}
		args = append(args, "--engine", "cpu:"+strconv.FormatFloat(rate, 'f', -1, 64))
		args = append(args, "--worker-binary", r.o.Bins.Path(cluster.Worker), "--eos-mean", strconv.Itoa(scenario.EngineEOSMean(r.sc)),
			"--base-port", strconv.Itoa(20000+1000*len(r.servers)))
		if h.IdleTimeout > 0 {
			// Compressed with the requests, but long enough for a status report or two (the
			// hive judges idleness by the workers' 5 s reports).
			args = append(args, "--idle-timeout", max(r.scaled(h.IdleTimeout), 8*time.Second).String())
		}
	}
	var env []string
	if r.hub != nil && h.Catalog {
		// The hive downloads from the fake hub through its proxy, anonymously (a token in the
		// harness's environment would open the gated repositories).
		args = append(args, "--hub-url", "http://"+r.proxies[[2]node.Addr{h.Addr, scenario.HubAddr}].Addr())
		env = append(env, "HF_TOKEN=")
		args = append(args, provisionerFlags(r.sc.Provisioner, r.k)...)
	}
	return r.startServer(ctx, h.Addr, cluster.Hive, args, env...)
}

// minStallTimeout is the shortest stall timeout a hive's downloads get in a compressed run.
const minStallTimeout = 5 * time.Second

// provisionerFlags are rbee-hive's flags for the scenario's download settings: those it sets
// (zero fields keep the provisioner's defaults, as in the simulator), and the stall timeout
// compressed by k as the faults are, but not below minStallTimeout (a hung request must time
// out within the real run's phases, not after the provisioner's 30s).
func provisionerFlags(p *scenario.ProvisionerSpec, k float64) []string {
	stall := max(time.Duration(float64(provision.DefaultConfig().ChunkTimeout)*k), minStallTimeout)
	out := []string{"--download-stall-timeout", stall.String()}
	if p == nil {
		return out
	}
	if p.BandwidthBytesPerSec > 0 {
		out = append(out, "--download-bandwidth", strconv.FormatInt(p.BandwidthBytesPerSec, 10))
	}
	if p.BurstBytes > 0 {
		out = append(out, "--download-burst", strconv.FormatInt(p.BurstBytes, 10))
	}
	if p.FreeSpaceMarginBytes > 0 {
		out = append(out, "--free-space-margin", strconv.FormatInt(p.FreeSpaceMarginBytes, 10))
	}
	if p.RetryAttemptsMax > 0 {
		out = append(out, "--download-retries", strconv.Itoa(p.RetryAttemptsMax))
	}
	return out
}

func (r *run) startServer(ctx context.Context, a node.Addr, bin string, args []string, env ...string) error {
	p := &cluster.Proc{Name: string(a), Bin: r.o.Bins.Path(bin), Args: args, Env: env,
		URL: "http://127.0.0.1:" + strconv.Itoa(r.ports[a]), LogDir: filepath.Join(r.o.Dir, "logs")}
	r.servers[a] = &proc{addr: a, p: p, port: r.ports[a]}
	if err := p.Start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return p.WaitHealthy(wctx)
}

// startClients starts each client node in a harness process of its own, with its history
// recorded.
func (r *run) startClients() error {
	k := r.k
	for i, c := range r.sc.Clients {
		kcfg := c.Keeper
		// The workload is compressed as the faults are: a client that works on a worker for
		// three simulated minutes does so for k times that.
		kcfg.ThinkTime, kcfg.WorkTime, kcfg.UseTimeout = r.scaled(kcfg.ThinkTime), r.scaled(kcfg.WorkTime), r.scaled(kcfg.UseTimeout)
		if err := r.startClient(c.Addr, uint64(i), func() node.Node { return keeper.New(kcfg) }); err != nil {
			return err
		}
	}
	for i, c := range r.sc.InferClients {
		icfg := c.Client
		// The requests keep their order and spacing, compressed as the faults are.
		icfg.Requests = append([]keeper.InferSpec(nil), icfg.Requests...)
		for j := range icfg.Requests {
			icfg.Requests[j].At = time.Duration(float64(icfg.Requests[j].At) * k)
		}
		if err := r.startClient(c.Addr, uint64(1000+i), func() node.Node { return keeper.NewInferClient(icfg) }); err != nil {
			return err
		}
	}
	for i, c := range r.sc.CatalogClients {
		ccfg := c.Client
		// Its pace and its script are compressed as the faults are (1s is the default pause).
		if ccfg.ThinkTime == 0 {
			ccfg.ThinkTime = time.Second
		}
		ccfg.ThinkTime = r.scaled(ccfg.ThinkTime)
		ccfg.Script = append([]keeper.CatalogStep(nil), ccfg.Script...)
		for j := range ccfg.Script {
			ccfg.Script[j].At = time.Duration(float64(ccfg.Script[j].At) * k)
		}
		if err := r.startClient(c.Addr, uint64(2000+i), func() node.Node { return keeper.NewCatalogClient(ccfg) }); err != nil {
			return err
		}
	}
	r.say("%d clients ready; each starts at its scaled time in the chaos phase", len(r.clientAddrs()))
	return nil
}

func (r *run) startClient(a node.Addr, n uint64, mk func() node.Node) error {
	w, err := record.Create(filepath.Join(r.o.Dir, "records", string(a)+".jsonl"))
	if err != nil {
		return err
	}
	r.writers = append(r.writers, w)
	dir := filepath.Join(r.o.Dir, "data", "clients", string(a))
	h, err := cluster.NewHarness(cluster.HarnessConfig{DataDir: dir, Peers: r.peerMap(a), Seed: r.sc.Seed*7919 + n,
		Logger: r.log.With("client", a), Trace: w.Trace})
	if err != nil {
		return err
	}
	r.clients[a] = h
	if err := h.RT.Add(a, string(a), mk); err != nil {
		return err
	}
	// The client's own listener is where its proxies lead.
	return r.retarget(a, h.URL)
}

// retarget points every proxy into a at the listener a really has (a harness picks its own
// port).
func (r *run) retarget(a node.Addr, url string) error {
	for k, px := range r.proxies {
		if k[1] == a {
			px.Close()
			np, err := chaos.NewProxyConfig(chaos.ProxyConfig{Listen: px.Addr(), Target: strings.TrimPrefix(url, "http://"), Seed: r.sc.Seed})
			if err != nil {
				return fmt.Errorf("realrun: proxy into %s: %w", a, err)
			}
			r.proxies[k] = np
		}
	}
	return nil
}

// clientStarts starts each client node at its time in the chaos phase: the simulator starts
// registry clients at 1s and the others at 2s, 100ms apart, and a fault scheduled "just before
// the clients start" (e2e/cold-start's first 503s) must come before them here too. The times
// are scaled as the faults are. The returned function waits for the starts still pending and
// reports the first error.
func (r *run) clientStarts(k float64) (wait func() error) {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	at := func(base time.Duration, i int) time.Duration {
		return time.Duration(float64(base+time.Duration(i)*100*time.Millisecond) * k)
	}
	start := func(a node.Addr, d time.Duration) {
		wg.Add(1)
		time.AfterFunc(d, func() {
			defer wg.Done()
			if err := r.clients[a].RT.StartAll(); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("realrun: starting client %s: %w", a, err)
				}
				mu.Unlock()
			}
		})
	}
	for i, c := range r.sc.Clients {
		start(c.Addr, at(time.Second, i))
	}
	for i, c := range r.sc.InferClients {
		start(c.Addr, at(2*time.Second, i))
	}
	for i, c := range r.sc.CatalogClients {
		start(c.Addr, at(2*time.Second, i))
	}
	return func() error {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}

// healAll ends the chaos phase: every proxy fault cleared, paused processes resumed, crashed
// ones restarted.
func (r *run) healAll() {
	for _, px := range r.proxies {
		px.Clear()
	}
	for _, a := range r.serverAddrs() {
		s := r.servers[a]
		if s.p.Running() {
			s.p.Signal(syscall.SIGCONT) // a paused process resumes
			continue
		}
		if err := s.p.Start(); err != nil {
			r.log.Warn("cannot restart", "addr", a, "err", err)
		}
	}
}

func (r *run) serverAddrs() []node.Addr {
	out := make([]node.Addr, 0, len(r.servers))
	for a := range r.servers {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// waitInferClients gives the inference clients up to bound more to end their requests: a
// compressed run starts requests later, relative to its end, than the simulation does, and a
// completion takes its real time. An open request after that is a liveness failure.
func (r *run) waitInferClients(ctx context.Context, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		open := false
		for _, c := range r.sc.InferClients {
			r.clients[c.Addr].RT.Inspect(c.Addr, func(n node.Node) { open = open || !n.(*keeper.InferClient).Done() })
		}
		if !open {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// collect reads what the judge needs off the clients and the queen, at the end of settling.
func (r *run) collect() scenario.RealRun {
	rr := scenario.RealRun{InferResults: map[node.Addr][]keeper.InferResult{}, Faults: r.injectedCopy(), Marks: r.hubMarks(),
		Disks: r.machineDisks()}
	r.mu.Lock()
	for m, n := range r.marks { //det:sorted (a sum)
		rr.Marks[m] += n
	}
	r.mu.Unlock()
	for _, c := range r.sc.Clients {
		r.clients[c.Addr].RT.Inspect(c.Addr, func(n node.Node) { rr.Completed += n.(*keeper.Keeper).Stats().Completed })
	}
	for _, c := range r.sc.CatalogClients {
		r.clients[c.Addr].RT.Inspect(c.Addr, func(n node.Node) { rr.CatalogOps += n.(*keeper.CatalogClient).Stats().Operations })
	}
	for _, c := range r.sc.InferClients {
		r.clients[c.Addr].RT.Inspect(c.Addr, func(n node.Node) { rr.InferResults[c.Addr] = n.(*keeper.InferClient).Results() })
	}
	var out struct {
		Workers []api.WorkerRecord `json:"workers"`
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(r.ports[r.sc.Queen.Addr]) + "/v1/workers")
	if err == nil {
		if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil {
			rr.FinalWorkers, rr.HaveFinal = out.Workers, true
		}
		resp.Body.Close()
	}
	// What each hive runs now, as the simulator's liveness check reads it off the hive: a
	// worker that idled out or failed for good is not expected in the registry. A hive that
	// does not answer is expected to have all its workers registered.
	rr.WantWorkers = map[string]api.WorkerSpec{}
	for _, h := range r.sc.Hives {
		ws, err := r.hiveWorkers(h.Addr)
		if err != nil {
			r.log.Warn("cannot read a hive's workers; expecting all of them registered", "hive", h.Addr, "err", err)
			ws = h.Workers
		}
		for _, w := range ws {
			rr.WantWorkers[w.ID] = w
		}
	}
	if len(rr.WantWorkers) > r.sc.Queen.MaxWorkers {
		rr.WantWorkers = nil // an overflowing registry holds some of them, by design
	}
	return rr
}

// hiveWorkers asks the hive at a for the workers it runs now (rbee-hive's /v1/hive/workers).
func (r *run) hiveWorkers(a node.Addr) ([]api.WorkerSpec, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(r.ports[a]) + "/v1/hive/workers")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/hive/workers: %s", resp.Status)
	}
	var out struct {
		Workers []api.WorkerSpec `json:"workers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET /v1/hive/workers: %w", err)
	}
	return out.Workers, nil
}

func (r *run) injectedCopy() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.injected {
		out[k] = v
	}
	return out
}

// stopAll stops the clients, then the servers (SIGTERM, then SIGKILL after 10 s).
func (r *run) stopAll() {
	for _, a := range r.clientAddrs() {
		if h := r.clients[a]; h != nil {
			h.Close()
		}
	}
	r.clients = map[node.Addr]*cluster.Harness{}
	for _, w := range r.writers {
		w.Close()
	}
	r.writers = nil
	for _, a := range r.serverAddrs() {
		r.servers[a].p.Stop(10 * time.Second)
	}
	// A hive stops its workers before it exits; one it could not stop in time (the hive was
	// killed at the end of its grace) would outlive the run.
	pids, _ := r.workerPIDs("")
	for _, pid := range pids {
		r.log.Warn("a worker process outlived its hive; killing it", "pid", pid)
		r.say("worker process %d outlived its hive; killed", pid)
		chaos.Kill(pid)
	}
}

// teardown releases everything, also after a failed set-up.
func (r *run) teardown() {
	r.stopAll()
	for _, px := range r.proxies {
		px.Close()
	}
	r.hub.close()
}
