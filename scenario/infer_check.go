package scenario

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/plant"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/orch/worker"
	"github.com/rbee-sim/rbee-sim/sim"
)

// Inference runs: worker processes with simulated engines, inference clients, and the checks
// of the inference path.

// addWorkerProcesses starts, for every hive that runs worker processes, each worker and its
// engine on the hive's machine.
func (r *run) addWorkerProcesses() {
	r.workerProcs = map[node.Addr]api.WorkerSpec{}
	ecfg := sim.DefaultEngineConfig()
	if r.sc.Engine != nil {
		ecfg = *r.sc.Engine
	}
	for _, h := range r.sc.Hives {
		if !h.WorkerProcesses {
			continue
		}
		machine := h.Machine
		if machine == "" {
			machine = string(h.Addr)
		}
		if h.Spawn {
			r.addProcessTable(h, machine)
		}
		for _, w := range h.processes() {
			wcfg := worker.DefaultConfig()
			wcfg.ID, wcfg.Hive, wcfg.Engine, wcfg.Model = w.ID, h.Addr, EngineAddr(w.ID), w.Model
			wcfg.Slots, wcfg.QueueMax, wcfg.Plants = w.Slots, r.sc.WorkerQueue, plant.NewSet(withPrefix(r.sc.Plants, "worker-")...)
			r.workerProcs[node.Addr(w.ID)] = w
			// The engine stands for the GPU and its driver: it is there before any worker, and a
			// worker (re)loads its model into it when it starts.
			r.s.Add(EngineAddr(w.ID), machine, 0, func() node.Node { return sim.NewEngine(ecfg) })
			if !h.Spawn {
				r.s.Add(node.Addr(w.ID), machine, r.sc.WorkerStarts[w.ID], func() node.Node { return worker.New(wcfg) })
			}
			// A worker and its engine are one process: no delay, in order, never cut.
			r.s.Network().SetLink(node.Addr(w.ID), EngineAddr(w.ID), sim.LinkConfig{})
			r.s.Network().SetLink(EngineAddr(w.ID), node.Addr(w.ID), sim.LinkConfig{})
			// The queen talks to a worker over one TCP stream: in order, no jitter.
			r.s.Network().SetLink(r.queen, node.Addr(w.ID), orderedLink)
			r.s.Network().SetLink(node.Addr(w.ID), r.queen, orderedLink)
		}
	}
}

// orderedLink is a TCP stream inside the cluster: 1 ms, in order, untouched by the
// network-wide delay, loss and reordering faults (partitions still cut it); a message that
// finds its target dead tells the sender (node.PeerGone).
var orderedLink = sim.LinkConfig{Latency: time.Millisecond, Stream: true}

// addInferClients starts the inference clients a little after the hives, and schedules the
// operators' drains.
func (r *run) addInferClients() {
	r.goneResults = map[node.Addr][]keeper.InferResult{}
	for _, f := range r.sc.Faults {
		if f.Kind != "client-gone" || f.At <= 0 {
			continue
		}
		a := f.Targets[0]
		// Keep what the client had when it died: the checkers judge it.
		r.s.At(f.At-1, "keep the results of "+string(a), func() {
			if k, ok := r.s.Node(a).(*keeper.InferClient); ok {
				r.goneResults[a] = k.Results()
			}
		})
	}
	for _, d := range r.sc.Drains {
		d := d
		r.s.At(d.At, "operator drains "+d.Worker, func() { r.s.Inject("operator", d.Hive, api.WorkerDrain{Worker: d.Worker}) })
	}
	r.inferCli = map[node.Addr]bool{}
	r.infer = newInferMonitor(r)
	for i, c := range r.sc.InferClients {
		cfg := c.Client
		cfg.Plants = plant.NewSet(withPrefix(r.sc.Plants, "keeper-")...)
		r.inferCli[c.Addr] = true
		r.s.Add(c.Addr, string(c.Addr), 2*time.Second+time.Duration(i)*100*time.Millisecond,
			func() node.Node { return keeper.NewInferClient(cfg) })
		r.s.Network().SetLink(r.queen, c.Addr, orderedLink)
		r.s.Network().SetLink(c.Addr, r.queen, orderedLink)
	}
}

// inferMonitor watches the inference path on the wire: the stream the queen sends each client
// request (contiguous tokens, one end, nothing after it), the workers the queen routes to (never
// draining, stale or loading), and the deadlines it passes on (never extended).
type inferMonitor struct {
	r *run
	// streams are the queen's streams to clients, by (client, ReqID).
	streams map[reqKey]*queenStream
	// asked is when the queen received each client request and the time it had left, by seed
	// (seeds are unique per request in the scenarios; retries of one request share them).
	asked map[uint64]askedAt
	// routed counts the attempts the queen sent each worker.
	routed map[node.Addr]int
	// workerGot is when each worker received each attempt, and its Timeout.
	workerGot map[reqKey]askedAt
	// lastToken is when each worker last sent a token of an attempt.
	lastToken map[reqKey]time.Duration
	// workersBySeed are the workers each request (by seed) was routed to, in order;
	// completedSeeds the requests whose stream ended complete.
	workersBySeed  map[uint64][]node.Addr
	completedSeeds map[uint64]bool
	// seedOf maps a client request to its seed; busyAt is when the last ALL_SLOTS_BUSY of a
	// request (by seed) reached its client, and busyN how many it had.
	seedOf map[reqKey]uint64
	busyAt map[uint64]time.Duration
	busyN  map[uint64]int
	// busySeen are the attempts whose ALL_SLOTS_BUSY reached their client.
	busySeen map[reqKey]bool
	// running are the completions each worker has on its engine, by engine ReqID.
	running map[node.Addr]map[uint64]bool
	// outstanding are the attempts each worker holds (routed and not ended), running or queued.
	outstanding map[node.Addr]int
	// gens are the completions run on engines, by (worker, engine ReqID); seedClient is the
	// client of each request, by seed.
	gens       map[reqKey]*generation
	seedClient map[uint64]node.Addr
	shutdowns  int
	// first problems found, in words; empty when none.
	streamBad, routeBad, deadlineBad, backoffBad, slotBad, shutdownBad string
	maxRunning, refusals                                               int
	attempts, tokens                                                   int
}

