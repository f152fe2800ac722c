// Package faults is the nemesis: the catalogue of faults the harness injects into a simulation
// (partitions, lossy and slow networks, crashes, power failures at a time or at the k-th write
// of a disk, pauses, clock faults, device faults, hung workers and disk faults: flipped bytes,
// clobbered headers, truncated files, failed fsyncs, a full disk, slow I/O), fault schedules as
// plain data, random schedules, and swarm selection of fault subsets.
//
// A Fault is JSON-encodable data, so rapid can shrink a Schedule and a failing one can be saved
// and replayed. Each kind of fault is one small type in the registry Catalogue; Lookup finds one
// by name. An Injector turns a Schedule into sim.At actions on one Sim and keeps the bookkeeping
// that lets overlapping faults end independently: healing one partition keeps the links another
// still cuts, restoring one network fault keeps the others, a node crashed by two faults stays
// down until both end.
//
// Clients are never crashed, paused, powered off or given a bad clock: they are the recording
// side of the history, whose call and return times must stay honest, and an operation whose
// client died would never return at all. Partitions may cut clients off: a lost request is a
// failure the cluster must survive, and the client still records an honest unknown outcome.
//
// Callers' duties: Validate a Schedule that came from outside (a file, a rapid draw) against the
// Topology before scheduling it; use one Injector per Sim for every fault of a run (Kind.Inject
// keeps no bookkeeping shared with other faults); end the chaos phase with Injector.HealAll
// rather than healing the Sim behind the Injector's back; do not change the network's default
// link while a network fault is active (its end restores the default it found).
package faults
