package scenario

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/model"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Recorded is one event of a run on real processes (see real/record), as the judge takes it.
// At is the time since the run started, on the machine's wall clock (every process of a real
// run is on one machine).
type Recorded struct {
	At   time.Duration
	Kind string // "send", "deliver" or "observe"
	From node.Addr
	To   node.Addr
	Msg  node.Msg
	Obs  node.Observation
}

// RealRun is what a run on real processes hands the judge: the merged history of every
// process, and what the harness read off the clients it hosted.
type RealRun struct {
	Events []Recorded
	// Completed is the work the registry clients (Scenario.Clients) completed.
	Completed int
	// InferResults are the inference clients' results, by client address.
	InferResults map[node.Addr][]keeper.InferResult
	// CatalogOps counts the catalog clients' answered operations.
	CatalogOps int
	// FinalWorkers is the queen's registry at the end of the settle phase, and HaveFinal says
	// it could be read (the queen answered).
	FinalWorkers []api.WorkerRecord
	HaveFinal    bool
	// WantWorkers are the workers the live hives had at the end (ID -> spec), for liveness.
	WantWorkers map[string]api.WorkerSpec
	// Faults counts the faults injected, by kind; Skipped lists the scenario's faults that
	// have no real injector and were left out (they are reported, never silently dropped).
	Faults  map[string]int
	Skipped []string
	Marks   map[string]int
	Wall    time.Duration
	// Disks are the machines' folders (machine -> the OS folder of its disk), where the
	// catalog checks read the final catalogs and model files.
	Disks map[string]string `json:",omitempty"`
}

// JudgeRecorded judges a run on real processes with the simulator's checkers that need only
// the recorded history: registry and catalog linearizability (porcupine, on wall-clock
// times) with their monitors, and the inference clients' streams against the model's exact
// completions. Checks that read a simulated node's state at a point in time (the registry's
// size on every event, engine traffic) have no counterpart here and are not run.
func JudgeRecorded(sc Scenario, rr RealRun, o Options) Result {
	r := &run{sc: sc, hist: model.NewHistory(), queen: sc.Queen.Addr, hives: map[node.Addr]bool{},
		clients: map[node.Addr]bool{}, catHist: model.NewCatalogHistory(), catMon: newCatalogMonitor(),
		catCli: map[node.Addr]bool{}, realDisks: rr.Disks}
	r.mon = newMonitors(sc, nil)
	for _, h := range sc.Hives {
		r.hives[h.Addr] = true
	}
	for _, c := range sc.Clients {
		r.clients[c.Addr] = true
	}
	for _, c := range sc.CatalogClients {
		r.catCli[c.Addr] = true
	}
	// Coverage marks: the harness's own, and every node.Mark a process recorded (in the
	// simulator the Sim counts the nodes' marks; here their history files have them).
	marks := map[string]int{}
	for m, n := range rr.Marks { //det:sorted (a copy)
		marks[m] += n
	}
	for _, e := range rr.Events {
		if m, ok := e.Obs.(node.Mark); ok && e.Kind == "observe" {
			marks[string(m)]++
		}
		switch e.Kind {
		case "send":
			if e.Msg != nil {
				r.historySent(e.At, e.From, e.To, e.Msg)
			}
		case "deliver":
			if e.Msg != nil {
				r.historyDelivered(e.At, e.From, e.To, e.Msg)
			}
		case "observe":
			if e.Obs != nil {
				r.observed(e.At, e.From, e.Obs)
			}
		}
	}
	// The marks Run counts off the monitors, as it does.
	if r.mon.contended > 0 {
		marks[markContended] += r.mon.contended
	}
	if r.catMon.raced > 0 {
		marks[markRaced] += r.catMon.raced
	}
	res := Result{Scenario: sc.ID, Seed: sc.Seed, Events: uint64(len(rr.Events)), WallSeconds: rr.Wall.Seconds(),
		SimSeconds: rr.Wall.Seconds(), Marks: marks, Faults: rr.Faults, TraceHash: "real"}
	add := func(c CheckerResult) { res.Checkers = append(res.Checkers, c) }
	res.annotate = r.faultAnnotations()

	work := CheckerResult{Name: "workload ran", Stage: "assumptions"}
	completions := 0
	for _, xs := range rr.InferResults { //det:sorted (a count)
		for _, x := range xs {
			if x.Outcome == keeper.OutcomeCompleted || len(x.Tokens) > 0 { // as the simulator counts work
				completions++
			}
		}
	}
	work.OK = (len(sc.Clients) == 0 || rr.Completed > 0 && r.hist.Len() > 0) &&
		(len(sc.CatalogClients) == 0 || rr.CatalogOps > 0) && (len(sc.InferClients) == 0 || completions > 0)
	work.Detail = fmt.Sprintf("%d pieces of work completed, %d registry operations recorded, %d catalog operations answered, %d completions (or partial streams)",
		rr.Completed, r.hist.Len(), rr.CatalogOps, completions)
	add(work)
	if len(rr.Skipped) > 0 {
		add(CheckerResult{Name: "faults without a real injector were left out", Stage: "assumptions", OK: true,
			Detail: strings.Join(rr.Skipped, "; ")})
	}
	if !work.OK {
		return res
	}
	if len(sc.Clients) > 0 || sc.WorkerCount() > 0 {
		add(r.checkLinearizable(&res, o))
		for _, c := range r.mon.results() {
			if c.Name == checkMaxRegistered {
				continue // it reads the simulated registry's size on every event
			}
			add(c)
		}
	}
	if len(sc.CatalogClients) > 0 {
		for _, c := range r.checkCatalogs(&res, o) {
			add(c)
		}
	}
	if len(sc.InferClients) > 0 {
		for _, c := range r.judgeInferResults(rr.InferResults) {
			add(c)
		}
	}
	if rr.WantWorkers != nil {
		add(judgeFinalRegistry(rr))
	}
	res.Passed = !failed(res.Checkers)
	return res
}