type queenStream struct {
	next  int // the index the next token must have
	ended bool
	done  api.InferDone
}

type askedAt struct {
	at      time.Duration
	timeout time.Duration
}

func newInferMonitor(r *run) inferMonitor {
	return inferMonitor{r: r, streams: map[reqKey]*queenStream{}, asked: map[uint64]askedAt{},
		routed: map[node.Addr]int{}, workerGot: map[reqKey]askedAt{}, lastToken: map[reqKey]time.Duration{},
		workersBySeed: map[uint64][]node.Addr{}, completedSeeds: map[uint64]bool{}, seedOf: map[reqKey]uint64{},
		busyAt: map[uint64]time.Duration{}, busyN: map[uint64]int{}, busySeen: map[reqKey]bool{}, running: map[node.Addr]map[uint64]bool{}, outstanding: map[node.Addr]int{},
		gens: map[reqKey]*generation{}, seedClient: map[uint64]node.Addr{}}
}

func (m *inferMonitor) sent(at time.Duration, from, to node.Addr, msg node.Msg) {
	r := m.r
	if r != nil && (r.isWorkerProc(from) || r.isWorkerProc(EngineOf(from))) {
		m.engineTraffic(at, from, to, msg)
	}
	if r != nil && r.inferCli[from] {
		if x, ok := msg.(api.InferReq); ok {
			m.clientSent(at, from, x)
		}
		return
	}
	if r == nil || from != r.queen {
		if r != nil {
			if t, ok := msg.(api.InferToken); ok && r.isWorkerProc(from) && to == r.queen {
				m.lastToken[reqKey{from, t.ReqID}] = at
			}
		}
		return
	}
	switch x := msg.(type) {
	case api.InferToken:
		if !r.inferCli[to] {
			return
		}
		m.tokens++
		st := m.stream(to, x.ReqID)
		switch {
		case st.ended:
			m.bad(&m.streamBad, "at %v the queen sent %s token %d of request %d after it had ended the request (%s)", at, to, x.Index, x.ReqID, st.done.FinishReason)
		case x.Index != st.next:
			what := "skipped to"
			if x.Index < st.next {
				what = "repeated"
			}
			m.bad(&m.streamBad, "at %v the queen %s token %d of %s's request %d, where token %d was due: the stream must have no gap and no duplicate, also across failovers",
				at, what, x.Index, to, x.ReqID, st.next)
		}
		st.next = max(st.next, x.Index+1)
	case api.InferDone:
		if !r.inferCli[to] {
			return
		}
		st := m.stream(to, x.ReqID)
		if st.ended && (st.done.FinishReason != x.FinishReason || st.done.Tokens != x.Tokens || st.done.Err.Code != x.Err.Code) {
			m.bad(&m.streamBad, "at %v the queen ended %s's request %d a second time, differently: first %s with %d tokens (%s), now %s with %d tokens (%s)",
				at, to, x.ReqID, st.done.FinishReason, st.done.Tokens, st.done.Err.Code, x.FinishReason, x.Tokens, x.Err.Code)
		}
		if !st.ended && x.Tokens != st.next {
			m.bad(&m.streamBad, "at %v the queen ended %s's request %d saying %d tokens, but had sent %d", at, to, x.ReqID, x.Tokens, st.next)
		}
		st.ended, st.done = true, x
		if seed, ok := m.seedOf[reqKey{to, x.ReqID}]; ok && x.Err.OK() {
			m.completedSeeds[seed] = true
		}
	case api.InferReq:
		if !r.isWorkerProc(to) {
			return
		}
		m.attempts++
		m.routed[to]++
		if _, known := m.workerGot[reqKey{to, x.ReqID}]; !known {
			m.outstanding[to]++
			if m.outstanding[to] > r.workerProcs[to].Slots {
				r.s.Mark(markQueued)
			}
		}
		m.checkRoute(at, to)
		if ws := m.workersBySeed[x.Seed]; len(ws) == 0 || ws[len(ws)-1] != to {
			m.workersBySeed[x.Seed] = append(ws, to)
		}
		if a, ok := m.asked[x.Seed]; ok && a.timeout > 0 {
			if x.Timeout <= 0 || at+x.Timeout > a.at+a.timeout+time.Millisecond {
				m.bad(&m.deadlineBad, "at %v the queen sent %s a request with %v left (or none), but the client's deadline, counted from the queen's receipt at %v, left only %v: a deadline was extended",
					at, to, x.Timeout, a.at, a.at+a.timeout-at)
			}
		}
	}
}

