package bench_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/orch/worker"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/real/engine"
	"github.com/rbee-sim/rbee-sim/real/gateway"
)

const (
	queenAddr  node.Addr = "queen-1"
	apiAddr    node.Addr = "api"
	hiveAddr   node.Addr = "hive-bench"
	workerID             = "worker-bench-1"
	workerAddr node.Addr = workerID
	engineAddr node.Addr = workerID + "-engine"
	clientAddr node.Addr = "bench-client"
	model                = "hf:bench/tiny-GGUF/tiny.gguf"
	prompt               = "the hive at dawn"

	// slots is the worker's slots: enough that the concurrent variant never queues.
	slots = 8
	// waitLimit bounds every wait: a guard against a hang, not a timing assertion.
	waitLimit = 30 * time.Second
	// heartbeatEvery is the fake hive's heartbeat period, well inside the queen's timeout.
	heartbeatEvery = 10 * time.Second
)

// sample is one request's latencies from the client's send: to its first token and to its end.
type sample struct{ ttft, done time.Duration }

// stats are the percentiles of a path's samples.
type stats struct{ ttftP50, ttftP99, doneP50, doneP99 time.Duration }

// fakeHive is the worker's hive as far as the queen and the worker need one: it registers the
// worker at the queen (idle) once the worker is ready, heartbeats it, and absorbs the worker's
// reports (WorkerLoading, WorkerReady, WorkerStatus) and the queen's answers.
type fakeHive struct {
	send  real.Send
	ready chan struct{} // closed at the worker's first WorkerReady
	resp  chan api.RegistryResp
	once  sync.Once
	next  atomic.Uint64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (h *fakeHive) Deliver(_ node.Addr, m node.Msg) {
	switch m := m.(type) {
	case api.WorkerReady:
		if m.Err.OK() {
			h.once.Do(func() { close(h.ready) })
		}
	case api.RegistryResp:
		select {
		case h.resp <- m:
		default:
		}
	}
}

func (h *fakeHive) Close() error {
	close(h.stop)
	h.wg.Wait()
	return nil
}

// register registers the worker at the queen, idle, retrying until the queen answers OK, then
// heartbeats it every heartbeatEvery until Close.
func (h *fakeHive) register() error {
	spec := api.WorkerSpec{ID: workerID, Hive: hiveAddr, Incarnation: 1, Model: model, Capability: "cpu", Slots: slots}
	deadline := time.Now().Add(waitLimit)
	for {
		id := h.next.Add(1)
		h.send(queenAddr, api.RegisterReq{ReqID: id, Spec: spec, State: api.StateIdle})
		select {
		case r := <-h.resp:
			if r.ReqID == id && r.Err.OK() {
				h.wg.Go(h.heartbeat)
				return nil
			}
			if r.ReqID == id {
				return fmt.Errorf("registering %s: %v", workerID, r.Err)
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the queen did not confirm the registration of %s within %v", workerID, waitLimit)
		}
	}
}

func (h *fakeHive) heartbeat() {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.send(queenAddr, api.HeartbeatReq{ReqID: h.next.Add(1), Worker: workerID, Incarnation: 1})
		case <-h.stop:
			return
		}
	}
}

// call is one request in flight at the client port.
type call struct {
	first time.Time
	end   time.Time
	done  chan api.InferDone
}

// inferClient is the client process's port: it sends api.InferReq (to the worker or to the
// queen) and notes when the first token and the end come back.
type inferClient struct {
	send  real.Send
	next  atomic.Uint64
	mu    sync.Mutex
	calls map[uint64]*call
}

func (c *inferClient) Deliver(_ node.Addr, m node.Msg) {
	now := time.Now()
	switch m := m.(type) {
	case api.InferToken:
		c.mu.Lock()
		if cl := c.calls[m.ReqID]; cl != nil && cl.first.IsZero() {
			cl.first = now
		}
		c.mu.Unlock()
	case api.InferDone:
		c.mu.Lock()
		cl := c.calls[m.ReqID]
		delete(c.calls, m.ReqID)
		if cl != nil {
			cl.end = now
		}
		c.mu.Unlock()
		if cl != nil {
			cl.done <- m
		}
	}
}

func (c *inferClient) Close() error { return nil }

