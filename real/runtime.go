package real

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Errors of the Runtime's control methods; match them with errors.Is.
var (
	// ErrUnknownNode: the address was never added.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNodeDown: the node is not running (never started, or crashed).
	ErrNodeDown = errors.New("node is down")
	// ErrNodeRunning: the node is already running.
	ErrNodeRunning = errors.New("node is already running")
	// ErrStopped: the Runtime was stopped.
	ErrStopped = errors.New("runtime is stopped")
)

// Runtime runs a set of nodes, each on its own goroutine. Its methods are safe for concurrent
// use. The zero value is not usable; call New.
type Runtime struct {
	cfg Config

	mu      sync.Mutex
	procs   map[node.Addr]*proc
	ports   map[node.Addr]Port
	disks   map[string]*OSDisk // by machine
	stopped bool
}

// proc is an added node: what survives its crashes.
type proc struct {
	addr         node.Addr
	machine      string
	factory      func() node.Node
	disk         *OSDisk
	incarnations uint64       // how many times it was started
	live         *incarnation // nil while down
}

// New returns a Runtime with no nodes. It validates cfg, fills in its defaults and creates
// cfg.DataDir.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("real: cannot create the data folder: %w", err)
	}
	return &Runtime{
		cfg:   cfg.withDefaults(),
		procs: map[node.Addr]*proc{},
		ports: map[node.Addr]Port{},
		disks: map[string]*OSDisk{},
	}, nil
}

// Add registers a node at addr, down until Start. factory builds a fresh Node for each
// incarnation. Nodes with the same machine share one Disk, the folder DataDir/<machine>/;
// machine must be a plain folder name (no '/', not "." or "..").
func (rt *Runtime) Add(addr node.Addr, machine string, factory func() node.Node) error {
	if addr == "" || factory == nil {
		return fmt.Errorf("real: Add(%q, %q): the address and the factory are required", addr, machine)
	}
	if machine == "" || machine == "." || machine == ".." || filepath.Base(machine) != machine {
		return fmt.Errorf("real: Add(%q, %q): the machine name must be a plain folder name", addr, machine)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopped {
		return fmt.Errorf("real: Add(%q): %w", addr, ErrStopped)
	}
	if _, ok := rt.procs[addr]; ok {
		return fmt.Errorf("real: Add(%q): the address is already taken", addr)
	}
	if _, ok := rt.ports[addr]; ok {
		return fmt.Errorf("real: Add(%q): the address is already taken by a port", addr)
	}
	disk, err := rt.diskLocked(machine)
	if err != nil {
		return fmt.Errorf("real: Add(%q): %w", addr, err)
	}
	rt.procs[addr] = &proc{addr: addr, machine: machine, factory: factory, disk: disk}
	return nil
}

// diskLocked returns the machine's disk, creating it on first use. rt.mu must be held.
func (rt *Runtime) diskLocked(machine string) (*OSDisk, error) {
	if d, ok := rt.disks[machine]; ok {
		return d, nil
	}
	d, err := NewOSDisk(filepath.Join(rt.cfg.DataDir, machine))
	if err != nil {
		return nil, err
	}
	rt.disks[machine] = d
	return d, nil
}

// Start boots the node at addr: a new Node from its factory, whose Start runs on the node's
// own goroutine before any message.
func (rt *Runtime) Start(addr node.Addr) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopped {
		return fmt.Errorf("real: Start(%q): %w", addr, ErrStopped)
	}
	p, ok := rt.procs[addr]
	if !ok {
		return fmt.Errorf("real: Start(%q): %w", addr, ErrUnknownNode)
	}
	if p.live != nil {
		return fmt.Errorf("real: Start(%q): %w", addr, ErrNodeRunning)
	}
	p.incarnations++
	p.live = newIncarnation(rt, p)
	go p.live.run(p.factory)
	return nil
}

