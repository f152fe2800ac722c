package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real"
)

// Defaults of Config.
const (
	DefaultVersionTimeout = 5 * time.Second
	DefaultPollInterval   = 250 * time.Millisecond
	// spawnDedupMax bounds how many spawn answers the table remembers to answer repeats.
	spawnDedupMax = 1024
	portMax       = 65535
)

// Config configures a Table.
type Config struct {
	// StateDir is the folder where the table records the processes it started, so that the
	// table of a restarted hive can list and adopt them. Created if missing. Empty means no
	// records: a later table adopts nothing (fine for tests, not for a hive).
	StateDir string
	// LogDir receives each child's stdout and stderr in LogDir/<addr>.log, appended. Created if
	// missing. Empty means StateDir; when both are empty, children write to this process's
	// stdout and stderr.
	LogDir string
	// Env is extra environment for children ("KEY=VALUE", such as RBEE_API_KEY or RBEE_PEERS),
	// after this process's own; a later entry wins over an earlier one of the same key.
	Env []string
	// ExtraArgs, when set, returns arguments appended to a spawn's command line (runtime flags
	// the core does not know of).
	ExtraArgs func(api.ProcSpawn) []string
	// OnSpawn, when set, is called with the address and port of every process the table starts
	// or adopts, before the spawn is answered: the transport learns the route to it. Called
	// from the table's goroutines; must not block for long.
	OnSpawn func(addr node.Addr, port int)
	// Exit is called once, on a goroutine of its own, when a node of this OS process sends
	// api.ProcExit{Code}: the binary flushes what it must and exits with the code. Nil means
	// the request is logged and ignored.
	Exit func(code int)
	// VersionArgs are the arguments that make a binary print its version. Nil means
	// ["--version"]; an empty non-nil slice means versions are not read (ProcSpawned.Version
	// is then empty).
	VersionArgs []string
	// VersionTimeout bounds the version run; 0 means DefaultVersionTimeout.
	VersionTimeout time.Duration
	// PollInterval is how often adopted processes are checked for their end; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives the table's logs. Nil means discard.
	Logger *slog.Logger
}

// Table is the process table of one OS process: a real.Port (see the package comment).
// Open builds one; Bind hands it to real.Runtime.AddPort.
type Table struct {
	cfg     Config
	log     *slog.Logger
	logDir  string
	lock    *os.File // the StateDir lock, nil without a StateDir
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // spawns in progress and the poller; not the child waiters
	exiting sync.Once

	mu     sync.Mutex
	send   real.Send
	closed bool
	procs  map[int]*child // live processes, own and adopted
	// starting are the spawns in progress, by the port and the address they will hold.
	startingPorts map[int]node.Addr
	startingAddrs map[node.Addr]bool
	spawned       map[spawnKey]*spawnAnswer
	spawnOrder    []spawnKey // oldest first, for eviction
}

type child struct {
	rec     record
	proc    *os.Process // nil for an adopted process
	adopted bool
	// answered is closed once the spawn's answer is sent (own children only).
	answered chan struct{}
}

type spawnKey struct {
	from  node.Addr
	reqID uint64
}

// spawnAnswer is a spawn's answer, or nil while it runs.
type spawnAnswer struct {
	done bool
	r    api.ProcSpawned
}

// New returns the constructor real.Runtime.AddPort wants. When the table cannot be opened
// (StateDir cannot be created or is in use by another table), the error is logged (to
// slog.Default when Logger is nil) and the constructor returns no port, so AddPort fails; use
// Open to get the error itself.
func New(cfg Config) func(real.Send) real.Port {
	return func(send real.Send) real.Port {
		t, err := Open(cfg)
		if err != nil {
			l := cfg.Logger
			if l == nil {
				l = slog.Default() // AddPort only says "no port": the reason must show somewhere
			}
			l.Error("process table not started", "err", err)
			return nil
		}
		return t.Bind(send)
	}
}

