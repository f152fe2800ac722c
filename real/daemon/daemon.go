// Package daemon is what every rbee binary shares: the common flags (data folder, listen
// address, peers, API key, dev mode, logging, history recording), one real.Runtime with the
// HTTP transport to the other processes, and the HTTP server the transport and any public API
// are served on.
//
// A binary builds Options from its flags, calls Start, adds its nodes and ports to D.RT, mounts
// any extra handlers on D.Mux, starts its nodes, and calls Serve until a signal.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/record"
	"github.com/rbee-sim/rbee-sim/real/transport"
)

// KeyEnv is the environment variable that holds the public API's keys (comma-separated, so a
// key can be rotated): what clients of the queen's API send.
const KeyEnv = "RBEE_API_KEY"

// ClusterKeyEnv holds the keys of the traffic between components (the transport); the first
// is the one this process sends. Set it apart from RBEE_API_KEY so that a client of the
// public API cannot speak as a hive or a worker. When only one of the two is set, it serves
// both.
const ClusterKeyEnv = "RBEE_CLUSTER_KEY"

// keyPolicies are the public API's and the transport's policies from the environment; each
// falls back to the other's keys when its own variable is empty.
func keyPolicies(dev bool) (api, cluster auth.Policy) {
	apiKeys, clusterKeys := auth.KeysFromEnv(KeyEnv), auth.KeysFromEnv(ClusterKeyEnv)
	if len(apiKeys) == 0 {
		apiKeys = clusterKeys
	}
	if len(clusterKeys) == 0 {
		clusterKeys = apiKeys
	}
	return auth.Policy{Keys: apiKeys, DevMode: dev}, auth.Policy{Keys: clusterKeys, DevMode: dev}
}

// Version is the version every rbee binary reports (--version); a hive refuses a worker
// binary that reports another.
const Version = "0.7.0"

// Options are the settings every binary shares.
type Options struct {
	// Name is the binary's name, for messages.
	Name string
	// DataDir holds the machine's files; default ~/.rbee.
	DataDir string
	// Machine is the folder under DataDir that is this machine's disk; default "local".
	Machine string
	// Listen is the host:port the HTTP server binds; port 0 picks a free one.
	Listen string
	// Advertise is the base URL peers use to reach this process; default http://<listen>.
	Advertise string
	// Peers are static routes, "addr=http://host:port".
	Peers []string
	// Dev allows running without API keys on loopback.
	Dev bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Record, when set, is a file that gets every message and observation of this process
	// (see package record): what a real-mode run judges.
	Record string
}

// Flags registers the shared flags on fs, with defaults from o.
func (o *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "folder for durable files (default ~/.rbee)")
	fs.StringVar(&o.Listen, "listen", o.Listen, "host:port to listen on")
	fs.StringVar(&o.Advertise, "advertise", o.Advertise, "base URL other components use to reach this one (default http://<listen>)")
	fs.Func("peer", "a route to another component: addr=http://host:port (repeatable)", func(s string) error {
		if _, _, err := ParsePeer(s); err != nil {
			return err
		}
		o.Peers = append(o.Peers, s)
		return nil
	})
	fs.BoolVar(&o.Dev, "dev", o.Dev, "dev mode: run without API keys, on loopback only")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.Record, "record", o.Record, "append every message and observation to this file (real-mode runs)")
}

// ParsePeer splits "addr=url".
func ParsePeer(s string) (node.Addr, string, error) {
	addr, url, ok := strings.Cut(s, "=")
	if !ok || addr == "" || !(strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://")) {
		return "", "", fmt.Errorf("peer %q: want addr=http://host:port, e.g. queen=http://127.0.0.1:7833", s)
	}
	return node.Addr(addr), strings.TrimRight(url, "/"), nil
}