func (m *inferMonitor) delivered(at time.Duration, from, to node.Addr, msg node.Msg) {
	r := m.r
	if r == nil {
		return
	}
	if d, ok := msg.(api.InferDone); ok && r.inferCli[to] && d.Err.Code == api.CodeAllSlotsBusy {
		if seed, ok := m.seedOf[reqKey{to, d.ReqID}]; ok && !m.busySeen[reqKey{to, d.ReqID}] {
			m.busySeen[reqKey{to, d.ReqID}] = true // replays of one refusal count once
			m.busyAt[seed] = at
			m.busyN[seed]++
		}
		return
	}
	x, ok := msg.(api.InferReq)
	if !ok {
		return
	}
	switch {
	case to == r.queen && r.inferCli[from]:
		if _, seen := m.asked[x.Seed]; !seen {
			m.asked[x.Seed] = askedAt{at: at, timeout: x.Timeout}
		}
	case r.isWorkerProc(to) && from == r.queen:
		m.workerGot[reqKey{to, x.ReqID}] = askedAt{at: at, timeout: x.Timeout}
	}
}

func (m *inferMonitor) stream(client node.Addr, id uint64) *queenStream {
	k := reqKey{client, id}
	st := m.streams[k]
	if st == nil {
		st = &queenStream{}
		m.streams[k] = st
	}
	return st
}

func (m *inferMonitor) bad(slot *string, format string, args ...any) {
	if *slot == "" {
		*slot = fmt.Sprintf(format, args...)
	}
}

// checkRoute: the worker the queen just routed to was routable in the queen's own registry:
// healthy, and neither loading nor draining.
func (m *inferMonitor) checkRoute(at time.Duration, w node.Addr) {
	q, ok := m.r.s.Node(m.r.queen).(*queen.Queen)
	if !ok {
		return
	}
	for _, rec := range q.Records() {
		if rec.ID != string(w) {
			continue
		}
		if rec.Health != api.HealthHealthy || rec.State == api.StateDraining || rec.State == api.StateLoading {
			m.bad(&m.routeBad, "at %v the queen routed a request to %s, which its registry holds as %s and %s: only healthy workers that are neither loading nor draining may get work",
				at, w, rec.State, rec.Health)
		}
		return
	}
	m.bad(&m.routeBad, "at %v the queen routed a request to %s, which is not in its registry", at, w)
}

func (r *run) isWorkerProc(a node.Addr) bool { _, ok := r.workerProcs[a]; return ok }

// inferResults are every inference client's results, by client address.
func (r *run) inferResults() map[node.Addr][]keeper.InferResult {
	out := map[node.Addr][]keeper.InferResult{}
	for _, c := range r.sc.InferClients {
		if k, ok := r.s.Node(c.Addr).(*keeper.InferClient); ok {
			out[c.Addr] = k.Results()
		} else if res, ok := r.goneResults[c.Addr]; ok {
			out[c.Addr] = res
		}
	}
	return out
}

// inferCompleted counts the requests that were served: completed, or ended with tokens.
func (r *run) inferCompleted() int {
	n := 0
	for _, res := range r.inferResults() { //det:sorted (a count)
		for _, x := range res {
			if x.Outcome == keeper.OutcomeCompleted || len(x.Tokens) > 0 {
				n++
			}
		}
	}
	return n
}

// inferStallGrace is how long after the faults stop a request may still be open: a request
// that began during the chaos may be waiting for its stall detection (60s) and a retry.
const inferStallGrace = 3 * time.Minute

