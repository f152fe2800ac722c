package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"
)

// tailMax is how much of a server's output is kept for error messages.
const tailMax = 4 << 10

// process is a server process the engine started.
type process struct {
	argv []string
	cmd  *exec.Cmd
	tail *tail
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, once done is closed
}

// startProcess starts argv with extra environment env; its output goes to out (if not nil)
// and into a tail kept for messages.
func startProcess(argv, env []string, dir string, out io.Writer) (*process, error) {
	p := &process{argv: argv, tail: &tail{}, done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var w io.Writer = p.tail
	if out != nil {
		w = io.MultiWriter(p.tail, out)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 2 * time.Second // a child that keeps the output pipe open does not hold Wait
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// describeExit says how the process ended and what it wrote last, for messages.
func (p *process) describeExit() string {
	how := "exited with status 0"
	if p.err != nil {
		how = p.err.Error()
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			how = ee.ProcessState.String() // "exit status 1", "signal: killed"
		}
	}
	out := strings.TrimSpace(p.tail.String())
	if out == "" {
		return how + "; it wrote nothing"
	}
	return fmt.Sprintf("%s; its last output: %s", how, out)
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited after grace. It returns
// once the process has exited.
func (p *process) stop(clk clock.Clock, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
		<-p.done
		return nil
	}
	t := clk.Timer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("could not kill %s (pid %d) after it ignored SIGTERM for %v: %w",
			p.argv[0], p.cmd.Process.Pid, grace, err)
	}
	<-p.done
	return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM and was killed (SIGKILL)",
		p.argv[0], p.cmd.Process.Pid, grace)
}

// tail keeps the last tailMax bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
