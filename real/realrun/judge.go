package realrun

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// judge is scenario.JudgeRecorded, with the check of the scenario's required paths and, when
// it has a hub, the checks of the fake hub (hubChecks).
func judge(sc scenario.Scenario, rr scenario.RealRun, hl *hubLog) scenario.Result {
	res := scenario.JudgeRecorded(sc, rr, scenario.Options{})
	if len(sc.Require) > 0 && len(res.Checkers) > 0 {
		c := checkRequired(sc, res.Marks)
		res.Checkers = append(res.Checkers[:1], append([]scenario.CheckerResult{c}, res.Checkers[1:]...)...)
		res.Passed = res.Passed && c.OK
	}
	if hl == nil || len(res.Checkers) == 0 || !res.Checkers[0].OK {
		return res // no hub, or the workload did not run: nothing more is judged
	}
	res.Checkers = append(res.Checkers, scenario.CheckerResult{Name: "download checks of the simulator not run on real processes", Stage: "assumptions", OK: true,
		Detail: strings.Join(simOnlyDownloadChecks, "; ")})
	for _, c := range hubChecks(sc, hl, rr.Events) {
		res.Checkers = append(res.Checkers, c)
		res.Passed = res.Passed && c.OK
	}
	return res
}

// simOnlyDownloadChecks are the simulator's checks of downloads that read what a real run
// does not record (the body chunks each hive received and when, the hub's view of every
// exchange, the requests pending when the faults stopped); they are named in the result.
var simOnlyDownloadChecks = []string{
	"at most one download of a file at a time per disk", "bytes fetched stay within size plus a chunk per interruption",
	"download throughput within the limit plus burst over every window of 1s or more", "heartbeats and other control traffic not starved by downloads",
	"clients receive progress streams that match the download", "every request ends registered or with a clear error once faults stop",
	"downloads asked for after the faults stop succeed", "terminal hub errors are not retried",
}

// Marks the harness counts in a real run, as the simulator's harness does.
const (
	markProgressResumed = "harness: progress said resuming from N%"
	markOverBurst       = "harness: a hive downloaded more than its burst"
)

// realMarks are the harness marks a real run counts (JudgeRecorded, hubMarks, placeModels,
// harnessMarks); the processes' own marks are in their history files. Other harness marks are
// the simulator's alone.
var realMarks = map[string]bool{
	"harness: contended compare-and-set": true, "harness: registrations of one model raced on a shared catalog": true,
	"harness: v1 catalog on disk at start": true, "harness: model download could not be written": true,
	markProgressResumed: true, markOverBurst: true,
	"harness: hub answered with fault rate-limit": true, "harness: hub answered with fault server-error": true,
	"harness: hub answered with fault hang": true, "harness: hub answered with fault corrupt": true,
	"harness: hub answered with fault ignore-range": true,
}

// checkRequired: a run that never reached a path it requires proves nothing about it and is
// invalid rather than passed, as in the simulator. Harness marks a real run does not count are
// listed, not judged.
func checkRequired(sc scenario.Scenario, marks map[string]int) scenario.CheckerResult {
	c := scenario.CheckerResult{Name: "required paths reached", Stage: "assumptions", OK: true}
	var parts, uncounted []string
	for _, m := range sc.Require {
		if strings.HasPrefix(m, "harness: ") && !realMarks[m] {
			uncounted = append(uncounted, fmt.Sprintf("%q", m))
			continue
		}
		parts = append(parts, fmt.Sprintf("%q x%d", m, marks[m]))
		if marks[m] == 0 {
			c.OK = false
		}
	}
	c.Detail = strings.Join(parts, ", ")
	if !c.OK {
		c.Detail += " (a required path was never reached: this run is invalid, not a pass; a longer --chaos and --settle may reach it)"
	}
	if len(uncounted) > 0 {
		c.Detail += "; not counted on real processes: " + strings.Join(uncounted, ", ")
	}
	return c
}

// harnessMarks are the harness marks read off the history and the fake hub's log: progress
// that said it resumed, and hives that downloaded more than their burst.
func harnessMarks(sc scenario.Scenario, evs []scenario.Recorded, hl *hubLog) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		if p, ok := e.Msg.(provision.Progress); ok && e.Kind == "send" && p.Resumed && isCatalogClient(sc, e.To) {
			out[markProgressResumed]++
		}
	}
	if hl == nil || sc.Provisioner == nil || sc.Provisioner.BurstBytes <= 0 {
		return out
	}
	received := map[string]int64{}
	for _, q := range hl.Requests {
		if q.Method == http.MethodGet && (q.Status == http.StatusOK || q.Status == http.StatusPartialContent) {
			received[q.Host] += q.Bytes
		}
	}
	for _, n := range received { //det:sorted (a count)
		if n > sc.Provisioner.BurstBytes {
			out[markOverBurst]++
		}
	}
	return out
}
