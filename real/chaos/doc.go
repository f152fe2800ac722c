// Package chaos holds the real fault injectors: the faults a scenario injects when it runs with
// --mode real against OS processes on 127.0.0.1, where package faults (the simulator's
// catalogue) cannot reach. Nothing here is deterministic the way the simulator is: the OS
// schedules the processes, TCP chooses how bytes are split into reads, and timers fire late.
// What is deterministic is every random choice an injector makes, given its seed and the
// sequence of events it sees (math/rand/v2 PCG streams).
//
// Four kinds of injector:
//
//   - Proxy (NewProxy, NewProxyConfig): a TCP proxy put between two components. Faults can be
//     switched at any time from any goroutine: Partition (PartitionReset or PartitionBlackhole)
//     and Heal, SetDelay (latency per chunk, order kept), SetDrop (TCP cannot lose bytes
//     silently, so a dropped chunk resets its connection), SetBandwidth; Stats counts
//     connections, bytes each way and injected resets. Close stops it and waits for every
//     goroutine it started.
//   - Process faults: Kill (SIGKILL), Pause (SIGSTOP), Resume (SIGCONT), and State, which reads
//     a process's state letter from /proc. Errors say what happened (no such process,
//     permission) and keep the errno for errors.Is.
//   - Disk faults: CorruptFile backs a file up next to itself (never losing data) and then
//     corrupts it in one of four ways (Corruption), each chosen so that SQLite notices it in a
//     known way (CorruptFileDamage also says which bytes changed); RestoreBackup puts the
//     original back.
//   - Schedules: Run plays a list of Steps (inject at At, undo after For) on a
//     github.com/benbjohnson/clock Clock and returns the timeline of what was injected when, for
//     the report to show next to the recorded history.
//
// The package is Linux-first: State reads /proc, and the proxy's resets rely on SO_LINGER 0,
// which makes close send an RST.
package chaos