func logger(cfg Config) *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Open opens a table: it creates StateDir and LogDir, locks StateDir, and adopts every
// recorded process that still runs (calling OnSpawn for each). Records of processes that are
// gone are removed; unreadable records are renamed to *.corrupt and logged. The table answers
// nothing until Bind.
func Open(cfg Config) (*Table, error) {
	if cfg.VersionArgs == nil {
		cfg.VersionArgs = []string{"--version"}
	}
	if cfg.VersionTimeout <= 0 {
		cfg.VersionTimeout = DefaultVersionTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	t := &Table{cfg: cfg, log: logger(cfg), logDir: cfg.LogDir, procs: map[int]*child{},
		startingPorts: map[int]node.Addr{}, startingAddrs: map[node.Addr]bool{},
		spawned: map[spawnKey]*spawnAnswer{}}
	if t.logDir == "" {
		t.logDir = cfg.StateDir
	}
	if t.logDir != "" {
		if err := os.MkdirAll(t.logDir, 0o755); err != nil {
			return nil, fmt.Errorf("proc: cannot create the log folder %s for worker output: %w; create it or set LogDir to a writable folder", t.logDir, err)
		}
	}
	if cfg.StateDir != "" {
		if err := t.lockStateDir(); err != nil {
			return nil, err
		}
		if err := t.adoptRecorded(); err != nil {
			t.lock.Close()
			return nil, err
		}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

func (t *Table) lockStateDir() error {
	dir := t.cfg.StateDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("proc: cannot create the process state folder %s: %w; create it or set StateDir to a writable folder", dir, err)
	}
	// O_CLOEXEC (Go's default) matters: a child holding the lock would keep it after the
	// table's process died, and the next table could never open.
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("proc: cannot open the lock file of the process state folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "its PID is unknown"
			if h := strings.TrimSpace(string(holder)); h != "" {
				who = "pid " + h
			}
			return fmt.Errorf("proc: the process state folder %s is in use by another process table (%s): two hives on one state folder would adopt each other's workers; stop the other one or give this one its own folder",
				dir, who)
		}
		return fmt.Errorf("proc: cannot lock the process state folder %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	t.lock = f
	return nil
}

// adoptRecorded adopts the recorded processes that still run and forgets the others.
func (t *Table) adoptRecorded() error {
	recs, bad, err := readRecords(t.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("proc: cannot read the process state folder %s: %w", t.cfg.StateDir, err)
	}
	for _, b := range bad {
		t.log.Warn("process table: an unreadable process record was set aside; its process (if any) is not adopted",
			"record", b)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].PID < recs[j].PID })
	for _, r := range recs {
		if _, ok := running(r); !ok {
			t.log.Info("process table: a recorded process is gone (it ended while no table watched it, or its PID now names another process); forgetting it",
				"pid", r.PID, "addr", r.Addr, "binary", r.Binary)
			if err := removeRecord(t.cfg.StateDir, r); err != nil {
				t.log.Warn("process table: cannot remove a stale process record", "pid", r.PID, "err", err)
			}
			continue
		}
		t.procs[r.PID] = &child{rec: r, adopted: true}
		t.log.Info("process table: adopted a running process", "pid", r.PID, "addr", r.Addr, "port", r.Port,
			"binary", r.Binary, "parent", r.Parent)
		if t.cfg.OnSpawn != nil {
			t.cfg.OnSpawn(r.Addr, r.Port)
		}
	}
	return nil
}

// Bind makes t answer through send and returns it as the port: pass t.Bind to
// real.Runtime.AddPort. Call it once.
func (t *Table) Bind(send real.Send) real.Port {
	t.mu.Lock()
	if t.send != nil {
		t.mu.Unlock()
		panic("proc: Table.Bind called twice")
	}
	t.send = send
	t.mu.Unlock()
	t.wg.Add(1)
	go t.poll()
	return t
}

// Term sends api.ProcTerm to the node at to, from the table's address: what the OS process's
// SIGTERM means to its node (see NotifyTerm). It does nothing before Bind or after Close.
func (t *Table) Term(to node.Addr) {
	t.emit(to, api.ProcTerm{})
}

// emit sends m unless the table is closed or not bound.
func (t *Table) emit(to node.Addr, m node.Msg) {
	t.mu.Lock()
	send, closed := t.send, t.closed
	t.mu.Unlock()
	if send != nil && !closed && to != "" {
		send(to, m)
	}
}

// Deliver implements real.Port.
func (t *Table) Deliver(from node.Addr, m node.Msg) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		t.log.Debug("process table closed: message dropped", "from", from, "msg", m.MsgName())
		return
	}
	switch m := m.(type) {
	case api.ProcSpawn:
		t.handleSpawn(from, m)
	case api.ProcSignal:
		t.handleSignal(from, m)
	case api.ProcListReq:
		t.checkAdopted()
		t.emit(from, api.ProcListResp{ReqID: m.ReqID, Procs: t.List()})
	case api.ProcExit:
		t.handleExit(from, m)
	default:
		t.log.Warn("process table: unexpected message dropped", "from", from, "msg", m.MsgName())
	}
}

