package proc

import (
	"context"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// signals are the signals a ProcSignal may name. groupSignals also go to the process's group.
var (
	signals = map[string]syscall.Signal{
		"TERM": syscall.SIGTERM,
		"KILL": syscall.SIGKILL,
		"STOP": syscall.SIGSTOP,
		"CONT": syscall.SIGCONT,
		"INT":  syscall.SIGINT,
		"HUP":  syscall.SIGHUP,
	}
	groupSignals = map[syscall.Signal]bool{syscall.SIGKILL: true, syscall.SIGSTOP: true, syscall.SIGCONT: true}
)

// signalNames names the signals a process may die of, as ProcExited.Signal carries them.
var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP:  "HUP",
	syscall.SIGINT:  "INT",
	syscall.SIGQUIT: "QUIT",
	syscall.SIGILL:  "ILL",
	syscall.SIGTRAP: "TRAP",
	syscall.SIGABRT: "ABRT",
	syscall.SIGBUS:  "BUS",
	syscall.SIGFPE:  "FPE",
	syscall.SIGKILL: "KILL",
	syscall.SIGUSR1: "USR1",
	syscall.SIGSEGV: "SEGV",
	syscall.SIGUSR2: "USR2",
	syscall.SIGPIPE: "PIPE",
	syscall.SIGALRM: "ALRM",
	syscall.SIGTERM: "TERM",
	syscall.SIGXCPU: "XCPU",
	syscall.SIGXFSZ: "XFSZ",
	syscall.SIGSYS:  "SYS",
}

// SignalName is the name ProcExited.Signal gives sig: "KILL", "SEGV", "TERM", ..., or "SIG<n>"
// for a signal without a short name here.
func SignalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// NotifyTerm calls onTerm, on a goroutine of its own, each time this OS process receives
// SIGTERM or SIGINT (a service manager stopping it, or Ctrl-C in its terminal), until ctx is
// done or stop is called. While it runs, those signals no longer end the process: onTerm must
// start a graceful stop, typically Table.Term(node) so that the node gets api.ProcTerm from its
// process table, and the node ends the process with api.ProcExit when it is done. A repeated
// signal calls onTerm again (the hive's Shutdown ignores repeats). stop restores the default
// behaviour and waits for a running onTerm to return; it may be called more than once.
func NotifyTerm(ctx context.Context, onTerm func()) (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(ch) // the default behaviour is back once this ends, however it ends
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				onTerm()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