// StartAll starts every node that is down, in address order.
func (rt *Runtime) StartAll() error {
	var errs []error
	for _, addr := range rt.addrs() {
		if err := rt.Start(addr); err != nil && !errors.Is(err, ErrNodeRunning) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addrs returns every added address, sorted.
func (rt *Runtime) addrs() []node.Addr {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	addrs := make([]node.Addr, 0, len(rt.procs))
	for a := range rt.procs {
		addrs = append(addrs, a)
	}
	sortAddrs(addrs)
	return addrs
}

func sortAddrs(a []node.Addr) { slices.Sort(a) }

// Crash kills the node at addr as a process crash would: its goroutine stops, its mailbox and
// undelivered messages are dropped, its timers are stopped and the Node value is thrown away.
// A message already being handled finishes first; Crash returns after it has. Files written
// to the Disk stay (the OS keeps unsynced writes too: a process crash is not a power failure).
func (rt *Runtime) Crash(addr node.Addr) error {
	rt.mu.Lock()
	p, ok := rt.procs[addr]
	var inc *incarnation
	if ok {
		inc, p.live = p.live, nil
	}
	rt.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("real: Crash(%q): %w", addr, ErrUnknownNode)
	case inc == nil:
		return fmt.Errorf("real: Crash(%q): %w", addr, ErrNodeDown)
	}
	inc.kill()
	<-inc.dead
	return nil
}

// Restart crashes the node at addr if it is running, then starts a new incarnation from its
// factory on the same disk.
func (rt *Runtime) Restart(addr node.Addr) error {
	if err := rt.Crash(addr); err != nil && !errors.Is(err, ErrNodeDown) {
		return err
	}
	return rt.Start(addr)
}

// Stop crashes every running node and waits for their goroutines to exit. Later calls to
// Start fail with ErrStopped. Stop is idempotent.
func (rt *Runtime) Stop() {
	rt.mu.Lock()
	rt.stopped = true
	var live []*incarnation
	for _, p := range rt.procs {
		if p.live != nil {
			live = append(live, p.live)
			p.live = nil
		}
	}
	ports := rt.ports
	rt.ports = map[node.Addr]Port{}
	rt.mu.Unlock()
	for _, inc := range live {
		inc.kill()
	}
	for _, inc := range live {
		<-inc.dead
	}
	for _, p := range ports {
		if p != nil {
			p.Close()
		}
	}
}

// Inject delivers m to the node at to as if from sent it: for tests and the CLI. Like any
// send, it is dropped if to is unknown or down.
func (rt *Runtime) Inject(from, to node.Addr, m node.Msg) {
	rt.deliver(from, to, m)
}

// Deliver hands m to the node or port at to as if from sent it: what a transport calls for
// a message that came in from another OS process. Like any send it is dropped if to is down.
// It is also dropped, with a warning, when from is an address of this Runtime (another
// process cannot speak for a node or port of this one) or when to is a port that is
// LocalOnly (the process table: a remote message must never spawn or signal programs here).
func (rt *Runtime) Deliver(from, to node.Addr, m node.Msg) {
	rt.mu.Lock()
	_, fromNode := rt.procs[from]
	_, fromPort := rt.ports[from]
	lo, _ := rt.ports[to].(LocalOnly)
	rt.mu.Unlock()
	switch {
	case fromNode || fromPort:
		rt.cfg.Logger.Warn("message from another process dropped: it claims to come from an address of this process",
			"from", from, "to", to, "msg", msgName(m),
			"fix", "give every component its own address; if no other process should run "+string(from)+", someone who holds the cluster's key is spoofing it")
		return
	case lo != nil && lo.LocalOnly():
		rt.cfg.Logger.Warn("message from another process dropped: its destination takes messages from this process only",
			"from", from, "to", to, "msg", msgName(m),
			"fix", "only the nodes of this process may use "+string(to)+"; if no component of yours sent this, someone who holds the cluster's key is probing it")
		return
	}
	rt.deliver(from, to, m)
}

// send is a send by a local node or port: traced, then delivered.
func (rt *Runtime) send(from, to node.Addr, m node.Msg) {
	if tr := rt.cfg.Trace; tr != nil {
		tr(TraceEvent{At: rt.cfg.Clock.Now(), Kind: "send", From: from, To: to, Msg: m})
	}
	rt.deliver(from, to, m)
}

// deliver puts m into to's mailbox or hands it to the port at to; an address this Runtime
// does not have goes to Config.Remote; otherwise (down, stopped, or unknown without Remote)
// m is dropped with a debug log.
func (rt *Runtime) deliver(from, to node.Addr, m node.Msg) {
	rt.mu.Lock()
	p, isNode := rt.procs[to]
	var inc *incarnation
	if isNode {
		inc = p.live
	}
	port, isPort := rt.ports[to]
	stopped := rt.stopped
	rt.mu.Unlock()
	switch {
	case stopped:
		// Stop emptied the ports: a message to one of them must not go to Remote as if its
		// address were another process's.
	case inc != nil:
		if inc.box.push(envelope{from: from, msg: m}) {
			return
		}
	case isPort && port != nil:
		if tr := rt.cfg.Trace; tr != nil {
			tr(TraceEvent{At: rt.cfg.Clock.Now(), Kind: "deliver", From: from, To: to, Msg: m})
		}
		port.Deliver(from, m)
		return
	case !isNode && !isPort && rt.cfg.Remote != nil:
		rt.cfg.Remote(from, to, m)
		return
	}
	rt.cfg.Logger.Debug("message dropped: the receiver is unknown or down",
		"from", from, "to", to, "msg", msgName(m))
}

// live returns the running incarnation at addr, or nil.
func (rt *Runtime) live(addr node.Addr) *incarnation {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if p, ok := rt.procs[addr]; ok {
		return p.live
	}
	return nil
}

// Inspect runs f with the node at addr on the node's own goroutine, between two messages, and
// waits for it, so that f may read (or, in tests, change) the node's state without a race.
// It fails if the node is unknown or down, or crashes before f could run. f must not call
// Crash, Restart or Stop.
func (rt *Runtime) Inspect(addr node.Addr, f func(n node.Node)) error {
	inc := rt.live(addr)
	if inc == nil {
		return fmt.Errorf("real: Inspect(%q): %w", addr, ErrNodeDown)
	}
	done := make(chan struct{})
	if !inc.box.push(envelope{inspect: f, done: done}) {
		return fmt.Errorf("real: Inspect(%q): %w", addr, ErrNodeDown)
	}
	select {
	case <-done:
		return nil
	case <-inc.dead:
	}
	select {
	case <-done: // f ran just before the crash
		return nil
	default:
		return fmt.Errorf("real: Inspect(%q): the node crashed first: %w", addr, ErrNodeDown)
	}
}

// msgName names m for logs, nil included.
func msgName(m node.Msg) string {
	if m == nil {
		return "<nil>"
	}
	return m.MsgName()
}
