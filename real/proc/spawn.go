package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// handleSpawn answers a repeat, or starts the spawn on a goroutine of its own.
func (t *Table) handleSpawn(from node.Addr, m api.ProcSpawn) {
	key := spawnKey{from, m.ReqID}
	t.mu.Lock()
	if a, ok := t.spawned[key]; ok {
		done, r := a.done, a.r
		t.mu.Unlock()
		if done {
			t.emit(from, r) // a retry: the same answer, nothing spawned twice
		}
		return // still starting: its answer is on its way
	}
	a := &spawnAnswer{}
	t.spawned[key] = a
	t.spawnOrder = append(t.spawnOrder, key)
	if len(t.spawnOrder) > spawnDedupMax {
		delete(t.spawned, t.spawnOrder[0])
		t.spawnOrder = t.spawnOrder[1:]
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		r, c := t.spawn(from, m)
		t.mu.Lock()
		a.done, a.r = true, r
		t.mu.Unlock()
		t.emit(from, r)
		if c != nil {
			close(c.answered) // its exit may be reported now
		}
		if !r.Err.OK() {
			t.log.Warn("process table: spawn refused", "from", from, "binary", m.Binary, "addr", m.Addr, "port", m.Port,
				"code", r.Err.Code, "message", r.Err.Message, "suggestion", r.Err.Suggestion)
		}
	}()
}

// spawn runs one ProcSpawn and returns its answer and the started child, if any. A started
// child is live in t.procs, recorded, and reaped by its waiter, which reports its end once the
// caller closes c.answered.
func (t *Table) spawn(parent node.Addr, m api.ProcSpawn) (r api.ProcSpawned, c *child) {
	r.ReqID = m.ReqID
	if m.Addr == "" || m.Port < 0 || m.Port > portMax {
		r.Err = api.Errorf(api.CodeInvalidRequest, "give an address and a port from 0 to 65535",
			"cannot spawn %s at address %q, port %d", m.Binary, m.Addr, m.Port)
		return r, nil
	}
	path, err := resolve(m.Binary)
	if err != nil {
		r.Err = *err
		return r, nil
	}
	if e := t.reserve(m); e != nil {
		r.Err = *e
		return r, nil
	}
	defer t.release(m)
	if e := portFree(m.Port); e != nil {
		r.Err = *e
		return r, nil
	}
	version, verr := t.version(path, m.Binary)
	if verr != nil {
		r.Err = *verr
		return r, nil
	}
	if t.ctx.Err() != nil {
		r.Err = api.Errorf(api.CodeUnavailable, "send the spawn to the new process table once it is up",
			"the process table closed before %s could be started", m.Binary)
		return r, nil
	}
	c, e := t.start(parent, m, path)
	if e != nil {
		r.Err = *e
		return r, nil
	}
	r.PID, r.Version = c.rec.PID, version
	return r, c
}

// resolve finds the binary: a name is looked up on PATH, a path is checked.
func resolve(binary string) (string, *api.Error) {
	if binary == "" {
		e := api.Errorf(api.CodeBinaryMissing, "give the name or the path of the program to run",
			"cannot spawn: no binary named")
		return "", &e
	}
	path, err := exec.LookPath(binary)
	if err == nil {
		if abs, aerr := filepath.Abs(path); aerr == nil {
			path = abs
		}
		return path, nil
	}
	switch {
	case errors.Is(err, fs.ErrPermission):
		e := api.Errorf(api.CodeBinaryMissing, "make it executable (chmod +x "+binary+") or point to the right file",
			"cannot spawn %s: the file exists but is not executable (%v)", binary, err)
		return "", &e
	case strings.ContainsRune(binary, '/'):
		e := api.Errorf(api.CodeBinaryMissing, "install "+filepath.Base(binary)+" there, or fix the path",
			"cannot spawn %s: no such file (%v)", binary, err)
		return "", &e
	default:
		e := api.Errorf(api.CodeBinaryMissing, "install "+binary+" on PATH, or give its full path",
			"cannot spawn %s: it is not on PATH (%s)", binary, os.Getenv("PATH"))
		return "", &e
	}
}

