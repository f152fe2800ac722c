package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/transport"
)

// Harness is the test's or the real-mode runner's own process in the cluster: a Runtime
// whose nodes (clients: keepers, inference clients, catalog clients) talk to the cluster's
// processes over the same transport, listening on 127.0.0.1 so that answers come back.
type Harness struct {
	RT        *real.Runtime
	Transport *transport.Transport
	URL       string

	srv *http.Server
}

// HarnessConfig configures a Harness.
type HarnessConfig struct {
	DataDir string
	// Peers are routes to the cluster's processes (address -> base URL).
	Peers map[node.Addr]string
	// Key is the cluster's API key; empty means dev mode (loopback, no key).
	Key    string
	Seed   uint64
	Logger *slog.Logger
	// Trace, when set, sees every event of the harness's nodes (see real.Config.Trace).
	Trace func(real.TraceEvent)
}

// NewHarness starts the harness's runtime, transport and listener. Add nodes to h.RT, then
// start them.
func NewHarness(cfg HarnessConfig) (*Harness, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &Harness{URL: "http://" + ln.Addr().String()}
	policy := auth.Policy{DevMode: cfg.Key == ""}
	if cfg.Key != "" {
		policy.Keys = []string{cfg.Key}
	}
	var tr *transport.Transport
	rt, err := real.New(real.Config{DataDir: cfg.DataDir, Seed: cfg.Seed, Logger: cfg.Logger, Trace: cfg.Trace,
		Remote: func(from, to node.Addr, m node.Msg) { tr.Send(from, to, m) }})
	if err != nil {
		ln.Close()
		return nil, err
	}
	tr, err = transport.New(transport.Config{Advertise: h.URL, Peers: cfg.Peers, Key: cfg.Key, Policy: policy,
		Logger: cfg.Logger, Local: rt.Has, Addrs: rt.Addrs, Deliver: rt.Deliver})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster: harness transport: %w", err)
	}
	h.RT, h.Transport = rt, tr
	h.srv = &http.Server{Handler: tr.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

// Close stops the harness's nodes, transport and listener.
func (h *Harness) Close() {
	h.srv.Close()
	h.RT.Stop()
	h.Transport.Close()
}
