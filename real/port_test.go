package real

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// echoPort answers every ping with a pong, from its own address, and counts Close calls.
type echoPort struct {
	send   Send
	closed int
	mu     sync.Mutex
}

func (p *echoPort) Deliver(from node.Addr, m node.Msg) {
	if ping, ok := m.(ping); ok {
		p.send(from, pong(ping))
	}
}

func (p *echoPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed++
	return nil
}

// A node and a port talk both ways; messages to an address that is neither go to Remote;
// every send and delivery is traced; Stop closes the port once.
func TestPortsRemoteAndTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var remote []node.Addr
		var trace []string
		cfg := Config{
			Remote: func(from, to node.Addr, m node.Msg) {
				mu.Lock()
				defer mu.Unlock()
				remote = append(remote, to)
			},
			Trace: func(e TraceEvent) {
				mu.Lock()
				defer mu.Unlock()
				name := ""
				if e.Msg != nil {
					name = e.Msg.MsgName()
				}
				trace = append(trace, e.Kind+" "+string(e.From)+">"+string(e.To)+" "+name)
			},
		}
		rt := newTestRuntime(t, cfg)
		port := &echoPort{}
		mustDo(t, rt.AddPort("echo", func(s Send) Port { port.send = s; return port }))
		if err := rt.AddPort("echo", func(s Send) Port { return &echoPort{} }); err == nil {
			t.Error("a second port at the same address was accepted")
		}
		mustDo(t, rt.Add("a", "m1", toyFactory("echo", nil, 0)))
		if err := rt.Add("echo", "m1", toyFactory("a", nil, 0)); err == nil {
			t.Error("a node at a port's address was accepted")
		}
		mustDo(t, rt.StartAll())
		rt.Inject("test", "a", kick{N: 2})
		rt.Inject("test", "a", sendTo{To: "elsewhere"})
		synctest.Wait()

		a := snapshot(t, rt, "a")
		if a.count("test.pong") != 2 {
			t.Errorf("a got %v, want two pongs from the port", a.got)
		}
		mu.Lock()
		if !slices.Equal(remote, []node.Addr{"elsewhere"}) {
			t.Errorf("Remote saw %v, want [elsewhere]", remote)
		}
		for _, want := range []string{"send a>echo test.ping", "deliver a>echo test.ping", "send echo>a test.pong", "deliver echo>a test.pong", "send a>elsewhere test.ping"} {
			if !slices.Contains(trace, want) {
				t.Errorf("trace lacks %q: %v", want, trace)
			}
		}
		mu.Unlock()
		if !rt.Has("echo") || !rt.Has("a") || rt.Has("elsewhere") {
			t.Error("Has is wrong")
		}
		rt.Stop()
		if port.closed != 1 {
			t.Errorf("port closed %d times, want 1", port.closed)
		}
	})
}

// localOnlyPort is an echoPort that only its own Runtime's nodes may use.
type localOnlyPort struct{ echoPort }

func (*localOnlyPort) LocalOnly() bool { return true }

// Deliver, the entry of messages from other processes, refuses a LocalOnly port (the process
// table) and a sender that claims an address of this Runtime; local nodes still reach the
// port, and an ordinary remote message still arrives.
func TestDeliverRefusesLocalOnlyAndSpoofedSenders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newTestRuntime(t, Config{})
		table := &localOnlyPort{}
		mustDo(t, rt.AddPort("table", func(s Send) Port { table.send = s; return table }))
		mustDo(t, rt.Add("a", "m1", toyFactory("table", nil, 0)))
		mustDo(t, rt.StartAll())

		rt.Deliver("remote", "table", ping{Seq: 1}) // would be answered to "remote": not here
		rt.Deliver("a", "a", ping{Seq: 2})          // a remote sender posing as a
		rt.Deliver("table", "a", pong{Seq: 3})      // a remote sender posing as the table
		synctest.Wait()
		if a := snapshot(t, rt, "a"); len(a.got) != 0 {
			t.Fatalf("a got %v from %v; every message above should have been dropped", a.got, a.from)
		}

		rt.Inject("test", "a", kick{N: 1}) // a local node uses the port as before
		rt.Deliver("remote", "a", pong{Seq: 9})
		synctest.Wait()
		a := snapshot(t, rt, "a")
		if a.count("test.pong") != 2 {
			t.Errorf("a got %v from %v, want the table's pong and the remote pong", a.got, a.from)
		}
	})
}

// After Stop a message to a former port goes nowhere: not to Remote, as if another process
// had the address.
func TestNoRemoteAfterStop(t *testing.T) {
	var mu sync.Mutex
	var remote []node.Addr
	rt := newTestRuntime(t, Config{Remote: func(from, to node.Addr, m node.Msg) {
		mu.Lock()
		defer mu.Unlock()
		remote = append(remote, to)
	}})
	mustDo(t, rt.AddPort("echo", func(s Send) Port { return &echoPort{send: s} }))
	rt.Stop()
	rt.Inject("test", "echo", ping{Seq: 1})
	mu.Lock()
	defer mu.Unlock()
	if len(remote) != 0 {
		t.Errorf("after Stop, Remote got messages for %v", remote)
	}
}
