package chaos

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ProcessError is the error of a process fault. It wraps the OS error, so errors.Is(err,
// syscall.ESRCH) tells that the process does not exist and errors.Is(err, os.ErrPermission)
// that it belongs to someone the harness may not signal.
type ProcessError struct {
	Op  string // "kill (SIGKILL)", "pause (SIGSTOP)", "resume (SIGCONT)", "state"
	PID int
	Err error
}

func (e *ProcessError) Error() string {
	switch {
	case errors.Is(e.Err, syscall.ESRCH):
		return fmt.Sprintf("chaos: %s pid %d: no such process (it has exited and been reaped, or the pid is wrong); nothing was done", e.Op, e.PID)
	case errors.Is(e.Err, syscall.EPERM):
		return fmt.Sprintf("chaos: %s pid %d: permission denied (the process belongs to another user; run the harness as the user that started it)", e.Op, e.PID)
	}
	return fmt.Sprintf("chaos: %s pid %d: %v", e.Op, e.PID, e.Err)
}

func (e *ProcessError) Unwrap() error { return e.Err }

// Kill sends SIGKILL to pid: the process ends at once, without running any cleanup. Its
// parent must still reap it (for a child started with os/exec, cmd.Wait does); until then
// State reports it as a zombie ('Z'). Killing a zombie succeeds and does nothing.
func Kill(pid int) error { return signal("kill (SIGKILL)", pid, syscall.SIGKILL) }

// Pause sends SIGSTOP to pid: the process stops being scheduled (State becomes 'T', which the
// kernel reports shortly after the signal, not necessarily before Pause returns) but keeps its
// sockets and memory, so peers see it hang rather than die. Resume undoes it.
func Pause(pid int) error { return signal("pause (SIGSTOP)", pid, syscall.SIGSTOP) }

// Resume sends SIGCONT to pid, undoing Pause. Resuming a process that is not stopped does
// nothing.
func Resume(pid int) error { return signal("resume (SIGCONT)", pid, syscall.SIGCONT) }

func signal(op string, pid int, sig syscall.Signal) error {
	if err := checkPID(op, pid); err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return &ProcessError{Op: op, PID: pid, Err: err}
	}
	return nil
}

// checkPID refuses the pids whose signals would reach more than one chosen process.
func checkPID(op string, pid int) error {
	if pid <= 0 {
		return &ProcessError{Op: op, PID: pid, Err: fmt.Errorf("pid must be positive: 0 and negative pids signal whole process groups (or every process), which a fault must never do")}
	}
	if pid == os.Getpid() {
		return &ProcessError{Op: op, PID: pid, Err: fmt.Errorf("that is the harness itself; start the system under test as separate processes")}
	}
	return nil
}

// ProcState is a process's state letter as /proc/<pid>/stat reports it.
type ProcState byte

// The states of ProcState that the faults here produce or meet.
const (
	Running   ProcState = 'R'
	Sleeping  ProcState = 'S'
	DiskSleep ProcState = 'D'
	Stopped   ProcState = 'T' // after Pause
	Traced    ProcState = 't'
	Zombie    ProcState = 'Z' // after Kill, until the parent reaps it
	Dead      ProcState = 'X'
	Idle      ProcState = 'I'
)

// String names the state.
func (s ProcState) String() string {
	switch s {
	case Running:
		return "running"
	case Sleeping:
		return "sleeping"
	case DiskSleep:
		return "disk sleep"
	case Stopped:
		return "stopped"
	case Traced:
		return "tracing stop"
	case Zombie:
		return "zombie"
	case Dead:
		return "dead"
	case Idle:
		return "idle"
	}
	return fmt.Sprintf("state %q", byte(s))
}

// State reads the state of pid from /proc (Linux only). A pid with no /proc entry gives a
// ProcessError wrapping syscall.ESRCH.
func State(pid int) (ProcState, error) {
	const op = "state"
	if pid <= 0 {
		return 0, &ProcessError{Op: op, PID: pid, Err: fmt.Errorf("pid must be positive")}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, &ProcessError{Op: op, PID: pid, Err: syscall.ESRCH}
	}
	if err != nil {
		return 0, &ProcessError{Op: op, PID: pid, Err: err}
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, so look after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, &ProcessError{Op: op, PID: pid, Err: fmt.Errorf("cannot parse /proc/%d/stat: %q", pid, s)}
	}
	return ProcState(s[i+2]), nil
}