// List returns the live processes, own and adopted, sorted by PID.
func (t *Table) List() []api.ProcInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]api.ProcInfo, 0, len(t.procs))
	for _, c := range t.procs { //det:sorted
		out = append(out, api.ProcInfo{PID: c.rec.PID, Binary: c.rec.Binary, Port: c.rec.Port, Addr: c.rec.Addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

func (t *Table) handleExit(from node.Addr, m api.ProcExit) {
	if t.cfg.Exit == nil {
		t.log.Warn("process table: asked to exit, but no Exit is configured; ignored", "from", from, "code", m.Code)
		return
	}
	t.exiting.Do(func() {
		t.log.Info("process table: exiting as asked", "from", from, "code", m.Code)
		go t.cfg.Exit(m.Code)
	})
}

func (t *Table) handleSignal(from node.Addr, m api.ProcSignal) {
	sig, ok := signals[m.Signal]
	if !ok {
		t.log.Warn("process table: unknown signal dropped", "from", from, "pid", m.PID, "signal", m.Signal)
		return
	}
	t.mu.Lock()
	c := t.procs[m.PID]
	t.mu.Unlock()
	if c == nil {
		t.log.Debug("process table: signal for no live process of this table (ESRCH)", "from", from, "pid", m.PID,
			"signal", m.Signal)
		return
	}
	var err error
	if c.proc != nil {
		// os.Process.Signal goes through a pidfd: it cannot hit another process that reused
		// the PID after the child was reaped.
		err = c.proc.Signal(sig)
	} else {
		if _, alive := running(c.rec); !alive {
			t.log.Debug("process table: signal for an adopted process that is gone", "pid", m.PID, "signal", m.Signal)
			t.checkAdopted()
			return
		}
		err = syscall.Kill(c.rec.PID, sig)
	}
	if groupSignals[sig] {
		// The child leads its own group (Setpgid): its group ID is its PID, which the kernel
		// does not hand out again while any member of the group lives.
		if gerr := syscall.Kill(-c.rec.PID, sig); err != nil && gerr == nil {
			err = nil
		}
	}
	if err != nil {
		t.log.Debug("process table: signal not delivered (the process is ending)", "pid", m.PID, "signal", m.Signal, "err", err)
		return
	}
	t.log.Info("process table: signal sent", "from", from, "pid", m.PID, "addr", c.rec.Addr, "signal", m.Signal)
}

// LocalOnly implements real.LocalOnly: only the nodes of the table's own process may spawn
// or signal processes through it, never a message from another process.
func (t *Table) LocalOnly() bool { return true }

// Close implements real.Port: it stops the poller, waits for spawns in progress, and releases
// StateDir. It does not stop children: they run on, and the next table adopts them. Their
// waiters keep reaping them after Close, silently.
func (t *Table) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	if t.cancel != nil {
		t.cancel()
	}
	t.wg.Wait()
	if t.lock != nil {
		return t.lock.Close() // releases the flock
	}
	return nil
}

// poll watches the adopted processes until Close.
func (t *Table) poll() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			t.checkAdopted()
		}
	}
}

// checkAdopted reports the end of every adopted process that is gone.
func (t *Table) checkAdopted() {
	t.mu.Lock()
	var adopted []*child
	for _, c := range t.procs { //det:sorted (sorted below)
		if c.adopted {
			adopted = append(adopted, c)
		}
	}
	t.mu.Unlock()
	sort.Slice(adopted, func(i, j int) bool { return adopted[i].rec.PID < adopted[j].rec.PID })
	for _, c := range adopted {
		st, alive := running(c.rec)
		if alive {
			continue
		}
		exited := api.ProcExited{PID: c.rec.PID, Code: -1}
		if st.StartTicks == c.rec.StartTicks && st.PPID == os.Getpid() {
			// A zombie whose parent is this very process (a table reopened inside the process
			// that spawned it): reap it, and its real status is known. Its old waiter, if one
			// runs, then gets ECHILD, which it ignores.
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(c.rec.PID, &ws, syscall.WNOHANG, nil); err == nil && pid == c.rec.PID {
				exited = exitedOf(c.rec.PID, ws)
			}
		}
		t.ended(c, exited)
	}
}

// ended removes a process that ended and tells its parent, once.
func (t *Table) ended(c *child, exited api.ProcExited) {
	t.mu.Lock()
	if t.procs[c.rec.PID] != c {
		t.mu.Unlock()
		return // reported already
	}
	delete(t.procs, c.rec.PID)
	t.mu.Unlock()
	if t.cfg.StateDir != "" {
		if err := removeRecord(t.cfg.StateDir, c.rec); err != nil {
			t.log.Warn("process table: cannot remove the record of an ended process; the next table will find it gone",
				"pid", c.rec.PID, "err", err)
		}
	}
	how := "code " + strconv.Itoa(exited.Code)
	if exited.Signal != "" {
		how = "signal " + exited.Signal
	} else if exited.Code == -1 && c.adopted {
		how = "unknown status (adopted: only its parent could read it)"
	}
	t.log.Info("process table: process ended", "pid", c.rec.PID, "addr", c.rec.Addr, "how", how,
		"log", c.rec.Log)
	t.emit(c.rec.Parent, exited)
}

// exitedOf turns a wait status into ProcExited: the signal that killed the process (Code 0, as
// in the simulator), or its exit code.
func exitedOf(pid int, ws syscall.WaitStatus) api.ProcExited {
	if ws.Signaled() {
		return api.ProcExited{PID: pid, Signal: SignalName(ws.Signal())}
	}
	return api.ProcExited{PID: pid, Code: ws.ExitStatus()}
}