// reserve claims m's port and address against the table's other processes, live or starting.
func (t *Table) reserve(m api.ProcSpawn) *api.Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.procs { //det:sorted (at most one can match each check)
		if m.Port != 0 && c.rec.Port == m.Port {
			e := api.Errorf(api.CodePortInUse, "choose another port, or stop the process that holds it",
				"port %d is in use by pid %d (%s at %s)", m.Port, c.rec.PID, c.rec.Binary, c.rec.Addr)
			return &e
		}
		if c.rec.Addr == m.Addr {
			e := api.Errorf(api.CodePortInUse, "choose another address, or stop the process that holds it",
				"address %s is in use by pid %d (%s, port %d)", m.Addr, c.rec.PID, c.rec.Binary, c.rec.Port)
			return &e
		}
	}
	if a, ok := t.startingPorts[m.Port]; ok && m.Port != 0 {
		e := api.Errorf(api.CodePortInUse, "choose another port",
			"port %d is taken by %s, which is being started", m.Port, a)
		return &e
	}
	if t.startingAddrs[m.Addr] {
		e := api.Errorf(api.CodePortInUse, "choose another address",
			"address %s is taken by a process being started", m.Addr)
		return &e
	}
	if m.Port != 0 {
		t.startingPorts[m.Port] = m.Addr
	}
	t.startingAddrs[m.Addr] = true
	return nil
}

func (t *Table) release(m api.ProcSpawn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.Port != 0 && t.startingPorts[m.Port] == m.Addr {
		delete(t.startingPorts, m.Port)
	}
	delete(t.startingAddrs, m.Addr)
}

// portFree checks that nothing listens on 127.0.0.1:port by binding it for a moment (port 0 is
// no port). Anything else that stops the bind is reported too: the child would meet it.
func portFree(port int) *api.Error {
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		e := api.Errorf(api.CodePortInUse,
			fmt.Sprintf("choose another port, or stop the process that holds it (see: ss -ltnp 'sport = :%d')", port),
			"port %d on 127.0.0.1 is already in use by another program", port)
		return &e
	}
	e := api.Errorf(api.CodePortInUse, "choose another port (one from 1024 up needs no privileges)",
		"port %d on 127.0.0.1 cannot be bound: %v", port, err)
	return &e
}

// version runs the binary with VersionArgs and returns the first non-empty line it prints
// (stdout first, then stderr).
func (t *Table) version(path, binary string) (string, *api.Error) {
	if len(t.cfg.VersionArgs) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.VersionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, t.cfg.VersionArgs...)
	cmd.Env = t.env()
	cmd.WaitDelay = time.Second // a grandchild holding the pipes does not hold us
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	command := binary + " " + strings.Join(t.cfg.VersionArgs, " ")
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		e := api.Errorf(api.CodeVersionMismatch, "check that "+binary+" is the rbee binary it should be and that it starts; run `"+command+"` by hand",
			"cannot read the version of %s: `%s` did not finish within %v", binary, command, t.cfg.VersionTimeout)
		return "", &e
	case err != nil:
		e := api.Errorf(api.CodeVersionMismatch, "check that "+binary+" is the rbee binary it should be; run `"+command+"` by hand",
			"cannot read the version of %s: `%s` failed: %v%s", binary, command, err, tail(stderr.String(), stdout.String()))
		return "", &e
	}
	v := firstLine(stdout.String())
	if v == "" {
		v = firstLine(stderr.String())
	}
	if v == "" {
		e := api.Errorf(api.CodeVersionMismatch, "check that "+binary+" is the rbee binary it should be; run `"+command+"` by hand",
			"cannot read the version of %s: `%s` printed nothing", binary, command)
		return "", &e
	}
	return v, nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// tail is the end of a failed command's output, for an error message.
func tail(outs ...string) string {
	for _, o := range outs {
		if o = strings.TrimSpace(o); o != "" {
			if len(o) > 400 {
				o = "..." + o[len(o)-400:]
			}
			return "; it printed: " + o
		}
	}
	return ""
}

