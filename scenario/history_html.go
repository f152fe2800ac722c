package scenario

import "fmt"

// HasHistory reports whether the run checked a registry or catalog history, which porcupine
// can draw whatever the verdict.
func (r *Result) HasHistory() bool { return r.lin != nil || r.catLin != nil }

// WriteAnyHistoryHTML writes porcupine's visualisation of the history the run checked,
// annotated with the fault timeline: the one that was not linearizable if one was
// (WriteHistoryHTML), else the registry's, else the catalog's. A failure of another checker
// is easier to read next to the history the clients saw.
func (r *Result) WriteAnyHistoryHTML(path string) error {
	switch {
	case r.LinearizabilityFailed():
		return r.WriteHistoryHTML(path)
	case r.lin != nil:
		return r.lin.WriteVisualization(path, r.annotate)
	case r.catLin != nil:
		return r.catLin.WriteVisualization(path, r.annotate)
	}
	return fmt.Errorf("the run checked no history, so there is none to draw")
}
