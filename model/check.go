package model

import (
	"time"

	"github.com/anishathalye/porcupine"
)

// RegistryResult is the verdict of CheckRegistry with what a report needs.
type RegistryResult struct {
	// Verdict is porcupine.Ok (linearizable), porcupine.Illegal (not linearizable: a bug, or
	// a history recorded wrongly), or porcupine.Unknown (the check timed out). Unknown means
	// "not proven" and must never count as a pass.
	Verdict porcupine.CheckResult
	// Info holds the partitioned history and its (partial) linearizations for
	// WriteVisualization.
	Info porcupine.LinearizationInfo
	// Ops is the number of operations checked (before partitioning).
	Ops int
	// Partitions is the number of workers the history was split into.
	Partitions int
	// Elapsed is how long the check took, on the wall clock.
	Elapsed time.Duration
}

// CheckRegistry checks a registry history (as History.Operations returns it) for
// linearizability against RegistryModel, giving up after timeout (0: never). A porcupine.Unknown
// verdict means the check timed out: the history is not proven linearizable, and callers must
// not treat it as a pass.
func CheckRegistry(ops []porcupine.Operation, timeout time.Duration) RegistryResult {
	start := time.Now()
	m := RegistryModel()
	parts := partitionRegistry(ops)
	// Partition once: the checker gets the parts already made.
	m.Partition = func([]porcupine.Operation) [][]porcupine.Operation { return parts }
	verdict, info := porcupine.CheckOperationsVerbose(m, ops, timeout)
	return RegistryResult{
		Verdict:    verdict,
		Info:       info,
		Ops:        len(ops),
		Partitions: len(parts),
		Elapsed:    time.Since(start),
	}
}

// WriteVisualization writes porcupine's HTML view of the checked history to path, with
// annotations (a fault timeline, say) added. Each operation's description starts with the
// worker whose partition it is in.
func (r RegistryResult) WriteVisualization(path string, annotations []porcupine.Annotation) error {
	info := r.Info
	info.AddAnnotations(annotations)
	return porcupine.VisualizePath(RegistryModel(), info, path)
}