// PeersFromEnv reads peers from RBEE_PEERS ("addr=url,addr=url"), how a hive hands its routes
// to the workers it spawns.
func PeersFromEnv() []string {
	var out []string
	for _, p := range strings.Split(os.Getenv("RBEE_PEERS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// D is a started daemon.
type D struct {
	Opts      Options
	Log       *slog.Logger
	RT        *real.Runtime
	Transport *transport.Transport
	Mux       *http.ServeMux
	// Policy guards the public API (RBEE_API_KEY); the transport has the cluster's
	// (RBEE_CLUSTER_KEY).
	Policy auth.Policy
	// Key is the key this process sends to its peers ("" in dev mode).
	Key string
	// URL is the advertised base URL.
	URL string

	ln  net.Listener
	rec *record.Writer

	mu        sync.Mutex
	srv       *http.Server // set by Serve; nil before
	closed    bool
	closeOnce sync.Once
}

// Start validates the options, opens the listener, and builds the runtime and transport. It
// serves nothing until Serve.
func Start(o Options) (*D, error) {
	if o.Name == "" {
		o.Name = filepath.Base(os.Args[0])
	}
	log, err := NewLogger(o.LogLevel)
	if err != nil {
		return nil, err
	}
	if o.DataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("%s: no --data-dir and no home folder to put ~/.rbee in: %w", o.Name, err)
		}
		o.DataDir = filepath.Join(home, ".rbee")
	}
	if o.Machine == "" {
		o.Machine = "local"
	}
	policy, clusterPolicy := keyPolicies(o.Dev)
	for _, p := range []auth.Policy{policy, clusterPolicy} {
		if err := p.CheckBind(o.Listen); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Name, err)
		}
	}
	peers := map[node.Addr]string{}
	for _, p := range o.Peers {
		a, u, err := ParsePeer(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Name, err)
		}
		peers[a] = u
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot listen on %s: %w (is another process using the port? pick another with --listen)", o.Name, o.Listen, err)
	}
	d := &D{Opts: o, Log: log, Mux: http.NewServeMux(), Policy: policy, ln: ln}
	if len(clusterPolicy.Keys) > 0 {
		d.Key = clusterPolicy.Keys[0]
		log.Info("keys loaded", "send", auth.Fingerprint(d.Key), "cluster keys", len(clusterPolicy.Keys), "API keys", len(policy.Keys))
	} else {
		log.Warn("dev mode: no API key; only loopback clients are answered")
	}
	d.URL = o.Advertise
	if d.URL == "" {
		d.URL = "http://" + ln.Addr().String()
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			// Peers learn this URL from the messages this process sends, and 0.0.0.0 (or
			// [::]) means "this machine" on theirs: only processes on this machine reach it.
			log.Warn("listening on every interface without --advertise: other machines cannot reach this process at the URL it announces",
				"announced", d.URL, "fix", fmt.Sprintf("pass --advertise http://<this machine's address>:%d", a.Port))
		}
	}
	var trace func(real.TraceEvent)
	if o.Record != "" {
		if d.rec, err = record.Create(o.Record); err != nil {
			ln.Close()
			return nil, err
		}
		trace = d.rec.Trace
	}
	undo := func() {
		ln.Close()
		if d.rec != nil {
			d.rec.Close()
		}
	}
	var tr *transport.Transport
	rt, err := real.New(real.Config{
		DataDir: o.DataDir,
		Seed:    rand.Uint64(), // a real process is not deterministic; each run draws its own
		Logger:  log,
		Remote:  func(from, to node.Addr, m node.Msg) { tr.Send(from, to, m) },
		Trace:   trace,
	})
	if err != nil {
		undo()
		return nil, err
	}
	tr, err = transport.New(transport.Config{
		Advertise: d.URL,
		Peers:     peers,
		Key:       d.Key,
		Policy:    clusterPolicy,
		Logger:    log,
		Local:     rt.Has,
		Addrs:     rt.Addrs,
		Deliver:   rt.Deliver,
	})
	if err != nil {
		undo()
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	d.RT, d.Transport = rt, tr
	d.Mux.Handle("/rbee/v1/", tr.Handler())
	return d, nil
}

// NewLogger is a text logger on stderr at the named level.
func NewLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// Addr is the address the server listens on (with the port picked when Listen had port 0).
func (d *D) Addr() string { return d.ln.Addr().String() }

// Serve serves HTTP until ctx is done, then shuts everything down: the server (letting
// requests in flight finish for up to 5 s), the nodes, the transport, the record file. After
// Close it serves nothing and returns nil.
func (d *D) Serve(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	srv := &http.Server{Handler: d.Mux, ReadHeaderTimeout: 10 * time.Second}
	d.srv = srv
	d.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(d.ln) }()
	d.Log.Info(d.Opts.Name+" listening", "url", d.URL)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	d.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the server, the nodes, the transport and the record file. It is safe to call
// more than once and from several goroutines (a command's deferred Close while Serve returns
// on its own goroutine): every call returns once the first has finished.
func (d *D) Close() {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		srv := d.srv
		d.mu.Unlock()
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := srv.Shutdown(sctx); err != nil {
				// Streams still open after the grace: cut them rather than leave them running.
				d.Log.Warn("requests still in flight after 5s of shutdown were cut", "err", err)
				srv.Close()
			}
			cancel()
		} else {
			d.ln.Close()
		}
		d.RT.Stop()
		d.Transport.Close()
		if d.rec != nil {
			if err := d.rec.Close(); err != nil {
				d.Log.Error("the history file is incomplete: a write to it failed; a real-mode run judged from it judges less than happened",
					"file", d.Opts.Record, "err", err)
			}
		}
	})
}

// AskedVersion reports whether the command line is just --version, and then prints the
// version: what every rbee binary answers (a hive checks its workers' this way).
func AskedVersion(args []string) bool {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Println(Version)
		return true
	}
	return false
}

// ParseFlags parses a binary's flags; ok false means exit with code: 0 after --help, 2 after
// a bad flag or an argument that is not a flag (said on stderr).
func ParseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q; every setting is a flag (see %s --help)\n", fs.Name(), fs.Arg(0), fs.Name())
		return 2, false
	}
	return 0, true
}
