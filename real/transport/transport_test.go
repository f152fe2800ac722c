package transport_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/transport"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// 10,000 pings cross from one process to another and 10,000 pongs come back, each stream in
// send order; B knew no route to A: it learned it from the batches.
func TestTenThousandInOrder(t *testing.T) {
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"b": b.url}})
	const n = 10_000
	a.rt.Inject("test", "a", kick{To: "b", N: n})
	waitFor(t, "10,000 pongs at a", func() bool { return rec.count("a", "test.pong") == n })

	if got := seqs(rec.of("b", "test.ping")); !equalSeqs(got, upTo(n)) {
		t.Errorf("b got %d pings out of order (first ten: %v)", len(got), got[:min(10, len(got))])
	}
	pongs := rec.of("a", "test.pong")
	if got := seqs(pongs); !equalSeqs(got, upTo(n)) {
		t.Errorf("a got %d pongs out of order (first ten: %v)", len(got), got[:min(10, len(got))])
	}
	if pongs[0].from != "b" {
		t.Errorf("pong from %q, want b", pongs[0].from)
	}
	sa, sb := a.tr.Stats(), b.tr.Stats()
	if sa.Sent != n || sb.Received != n || sb.Sent != n || sa.Received != n || sa.Dropped+sb.Dropped != 0 {
		t.Errorf("stats: A %+v, B %+v; want %d sent and received each way, none dropped", sa, sb, n)
	}
	t.Logf("A sent %d messages in %d batches; B answered in %d batches", sa.Sent, sa.Batches, sb.Batches)
	if got := b.tr.Routes()["a"]; got != a.url {
		t.Errorf("B's route to a is %q, want %q (learned from the batches)", got, a.url)
	}
}

// When the other side's server is closed, each local sender that had messages for an address
// there gets one PeerGone for it, however many batches fail; the outage is logged once.
func TestPeerGoneOnceWhenServerCloses(t *testing.T) {
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b", "b2"}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a", "a2"}, peers: map[node.Addr]string{"b": b.url, "b2": b.url}})
	a.rt.Inject("test", "a", kick{To: "b", N: 1})
	waitFor(t, "a first pong", func() bool { return rec.count("a", "test.pong") == 1 })

	b.srv.Close()
	sent := uint64(0)
	for round := range 3 {
		a.rt.Inject("test", "a", kick{To: "b", N: 5})
		a.rt.Inject("test", "a", kick{To: "b2", N: 5})
		a.rt.Inject("test", "a2", kick{To: "b", N: 5})
		sent += 15
		waitFor(t, "the round's messages to be dropped", func() bool { return a.tr.Stats().Dropped == sent })
		_ = round
	}
	flush(t, a, rec, "a")
	flush(t, a, rec, "a2")
	gone := func(at, peer node.Addr) int {
		n := 0
		for _, g := range rec.of(at, "node.peer_gone") {
			if g.msg.(node.PeerGone).Peer == peer && g.from == peer {
				n++
			}
		}
		return n
	}
	for _, c := range []struct{ at, peer node.Addr }{{"a", "b"}, {"a", "b2"}, {"a2", "b"}} {
		if n := gone(c.at, c.peer); n != 1 {
			t.Errorf("%s got %d PeerGone{%s}, want exactly 1", c.at, n, c.peer)
		}
	}
	if n := gone("a2", "b2"); n != 0 {
		t.Errorf("a2 never sent to b2 but got %d PeerGone{b2}", n)
	}
	if s := a.tr.Stats(); s.PeerGone != 3 {
		t.Errorf("Stats.PeerGone = %d, want 3", s.PeerGone)
	}
	if l := a.logs.lines("cannot reach a peer"); len(l) != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", len(l), a.logs)
	}
}

// An outage ends with the first accepted POST; the next outage tells the sender again.
func TestPeerGoneRearmsAfterRecovery(t *testing.T) {
	rec := &recorder{}
	tg := &toggle{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}, wrap: tg.wrap})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"b": b.url}})
	pongs := 0
	dropped := uint64(0)
	for outage := 1; outage <= 2; outage++ {
		tg.down.Store(false)
		a.rt.Inject("test", "a", kick{To: "b", N: 1})
		pongs++
		waitFor(t, "a pong while b is up", func() bool { return rec.count("a", "test.pong") == pongs })

		tg.down.Store(true)
		for range 2 {
			a.rt.Inject("test", "a", kick{To: "b", N: 3})
			dropped += 3
			waitFor(t, "the pings to be dropped", func() bool { return a.tr.Stats().Dropped == dropped })
		}
		flush(t, a, rec, "a")
		if n := rec.count("a", "node.peer_gone"); n != outage {
			t.Fatalf("after outage %d, a got %d PeerGone, want %d", outage, n, outage)
		}
	}
	if l := a.logs.lines("peer reachable again"); len(l) != 1 {
		t.Errorf("the recovery was logged %d times, want once:\n%s", len(l), a.logs)
	}
}