// checkInference judges the inference path.
func (r *run) checkInference() []CheckerResult {
	m := &r.infer
	stream := CheckerResult{Name: "each request streams contiguous tokens and ends once", Stage: "monitors", OK: m.streamBad == ""}
	stream.Detail = m.streamBad
	clients := r.inferResults()
	addrs := make([]node.Addr, 0, len(clients))
	for a := range clients { //det:sorted (sorted next)
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	var outcomes = map[keeper.Outcome]int{}
	for _, a := range addrs {
		for _, res := range clients[a] {
			outcomes[res.Outcome]++
			if len(res.Violations) > 0 && stream.OK {
				v := res.Violations[0]
				stream.OK = false
				stream.Detail = fmt.Sprintf("%s saw request %d of its request #%d break the stream protocol: %s at index %d (index %d was due)",
					a, v.ReqID, res.Index, v.Kind, v.Index, v.Want)
			}
		}
	}
	if stream.OK {
		stream.Detail = fmt.Sprintf("%d attempts routed, %d tokens relayed to clients, every stream contiguous with one end", m.attempts, m.tokens)
	}
	route := CheckerResult{Name: "requests are routed only to healthy workers that are neither loading nor draining", Stage: "monitors",
		OK: m.routeBad == "", Detail: m.routeBad}
	if route.OK {
		route.Detail = fmt.Sprintf("%d attempts over %d workers, each routable when routed (per worker: %s)", m.attempts, len(m.routed), m.routedSummary())
	}
	deadline := CheckerResult{Name: "deadlines are passed on, never extended, and work stops when they pass", Stage: "monitors",
		OK: m.deadlineBad == "", Detail: m.deadlineBad}
	if deadline.OK {
		deadline.OK, deadline.Detail = r.checkWorkStopsAtDeadline()
	}
	live := CheckerResult{Name: "every request ends once the faults stop", Stage: "liveness", OK: true}
	var open []string
	for _, a := range addrs {
		if k, ok := r.s.Node(a).(*keeper.InferClient); ok {
			for _, id := range k.Pending() {
				open = append(open, fmt.Sprintf("%s request %d", a, id))
			}
		}
	}
	if len(open) > 0 {
		live.OK = false
		live.Detail = fmt.Sprintf("%d requests were still open %v after the faults stopped: %s", len(open), r.sc.Settle, strings.Join(open, ", "))
	} else {
		live.Detail = fmt.Sprintf("every request ended: %s", outcomeSummary(outcomes))
	}
	backoff := CheckerResult{Name: "clients back off 1s, 2s, 4s after ALL_SLOTS_BUSY", Stage: "monitors", OK: m.backoffBad == "", Detail: m.backoffBad}
	if backoff.OK {
		n := 0
		for _, c := range m.busyN { //det:sorted (a sum)
			n += c
		}
		backoff.Detail = fmt.Sprintf("%d ALL_SLOTS_BUSY refusals reached clients; every new attempt kept the backoff", n)
	}
	slots := CheckerResult{Name: "slots never over-allocated, and freed on every path", Stage: "monitors", OK: m.slotBad == "", Detail: m.slotBad}
	if slots.OK {
		slots.Detail = fmt.Sprintf("at most %d completions at once on a worker's engine; %d ALL_SLOTS_BUSY refusals, each with every slot in use", m.maxRunning, m.refusals)
	}
	out := []CheckerResult{stream, route, deadline, backoff, slots, r.checkCompletions(addrs, clients), r.checkGoneClients()}
	out = append(out, r.scenarioInferChecks(addrs, clients)...)
	return append(out, live)
}

// scenarioInferChecks are the checks of one inference scenario's promise.
func (r *run) scenarioInferChecks(addrs []node.Addr, clients map[node.Addr][]keeper.InferResult) []CheckerResult {
	each := func(name string, judge func(a node.Addr, spec keeper.InferSpec, x keeper.InferResult) string, okDetail string) CheckerResult {
		c := CheckerResult{Name: name, Stage: "monitors", OK: true, Detail: okDetail}
		for _, a := range addrs {
			specs := r.requestsOf(a)
			for _, x := range clients[a] {
				if x.Index >= len(specs) {
					continue
				}
				if why := judge(a, specs[x.Index], x); why != "" {
					c.OK, c.Detail = false, fmt.Sprintf("%s request #%d: %s", a, x.Index, why)
					return c
				}
			}
		}
		return c
	}
	switch r.sc.ID {
	case "inference/timeout":
		return []CheckerResult{each("a generation past max_time ends with timeout, GENERATION_TIMEOUT and its partial output",
			func(_ node.Addr, spec keeper.InferSpec, x keeper.InferResult) string {
				if x.Err.Code == api.CodeGenerationTimeout && (x.FinishReason != api.FinishTimeout || len(x.Tokens) == 0) {
					return fmt.Sprintf("GENERATION_TIMEOUT with finish_reason %q and %d tokens: want timeout and the partial output", x.FinishReason, len(x.Tokens))
				}
				if x.FinishReason == api.FinishLength && spec.MaxTime > 0 && x.DoneAt.Sub(x.FirstTokenAt) > spec.MaxTime+2*time.Second {
					return fmt.Sprintf("generated for %v, past its max_time of %v", x.DoneAt.Sub(x.FirstTokenAt), spec.MaxTime)
				}
				return ""
			}, "every generation that reached max_time ended with timeout and kept its tokens")}
	case "inference/cancel":
		return []CheckerResult{each("a cancelled request ends interrupted (exit 130) with its partial output, or completed if it finished first",
			func(_ node.Addr, spec keeper.InferSpec, x keeper.InferResult) string {
				switch {
				case spec.CancelAfter == 0, x.Outcome == keeper.OutcomeCompleted, x.Outcome == keeper.OutcomeOpen:
					return ""
				case x.Outcome == keeper.OutcomeUnavailable && x.ExitCode == 3 && len(x.Tokens) == 0:
					return "" // the queen was down or cut off: nothing to cancel
				case x.Err.Code == api.CodeWorkerLost:
					return "" // the worker died before the cancel reached it
				}
				if x.Outcome != keeper.OutcomeInterrupted || x.ExitCode != 130 {
					return fmt.Sprintf("cancelled after %v, it ended %q with exit code %d (%s)", spec.CancelAfter, x.Outcome, x.ExitCode, x.Err.Error())
				}
				return ""
			}, "every cancelled request ended interrupted with exit code 130, had completed first, or never reached an unreachable queen")}
	case "e2e/load-balancing":
		return []CheckerResult{r.checkSpread()}
	case "e2e/graceful-shutdown":
		return []CheckerResult{each("no request fails when a hive stops gracefully while another serves the model",
			func(_ node.Addr, _ keeper.InferSpec, x keeper.InferResult) string {
				switch {
				case x.Outcome == keeper.OutcomeCompleted, x.Outcome == keeper.OutcomeOpen:
					return ""
				case x.Outcome == keeper.OutcomeUnavailable && len(x.Tokens) == 0:
					return ""
				}
				return fmt.Sprintf("it ended %q with %q: a graceful stop finishes or hands back in-flight requests", x.Outcome, x.Err.Error())
			}, "every request completed across the graceful shutdown")}
	case "lifecycle/shutdown":
		c := CheckerResult{Name: "a hive told to stop exits within 30s with every worker stopped", Stage: "monitors",
			OK: r.infer.shutdownBad == "" && r.infer.shutdowns > 0, Detail: r.infer.shutdownBad}
		if c.OK {
			c.Detail = fmt.Sprintf("%d hives shut down, each gone within %v with no worker process left", r.infer.shutdowns, shutdownBound)
		} else if c.Detail == "" {
			c.Detail = "no shutdown was checked"
		}
		return []CheckerResult{c}
	case "inference/stall":
		return []CheckerResult{each("a stream that stalls ends with its partial output kept",
			func(_ node.Addr, _ keeper.InferSpec, x keeper.InferResult) string {
				if x.Outcome == keeper.OutcomeCompleted || x.Outcome == keeper.OutcomeOpen || len(x.Tokens) == 0 {
					return ""
				}
				if x.Outcome != keeper.OutcomeStalled && x.Err.Code != api.CodeWorkerLost {
					return fmt.Sprintf("it stopped after %d tokens and ended %q with %q: want a stall (kept by the client) or WORKER_LOST (kept by the queen)", len(x.Tokens), x.Outcome, x.Err.Error())
				}
				if x.Err.Suggestion == "" {
					return fmt.Sprintf("it ended %q without saying what to do", x.Err.Error())
				}
				return ""
			}, "every stalled stream ended with its tokens kept and advice")}
	case "e2e/rolling-update":
		return []CheckerResult{each("no request fails because of the rolling update",
			func(_ node.Addr, _ keeper.InferSpec, x keeper.InferResult) string {
				switch {
				case x.Outcome == keeper.OutcomeCompleted, x.Outcome == keeper.OutcomeOpen:
					return ""
				case x.Outcome == keeper.OutcomeUnavailable && len(x.Tokens) == 0:
					return "" // the queen was paused: the client gave up before any work
				}
				return fmt.Sprintf("it ended %q with %q during a rolling update, which must lose no request", x.Outcome, x.Err.Error())
			}, "every request completed across the rolling update (or never reached a paused queen)")}
	case "e2e/failover":
		return []CheckerResult{each("a request that failed over completes, or ends with WORKER_LOST keeping its partial output",
			func(a node.Addr, spec keeper.InferSpec, x keeper.InferResult) string {
				if len(r.infer.workersBySeed[spec.Seed]) < 2 || x.Outcome == keeper.OutcomeCompleted {
					return ""
				}
				if (x.Outcome == keeper.OutcomeStalled || x.Outcome == keeper.OutcomeUnavailable) && r.queenCrashedDuring(x) {
					return "" // the queen crashed and forgot the request: the client's stall rule ended it, output kept
				}
				if x.Outcome == keeper.OutcomeBusy && len(x.Tokens) == 0 && x.Err.Suggestion != "" {
					// Every attempt was refused before its first token (a client retries a busy
					// refusal only then): no stream broke, and "busy, retry later" is the truth.
					return ""
				}
				if x.Err.Code != api.CodeWorkerLost || x.Err.Suggestion == "" {
					return fmt.Sprintf("routed to %v, it ended %q with %q: after a failover the client gets the complete stream or WORKER_LOST with advice",
						r.infer.workersBySeed[spec.Seed], x.Outcome, x.Err.Error())
				}
				return ""
			}, "every request that failed over completed, or ended with WORKER_LOST and its partial output")}
	case "e2e/cold-start":
		return r.coldStartChecks(addrs, clients)
	case "validation/max-tokens", "validation/prompt-injection", "validation/batch-size":
		return []CheckerResult{each("invalid requests are refused before any work, saying why and what to do",
			func(a node.Addr, spec keeper.InferSpec, x keeper.InferResult) string {
				if x.Outcome != keeper.OutcomeRefused {
					return ""
				}
				if r.sc.ID == "validation/batch-size" && (a != r.sc.InferClients[0].Addr || x.Index >= 8) {
					return fmt.Sprintf("refused (%q), but its batch fits the slots or was queued on purpose", x.Err.Error())
				}
				if _, sent := r.infer.asked[spec.Seed]; sent {
					return "refused by the client, yet the queen received it"
				}
				if x.Sends != 0 || x.ExitCode != 2 || x.Err.Suggestion == "" {
					return fmt.Sprintf("refused with %d sends, exit code %d, error %q: want no send, exit code 2 and a suggestion", x.Sends, x.ExitCode, x.Err.Error())
				}
				if r.sc.ID == "validation/max-tokens" && !strings.Contains(x.Err.Error(), fmt.Sprint(inferContext)) {
					return fmt.Sprintf("the refusal %q does not name the model's %d-token context", x.Err.Error(), inferContext)
				}
				if r.sc.ID == "validation/batch-size" && !strings.Contains(x.Err.Suggestion, "split it into 2 batches") {
					return fmt.Sprintf("the refusal %q does not suggest splitting the batch of 8 into 2", x.Err.Error())
				}
				if r.sc.ID == "validation/prompt-injection" && len(x.Findings) == 0 {
					return "refused without naming the instruction pattern it found"
				}
				return ""
			}, "every invalid request was refused before it was sent, with exit code 2 and a suggestion")}
	}
	return nil
}

// checkSpread: equal workers get work within a small factor of each other. Workers a fault
// touched (paused, crashed, on a paused or crashed hive's machine) are left out: a paused
// worker holds its requests longer and rightly gets fewer.
func (r *run) checkSpread() CheckerResult {
	c := CheckerResult{Name: "load spreads evenly over equal workers", Stage: "monitors", OK: true}
	touched := map[node.Addr]bool{}
	topo := r.sc.Topology()
	for _, f := range r.sc.Faults {
		for _, t := range f.Targets {
			touched[t] = true
			for a, m := range topo.Machines { //det:sorted (a set)
				if m == topo.Machines[t] && m != "" {
					touched[a] = true
				}
			}
		}
	}
	lo, hi := -1, 0
	var loW, hiW node.Addr
	for _, h := range r.sc.Hives {
		for _, w := range h.Workers {
			if touched[node.Addr(w.ID)] {
				continue
			}
			n := r.infer.routed[node.Addr(w.ID)]
			if lo < 0 || n < lo {
				lo, loW = n, node.Addr(w.ID)
			}
			if n > hi {
				hi, hiW = n, node.Addr(w.ID)
			}
		}
	}
	c.Detail = fmt.Sprintf("attempts per worker from %d (%s) to %d (%s)", lo, loW, hi, hiW)
	if lo < 0 || r.infer.attempts < 8*r.sc.WorkerCount() {
		c.Detail += "; too little load to judge the spread (fewer than 8 attempts per worker)"
		return c
	}
	if hi > 2*lo+4 {
		c.OK = false
		c.Detail = fmt.Sprintf("%s got %d attempts and %s only %d: least-outstanding routing should keep equal workers within a factor of two", hiW, hi, loW, lo)
	}
	return c
}

// checkWorkStopsAtDeadline: no worker sends a token of an attempt more than a bound after the
// deadline the attempt carried, counted from the worker's receipt.
func (r *run) checkWorkStopsAtDeadline() (bool, string) {
	const bound = 100 * time.Millisecond
	m := &r.infer
	judged := 0
	keys := sortedReqKeys(m.workerGot)
	for _, k := range keys {
		got := m.workerGot[k]
		if got.timeout <= 0 {
			continue
		}
		judged++
		if last, ok := m.lastToken[k]; ok && last > got.at+got.timeout+bound {
			return false, fmt.Sprintf("%s sent a token of attempt %d at %v, %v after the deadline it was given (received at %v with %v left): work must stop when the deadline passes",
				k.client, k.id, last, last-(got.at+got.timeout), got.at, got.timeout)
		}
	}
	return true, fmt.Sprintf("%d attempts with a deadline, none extended, none worked on past it", judged)
}

func (m *inferMonitor) routedSummary() string {
	ws := make([]string, 0, len(m.routed))
	for w, n := range m.routed { //det:sorted (sorted next)
		ws = append(ws, fmt.Sprintf("%s %d", w, n))
	}
	sort.Strings(ws)
	return strings.Join(ws, ", ")
}

func outcomeSummary(o map[keeper.Outcome]int) string {
	var parts []string
	for k, n := range o { //det:sorted (sorted next)
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// markInference sets the harness marks of what the clients saw, for the scenarios' required
// paths.
func (r *run) markInference() {
	for _, res := range r.inferResults() { //det:sorted (marks are counts)
		for _, x := range res {
			switch {
			case x.Outcome == keeper.OutcomeRefused:
				r.s.Mark(markRefused)
			case x.FinishReason == api.FinishStop:
				r.s.Mark(markFinishStop)
			case x.FinishReason == api.FinishLength:
				r.s.Mark(markFinishLength)
			case x.FinishReason == api.FinishTimeout && x.Err.Code == api.CodeGenerationTimeout:
				r.s.Mark(markFinishTimeout)
			case x.Err.Code == api.CodeDeadlineExceeded:
				r.s.Mark(markDeadline)
			}
			if x.BusyRetries > 0 {
				r.s.Mark(markBusyRetried)
			}
			if x.Outcome == keeper.OutcomeInterrupted && len(x.Tokens) > 0 {
				r.s.Mark(markCancelledRunning)
			}
			if len(x.Tokens) > 0 && (x.Outcome == keeper.OutcomeStalled || x.Err.Code == api.CodeWorkerLost) {
				r.s.Mark(markStalledPartial)
			}
			if x.Outcome == keeper.OutcomeCompleted && r.startedWorker(x.Worker) {
				r.s.Mark(markColdServed)
			}
		}
	}
	for _, f := range r.sc.Faults {
		if f.Kind != "client-gone" {
			continue
		}
		for _, g := range r.infer.gens { //det:sorted (a mark is a count)
			if r.infer.seedClient[g.seed] == f.Targets[0] && g.start <= f.At && (g.end < 0 || g.end > f.At) {
				r.s.Mark(markClientDied)
			}
		}
	}
	for seed, ws := range r.infer.workersBySeed { //det:sorted (marks are counts)
		if len(ws) > 1 && r.infer.completedSeeds[seed] {
			r.s.Mark(markFailover)
		}
	}
}

// busyBackoff is the schedule a client must keep after ALL_SLOTS_BUSY: its n-th new attempt of
// a request no sooner than busyBackoff[n-1] after the refusal reached it.
var busyBackoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// clientSent checks a client's new attempts after ALL_SLOTS_BUSY keep the backoff schedule.
func (m *inferMonitor) clientSent(at time.Duration, from node.Addr, x api.InferReq) {
	k := reqKey{from, x.ReqID}
	if _, seen := m.seedOf[k]; seen {
		return // a resend of the same attempt
	}
	m.seedOf[k] = x.Seed
	m.seedClient[x.Seed] = from
	n := m.busyN[x.Seed]
	if n == 0 {
		return
	}
	want := busyBackoff[min(n, len(busyBackoff))-1]
	if waited := at - m.busyAt[x.Seed]; waited+time.Millisecond < want {
		m.bad(&m.backoffBad, "at %v %s sent attempt %d of a request %v after its ALL_SLOTS_BUSY refusal, where the backoff asks for %v: retrying at once overloads a full cluster",
			at, from, n+1, waited, want)
	}
}

// checkCompletions: every completed request got exactly the model's completion for its prompt
// and seed (the simulated engine's is a pure function of them): the right tokens in the right
// order, ending at end-of-sequence with finish_reason stop or at max_tokens with length. Any
// token lost, repeated or mixed from another attempt shows here, failovers included.
func (r *run) checkCompletions(addrs []node.Addr, clients map[node.Addr][]keeper.InferResult) CheckerResult {
	c := CheckerResult{Name: "completed requests got exactly the model's completion", Stage: "monitors", OK: true}
	eosMean := engineEOSMean(r.sc)
	checked := 0
	for _, a := range addrs {
		specs := r.requestsOf(a)
		for _, x := range clients[a] {
			if x.Outcome != keeper.OutcomeCompleted || x.Index >= len(specs) {
				continue
			}
			spec := specs[x.Index]
			want, reason := sim.EngineCompletion(spec.Prompt, spec.Seed, spec.MaxTokens, eosMean)
			checked++
			bad := ""
			switch {
			case x.FinishReason != reason:
				bad = fmt.Sprintf("finish_reason %q, the model's completion ends with %q after %d tokens", x.FinishReason, reason, len(want))
			case len(x.Tokens) != len(want):
				bad = fmt.Sprintf("%d tokens, the model's completion has %d", len(x.Tokens), len(want))
			default:
				for i, t := range x.Tokens {
					if t.Index != i || t.Text != want[i] {
						bad = fmt.Sprintf("token %d is %q (index %d), the model's is %q", i, t.Text, t.Index, want[i])
						break
					}
				}
			}
			if bad != "" {
				c.OK, c.Detail = false, fmt.Sprintf("%s request #%d (seed %d, max_tokens %d) completed with %s", a, x.Index, spec.Seed, spec.MaxTokens, bad)
				return c
			}
		}
	}
	c.Detail = fmt.Sprintf("%d completed requests, each exactly the model's completion", checked)
	return c
}

// engineEOSMean is the mean completion length of the scenario's engines: what the model's
// completion of a request is judged with.
func engineEOSMean(sc Scenario) int {
	if sc.Engine != nil {
		return sc.Engine.EOSMean
	}
	return sim.DefaultEngineConfig().EOSMean
}

// EngineEOSMean is engineEOSMean for other packages: a real-mode run configures its CPU
// engines with it, so they produce the completions the checker expects.
func EngineEOSMean(sc Scenario) int { return engineEOSMean(sc) }

// EngineOf is the worker of an engine address ("worker-1-1-engine" -> "worker-1-1"), or "".
func EngineOf(a node.Addr) node.Addr {
	const suffix = "-engine"
	if s := string(a); len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return node.Addr(s[:len(s)-len(suffix)])
	}
	return ""
}

// engineTraffic follows the completions each worker runs on its engine: slots are never
// over-allocated, and a worker refuses work as ALL_SLOTS_BUSY only when its slots are full.
func (m *inferMonitor) engineTraffic(at time.Duration, from, to node.Addr, msg node.Msg) {
	w := from
	if m.r.isWorkerProc(EngineOf(from)) {
		w = EngineOf(from)
	}
	run := m.running[w]
	if run == nil {
		run = map[uint64]bool{}
		m.running[w] = run
	}
	slots := m.r.workerProcs[w].Slots
	switch x := msg.(type) {
	case api.EngineLoad:
		for id := range run { //det:sorted (each is ended; order does not matter)
			m.ended(w, id, at)
		}
		clear(run) // a (re)started worker: the engine drops what ran
	case api.EngineGenerate:
		run[x.ReqID] = true
		m.gens[reqKey{w, x.ReqID}] = &generation{worker: w, seed: x.Seed, start: at, end: -1}
		m.maxRunning = max(m.maxRunning, len(run))
		if len(run) > slots {
			m.bad(&m.slotBad, "at %v %s ran %d completions on its engine at once with %d slots", at, w, len(run), slots)
		}
	case api.EngineStop:
		delete(run, x.ReqID)
		m.ended(w, x.ReqID, at)
	case api.EngineDone:
		if from != w {
			delete(run, x.ReqID)
			m.ended(w, x.ReqID, at)
		}
	case api.InferDone:
		if from == w && to == m.r.queen && m.outstanding[w] > 0 {
			m.outstanding[w]--
		}
		if from == w && x.Err.Code == api.CodeAllSlotsBusy {
			m.refusals++
			if len(run) < slots {
				m.bad(&m.slotBad, "at %v %s refused a request with ALL_SLOTS_BUSY while its engine ran only %d completions of %d slots: a slot was not freed",
					at, w, len(run), slots)
			}
		}
	}
}

// addProcessTable adds the machine's process table, once, with the worker binary (unless the
// hive's spec says it is missing) at its version.
func (r *run) addProcessTable(h HiveSpec, machine string) {
	addr := ProcessTableAddr(machine)
	if r.tables[addr] {
		return
	}
	if r.tables == nil {
		r.tables = map[node.Addr]bool{}
	}
	r.tables[addr] = true
	version := h.WorkerVersion
	if version == "" {
		version = WorkerVersionDefault
	}
	plants := plant.NewSet(withPrefix(r.sc.Plants, "worker-")...)
	programs := map[string]sim.Program{}
	if !h.MissingBinary {
		programs["llm-worker-rbee"] = sim.Program{Version: version, New: func(args []string, self node.Addr) (node.Node, error) {
			cfg, err := worker.ParseArgs(args)
			if err != nil {
				return nil, err
			}
			cfg.Plants = plants
			for _, id := range h.IgnoreTerm {
				if id == cfg.ID {
					return termIgnorer{worker.New(cfg)}, nil
				}
			}
			return worker.New(cfg), nil
		}}
	}
	cfg := sim.ProcessTableConfig{Machine: machine, Programs: programs}
	r.s.Add(addr, machine, 0, func() node.Node { return sim.NewProcessTable(r.s, cfg) })
	if len(h.HeldPorts) > 0 {
		ports := h.HeldPorts
		r.s.At(0, "ports held on "+machine, func() {
			if t, ok := r.s.Node(addr).(*sim.ProcessTable); ok {
				for _, p := range ports {
					t.HoldPort(p, "another program")
				}
			}
		})
	}
	if h.ShutdownAt > 0 {
		hv := h.Addr
		r.s.At(h.ShutdownAt, "SIGTERM to "+string(hv), func() { r.s.Inject(addr, hv, api.ProcTerm{}) })
		r.s.At(h.ShutdownAt+shutdownBound, "check the shutdown of "+string(hv), func() { r.checkShutdownDone(hv, addr, h.ShutdownAt) })
	}
}

// shutdownBound is how long a hive's graceful shutdown may take, workers included.
const shutdownBound = 30 * time.Second

// checkShutdownDone: shutdownBound after its SIGTERM, the hive has exited and none of its
// worker processes is left on the machine.
func (r *run) checkShutdownDone(hv, table node.Addr, at time.Duration) {
	m := &r.infer
	m.shutdowns++
	if !r.s.Gone(hv) {
		m.bad(&m.shutdownBad, "%v after its SIGTERM at %v, hive %s is still running: a graceful shutdown must end within %v", shutdownBound, at, hv, shutdownBound)
		return
	}
	t, ok := r.s.Node(table).(*sim.ProcessTable)
	if !ok {
		return
	}
	for _, p := range t.Live() {
		if _, mine := r.workerProcs[p.Addr]; mine {
			m.bad(&m.shutdownBad, "%v after hive %s's SIGTERM at %v, its worker %s (pid %d) is still running: a zombie", shutdownBound, hv, at, p.Addr, p.PID)
			return
		}
	}
}

// termIgnorer is a worker process that ignores SIGTERM, as a stuck process does.
type termIgnorer struct{ *worker.Worker }

func (t termIgnorer) Handle(env node.Env, from node.Addr, m node.Msg) {
	if _, ok := m.(api.ProcTerm); ok {
		env.Observe(node.Mark("worker ignored TERM"))
		return
	}
	t.Worker.Handle(env, from, m)
}

// queenCrashedDuring reports whether a crash or power failure of the queen began while the
// request was open (the client's clock is the simulation's: no clock faults in these
// scenarios).
func (r *run) queenCrashedDuring(x keeper.InferResult) bool {
	from, to := x.SentAt.Sub(sim.Epoch), x.DoneAt.Sub(sim.Epoch)
	for _, f := range r.sc.Faults {
		if f.Kind != "crash-restart" && f.Kind != "power-fail" {
			continue
		}
		for _, t := range f.Targets {
			if t == r.queen && f.At >= from && f.At <= to {
				return true
			}
		}
	}
	return false
}

// requestsOf is the request list of an inference client, by its address.
func (r *run) requestsOf(a node.Addr) []keeper.InferSpec {
	for _, ic := range r.sc.InferClients {
		if ic.Addr == a {
			return ic.Client.Requests
		}
	}
	return nil
}

// generation is one completion on an engine: when it started and ended (-1 while running).
type generation struct {
	worker     node.Addr
	seed       uint64
	start, end time.Duration
}

func (m *inferMonitor) ended(w node.Addr, id uint64, at time.Duration) {
	if g := m.gens[reqKey{w, id}]; g != nil && g.end < 0 {
		g.end = at
	}
}

// goneBound is how long after a client dies its requests may still run on an engine: the
// broken stream's notice, the queen's cancel and the worker's stop.
const goneBound = 2 * time.Second

// checkGoneClients: when a client dies for good without cancelling (client-gone), every
// completion running for it stops within goneBound: nobody would read its tokens.
func (r *run) checkGoneClients() CheckerResult {
	c := CheckerResult{Name: "work for a client that went away stops", Stage: "monitors", OK: true}
	m := &r.infer
	keys := sortedReqKeys(m.gens)
	judged := 0
	for _, f := range r.sc.Faults {
		if f.Kind != "client-gone" {
			continue
		}
		gone := f.Targets[0]
		for _, k := range keys {
			g := m.gens[k]
			if m.seedClient[g.seed] != gone || g.start > f.At || (g.end >= 0 && g.end <= f.At) {
				continue
			}
			judged++
			if g.end < 0 || g.end > f.At+goneBound {
				c.OK = false
				c.Detail = fmt.Sprintf("%s died at %v, but %s kept generating its request (seed %d) until %v: a request whose client went away must stop within %v",
					gone, f.At, g.worker, g.seed, endText(g.end), goneBound)
				return c
			}
		}
	}
	c.Detail = fmt.Sprintf("%d completions were running when their client died; each stopped within %v", judged, goneBound)
	return c
}

func endText(end time.Duration) string {
	if end < 0 {
		return "the end of the run"
	}
	return end.String()
}

// sortedReqKeys are a map's (client, request) keys, by client then request ID.
func sortedReqKeys[V any](m map[reqKey]V) []reqKey {
	keys := make([]reqKey, 0, len(m))
	for k := range m { //det:sorted (sorted next)
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].client != keys[j].client {
			return keys[i].client < keys[j].client
		}
		return keys[i].id < keys[j].id
	})
	return keys
}
