package scenario

import (
	"fmt"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/queen"
	"github.com/rbee-sim/rbee-sim/sim"
)

// monitors check safety invariants on every event, as the run goes, and remember the first
// violation of each.
type monitors struct {
	sc  Scenario
	s   *sim.Sim
	max int
	// casReqs remembers each compare-and-set request by (client, request ID).
	casReqs map[reqKey]api.UpdateStateReq
	// casWinners maps (worker, expected version) to the request that won it.
	casWinners map[casKey]reqKey
	overMax    string
	stale      string
	twoWinners string
	casChecked int
	handedOut  int
	// casSeen maps (worker, expected version) to the first request that tried it; contended
	// counts compare-and-sets that raced another for the same version.
	casSeen   map[casKey]reqKey
	contended int
}

// markContended is the harness's own coverage mark: two compare-and-sets raced for one version.
const markContended = "harness: contended compare-and-set"

type reqKey struct {
	client node.Addr
	id     uint64
}

type casKey struct {
	worker  string
	version uint64
}

func newMonitors(sc Scenario, s *sim.Sim) *monitors {
	return &monitors{sc: sc, s: s, max: sc.Queen.MaxWorkers, casReqs: map[reqKey]api.UpdateStateReq{},
		casWinners: map[casKey]reqKey{}, casSeen: map[casKey]reqKey{}}
}

// afterEvent: never more than the maximum registered.
func (m *monitors) afterEvent(at time.Duration) {
	if m.overMax != "" {
		return
	}
	if q, ok := m.s.Node(m.sc.Queen.Addr).(*queen.Queen); ok && q.Len() > m.max {
		m.overMax = fmt.Sprintf("at %v the registry held %d workers, over its maximum of %d", at, q.Len(), m.max)
	}
}

func (m *monitors) request(from node.Addr, req api.RegistryRequest) {
	if u, ok := req.(api.UpdateStateReq); ok && u.To == api.StateBusy {
		key := reqKey{from, u.ReqID}
		m.casReqs[key] = u
		ck := casKey{u.Worker, u.ExpectVersion}
		if first, seen := m.casSeen[ck]; !seen {
			m.casSeen[ck] = key
		} else if first != key {
			m.contended++
		}
	}
}

// response checks every answer the queen sends: a worker handed out (claim, or compare-and-set
// to busy) must be healthy, and one (worker, version) has at most one compare-and-set winner.
func (m *monitors) response(at time.Duration, to node.Addr, r api.RegistryResp) {
	if !r.Err.OK() {
		return
	}
	handedOut := r.Op == (api.ClaimReq{}).MsgName()
	if r.Op == (api.UpdateStateReq{}).MsgName() && r.Record.State == api.StateBusy {
		handedOut = true
		m.checkCAS(at, to, r)
	}
	if !handedOut {
		return
	}
	m.handedOut++
	if r.Record.Health != api.HealthHealthy && m.stale == "" {
		m.stale = fmt.Sprintf("at %v the queen handed worker %s (health %s) to %s", at, r.Record.ID, r.Record.Health, to)
	}
}

func (m *monitors) checkCAS(at time.Duration, to node.Addr, r api.RegistryResp) {
	key := reqKey{to, r.ReqID}
	req, ok := m.casReqs[key]
	if !ok {
		return
	}
	m.casChecked++
	ck := casKey{req.Worker, req.ExpectVersion}
	winner, seen := m.casWinners[ck]
	if !seen {
		m.casWinners[ck] = key
		return
	}
	if winner != key && m.twoWinners == "" {
		m.twoWinners = fmt.Sprintf("at %v two compare-and-sets of worker %s from version %d both won: request %d of %s and request %d of %s",
			at, req.Worker, req.ExpectVersion, winner.id, winner.client, key.id, key.client)
	}
}

// checkMaxRegistered names the monitor of the registry's size.
const checkMaxRegistered = "never more than the maximum registered"

func (m *monitors) results() []CheckerResult {
	mk := func(name, violation, okDetail string) CheckerResult {
		if violation != "" {
			return CheckerResult{Name: name, Stage: "monitors", Detail: violation}
		}
		return CheckerResult{Name: name, Stage: "monitors", OK: true, Detail: okDetail}
	}
	return []CheckerResult{
		mk(checkMaxRegistered, m.overMax, fmt.Sprintf("maximum %d held on every event", m.max)),
		mk("a stale worker is never handed out", m.stale, fmt.Sprintf("%d hand-outs, all to healthy workers", m.handedOut)),
		mk("exactly one winner per compare-and-set", m.twoWinners, fmt.Sprintf("%d winning compare-and-sets, one per version", m.casChecked)),
	}
}
