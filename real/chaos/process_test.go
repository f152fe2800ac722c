package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func waitState(t *testing.T, pid int, want ...ProcState) {
	t.Helper()
	waitFor(t, fmt.Sprintf("process %d to be %v", pid, want), func() bool {
		s, err := State(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if s == w {
				return true
			}
		}
		return false
	})
}

func TestPauseResumeKill(t *testing.T) {
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	waitState(t, pid, Sleeping, Running)

	if err := Pause(pid); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, Stopped)
	if err := Resume(pid); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, Sleeping, Running)

	if err := Kill(pid); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, Zombie) // dead, not yet reaped
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait after Kill: %v, want an exit error", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("process ended with %v, want killed by SIGKILL", ws)
	}
	if _, err := State(pid); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("State of a reaped process: %v, want ESRCH", err)
	}
}

func TestProcessFaultErrors(t *testing.T) {
	// Above the largest pid_max Linux allows (2^22), so no process can have it.
	const gone = 1 << 30
	for name, f := range map[string]func(int) error{"kill": Kill, "pause": Pause, "resume": Resume} {
		err := f(gone)
		if !errors.Is(err, syscall.ESRCH) || !strings.Contains(err.Error(), "no such process") {
			t.Errorf("%s of a missing pid: %v, want ESRCH saying no such process", name, err)
		}
		// Pids that would reach process groups, every process, or the harness itself are
		// refused before any signal is sent.
		for _, pid := range []int{0, -1, -gone, os.Getpid()} {
			if err := f(pid); err == nil || errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s(%d) = %v, want a refusal", name, pid, err)
			}
		}
	}
	perm := &ProcessError{Op: "pause (SIGSTOP)", PID: 1, Err: syscall.EPERM}
	if !errors.Is(perm, os.ErrPermission) || !strings.Contains(perm.Error(), "permission denied") {
		t.Errorf("EPERM error %q does not say permission or match os.ErrPermission", perm)
	}
	if os.Geteuid() != 0 {
		if err := Resume(1); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Resume(1) as a normal user: %v, want permission denied", err)
		}
	}
}
