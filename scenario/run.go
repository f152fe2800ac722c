package scenario

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/model"
	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/hive"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Options change how a scenario runs without changing what it does.
type Options struct {
	// Trace, when set, receives the trace as JSON lines.
	Trace io.Writer
	// KeepTraceLines keeps every event's canonical text in the result, to find where two runs
	// diverge.
	KeepTraceLines bool
	// CheckTimeout bounds the linearizability check; zero means 30s. A check that times out
	// is "not proven", which fails the run.
	CheckTimeout time.Duration
}

// CheckerResult is one checker's verdict. Stage orders them: assumptions, linearizability,
// monitors, liveness.
type CheckerResult struct {
	Name   string `json:"name"`
	Stage  string `json:"stage"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Result is what a run did and how it was judged.
type Result struct {
	Scenario    string          `json:"scenario"`
	Seed        uint64          `json:"seed"`
	Passed      bool            `json:"passed"`
	Checkers    []CheckerResult `json:"checkers"`
	Events      uint64          `json:"events"`
	SimSeconds  float64         `json:"sim_seconds"`
	WallSeconds float64         `json:"wall_seconds"`
	TraceHash   string          `json:"trace_hash"`
	// CheckSeconds is the wall time of the linearizability check alone.
	CheckSeconds float64        `json:"check_seconds"`
	Operations   int            `json:"operations"`
	Marks        map[string]int `json:"marks"`
	Faults       map[string]int `json:"faults_activated"`
	FailureFile  string         `json:"failure_file,omitempty"`

	traceLines []string
	lin        *model.RegistryResult
	catLin     *model.CatalogResult
	annotate   []porcupine.Annotation
}

// TraceLines are the canonical event texts, when Options.KeepTraceLines was set.
func (r *Result) TraceLines() []string { return r.traceLines }

// Compact drops what a result keeps for reports (event texts, the checked histories) once they
// were compared and written: they are most of a result's memory.
func (r *Result) Compact() { r.traceLines, r.lin, r.catLin, r.annotate = nil, nil, nil, nil }

// FirstFailure is the first checker that did not hold, or nil.
func (r *Result) FirstFailure() *CheckerResult {
	for i := range r.Checkers {
		if !r.Checkers[i].OK {
			return &r.Checkers[i]
		}
	}
	return nil
}

// run holds one simulation and what watches it.
type run struct {
	sc      Scenario
	s       *sim.Sim
	hist    *model.History
	mon     *monitors
	queen   node.Addr
	hives   map[node.Addr]bool
	clients map[node.Addr]bool
	inj     *faults.Injector
	catHist *model.CatalogHistory
	catMon  *catalogMonitor
	catCli  map[node.Addr]bool
	hub     *sim.Hub
	// pendingAtChaos are the catalog clients' requests in flight when the faults stopped.
	pendingAtChaos map[reqKey]bool
	hubMon         hubMonitor
	flow           flowMonitor
	infer          inferMonitor
	inferCli       map[node.Addr]bool
	workerProcs    map[node.Addr]api.WorkerSpec
	tables         map[node.Addr]bool
	// goneResults are the results of inference clients that died for good (client-gone).
	goneResults map[node.Addr][]keeper.InferResult
	term        *terminalMonitor
	// realDisks are the machines' folders after a run on real processes (RealRun.Disks).
	realDisks map[string]string
}

// Run runs a valid scenario and judges it.
func Run(sc Scenario, o Options) Result {
	start := time.Now()
	r := newRun(sc, o)
	r.s.Run(sc.Chaos)
	r.healAll()
	r.notePending()
	completedAtChaos := r.completed()
	r.s.Run(sc.Chaos + sc.Settle)
	res := Result{Scenario: sc.ID, Seed: sc.Seed, Events: r.s.Trace().Events(),
		SimSeconds: r.s.Now().Seconds(), TraceHash: fmt.Sprintf("%016x", r.s.Trace().Hash()),
		Marks: r.s.Marks(), Faults: r.inj.Activated(), traceLines: r.s.Trace().Lines()}
	if r.mon.contended > 0 {
		res.Marks[markContended] = r.mon.contended
	}
	if r.catMon.raced > 0 {
		res.Marks[markRaced] = r.catMon.raced
	}
	if r.hub != nil {
		r.markHubFaults()
	}
	if len(sc.InferClients) > 0 {
		r.markInference()
	}
	if o.Trace != nil {
		r.s.Trace().Flush()
	}
	r.judge(&res, o, completedAtChaos)
	r.s.Shutdown() // release the nodes' SQLite connections and VFS registrations
	res.WallSeconds = time.Since(start).Seconds()
	return res
}

func newRun(sc Scenario, o Options) *run {
	r := &run{sc: sc, s: sim.New(sim.Options{Seed: sc.Seed, KeepTraceLines: o.KeepTraceLines}),
		hist: model.NewHistory(), queen: sc.Queen.Addr, hives: map[node.Addr]bool{}, clients: map[node.Addr]bool{},
		catHist: model.NewCatalogHistory(), catMon: newCatalogMonitor(), catCli: map[node.Addr]bool{}}
	if o.Trace != nil {
		r.s.Trace().WriteJSON(o.Trace)
	}
	r.s.Network().SetDefault(sc.Network)
	for _, m := range sortedKeys(sc.Downlinks) {
		r.s.Network().SetDownlink(m, sc.Downlinks[m])
	}
	qcfg := queen.DefaultConfig()
	qcfg.MaxWorkers, qcfg.HeartbeatTimeout, qcfg.StaleGrace = sc.Queen.MaxWorkers, sc.Queen.HeartbeatTimeout, sc.Queen.StaleGrace
	qcfg.Plants = plant.NewSet(sc.Plants...)
	r.s.Add(sc.Queen.Addr, string(sc.Queen.Addr), 0, func() node.Node { return queen.New(qcfg) })
	// Faults are scheduled before the processes start, so a fault at time zero (a crash point
	// armed on a disk) is in place before anything runs.
	r.inj = faults.NewInjector(r.s, sc.Topology())
	r.inj.Schedule(sc.Faults)
	r.writeModelFiles()
	if sc.Hub != nil {
		r.hub = sim.NewHub(*sc.Hub)
		r.s.Add(HubAddr, string(HubAddr), 0, func() node.Node { return r.hub })
		// A hive's connection to the hub is one TCP stream: its messages arrive in order (no
		// jitter), and network-wide delay and reordering faults leave it alone.
		for _, h := range sc.Hives {
			ordered := sim.LinkConfig{Latency: 5 * time.Millisecond}
			r.s.Network().SetLink(HubAddr, h.Addr, ordered)
			r.s.Network().SetLink(h.Addr, HubAddr, ordered)
		}
	}
	for _, h := range sc.Hives {
		hcfg := hive.DefaultConfig(sc.Queen.Addr)
		hcfg.Workers = h.Workers
		hcfg.Catalog, hcfg.CatalogBusyTimeout, hcfg.Plants = h.Catalog, -1, plant.NewSet(sc.Plants...)
		hcfg.WorkerProcesses, hcfg.DeviceMemoryBytes = h.WorkerProcesses, h.DeviceMemory
		if h.Spawn {
			m := h.Machine
			if m == "" {
				m = string(h.Addr)
			}
			hcfg.ProcessTable, hcfg.Version, hcfg.IdleTimeout = ProcessTableAddr(m), WorkerVersionDefault, h.IdleTimeout
		}
		if sc.Hub != nil && h.Catalog {
			pcfg := provision.DefaultConfig()
			pcfg.Hub, pcfg.Plants = HubAddr, plant.NewSet(withPrefix(sc.Plants, "provisioner-")...)
			sc.Provisioner.apply(&pcfg)
			hcfg.Provision = &pcfg
		}
		machine := h.Machine
		if machine == "" {
			machine = string(h.Addr)
		}
		r.hives[h.Addr] = true
		r.s.Add(h.Addr, machine, 0, func() node.Node { return hive.New(hcfg) })
	}
	for i, c := range sc.Clients {
		kcfg := c.Keeper
		r.clients[c.Addr] = true
		// Clients start a little after the hives, staggered, as routers do.
		r.s.Add(c.Addr, string(c.Addr), time.Second+time.Duration(i)*100*time.Millisecond,
			func() node.Node { return keeper.New(kcfg) })
	}
	r.addWorkerProcesses()
	r.addInferClients()
	for i, c := range sc.CatalogClients {
		ccfg := c.Client
		r.catCli[c.Addr] = true
		r.s.Add(c.Addr, string(c.Addr), 2*time.Second+time.Duration(i)*100*time.Millisecond,
			func() node.Node { return keeper.NewCatalogClient(ccfg) })
	}
	r.mon = newMonitors(sc, r.s)
	r.flow = newFlowMonitor(r)
	r.hubMon.s = r.s
	if sc.Hub != nil {
		r.hubMon.files = sc.Hub.Files
	}
	r.s.SetHooks(sim.Hooks{Sent: r.sent, Delivered: r.delivered, Observed: r.observed, AfterEvent: r.mon.afterEvent})
	return r
}

// sent records invocations at the client side: the first send of a (client, request ID).
func (r *run) sent(at time.Duration, from, to node.Addr, m node.Msg) {
	r.historySent(at, from, to, m)
	if to == HubAddr {
		r.hubMon.sent(at, from, m)
	}
	r.flow.sent(at, from, to, m)
	r.infer.sent(at, from, to, m)
	if r.catCli[from] && r.hives[to] {
		if req, ok := m.(api.ModelDownloadReq); ok {
			r.hubMon.askedDownload(at, reqKey{from, req.ReqID}, req)
		}
	}
}

// historySent records what the registry and catalog histories and their monitors need of a
// send; it needs nothing of the simulator, so a run on real processes records the same.
func (r *run) historySent(at time.Duration, from, to node.Addr, m node.Msg) {
	if req, ok := m.(api.RegistryRequest); ok && to == r.queen {
		r.hist.Invoke(from, req, int64(at))
		r.mon.request(from, req)
	}
	if resp, ok := m.(api.RegistryResp); ok && from == r.queen {
		r.mon.response(at, to, resp)
	}
	if r.catCli[from] && r.hives[to] {
		switch req := m.(type) {
		case api.CatalogRegisterReq:
			r.catHist.Invoke(from, r.machineOf(to), req, req.ReqID, int64(at))
			r.catMon.invoke(from, r.machineOf(to), req)
		case api.CatalogGetReq:
			r.catHist.Invoke(from, r.machineOf(to), req, req.ReqID, int64(at))
		case api.CatalogCleanupReq:
			r.catHist.Invoke(from, r.machineOf(to), req, req.ReqID, int64(at))
		case api.CatalogRestoreReq:
			r.catHist.Invoke(from, r.machineOf(to), req, req.ReqID, int64(at))
			r.catMon.sentMaintenance(at, reqKey{from, req.ReqID}, req.MsgName(), req.Name)
		case api.CatalogBackupReq:
			r.catMon.sentMaintenance(at, reqKey{from, req.ReqID}, req.MsgName(), req.Name)
		case api.ModelDownloadReq:
			r.catHist.Invoke(from, r.machineOf(to), req, req.ReqID, int64(at))
			r.catMon.invoke(from, r.machineOf(to), api.CatalogRegisterReq{ReqID: req.ReqID, Provider: req.Provider, Reference: req.Reference()})
		case api.CatalogListReq:
			r.catMon.sentList(reqKey{from, req.ReqID}, req)
		}
	}
}

// delivered records returns at the client side: the first response that reaches the client.
func (r *run) delivered(at time.Duration, from, to node.Addr, m node.Msg) {
	r.flow.delivered(at, from, to, m)
	r.infer.delivered(at, from, to, m)
	r.watchTerminal(at, from, to, m)
	r.historyDelivered(at, from, to, m)
	if resp, ok := m.(api.HubResp); ok && from == HubAddr {
		r.hubMon.answered(at, to, resp)
	}
	if end, ok := m.(api.HubEnd); ok && from == HubAddr {
		r.hubMon.closed(reqKey{to, end.ReqID})
	}
	if resp, ok := m.(api.CatalogResp); ok && r.catCli[to] && r.hives[from] && resp.Op == (api.ModelDownloadReq{}).MsgName() {
		r.hubMon.downloadAnswered(at, to, resp, r.sc.Chaos+downloadGrace)
	}
}

// historyDelivered is historySent's counterpart for deliveries: returns at the client side.
func (r *run) historyDelivered(at time.Duration, from, to node.Addr, m node.Msg) {
	if resp, ok := m.(api.RegistryResp); ok && from == r.queen {
		r.hist.Return(to, resp, int64(at))
	}
	if resp, ok := m.(api.CatalogResp); ok && r.catCli[to] && r.hives[from] {
		r.catHist.Return(to, resp, int64(at))
		r.catMon.answer(at, r.machineOf(from), to, resp)
	}
}

func (r *run) observed(at time.Duration, from node.Addr, o node.Observation) {
	if from == r.queen {
		r.hist.Internal(o, int64(at))
	}
	if e, ok := o.(api.CatalogRebuilt); ok && r.hives[from] {
		r.catHist.Rebuilt(from, r.machineOf(from), int64(at))
		r.catMon.rebuilt(r.machineOf(from), e)
	}
}

// healAll ends the chaos phase: the network heals, paused processes resume, and processes
// that are down start again.
func (r *run) healAll() {
	r.inj.HealAll()
	for _, a := range r.s.Addrs() {
		if r.s.Paused(a) {
			r.s.Resume(a)
		}
		if !r.s.Up(a) {
			r.s.Restart(a, 0)
		}
	}
}

func (r *run) completed() int {
	n := 0
	for _, c := range r.sc.Clients {
		if k, ok := r.s.Node(c.Addr).(*keeper.Keeper); ok {
			n += k.Stats().Completed
		}
	}
	return n
}

func (r *run) judge(res *Result, o Options, completedAtChaos int) {
	add := func(c CheckerResult) { res.Checkers = append(res.Checkers, c) }
	res.annotate = r.faultAnnotations()
	assumptions := r.checkAssumptions(res)
	for _, c := range assumptions {
		add(c)
	}
	if failed(assumptions) {
		return
	}
	if len(r.sc.Clients) > 0 || r.sc.WorkerCount() > 0 {
		add(r.checkLinearizable(res, o))
		for _, c := range r.mon.results() {
			add(c)
		}
	}
	if len(r.sc.CatalogClients) > 0 {
		for _, c := range r.checkCatalogs(res, o) {
			add(c)
		}
	}
	if r.hub != nil {
		for _, c := range r.checkDownloads() {
			add(c)
		}
	}
	if len(r.sc.InferClients) > 0 {
		for _, c := range r.checkInference() {
			add(c)
		}
	}
	add(r.checkLiveness(completedAtChaos))
	res.Passed = !failed(res.Checkers)
}

func failed(cs []CheckerResult) bool {
	for _, c := range cs {
		if !c.OK {
			return true
		}
	}
	return false
}

// checkAssumptions: a run that did no work, or never reached the rare path it is about, proves
// nothing and is invalid rather than passed.
func (r *run) checkAssumptions(res *Result) []CheckerResult {
	work := CheckerResult{Name: "workload ran", Stage: "assumptions"}
	completed := r.completed()
	catOps := r.catalogOperations()
	inferDone := r.inferCompleted()
	work.OK = (len(r.sc.Clients) == 0 || completed > 0 && r.hist.Len() > 0) && (len(r.sc.CatalogClients) == 0 || catOps > 0) &&
		(len(r.sc.InferClients) == 0 || inferDone > 0)
	work.Detail = fmt.Sprintf("%d pieces of work completed, %d registry operations recorded, %d catalog operations answered",
		completed, r.hist.Len(), catOps)
	if len(r.sc.InferClients) > 0 {
		work.Detail += fmt.Sprintf(", %d completions", inferDone)
	}
	out := []CheckerResult{work}
	if len(r.sc.Require) > 0 {
		c := CheckerResult{Name: "required paths reached", Stage: "assumptions", OK: true}
		var parts []string
		for _, m := range r.sc.Require {
			n := res.Marks[m]
			parts = append(parts, fmt.Sprintf("%q x%d", m, n))
			if n == 0 {
				c.OK = false
			}
		}
		c.Detail = strings.Join(parts, ", ")
		if !c.OK {
			c.Detail += " (a required path was never reached: this run is invalid, not a pass)"
		}
		out = append(out, c)
	}
	return out
}

// checkTimeout bounds each linearizability check.
func checkTimeout(o Options) time.Duration {
	if o.CheckTimeout == 0 {
		return 30 * time.Second
	}
	return o.CheckTimeout
}

func (r *run) catalogOperations() int {
	n := 0
	for _, c := range r.sc.CatalogClients {
		if k, ok := r.s.Node(c.Addr).(*keeper.CatalogClient); ok {
			n += k.Stats().Operations
		}
	}
	return n
}

func (r *run) checkLinearizable(res *Result, o Options) CheckerResult {
	timeout := checkTimeout(o)
	ops := r.hist.Operations()
	lin := model.CheckRegistry(ops, timeout)
	res.lin = &lin
	res.Operations = lin.Ops
	res.CheckSeconds = lin.Elapsed.Seconds()
	c := CheckerResult{Name: "registry linearizable", Stage: "linearizability"}
	switch lin.Verdict {
	case porcupine.Ok:
		c.OK = true
		c.Detail = fmt.Sprintf("%d operations in %d partitions (%d without a reply) linearizable; checked in %v",
			lin.Ops, lin.Partitions, r.hist.Open(), lin.Elapsed.Round(time.Millisecond))
	case porcupine.Illegal:
		c.Detail = fmt.Sprintf("%d operations in %d partitions: NOT linearizable: no order of the operations explains what the clients saw (see history.html)",
			lin.Ops, lin.Partitions)
	default:
		c.Detail = fmt.Sprintf("check timed out after %v: not proven (counts as a failure)", timeout)
	}
	return c
}

// faultAnnotations mark each fault on porcupine's timeline.
func (r *run) faultAnnotations() []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, f := range r.sc.Faults {
		end := f.At + f.For
		out = append(out, porcupine.Annotation{Tag: "faults", Start: int64(f.At), End: int64(end),
			Description: f.Kind, Details: fmt.Sprintf("%s targets=%v for=%v value=%d", f.Kind, f.Targets, f.For, f.Value),
			BackgroundColor: "#fde2e2"})
	}
	return out
}

// checkLiveness: after the settle phase every live hive's workers are registered with their
// current incarnation and healthy (unless the registry is full), no record is a ghost, and
// clients made progress after the faults stopped.
func (r *run) checkLiveness(completedAtChaos int) CheckerResult {
	c := CheckerResult{Name: "registry converges after faults stop", Stage: "liveness"}
	q, ok := r.s.Node(r.queen).(*queen.Queen)
	if !ok {
		c.Detail = "the queen is down at the end of the settle phase"
		return c
	}
	want := map[string]api.WorkerSpec{}
	var problems []string
	for _, h := range r.sc.Hives {
		hv, up := r.s.Node(h.Addr).(*hive.Hive)
		if !up && r.s.Gone(h.Addr) && h.ShutdownAt > 0 {
			continue // shut down on purpose: none of its workers may be left registered
		}
		if !up {
			problems = append(problems, fmt.Sprintf("hive %s is down", h.Addr))
			continue
		}
		for _, w := range hv.Workers() {
			want[w.ID] = w
		}
	}
	records := q.Records()
	for _, rec := range records {
		w, ok := want[rec.ID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("ghost worker %s in the registry", rec.ID))
		case rec.Incarnation != w.Incarnation || rec.Capability != w.Capability:
			problems = append(problems, fmt.Sprintf("worker %s registered as incarnation %d on %s, hive has %d on %s",
				rec.ID, rec.Incarnation, rec.Capability, w.Incarnation, w.Capability))
		case rec.Health != api.HealthHealthy:
			problems = append(problems, fmt.Sprintf("worker %s is %s", rec.ID, rec.Health))
		}
		delete(want, rec.ID)
	}
	if len(records) < r.sc.Queen.MaxWorkers {
		for _, id := range sortedKeys(want) {
			problems = append(problems, fmt.Sprintf("worker %s never registered", id))
		}
	}
	progress := r.completed() - completedAtChaos
	if progress <= 0 && len(r.sc.Clients) > 0 && r.anyClientActive() {
		problems = append(problems, "no work completed after the faults stopped")
	}
	c.OK = len(problems) == 0
	c.Detail = fmt.Sprintf("%d workers registered, %d pieces of work completed while settling", len(records), progress)
	if !c.OK {
		c.Detail = strings.Join(problems, "; ")
	}
	return c
}

func (r *run) anyClientActive() bool {
	for _, c := range r.sc.Clients {
		if c.Keeper.Acquisitions == 0 {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// LinearizabilityFailed reports whether a linearizability check ran and found a violation.
func (r *Result) LinearizabilityFailed() bool {
	return r.lin != nil && r.lin.Verdict == porcupine.Illegal || r.catLin != nil && r.catLin.Verdict == porcupine.Illegal
}

// WriteHistoryHTML writes porcupine's visualisation of the history that failed its
// linearizability check (the registry's, else the catalog's), annotated with the fault
// timeline.
func (r *Result) WriteHistoryHTML(path string) error {
	switch {
	case r.lin != nil && r.lin.Verdict == porcupine.Illegal:
		return r.lin.WriteVisualization(path, r.annotate)
	case r.catLin != nil && r.catLin.Verdict == porcupine.Illegal:
		return r.catLin.WriteVisualization(path, r.annotate)
	}
	return fmt.Errorf("no linearizability check failed in this run, so there is no history to draw")
}

// withPrefix returns the names that start with prefix: the plants of one component.
func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