// judgeInferResults: every request ended, no client saw a broken stream, and every completed
// request is exactly the model's completion.
func (r *run) judgeInferResults(results map[node.Addr][]keeper.InferResult) []CheckerResult {
	addrs := make([]node.Addr, 0, len(results))
	for a := range results { //det:sorted (sorted next)
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	stream := CheckerResult{Name: "each request streams contiguous tokens and ends once", Stage: "monitors", OK: true}
	ended := CheckerResult{Name: "every request ends once the faults stop", Stage: "liveness", OK: true}
	n, tokens := 0, 0
	for _, a := range addrs {
		for _, x := range results[a] {
			n++
			tokens += len(x.Tokens)
			if len(x.Violations) > 0 && stream.OK {
				v := x.Violations[0]
				stream.OK = false
				stream.Detail = fmt.Sprintf("%s saw request %d of its request #%d break the stream protocol: %s at index %d (index %d was due)",
					a, v.ReqID, x.Index, v.Kind, v.Index, v.Want)
			}
			if x.Outcome == keeper.OutcomeOpen && ended.OK {
				ended.OK = false
				ended.Detail = fmt.Sprintf("%s request #%d never ended (%d tokens so far)", a, x.Index, len(x.Tokens))
			}
		}
	}
	if stream.OK {
		stream.Detail = fmt.Sprintf("%d requests, %d tokens received, every stream contiguous with one end", n, tokens)
	}
	if ended.OK {
		ended.Detail = fmt.Sprintf("%d requests, all ended", n)
	}
	return []CheckerResult{stream, r.checkCompletions(addrs, results), ended}
}

// judgeFinalRegistry: after the settle phase, the queen's registry holds exactly the live
// hives' workers, with their incarnations, healthy.
func judgeFinalRegistry(rr RealRun) CheckerResult {
	c := CheckerResult{Name: "registry converges after faults stop", Stage: "liveness"}
	if !rr.HaveFinal {
		c.Detail = "the queen did not answer a list of its workers at the end of the settle phase"
		return c
	}
	want := map[string]api.WorkerSpec{}
	for id, w := range rr.WantWorkers { //det:sorted (copied)
		want[id] = w
	}
	var problems []string
	for _, rec := range rr.FinalWorkers {
		w, ok := want[rec.ID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("ghost worker %s in the registry", rec.ID))
		case rec.Model != w.Model:
			problems = append(problems, fmt.Sprintf("worker %s registered for %s, its hive serves %s", rec.ID, rec.Model, w.Model))
		case rec.Health != api.HealthHealthy:
			problems = append(problems, fmt.Sprintf("worker %s is %s", rec.ID, rec.Health))
		}
		delete(want, rec.ID)
	}
	for _, id := range sortedKeys(want) {
		problems = append(problems, fmt.Sprintf("worker %s never registered", id))
	}
	c.OK = len(problems) == 0
	c.Detail = fmt.Sprintf("%d workers registered and healthy", len(rr.FinalWorkers))
	if !c.OK {
		c.Detail = strings.Join(problems, "; ")
	}
	return c
}