// infer sends an InferReq for tokens tokens to to (the worker, or the queen) and waits for its
// InferDone.
func (c *inferClient) infer(to node.Addr, tokens int) (sample, error) {
	id := c.next.Add(1)
	cl := &call{done: make(chan api.InferDone, 1)}
	c.mu.Lock()
	c.calls[id] = cl
	c.mu.Unlock()
	start := time.Now()
	c.send(to, api.InferReq{ReqID: id, Model: model, Prompt: prompt, MaxTokens: tokens, Seed: id})
	select {
	case d := <-cl.done:
		if !d.Err.OK() || d.FinishReason != api.FinishLength || d.Tokens != tokens || cl.first.IsZero() {
			return sample{}, fmt.Errorf("request %d to %s ended %+v (first token seen: %v), want %d tokens and length",
				id, to, d, !cl.first.IsZero(), tokens)
		}
		return sample{ttft: cl.first.Sub(start), done: cl.end.Sub(start)}, nil
	case <-time.After(waitLimit):
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
		return sample{}, fmt.Errorf("request %d to %s: no end within %v", id, to, waitLimit)
	}
}

// fixture is the three processes: worker (+ engine + fake hive), queen (+ gateway) and client.
type fixture struct {
	client *inferClient
	apiURL string
	http   *http.Client
	seed   atomic.Uint64
	mu     sync.Mutex
	direct map[string]stats // the direct path's latest stats, by variant name
}

// newFixture starts the three processes on loopback, waits for the worker to be ready and
// routable, and warms every path up (connections open, routes learned).
func newFixture(b *testing.B) *fixture {
	b.Helper()
	dir := b.TempDir()
	harness := func(name string) *cluster.Harness {
		h, err := cluster.NewHarness(cluster.HarnessConfig{DataDir: filepath.Join(dir, name), Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(h.Close)
		return h
	}
	wh, qh, ch := harness("worker"), harness("queen"), harness("client")
	learn := func(h *cluster.Harness, addr node.Addr, url string) {
		if err := h.Transport.Learn(addr, url); err != nil {
			b.Fatal(err)
		}
	}
	learn(wh, queenAddr, qh.URL)
	learn(qh, workerAddr, wh.URL)
	learn(qh, hiveAddr, wh.URL)
	learn(ch, workerAddr, wh.URL)
	learn(ch, queenAddr, qh.URL)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}

	// The queen process: the queen node and its public API.
	must(qh.RT.Add(queenAddr, "queen", func() node.Node { return queen.New(queen.DefaultConfig()) }))
	srv, err := gateway.NewServer(gateway.ServerConfig{Queen: queenAddr, Policy: auth.Policy{DevMode: true}})
	must(err)
	must(qh.RT.AddPort(apiAddr, srv.Port))
	must(qh.RT.Start(queenAddr))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	apiSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go apiSrv.Serve(ln)
	b.Cleanup(func() { apiSrv.Close() })

	// The worker process: the worker node, its CPU engine and a fake hive.
	mk, err := engine.NewCPU(engine.CPUConfig{}) // no load time, no prefill, as fast as possible, no EOS
	must(err)
	must(wh.RT.AddPort(engineAddr, mk))
	hive := &fakeHive{ready: make(chan struct{}), resp: make(chan api.RegistryResp, 16), stop: make(chan struct{})}
	must(wh.RT.AddPort(hiveAddr, func(send real.Send) real.Port { hive.send = send; return hive }))
	wcfg := worker.DefaultConfig()
	wcfg.ID, wcfg.Hive, wcfg.Engine, wcfg.Model, wcfg.Slots = workerID, hiveAddr, engineAddr, model, slots
	must(wcfg.Validate())
	must(wh.RT.Add(workerAddr, "worker", func() node.Node { return worker.New(wcfg) }))
	must(wh.RT.Start(workerAddr))
	select {
	case <-hive.ready:
	case <-time.After(waitLimit):
		b.Fatalf("the worker did not report ready within %v", waitLimit)
	}
	must(hive.register())

	// The client process.
	client := &inferClient{calls: map[uint64]*call{}}
	must(ch.RT.AddPort(clientAddr, func(send real.Send) real.Port { client.send = send; return client }))

	f := &fixture{client: client, apiURL: "http://" + ln.Addr().String(), direct: map[string]stats{},
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * slots, IdleConnTimeout: time.Minute}}}
	b.Cleanup(f.http.CloseIdleConnections)
	for _, p := range paths {
		for range 3 {
			if _, err := p.run(f, 4); err != nil {
				b.Fatalf("warming up %s: %v", p.name, err)
			}
		}
	}
	return f
}

