package sim

import (
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// bulk is a large message: 1 MB on the wire.
type bulk struct{ N int }

func (bulk) MsgName() string { return "test.bulk" }
func (bulk) WireSize() int   { return 1_000_000 }

// sendAll makes the node that receives it send msgs to "dst".
type sendAll struct{ msgs []node.Msg }

func (sendAll) MsgName() string { return "test.send_all" }

// arrivals records when each message reached it, by message name.
type arrivals struct {
	s  *Sim
	at map[string][]time.Duration
}

func (a *arrivals) Start(node.Env) {}
func (a *arrivals) Handle(env node.Env, _ node.Addr, m node.Msg) {
	if c, ok := m.(sendAll); ok {
		for _, m := range c.msgs {
			env.Send("dst", m)
		}
		return
	}
	a.at[m.MsgName()] = append(a.at[m.MsgName()], a.s.Now())
}

// downlinkRig: "src" on machine m1 and "near" on machine m2 send to "dst" on m2, whose
// downlink carries 10 MB/s; every link has 1 ms latency.
func downlinkRig() (*Sim, *arrivals) {
	s := New(Options{Seed: 1})
	s.Network().SetDefault(LinkConfig{Latency: time.Millisecond})
	s.Network().SetDownlink("m2", 10_000_000)
	dst := &arrivals{s: s, at: map[string][]time.Duration{}}
	s.Add("dst", "m2", 0, func() node.Node { return dst })
	s.Add("src", "m1", 0, func() node.Node { return &arrivals{s: s, at: map[string][]time.Duration{}} })
	s.Add("near", "m2", 0, func() node.Node { return &arrivals{s: s, at: map[string][]time.Duration{}} })
	return s, dst
}

// TestDownlinkQueuesMessagesBehindBulkTraffic: ten 1 MB messages take 100 ms each on a 10 MB/s
// downlink, one after another; a control message sent after them waits behind all ten; a
// message from a process of the same machine does not cross the downlink.
func TestDownlinkQueuesMessagesBehindBulkTraffic(t *testing.T) {
	s, dst := downlinkRig()
	s.At(time.Second, "send", func() {
		var msgs []node.Msg
		for i := range 10 {
			msgs = append(msgs, bulk{i})
		}
		s.Inject("test", "src", sendAll{append(msgs, ping{1})})
		s.Inject("test", "near", sendAll{[]node.Msg{tick{}}})
	})
	s.Run(time.Minute)
	bulks := dst.at["test.bulk"]
	if len(bulks) != 10 {
		t.Fatalf("got %d bulk messages, want 10", len(bulks))
	}
	for i, at := range bulks {
		want := time.Second + time.Millisecond + time.Duration(i+1)*100*time.Millisecond
		if at != want {
			t.Fatalf("bulk %d arrived at %v, want %v (1 ms latency, then 100 ms per MB queued)", i, at, want)
		}
	}
	wantPing := bulks[9] + time.Duration(float64(DefaultWireSize)/10e6*float64(time.Second))
	if got := dst.at["test.ping"]; len(got) != 1 || got[0] != wantPing {
		t.Fatalf("control message arrived at %v, want %v: behind the bulk traffic", got, wantPing)
	}
	if got := dst.at["test.tick"]; len(got) != 1 || got[0] != time.Second+time.Millisecond {
		t.Fatalf("same-machine message arrived at %v, want %v: it must not cross the downlink", got, time.Second+time.Millisecond)
	}
	st := s.Network().Downlink("m2")
	if st.Bytes != 10_000_000+DefaultWireSize || st.MaxWait != time.Second || st.MaxControlWait != time.Second ||
		st.ControlWaitAt != time.Second+time.Millisecond {
		t.Fatalf("downlink stats %+v; want %d bytes, the control message waiting 1s from 1.001s", st, 10_000_000+DefaultWireSize)
	}
}

// TestDownlinkIdleAddsOnlyTransmissionTime: messages spaced out never queue.
func TestDownlinkIdleAddsOnlyTransmissionTime(t *testing.T) {
	s, dst := downlinkRig()
	for i := range 3 {
		s.At(time.Duration(i+1)*time.Second, "send", func() { s.Inject("test", "src", sendAll{[]node.Msg{bulk{i}}}) })
	}
	s.Run(time.Minute)
	for i, at := range dst.at["test.bulk"] {
		if want := time.Duration(i+1)*time.Second + 101*time.Millisecond; at != want {
			t.Fatalf("bulk %d arrived at %v, want %v", i, at, want)
		}
	}
	if st := s.Network().Downlink("m2"); st.MaxWait != 0 {
		t.Fatalf("spaced messages waited %v in the queue, want 0", st.MaxWait)
	}
}

// TestDownlinkServesInArrivalOrder: the link serves messages in the order they reach it, not
// the order they were sent: a bulk message delayed on its way does not hold up a control
// message that reaches the link first.
func TestDownlinkServesInArrivalOrder(t *testing.T) {
	s, dst := downlinkRig()
	s.Network().SetLink("src", "dst", LinkConfig{Latency: 500 * time.Millisecond})
	s.At(time.Second, "send bulk", func() { s.Inject("test", "src", sendAll{[]node.Msg{bulk{1}}}) })
	s.At(1100*time.Millisecond, "send ping", func() {
		s.Network().SetLink("src", "dst", LinkConfig{Latency: time.Millisecond})
		s.Inject("test", "src", sendAll{[]node.Msg{ping{1}}})
	})
	s.Run(time.Minute)
	wantPing := 1101*time.Millisecond + time.Duration(float64(DefaultWireSize)/10e6*float64(time.Second))
	if got := dst.at["test.ping"]; len(got) != 1 || got[0] != wantPing {
		t.Fatalf("ping arrived at %v, want %v: it reached the idle link before the delayed bulk", got, wantPing)
	}
	if got := dst.at["test.bulk"]; len(got) != 1 || got[0] != 1600*time.Millisecond {
		t.Fatalf("bulk arrived at %v, want 1.6s", got)
	}
}

// TestStreamResetTellsTheSender: a message on a stream link that finds its target crashed
// tells the sender node.PeerGone, once per incarnation of the target; a plain link says
// nothing.
func TestStreamResetTellsTheSender(t *testing.T) {
	s, _ := downlinkRig()
	s.Network().SetDownlink("m2", 0)
	s.Network().SetLink("src", "dst", LinkConfig{Latency: time.Millisecond, Stream: true})
	s.At(time.Second, "crash dst", func() { s.Crash("dst") })
	for i := range 3 {
		s.At(2*time.Second+time.Duration(i)*time.Millisecond, "send", func() { s.Inject("test", "src", sendAll{[]node.Msg{ping{i}}}) })
		s.At(2*time.Second+time.Duration(i)*time.Millisecond, "send near", func() { s.Inject("test", "near", sendAll{[]node.Msg{ping{i}}}) })
	}
	s.Run(time.Minute)
	if got := s.Node("src").(*arrivals).at["node.peer_gone"]; len(got) != 1 || got[0] != 2*time.Second+2*time.Millisecond {
		t.Fatalf("src was told %v, want one PeerGone at 2.002s (one per incarnation)", got)
	}
	if got := s.Node("near").(*arrivals).at["node.peer_gone"]; len(got) != 0 {
		t.Fatalf("a plain link told near %v, want nothing", got)
	}
}
