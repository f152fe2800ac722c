package transport_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/transport"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// Messages of the toy nodes. ping and pong cross processes; kick is injected locally; secret
// is known only to registries made with withSecret.
type (
	ping   struct{ Seq int }
	pong   struct{ Seq int }
	secret struct{ X int }
	kick   struct {
		To     node.Addr
		N      int  // pings 1..N
		Secret bool // a secret after the first half of the pings
	}
	marker struct{} // injected locally to flush a mailbox
)

func (ping) MsgName() string   { return "test.ping" }
func (pong) MsgName() string   { return "test.pong" }
func (secret) MsgName() string { return "test.secret" }
func (kick) MsgName() string   { return "test.kick" }
func (marker) MsgName() string { return "test.marker" }

// registry is the test-only wire registry: ping and pong (and secret with withSecret).
func registry(withSecret bool) *wire.Registry {
	r := &wire.Registry{}
	r.Register(ping{}, pong{})
	if withSecret {
		r.Register(secret{})
	}
	return r
}

// got is one message a toy received.
type got struct {
	at, from node.Addr
	msg      node.Msg
}

// recorder collects what every toy of a test received. Safe for concurrent use.
type recorder struct {
	mu  sync.Mutex
	all []got
}

func (r *recorder) add(g got) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, g)
}

// of returns the messages named name that at received, in order.
func (r *recorder) of(at node.Addr, name string) []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []got
	for _, g := range r.all {
		if g.at == at && g.msg.MsgName() == name {
			out = append(out, g)
		}
	}
	return out
}

func (r *recorder) count(at node.Addr, name string) int { return len(r.of(at, name)) }

// toy answers pings with pongs, sends pings when kicked, and records everything.
type toy struct{ rec *recorder }

func (n *toy) Start(node.Env) {}

func (n *toy) Handle(env node.Env, from node.Addr, m node.Msg) {
	n.rec.add(got{at: env.Self(), from: from, msg: m})
	switch m := m.(type) {
	case kick:
		for i := 1; i <= m.N; i++ {
			env.Send(m.To, ping{Seq: i})
			if m.Secret && i == m.N/2 {
				env.Send(m.To, secret{X: 42})
			}
		}
	case ping:
		env.Send(from, pong(m))
	}
}

// side is one OS process of a test: a Runtime, its Transport and its HTTP server.
type side struct {
	rt   *real.Runtime
	tr   *transport.Transport
	srv  *httptest.Server
	url  string
	logs *syncBuffer
}

type sideOpts struct {
	nodes  []node.Addr
	peers  map[node.Addr]string
	key    string
	policy *auth.Policy // nil: dev mode
	reg    *wire.Registry
	wrap   func(http.Handler) http.Handler
	srv    *httptest.Server             // from listen, when its URL must be known before the side is built
	setup  func(rt *real.Runtime) error // adds other nodes and ports before the nodes start
}

// listen returns a server that is listening but not serving yet, closed at the end of the test.
func listen(t testing.TB) *httptest.Server {
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	return srv
}

// serverURL is the base URL of a server made by listen.
func serverURL(srv *httptest.Server) string { return "http://" + srv.Listener.Addr().String() }

// newSide starts a process with toy nodes recording into rec, on an httptest server. Everything
// stops at the end of the test: the runtime, then the transport, then the server.
func newSide(t testing.TB, name string, rec *recorder, o sideOpts) *side {
	t.Helper()
	s := &side{logs: &syncBuffer{}, srv: o.srv}
	if s.srv == nil {
		s.srv = listen(t)
	}
	s.url = serverURL(s.srv)
	rt, err := real.New(real.Config{DataDir: t.TempDir(), Remote: func(from, to node.Addr, m node.Msg) { s.tr.Send(from, to, m) }})
	if err != nil {
		t.Fatal(err)
	}
	s.rt = rt
	for _, a := range o.nodes {
		if err := rt.Add(a, name, func() node.Node { return &toy{rec: rec} }); err != nil {
			t.Fatal(err)
		}
	}
	if o.setup != nil {
		if err := o.setup(rt); err != nil {
			t.Fatal(err)
		}
	}
	policy := auth.Policy{DevMode: true}
	if o.policy != nil {
		policy = *o.policy
	}
	reg := o.reg
	if reg == nil {
		reg = registry(false)
	}
	s.tr, err = transport.New(transport.Config{
		Advertise: s.url, Peers: o.peers, Key: o.key, Policy: policy, Registry: reg,
		Logger: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("side", name),
		Local:  rt.Has, Addrs: rt.Addrs, Deliver: rt.Deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.tr.Close() })
	t.Cleanup(rt.Stop)
	h := s.tr.Handler()
	if o.wrap != nil {
		h = o.wrap(h)
	}
	s.srv.Config.Handler = h
	s.srv.Start()
	if err := rt.StartAll(); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds, failing the test after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// flush waits until every message already in at's mailbox has been handled: a marker
// injected now is recorded after them.
func flush(t testing.TB, s *side, rec *recorder, at node.Addr) {
	t.Helper()
	want := rec.count(at, "test.marker") + 1
	s.rt.Inject("test", at, marker{})
	waitFor(t, fmt.Sprintf("a marker to pass through %s", at), func() bool { return rec.count(at, "test.marker") >= want })
}

// seqs returns the Seq of each ping or pong.
func seqs(gs []got) []int {
	out := make([]int, len(gs))
	for i, g := range gs {
		switch m := g.msg.(type) {
		case ping:
			out[i] = m.Seq
		case pong:
			out[i] = m.Seq
		}
	}
	return out
}

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func equalSeqs(got, want []int) bool { return slices.Equal(got, want) }

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain s.
func (b *syncBuffer) lines(s string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// toggle is a handler wrapper that answers 503 while down is set: a peer that is unreachable
// and comes back at the same URL.
type toggle struct{ down atomic.Bool }

func (tg *toggle) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg.down.Load() {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