func (t *Table) env() []string {
	return append(os.Environ(), t.cfg.Env...)
}

// start starts the child, records it, and starts its waiter.
func (t *Table) start(parent node.Addr, m api.ProcSpawn, path string) (*child, *api.Error) {
	args := append([]string(nil), m.Args...)
	if m.Port != 0 && !hasFlag(args, "port") {
		args = append(args, "--port", strconv.Itoa(m.Port))
	}
	if t.cfg.ExtraArgs != nil {
		args = append(args, t.cfg.ExtraArgs(m)...)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = t.env()
	// Its own process group: a Ctrl-C or a SIGTERM to the hive's group does not reach it, and
	// KILL can reach its own children through the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logPath string
	if t.logDir != "" {
		logPath = filepath.Join(t.logDir, logName(m.Addr))
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			e := api.Errorf(api.CodeUnavailable, "make "+t.logDir+" writable, or set LogDir to a writable folder",
				"cannot spawn %s: cannot open its log file %s: %v", m.Binary, logPath, err)
			return nil, &e
		}
		defer f.Close() // the child has its own copy of the descriptor once started
		fmt.Fprintf(f, "=== %s process table pid %d starting %s %s (addr %s, port %d)\n",
			time.Now().Format(time.RFC3339), os.Getpid(), path, strings.Join(args, " "), m.Addr, m.Port)
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		e := api.Errorf(api.CodeBinaryMissing, "check that "+path+" is a program for this machine and is executable",
			"cannot start %s (%s): %v", m.Binary, path, err)
		return nil, &e
	}
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		// It ended already and was not reaped yet; a stat must exist. Fall back to no guard
		// rather than lose the child: the waiter reports its end.
		t.log.Warn("process table: cannot read the start time of a new process", "pid", pid, "err", err)
	}
	rec := record{PID: pid, Binary: m.Binary, Path: path, Args: args, Port: m.Port, Addr: m.Addr,
		Parent: parent, Started: time.Now(), StartTicks: st.StartTicks, Log: logPath}
	if t.cfg.StateDir != "" && rec.StartTicks != 0 {
		if err := writeRecord(t.cfg.StateDir, rec); err != nil {
			t.log.Warn("process table: cannot record a new process; a restarted hive will not adopt it",
				"pid", pid, "dir", t.cfg.StateDir, "err", err)
		}
	}
	c := &child{rec: rec, proc: cmd.Process, answered: make(chan struct{})}
	t.mu.Lock()
	t.procs[pid] = c
	t.mu.Unlock()
	t.log.Info("process table: process started", "pid", pid, "binary", m.Binary, "addr", m.Addr, "port", m.Port,
		"parent", parent, "log", logPath)
	if t.cfg.OnSpawn != nil {
		t.cfg.OnSpawn(m.Addr, m.Port)
	}
	go t.wait(c, cmd)
	return c, nil
}

// wait reaps the child and reports its end. It runs until the child ends, after Close too.
func (t *Table) wait(c *child, cmd *exec.Cmd) {
	err := cmd.Wait()
	var exited api.ProcExited
	switch {
	case cmd.ProcessState != nil:
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		exited = exitedOf(c.rec.PID, ws)
	default:
		// Someone else reaped it (a table reopened in this process): the status is lost.
		t.log.Debug("process table: a child was reaped elsewhere", "pid", c.rec.PID, "err", err)
		exited = api.ProcExited{PID: c.rec.PID, Code: -1}
	}
	<-c.answered // ProcSpawned goes first
	t.ended(c, exited)
}

// hasFlag reports whether args already carry --name (or -name, with or without =value).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// logName is the log file of the process at addr: the address with anything but letters,
// digits, '.', '-', '_' and '@' replaced by '_'.
func logName(addr node.Addr) string {
	b := []byte(addr)
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '.' || ch == '-' || ch == '_' || ch == '@'
		if !ok {
			b[i] = '_'
		}
	}
	s := string(b)
	if strings.Trim(s, ".") == "" {
		s = "_" + s
	}
	return s + ".log"
}
