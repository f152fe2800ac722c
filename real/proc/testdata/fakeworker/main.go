// Command fakeworker is the test program of package proc: a stand-in for llm-worker-rbee.
//
//	fakeworker --version            prints $FAKE_VERSION (default "fakeworker 1.2.3"), after
//	                                sleeping $FAKE_VERSION_SLEEP if set; exits 3 if
//	                                $FAKE_VERSION_FAIL is set
//	fakeworker --port N [flags]     listens on 127.0.0.1:N, prints its arguments and
//	                                $FAKE_ECHO, exits 0 on SIGTERM
//
// Flags: --exit-code C exits with C after --after D; --crash kills itself with SIGSEGV after
// --after D; --ignore-term ignores SIGTERM; --child starts a grandchild (sleep) and prints its
// PID as "grandchild <pid>".
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	port := flag.Int("port", 0, "port to listen on at 127.0.0.1")
	exitCode := flag.Int("exit-code", -1, "exit with this code after --after")
	crash := flag.Bool("crash", false, "kill itself with SIGSEGV after --after")
	after := flag.Duration("after", 0, "delay before --exit-code or --crash")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM")
	grandchild := flag.Bool("child", false, "start a grandchild that sleeps")
	flag.String("id", "", "ignored")
	flag.Parse()

	if *version {
		if d, err := time.ParseDuration(os.Getenv("FAKE_VERSION_SLEEP")); err == nil {
			time.Sleep(d)
		}
		if os.Getenv("FAKE_VERSION_FAIL") != "" {
			fmt.Fprintln(os.Stderr, "fakeworker: cannot print a version today")
			os.Exit(3)
		}
		v := os.Getenv("FAKE_VERSION")
		if v == "" {
			v = "fakeworker 1.2.3"
		}
		fmt.Println(v)
		return
	}
	terms := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(terms, syscall.SIGTERM)
	}
	fmt.Printf("args %s\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("echo %s\n", os.Getenv("FAKE_ECHO"))
	if *port != 0 {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeworker:", err)
			os.Exit(4)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	if *grandchild {
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fakeworker:", err)
			os.Exit(5)
		}
		fmt.Printf("grandchild %d\n", cmd.Process.Pid)
		go cmd.Wait()
	}
	fmt.Println("ready")
	var deadline <-chan time.Time
	if *exitCode >= 0 || *crash {
		deadline = time.After(*after)
	}
	select {
	case <-terms:
		fmt.Println("got TERM; exiting")
		os.Exit(0)
	case <-deadline:
		if *crash {
			// The Go runtime turns a SIGSEGV into exit code 2; a shell in its place (same
			// PID) dies of the signal, as a C program would.
			err := syscall.Exec("/bin/sh", []string{"sh", "-c", "kill -SEGV $$"}, os.Environ())
			fmt.Fprintln(os.Stderr, "fakeworker:", err)
			os.Exit(6)
		}
		os.Exit(*exitCode)
	}
}
