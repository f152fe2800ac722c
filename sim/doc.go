// Package sim is the deterministic simulator kernel: virtual time, an event queue ordered by
// (time, sequence number), a clock per node with its own skew and drift, a seeded
// math/rand/v2 stream per node, a network that delays, loses, duplicates and reorders
// messages and can be partitioned, processes that crash, restart and pause, simulated disks,
// and a trace that folds every event into a running 64-bit hash.
//
// One Sim is single-threaded and shares nothing: run different seeds in different goroutines,
// never one Sim from two. Everything random is drawn from streams derived from the run seed,
// so the same seed and the same inputs give the same trace hash.
//
// Callers' duties: add every node before Run, schedule faults and workload with At, and
// read node state only between events (in At callbacks, AfterEvent hooks or after Run).
package sim
