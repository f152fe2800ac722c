// Package model holds the reference models of the harness and the recording of histories for
// its checkers. Today it holds the linearizability checker of queen-rbee's worker registry:
// History records client operations and the queen's internal transitions with one clock,
// RegistryModel is a porcupine model of the registry's sequential specification (the comment
// at the end of orch/api/registry.go), and CheckRegistry runs porcupine over a history.
//
// Callers' duties:
//   - Record from the start: the model's initial state is an empty registry whose version
//     counter has never advanced. A history that starts while the registry already holds
//     workers will be judged wrong.
//   - Use one clock for every timestamp (simulated nanoseconds in the simulator, one monotonic
//     clock in the real runtime): invoke before sending, return after receiving.
//   - Record every internal transition the queen observes (WorkerHealthChanged, WorkerExpired,
//     QueenStarted) through History.Internal at the instant the queen reports it, and have the
//     queen report an internal transition only once it is durable: the model assumes a restart
//     keeps every transition the queen has reported.
//   - Treat a porcupine.Unknown verdict (the check timed out) as "not proven", never as a pass.
//
// Nothing in this package reads the clock or iterates a map in a way that decides an order,
// except CheckRegistry, which measures its own run time.
package model
