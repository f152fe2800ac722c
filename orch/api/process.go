package api

import "github.com/rbee-sim/rbee-sim/orch/node"

// The process port: what a hive asks of its machine's process table (a simulated one in the
// simulator; os/exec and signals in the real runtime) and what comes back. A hive spawns
// worker processes with it, signals them, and learns of their exits from it, as a parent
// learns from waitpid, not only from the worker's own messages.
type (
	// ProcSpawn starts a program. Args are its command line after the binary (for
	// llm-worker-rbee: --id, --model, --slots, --port, --hive, ...). Addr is the address the
	// process will answer at (in the real runtime, derived from the port).
	ProcSpawn struct {
		ReqID  uint64    `json:"req_id"`
		Binary string    `json:"binary"`
		Args   []string  `json:"args"`
		Port   int       `json:"port"`
		Addr   node.Addr `json:"addr"`
	}
	// ProcSpawned answers ProcSpawn: the PID and the binary's version (what `--version`
	// prints), or why it could not start (a missing binary, a port in use).
	ProcSpawned struct {
		ReqID   uint64 `json:"req_id"`
		PID     int    `json:"pid"`
		Version string `json:"version,omitempty"`
		Err     Error  `json:"error"`
	}
	// ProcSignal sends a signal: "TERM" (asks the process to stop; it may ignore it) or "KILL".
	ProcSignal struct {
		PID    int    `json:"pid"`
		Signal string `json:"signal"`
	}
	// ProcExited says a process ended: its exit code, or the signal that killed it.
	ProcExited struct {
		PID    int    `json:"pid"`
		Code   int    `json:"code"`
		Signal string `json:"signal,omitempty"`
	}
	// ProcTerm is what a process receives for ProcSignal TERM: stop gracefully and exit.
	ProcTerm struct{}
	// ProcExit is what a process sends the process table to exit with Code (after a graceful
	// stop).
	ProcExit struct {
		Code int `json:"code"`
	}
	// ProcListReq asks for the running processes; ProcListResp answers.
	ProcListReq struct {
		ReqID uint64 `json:"req_id"`
	}
	ProcListResp struct {
		ReqID uint64     `json:"req_id"`
		Procs []ProcInfo `json:"procs"`
	}
)

// ProcInfo is one running process.
type ProcInfo struct {
	PID    int       `json:"pid"`
	Binary string    `json:"binary"`
	Port   int       `json:"port"`
	Addr   node.Addr `json:"addr"`
}

// Error codes of the process port and of worker lifecycle.
const (
	// CodeBinaryMissing: the program to spawn does not exist.
	CodeBinaryMissing Code = "BINARY_MISSING"
	// CodePortInUse: the port the process should listen on is taken.
	CodePortInUse Code = "PORT_IN_USE"
	// CodeVersionMismatch: the worker binary's version differs from the hive's.
	CodeVersionMismatch Code = "VERSION_MISMATCH"
	// CodeWorkerCrashed: a worker process exited without being asked to.
	CodeWorkerCrashed Code = "WORKER_CRASHED"
)

// MsgName implements node.Msg.
func (ProcSpawn) MsgName() string { return "proc.spawn" }

// MsgName implements node.Msg.
func (ProcSpawned) MsgName() string { return "proc.spawned" }

// MsgName implements node.Msg.
func (ProcSignal) MsgName() string { return "proc.signal" }

// MsgName implements node.Msg.
func (ProcExited) MsgName() string { return "proc.exited" }

// MsgName implements node.Msg.
func (ProcTerm) MsgName() string { return "proc.term" }

// MsgName implements node.Msg.
func (ProcExit) MsgName() string { return "proc.exit" }

// MsgName implements node.Msg.
func (ProcListReq) MsgName() string { return "proc.list" }

// MsgName implements node.Msg.
func (ProcListResp) MsgName() string { return "proc.list_resp" }
