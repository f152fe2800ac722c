package real

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Config configures a Runtime.
type Config struct {
	// DataDir is the folder that holds every machine's disk: machine M keeps its files under
	// DataDir/M/. Required; created if missing.
	DataDir string
	// Clock drives Env.Now and Env.After. Nil means clock.New(), the wall clock (which inside a
	// testing/synctest bubble is the bubble's fake clock). Tests may pass clock.NewMock().
	Clock clock.Clock
	// Seed is the run seed; each node's random stream is derived from it and the node's
	// address. Zero is a valid seed.
	Seed uint64
	// Logger receives the runtime's and the nodes' logs; each node logs with the attribute
	// node=<addr>. Nil means discard. Must be safe for concurrent use.
	Logger *slog.Logger
	// Observe receives every Env.Observe call with the observing node's address. Nil means
	// observations are ignored. Called from many node goroutines at once: it must be safe for
	// concurrent use and should return quickly, since the node waits for it.
	Observe func(from node.Addr, o node.Observation)
	// Remote, when set, takes every message sent to an address that is neither a node nor a
	// port of this Runtime: the transport to other OS processes (see package transport). Nil
	// means such messages are dropped. Called from many goroutines; must not block.
	Remote func(from, to node.Addr, m node.Msg)
	// Trace, when set, sees every message a node or port of this Runtime sends (Kind "send",
	// when it is sent), every message handed to a local node or port (Kind "deliver", just
	// before the node handles it) and every observation (Kind "observe"), with the clock's
	// time: what a real-mode run records to judge the same histories the simulator judges.
	// Timers are not traced. Called from many goroutines at once; must be quick and safe for
	// concurrent use.
	Trace func(TraceEvent)
}

// TraceEvent is one traced event; see Config.Trace.
type TraceEvent struct {
	At   time.Time
	Kind string // "send", "deliver" or "observe"
	From node.Addr
	To   node.Addr // empty for "observe"
	Msg  node.Msg  // nil for "observe"
	Obs  node.Observation
}

// Validate reports what is wrong with the config: DataDir must be set. The other fields have
// defaults.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("real: Config.DataDir is empty: set it to the folder that should hold the machines' disks")
	}
	return nil
}

// withDefaults fills every nil field with its documented default.
func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = clock.New()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Observe == nil {
		c.Observe = func(node.Addr, node.Observation) {}
	}
	return c
}