// A wrong key gets 401: nothing is delivered, the sender logs one error with its key's
// fingerprint and never the key, and the right key gets through.
func TestWrongKeyIsRefused(t *testing.T) {
	const keyA, keyB = "key-of-a-0123456789", "key-of-b-0123456789"
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}, policy: &auth.Policy{Keys: []string{keyB}}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"b": b.url}, key: keyA,
		policy: &auth.Policy{Keys: []string{keyA}}})
	for i := uint64(1); i <= 2; i++ {
		a.rt.Inject("test", "a", kick{To: "b", N: 3})
		waitFor(t, "the pings to be dropped", func() bool { return a.tr.Stats().Dropped == 3*i })
	}
	if s := b.tr.Stats(); s.Received != 0 || rec.count("b", "test.ping") != 0 {
		t.Errorf("B took messages with a wrong key: %+v", s)
	}
	logs := a.logs.String()
	if strings.Contains(logs, keyA) {
		t.Errorf("the key itself reached the log:\n%s", logs)
	}
	if l := a.logs.lines("refused this process's key"); len(l) != 1 || !strings.Contains(l[0], auth.Fingerprint(keyA)) {
		t.Errorf("want one error naming %s, got:\n%s", auth.Fingerprint(keyA), logs)
	}

	body := batchBody(t, b.url, env(t, registry(false), "x", "b", ping{Seq: 7}))
	if status, _ := post(t, b.url, keyA, body); status != http.StatusUnauthorized {
		t.Errorf("POST with a wrong key: HTTP %d, want 401", status)
	}
	if status, _ := post(t, b.url, "", body); status != http.StatusUnauthorized {
		t.Errorf("POST without a key: HTTP %d, want 401", status)
	}
	if status, resp := post(t, b.url, keyB, body); status != http.StatusOK {
		t.Errorf("POST with the right key: HTTP %d %s, want 200", status, resp)
	}
	waitFor(t, "the ping sent with the right key", func() bool { return rec.count("b", "test.ping") == 1 })
}

// Route gossip: A knows B, B knows C; once B has heard from C and then from A, A can reach C's
// addresses (c, which B knows statically, and c2, which B learned from C's gossip) and C
// can answer A, whose route it learned from A's own batch.
func TestRouteGossip(t *testing.T) {
	rec := &recorder{}
	sb, sc := listen(t), listen(t)
	b := newSide(t, "B", rec, sideOpts{srv: sb, nodes: []node.Addr{"b"}, peers: map[node.Addr]string{"c": serverURL(sc)}})
	c := newSide(t, "C", rec, sideOpts{srv: sc, nodes: []node.Addr{"c", "c2"}, peers: map[node.Addr]string{"b": b.url}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"b": b.url}})
	if got := a.tr.Routes(); len(got) != 1 {
		t.Fatalf("A's routes before any gossip: %v, want b only", got)
	}

	c.rt.Inject("test", "c", kick{To: "b", N: 1})
	waitFor(t, "c's pong from b", func() bool { return rec.count("c", "test.pong") == 1 })
	if got := b.tr.Routes()["c2"]; got != c.url {
		t.Fatalf("B's route to c2 is %q, want %q from C's gossip", got, c.url)
	}
	a.rt.Inject("test", "a", kick{To: "b", N: 1})
	waitFor(t, "a's pong from b", func() bool { return rec.count("a", "test.pong") == 1 })

	routes := a.tr.Routes()
	if routes["c"] != c.url || routes["c2"] != c.url {
		t.Fatalf("A's routes after gossip: %v; want c and c2 at %s", routes, c.url)
	}
	a.rt.Inject("test", "a", kick{To: "c", N: 1})
	a.rt.Inject("test", "a", kick{To: "c2", N: 1})
	waitFor(t, "a's pongs from c and c2", func() bool { return rec.count("a", "test.pong") == 3 })
	from := map[node.Addr]int{}
	for _, g := range rec.of("a", "test.pong") {
		from[g.from]++
	}
	if from["b"] != 1 || from["c"] != 1 || from["c2"] != 1 {
		t.Errorf("a's pongs came from %v, want one each from b, c and c2", from)
	}
}

// An envelope naming a message the receiver does not know makes it refuse the whole batch
// with 400 naming the message; the sender drops that one message and delivers the rest.
func TestUnknownMessageRefused(t *testing.T) {
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"b": b.url}, reg: registry(true)})

	reg := registry(true)
	body := batchBody(t, "", env(t, reg, "x", "b", ping{Seq: 1}), env(t, reg, "x", "b", secret{X: 1}))
	status, resp := post(t, b.url, "", body)
	e, ok := wire.ReadError(resp)
	if status != http.StatusBadRequest || !ok || e.Code != transport.CodeUnknownMessage || !strings.Contains(e.Message, `"test.secret"`) {
		t.Errorf("POST with an unknown message: HTTP %d %s; want 400 %s naming test.secret", status, resp, transport.CodeUnknownMessage)
	}
	if s := b.tr.Stats(); s.Received != 0 {
		t.Errorf("B delivered %d messages of a refused batch", s.Received)
	}

	a.rt.Inject("test", "a", kick{To: "b", N: 4, Secret: true})
	waitFor(t, "a's four pongs", func() bool { return rec.count("a", "test.pong") == 4 })
	if got := seqs(rec.of("b", "test.ping")); !equalSeqs(got, upTo(4)) {
		t.Errorf("b got pings %v, want 1..4", got)
	}
	if s := a.tr.Stats(); s.Refused != 1 || s.Dropped != 1 {
		t.Errorf("A's stats %+v; want one message refused and dropped", s)
	}
	if l := a.logs.lines("refused a message"); len(l) != 1 || !strings.Contains(l[0], "test.secret") {
		t.Errorf("want one warning naming test.secret, got:\n%s", a.logs)
	}
}