// sse runs one request through the public API: POST /v1/inference, reading the event stream
// to its done event.
func (f *fixture) sse(tokens int) (sample, error) {
	body := fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":%d,"seed":%d}`, model, prompt, tokens, f.seed.Add(1))
	start := time.Now()
	resp, err := f.http.Post(f.apiURL+"/v1/inference", "application/json", strings.NewReader(body))
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return sample{}, fmt.Errorf("POST /v1/inference: %s: %s", resp.Status, msg)
	}
	var s sample
	n := 0
	event := ""
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return sample{}, fmt.Errorf("the stream ended after %d tokens without its done event: %w", n, err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "token":
			if n++; n == 1 {
				s.ttft = time.Since(start)
			}
		case strings.HasPrefix(line, "data: ") && event == "done":
			s.done = time.Since(start)
			var d gateway.DoneEvent
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
				return sample{}, fmt.Errorf("done event %q: %w", line, err)
			}
			if d.Error != nil || d.FinishReason != api.FinishLength || d.Usage.CompletionTokens != tokens || n != tokens {
				return sample{}, fmt.Errorf("stream ended %+v after %d token events, want %d tokens and length", d, n, tokens)
			}
			io.Copy(io.Discard, r) // to EOF, so the connection is reused
			return s, nil
		}
	}
}

// path is one way a request reaches the worker.
type path struct {
	name string
	run  func(f *fixture, tokens int) (sample, error)
}

// paths: direct first, so that the others can report what they add to it.
var paths = []path{
	{"direct", func(f *fixture, n int) (sample, error) { return f.client.infer(workerAddr, n) }},
	{"queen", func(f *fixture, n int) (sample, error) { return f.client.infer(queenAddr, n) }},
	{"gateway-sse", func(f *fixture, n int) (sample, error) { return f.sse(n) }},
}

// BenchmarkStreamLatency measures a streamed request of 16 and 128 tokens from a client
// process to a worker process (CPU engine as fast as possible, so the engine adds almost
// nothing) over real HTTP on loopback, by three paths: direct (the client sends the worker the
// InferReq the queen would send it), through the queen process over the transport, and through
// the queen's public API (POST /v1/inference, server-sent events, from a plain net/http
// client). Each sub-benchmark reports the p50 and p99 of the time to the first token (ttft) and
// to the end (done), in ms, and what the path adds to the direct path's p50 and p99 (added-*).
// One request at a time, and 8 in flight (the worker has 8 slots, so none queues).
func BenchmarkStreamLatency(b *testing.B) {
	f := newFixture(b)
	for _, inFlight := range []int{1, slots} {
		for _, tokens := range []int{16, 128} {
			variant := fmt.Sprintf("in-flight=%d/tokens=%d", inFlight, tokens)
			for _, p := range paths {
				b.Run(variant+"/"+p.name, func(b *testing.B) {
					samples, err := measure(b, inFlight, func() (sample, error) { return p.run(f, tokens) })
					if err != nil {
						b.Fatal(err)
					}
					st := percentiles(samples)
					report(b, "", st)
					b.ReportMetric(float64(len(samples))/b.Elapsed().Seconds(), "req/s")
					f.mu.Lock()
					defer f.mu.Unlock()
					if p.name == "direct" {
						f.direct[variant] = st
					} else if d, ok := f.direct[variant]; ok {
						report(b, "added-", stats{st.ttftP50 - d.ttftP50, st.ttftP99 - d.ttftP99,
							st.doneP50 - d.doneP50, st.doneP99 - d.doneP99})
					}
				})
			}
		}
	}
}

// measure runs b.N requests, inFlight at a time, and returns their samples.
func measure(b *testing.B, inFlight int, run func() (sample, error)) ([]sample, error) {
	samples := make([]sample, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	b.ResetTimer()
	for range min(inFlight, b.N) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				s, err := run()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				samples[i] = s
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	return samples, errors.Join(errs...)
}

func percentiles(samples []sample) stats {
	ttft := make([]time.Duration, len(samples))
	done := make([]time.Duration, len(samples))
	for i, s := range samples {
		ttft[i], done[i] = s.ttft, s.done
	}
	slices.Sort(ttft)
	slices.Sort(done)
	return stats{rank(ttft, 50), rank(ttft, 99), rank(done, 50), rank(done, 99)}
}

// rank is the nearest-rank percentile p of sorted d.
func rank(d []time.Duration, p int) time.Duration {
	i := int(math.Ceil(float64(p)/100*float64(len(d)))) - 1
	return d[max(i, 0)]
}

func report(b *testing.B, prefix string, st stats) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(st.ttftP50), prefix+"ttft-p50-ms")
	b.ReportMetric(ms(st.ttftP99), prefix+"ttft-p99-ms")
	b.ReportMetric(ms(st.doneP50), prefix+"done-p50-ms")
	b.ReportMetric(ms(st.doneP99), prefix+"done-p99-ms")
}
