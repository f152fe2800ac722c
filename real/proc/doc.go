// Package proc is the process port of the real runtime: the OS process table of one machine,
// served to the nodes of one OS process with the messages of orch/api (ProcSpawn, ProcSignal,
// ProcListReq, ProcExit; answers ProcSpawned, ProcExited, ProcListResp), as sim.ProcessTable
// serves them in the simulator. Linux only: it reads /proc.
//
// What the table guarantees:
//
//   - ProcSpawn resolves the binary (a name on PATH or a path), refuses a port that something
//     already listens on at 127.0.0.1 or that one of its own processes holds (PORT_IN_USE), runs
//     `binary --version` (Config.VersionArgs) for the version the hive checks, then starts
//     `binary args... --port N` (plus Config.ExtraArgs) in a process group of its own, so that
//     a Ctrl-C in the hive's terminal does not reach the workers. Output goes to
//     Config.LogDir/<addr>.log, appended, written by the child itself: nothing is lost when the
//     hive dies. The answer, ProcSpawned, carries the PID and the version, or an api.Error that
//     says why nothing runs (BINARY_MISSING, PORT_IN_USE, INVALID_REQUEST, VERSION_MISMATCH
//     when the version could not be read). A repeated ProcSpawn (same sender, same ReqID) is
//     answered again, never run twice; a repeat while the first is still starting is dropped,
//     since the first's answer is on its way.
//   - Every child is reaped (no zombies). When it ends, the process that spawned it gets
//     ProcExited: the exit code, or the signal that killed it ("KILL", "SEGV", "TERM", ...;
//     Code 0 then, as in the simulator).
//   - Every spawned process is recorded in Config.StateDir until it ends. A table opened later
//     on the same StateDir (the hive restarted; the workers ran on, as real processes do)
//     adopts every recorded process that still runs: it lists it, signals it, and reports its
//     end to the recorded parent address with ProcExited{Code: -1} (an exit status can only be
//     read by a process's parent). A record is trusted only if /proc/<pid>/stat still shows the
//     start time recorded at spawn, so a PID the kernel reused for another program is never
//     adopted or signalled. Adopted processes are polled (Config.PollInterval).
//   - ProcSignal sends TERM, KILL, STOP, CONT, INT or HUP to a live process of the table (its own
//     children and adopted ones); KILL, STOP and CONT also go to the process's group, so that a
//     killed worker's own children (an inference server) die with it. A signal for any other
//     PID or an unknown signal is logged and ignored: the table never signals processes it did
//     not start.
//   - ProcListReq is answered with every live process, sorted by PID.
//   - ProcExit{Code} (a node of this OS process is done after a graceful stop) calls
//     Config.Exit(code) once, on a goroutine of its own.
//   - ProcTerm is not the table's to handle: the binary maps its own SIGTERM to ProcTerm with
//     NotifyTerm and Table.Term, which sends ProcTerm from the table's address (the hive accepts
//     it only from its process table).
//   - Close stops the table's goroutines and releases StateDir; it does not kill children: they
//     outlive the table, and the next table adopts them.
//
// One table at a time may use a StateDir: Open takes a lock on it, which the kernel releases
// when the hosting process dies. Messages are trusted as they come: the transport
// authenticates the peers that may send them.
package proc
