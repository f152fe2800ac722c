// Package cluster runs rbee binaries as a cluster of OS processes on this machine, for
// real-mode runs and tests: it builds the binaries, gives each process a free port, a data
// folder, a log file and a history file, waits until each answers, and kills, pauses,
// resumes, stops and restarts them.
//
// Every process listens on 127.0.0.1. Logs are appended (a restarted process adds to its
// log), so nothing a process said before a crash is lost.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries the cluster runs, by name.
const (
	Queen  = "queen-rbee"
	Hive   = "rbee-hive"
	Worker = "llm-worker-rbee"
	Keeper = "rbee-keeper"
)

// Bins is a folder that holds the built binaries.
type Bins struct{ Dir string }

// Path is the path of the named binary.
func (b Bins) Path(name string) string { return filepath.Join(b.Dir, name) }

// Build compiles the four rbee binaries from the module at root into dir, with the go tool
// on PATH. Go's build cache makes a second build cheap.
func Build(ctx context.Context, root, dir string) (Bins, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Bins{}, err
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, n := range []string{Queen, Hive, Worker, Keeper} {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Bins{}, fmt.Errorf("cluster: building the rbee binaries failed: %v\n%s", err, out)
	}
	return Bins{Dir: dir}, nil
}

// ModuleRoot finds the module root (the folder with go.mod) at or above dir.
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("cluster: no go.mod at or above %s: run from inside the rbee-sim repository", dir)
		}
		d = parent
	}
}

// FreePort asks the OS for a free TCP port on 127.0.0.1. Another process may take it before it
// is used; Proc.Start reports that clearly.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is one process of the cluster: what it runs and, while it runs, its command.
type Proc struct {
	Name string   // e.g. "queen", "hive-1": its log is <LogDir>/<Name>.log
	Bin  string   // the binary's path
	Args []string // its arguments
	Env  []string // added to this process's environment
	// URL is the process's base URL (http://127.0.0.1:<port>), for health checks.
	URL    string
	LogDir string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState
	starts int
}

// Start runs the process (again, after it exited). Its output is appended to its log.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("cluster: %s is already running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	if err := os.MkdirAll(p.LogDir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(p.LogDir, p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(log, "=== cluster: start #%d of %s at %s: %s %s\n", p.starts, p.Name, time.Now().Format(time.RFC3339Nano), p.Bin, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: Ctrl+C in the harness's terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("cluster: cannot start %s (%s): %w", p.Name, p.Bin, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.state = cmd, exited, nil
	go func() {
		cmd.Wait() // reaps it: no zombies
		log.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// PID is the running process's PID, or 0.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Running reports whether the process is running.
func (p *Proc) Running() bool { return p.PID() != 0 }

// Signal sends sig to the running process; a process that is not running is an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	pid := p.PID()
	if pid == 0 {
		return fmt.Errorf("cluster: %s is not running", p.Name)
	}
	return syscall.Kill(pid, sig)
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.Wait(10 * time.Second)
}

// Stop sends SIGTERM, waits up to grace, then kills.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	p.Signal(syscall.SIGCONT) // a paused process cannot handle TERM
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return nil
	}
	if p.Wait(grace) == nil {
		return nil
	}
	return p.Kill()
}

// Wait waits up to d for the process to exit.
func (p *Proc) Wait(d time.Duration) error {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-time.After(d):
		return fmt.Errorf("cluster: %s did not exit within %v", p.Name, d)
	}
}

// ExitState is how the last run ended (nil while running or never started).
func (p *Proc) ExitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.LogDir, p.Name+".log"))
	return string(b)
}

// WaitHealthy polls GET <url>/rbee/v1/health until it answers 200, the process exits, or ctx
// ends; the error then quotes the end of the process's log.
func (p *Proc) WaitHealthy(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(p.URL + "/rbee/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.Running() {
			return fmt.Errorf("cluster: %s exited before it answered: %s\n%s", p.Name, p.exitText(), tail(p.Log(), 2000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s did not answer at %s: %w\n%s", p.Name, p.URL, errors.Join(ctx.Err(), err), tail(p.Log(), 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Proc) exitText() string {
	if s := p.ExitState(); s != nil {
		return s.String()
	}
	return "still running"
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