// A message for an address its receiver does not have is dropped there, and the sender
// forgets the learned route; a message with no route is dropped and counted.
func TestMisroutedAndNoRoute(t *testing.T) {
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}})
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}})
	a.rt.Inject("test", "a", kick{To: "nowhere", N: 2})
	waitFor(t, "the unroutable pings to be dropped", func() bool { return a.tr.Stats().NoRoute == 2 })

	if err := a.tr.Learn("ghost", b.url); err != nil {
		t.Fatal(err)
	}
	a.rt.Inject("test", "a", kick{To: "ghost", N: 1})
	waitFor(t, "A to forget the route to ghost", func() bool { _, ok := a.tr.Routes()["ghost"]; return !ok })
	if s := b.tr.Stats(); s.Received != 0 || s.Dropped != 1 {
		t.Errorf("B's stats %+v; want the message to ghost dropped", s)
	}
}

// Learn validates; static routes cannot be changed; the process's own addresses need none.
func TestLearn(t *testing.T) {
	rec := &recorder{}
	a := newSide(t, "A", rec, sideOpts{nodes: []node.Addr{"a"}, peers: map[node.Addr]string{"s": "http://127.0.0.1:1"}})
	for _, c := range []struct {
		addr node.Addr
		url  string
		want string
	}{
		{"x", "ftp://h:1", "scheme"},
		{"x", "http://user:pw@h:1", "credentials"},
		{"s", "http://127.0.0.1:2", "static"},
		{"a", "http://127.0.0.1:2", "this process"},
		{"x", a.url, "own URL"},
	} {
		err := a.tr.Learn(c.addr, c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Learn(%q, %q) = %v, want an error about %s", c.addr, c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("Learn's error shows the URL's password: %v", err)
		}
	}
	if err := a.tr.Learn("x", "http://127.0.0.1:3/"); err != nil {
		t.Fatal(err)
	}
	if got := a.tr.Routes(); got["x"] != "http://127.0.0.1:3" || got["s"] != "http://127.0.0.1:1" {
		t.Errorf("routes %v", got)
	}
}

// The config's mistakes are all named.
func TestConfigValidation(t *testing.T) {
	_, err := transport.New(transport.Config{
		Advertise: "localhost:7833",
		Peers:     map[node.Addr]string{"q": "http://", "": "http://h:1"},
		Key:       "tiny-k3y",
	})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, want := range []string{"Advertise", `Peers["q"]`, "empty address", "Key key:", "Policy", "Local is nil", "Deliver is nil"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "tiny-k3y") {
		t.Errorf("the error shows the key: %v", err)
	}
}

// Health answers without a key; wrong methods, paths and bodies get the standard error body.
func TestHealthAndBadRequests(t *testing.T) {
	rec := &recorder{}
	b := newSide(t, "B", rec, sideOpts{nodes: []node.Addr{"b"}, policy: &auth.Policy{Keys: []string{"key-of-b-0123456789"}}})
	resp, err := http.Get(b.url + transport.HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Status string }
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.Status != "ok" {
		t.Errorf("health: HTTP %d %+v", resp.StatusCode, h)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, transport.EnvelopesPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(c.method, b.url+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if _, ok := wire.ReadError(body); resp.StatusCode != c.status || !ok {
			t.Errorf("%s %s: HTTP %d %s, want %d with an error body", c.method, c.path, resp.StatusCode, body, c.status)
		}
	}
	status, body := post(t, b.url, "key-of-b-0123456789", []byte(`{"envelopes": [`))
	if _, ok := wire.ReadError(body); status != http.StatusBadRequest || !ok {
		t.Errorf("truncated JSON: HTTP %d %s, want 400 with an error body", status, body)
	}
	b.tr.Close()
	b.tr.Close()
	status, body = post(t, b.url, "key-of-b-0123456789", []byte(`{"envelopes": []}`))
	if status != http.StatusServiceUnavailable {
		t.Errorf("after Close: HTTP %d %s, want 503", status, body)
	}
}

// env encodes one envelope.
func env(t *testing.T, reg *wire.Registry, from, to node.Addr, m node.Msg) wire.Envelope {
	t.Helper()
	e, err := reg.Encode(from, to, m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// batchBody is a batch as a peer would POST it.
func batchBody(t *testing.T, fromURL string, envs ...wire.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"from_url": fromURL, "envelopes": envs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post POSTs a batch body to a peer's envelope endpoint.
func post(t *testing.T, base, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+transport.EnvelopesPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	auth.SetBearer(req, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}
