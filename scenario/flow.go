package scenario

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// flowMonitor watches the traffic of downloads: the body bytes each hive receives from the hub
// (its bandwidth limit), the heartbeat round trips of the hives (control traffic must not be
// starved by downloads) and the progress events the hives send to clients.
type flowMonitor struct {
	r *run
	// arrivals are the body chunks each hive received, in time order.
	arrivals map[node.Addr][]arrival
	// received counts each hive's body bytes; overBurst notes those past their burst.
	received  map[node.Addr]int64
	overBurst map[node.Addr]bool
	// afterCancel counts the body bytes that reached a hive after it had closed their download:
	// sent before the hub saw the cancel, they are not the limit's to stop.
	afterCancel map[node.Addr]int64
	// streams are the hub's bodies as the hives received them, by (hive, GET request ID).
	streams map[reqKey]*stream
	// hbSent is when each heartbeat (hive, request ID) was first sent; rtts the round trips.
	hbSent map[reqKey]time.Duration
	rtts   []roundTrip
	// asks are the download requests of clients, answers when they were answered (sent).
	asks    map[reqKey]ask
	answers map[reqKey]time.Duration
	// progress counts the Progress messages sent to each request; badProgress is the first
	// inconsistent one, lateProgress the first sent after its request was answered.
	progress     map[reqKey][]time.Duration
	progressSent int
	resumedSeen  int
	badProgress  string
	lateProgress string
}

type arrival struct {
	at    time.Duration
	bytes int64
}

type stream struct {
	hive        node.Addr
	path        string
	first, last time.Duration
	// cancelled: the hive closed it; chunks arriving after were on their way already.
	cancelled bool
}

type roundTrip struct {
	hive       node.Addr
	sent, took time.Duration
}

type ask struct {
	hive node.Addr
	path string
	at   time.Duration
}

func newFlowMonitor(r *run) flowMonitor {
	return flowMonitor{r: r, arrivals: map[node.Addr][]arrival{}, received: map[node.Addr]int64{}, afterCancel: map[node.Addr]int64{}, overBurst: map[node.Addr]bool{}, streams: map[reqKey]*stream{},
		hbSent: map[reqKey]time.Duration{}, asks: map[reqKey]ask{}, answers: map[reqKey]time.Duration{},
		progress: map[reqKey][]time.Duration{}}
}

// progressTolerance is how far a Progress's Percent may be from 100*Bytes/Total.
const progressTolerance = 0.01

func (m *flowMonitor) sent(at time.Duration, from, to node.Addr, msg node.Msg) {
	if m.r == nil {
		return
	}
	r := m.r
	switch x := msg.(type) {
	case api.HeartbeatReq:
		if r.hives[from] && to == r.queen {
			if _, ok := m.hbSent[reqKey{from, x.ReqID}]; !ok {
				m.hbSent[reqKey{from, x.ReqID}] = at
			}
		}
	case api.HubCancel:
		if st := m.streams[reqKey{from, x.ReqID}]; st != nil && r.hives[from] {
			st.cancelled = true
		}
	case api.HubGetReq:
		if r.hives[from] && to == HubAddr {
			m.streams[reqKey{from, x.ReqID}] = &stream{hive: from, path: x.Repo + "/" + x.Revision + "/" + x.File, first: -1}
		}
	case api.ModelDownloadReq:
		key := reqKey{from, x.ReqID}
		if _, ok := m.asks[key]; !ok && r.catCli[from] && r.hives[to] {
			rev := x.Revision
			if rev == "" {
				rev = "main"
			}
			m.asks[key] = ask{hive: to, path: x.Repo + "/" + rev + "/" + x.File, at: at}
		}
	case api.CatalogResp:
		key := reqKey{to, x.ReqID}
		if _, ok := m.answers[key]; !ok && r.hives[from] && r.catCli[to] && x.Op == (api.ModelDownloadReq{}).MsgName() {
			m.answers[key] = at
		}
	case provision.Progress:
		if r.hives[from] && r.catCli[to] {
			m.sentProgress(at, from, to, x)
		}
	}
}

// sentProgress checks one Progress a hive sent a client.
func (m *flowMonitor) sentProgress(at time.Duration, from, to node.Addr, p provision.Progress) {
	key := reqKey{to, p.ReqID}
	m.progressSent++
	m.progress[key] = append(m.progress[key], at)
	if p.Resumed {
		m.resumedSeen++
		m.r.s.Mark("harness: progress said resuming from N%")
	}
	if _, answered := m.answers[key]; answered && m.lateProgress == "" {
		m.lateProgress = fmt.Sprintf("at %v %s sent %s progress on request %d (%s) after it had answered it: the stream must end with the answer",
			at, from, to, p.ReqID, p.ID)
	}
	var bad string
	switch {
	case p.Total <= 0 || p.Bytes < 0 || p.Bytes > p.Total:
		bad = fmt.Sprintf("bytes %d of a %d-byte file", p.Bytes, p.Total)
	case math.Abs(p.Percent-100*float64(p.Bytes)/float64(p.Total)) > progressTolerance:
		bad = fmt.Sprintf("%.2f%% for %d of %d bytes (that is %.2f%%)", p.Percent, p.Bytes, p.Total, 100*float64(p.Bytes)/float64(p.Total))
	case p.BytesPerSec < 0:
		bad = fmt.Sprintf("a speed of %d bytes/s", p.BytesPerSec)
	case p.Resumed && (p.ResumedFromPercent <= 0 || p.ResumedFromPercent > 100):
		bad = fmt.Sprintf("resuming from %.2f%%", p.ResumedFromPercent)
	}
	if bad != "" && m.badProgress == "" {
		m.badProgress = fmt.Sprintf("at %v %s told %s (request %d, %s) %s: progress must be consistent with the file", at, from, to, p.ReqID, p.ID, bad)
	}
}

func (m *flowMonitor) delivered(at time.Duration, from, to node.Addr, msg node.Msg) {
	if m.r == nil {
		return
	}
	r := m.r
	switch x := msg.(type) {
	case api.HubChunk:
		if from == HubAddr && r.hives[to] {
			st := m.streams[reqKey{to, x.ReqID}]
			if st != nil && st.cancelled {
				m.afterCancel[to] += int64(len(x.Data))
				return
			}
			m.arrivals[to] = append(m.arrivals[to], arrival{at: at, bytes: int64(len(x.Data))})
			m.received[to] += int64(len(x.Data))
			if p := r.sc.Provisioner; p != nil && p.BurstBytes > 0 && m.received[to] > p.BurstBytes && !m.overBurst[to] {
				m.overBurst[to] = true
				r.s.Mark(markOverBurst)
			}
			if st != nil {
				if st.first < 0 {
					st.first = at
				}
				st.last = at
			}
		}
	case api.RegistryResp:
		key := reqKey{to, x.ReqID}
		if sent, ok := m.hbSent[key]; ok && from == r.queen && x.Op == (api.HeartbeatReq{}).MsgName() {
			m.rtts = append(m.rtts, roundTrip{hive: to, sent: sent, took: at - sent})
			delete(m.hbSent, key)
		}
	}
}

// flowChecks judges the download traffic: each hive's bandwidth limit, heartbeats next to
// downloads, and the progress streams.
func (r *run) flowChecks() []CheckerResult {
	return []CheckerResult{r.checkBandwidth(), r.checkHeartbeats(), r.checkProgress()}
}

// bandwidthWindow is the shortest window the bandwidth limit is judged over.
const bandwidthWindow = time.Second

// checkBandwidth: over every window of a second or more, the body bytes a hive received stay
// within its limit times the window plus the burst (again after every restart, as a new
// process starts with a full bucket), plus one chunk for where a window's edge cuts.
func (r *run) checkBandwidth() CheckerResult {
	c := CheckerResult{Name: "download throughput within the limit plus burst over every window of 1s or more", Stage: "monitors", OK: true}
	p := r.sc.Provisioner
	if p == nil || p.BandwidthBytesPerSec <= 0 {
		c.Detail = "no download limit set: nothing to check"
		return c
	}
	cfg := provision.DefaultConfig()
	p.apply(&cfg)
	chunk := int64(r.sc.Hub.ChunkBytes)
	if chunk == 0 {
		chunk = 64 << 10
	}
	var total, afterCancel int64
	for _, h := range r.sc.Hives {
		burst := cfg.BurstBytes * int64(1+r.s.Crashes(h.Addr))
		w, ok := worstWindow(r.flow.arrivals[h.Addr], cfg.BandwidthBytesPerSec, burst+chunk)
		total += w.total
		afterCancel += r.flow.afterCancel[h.Addr]
		if !ok {
			c.OK = false
			c.Detail = fmt.Sprintf("%s received %d body bytes after %v up to %v (a %v window), more than its limit of %d bytes/s allows: at most %d (limit x window + burst %d + one %d-byte chunk)",
				h.Addr, w.bytes, w.from, w.to, w.length, cfg.BandwidthBytesPerSec, w.allowed, burst, chunk)
			return c
		}
	}
	c.Detail = fmt.Sprintf("%d body bytes received by %d hives limited to %d bytes/s each, within limit plus burst over every window of 1s or more (%d more arrived after their download was closed)",
		total, len(r.sc.Hives), cfg.BandwidthBytesPerSec, afterCancel)
	return c
}

// window is a time window of arrivals and what the limit allowed in it.
type window struct {
	from, to, length      time.Duration
	bytes, allowed, total int64
}

// worstWindow finds a window of at least bandwidthWindow in which arr exceeds
// limit*length + slack, or reports ok. A window (from, to] holds the arrivals after from up
// to to; windows shorter than bandwidthWindow are judged as bandwidthWindow long. It is
// linear: for windows of a second or more it keeps the least "bytes so far minus limit x time"
// over the starts a second or more back; for shorter ones it slides a one-second window.
func worstWindow(arr []arrival, limit, slack int64) (window, bool) {
	rate := float64(limit) / float64(time.Second)
	prefix := make([]int64, len(arr)+1)
	for i, a := range arr {
		prefix[i+1] = prefix[i] + a.bytes
	}
	w := window{total: prefix[len(arr)]}
	best, bestAt := math.Inf(1), -1
	lo, short := 0, 0
	for j, a := range arr {
		// Long windows (arr[i].at, a.at] with a.at - arr[i].at >= 1s.
		for lo < j && a.at-arr[lo].at >= bandwidthWindow {
			if h := float64(prefix[lo+1]) - rate*float64(arr[lo].at); h < best {
				best, bestAt = h, lo
			}
			lo++
		}
		if bestAt >= 0 {
			if g := float64(prefix[j+1]) - rate*float64(a.at); g-best > float64(slack)+1 {
				return judged(arr[bestAt].at, a.at, prefix[j+1]-prefix[bestAt+1], limit, slack, w.total), false
			}
		}
		// Short windows: everything in (a.at - 1s, a.at], judged as one second.
		for a.at-arr[short].at >= bandwidthWindow {
			short++
		}
		if bytes := prefix[j+1] - prefix[short]; bytes > limit+slack {
			return judged(a.at-bandwidthWindow, a.at, bytes, limit, slack, w.total), false
		}
	}
	return w, true
}

// judged describes a window that broke the limit.
func judged(from, to time.Duration, bytes, limit, slack, total int64) window {
	length := max(to-from, bandwidthWindow)
	return window{from: from, to: to, length: length, bytes: bytes,
		allowed: int64(float64(limit)*length.Seconds()) + slack, total: total}
}

// heartbeatBound is the longest heartbeat round trip allowed while no fault touches the
// network, the disks or the processes; controlWaitBound the longest a control message may
// wait behind download bodies in a machine's downlink queue. Downloads must leave room for
// control traffic.
const (
	heartbeatBound   = time.Second
	controlWaitBound = 500 * time.Millisecond
)

// checkHeartbeats: control messages to the hives' machines never wait long behind download
// bodies on the machine's link, and heartbeat round trips stay under heartbeatBound while only
// hub faults are active.
func (r *run) checkHeartbeats() CheckerResult {
	c := CheckerResult{Name: "heartbeats and other control traffic not starved by downloads", Stage: "monitors", OK: true}
	var waits []string
	for _, m := range sortedKeys(r.sc.Downlinks) {
		st := r.s.Network().Downlink(m)
		waits = append(waits, fmt.Sprintf("%s %v", m, st.MaxControlWait))
		if st.MaxControlWait > controlWaitBound {
			c.OK = false
			c.Detail = fmt.Sprintf("a control message to %s reached its link at %v and waited %v behind download bodies (bound %v): the downloads left no room for control traffic",
				m, st.ControlWaitAt, st.MaxControlWait, controlWaitBound)
			return c
		}
	}
	judged := 0
	var worst roundTrip
	for _, rt := range r.flow.rtts {
		if r.faultDuring(rt.sent, rt.sent+rt.took) {
			continue
		}
		judged++
		if rt.took > worst.took {
			worst = rt
		}
		if rt.took > heartbeatBound {
			c.OK = false
			c.Detail = fmt.Sprintf("a heartbeat %s sent at %v was answered %v later, with no fault on the network, the disks or the processes: downloads starved the hive's control traffic (bound %v)",
				rt.hive, rt.sent, rt.took, heartbeatBound)
			return c
		}
	}
	c.Detail = fmt.Sprintf("%d heartbeat round trips outside faults, the longest %v (%s at %v), bound %v", judged, worst.took, worst.hive, worst.sent, heartbeatBound)
	if len(waits) > 0 {
		c.Detail += fmt.Sprintf("; longest wait of a control message in a downlink queue: %s (bound %v)", strings.Join(waits, ", "), controlWaitBound)
	}
	return c
}

// faultDuring reports whether a fault other than a hub fault was active at some time in
// [from, to]; a fault without a duration counts for the second after it.
func (r *run) faultDuring(from, to time.Duration) bool {
	for _, f := range r.sc.Faults {
		if len(f.Kind) > 4 && f.Kind[:4] == "hub-" {
			continue
		}
		end := f.At + max(f.For, time.Second)
		if f.At <= to && from <= end {
			return true
		}
	}
	return false
}

// progressStream is how long a body must stream for the clients waiting on it to be owed a
// progress event: three progress intervals.
const progressStream = 3 * time.Second

// checkProgress: every progress event is consistent (bytes within the file, percent matching
// bytes, a speed, resuming from a real percent); no progress is sent after the answer; and a
// client that waited while its hive streamed the file for progressStream or more was sent
// progress in that time.
func (r *run) checkProgress() CheckerResult {
	m := &r.flow
	c := CheckerResult{Name: "clients receive progress streams that match the download", Stage: "monitors", OK: true}
	switch {
	case m.badProgress != "":
		c.OK, c.Detail = false, m.badProgress
		return c
	case m.lateProgress != "":
		c.OK, c.Detail = false, m.lateProgress
		return c
	}
	owed := 0
	keys := sortedReqKeys(m.asks)
	streams := make([]*stream, 0, len(m.streams))
	for _, st := range m.streams { //det:sorted (sorted next)
		if st.first >= 0 {
			streams = append(streams, st)
		}
	}
	slices.SortFunc(streams, func(a, b *stream) int { return cmp.Compare(a.first, b.first) })
	for _, k := range keys {
		a := m.asks[k]
		answered, ok := m.answers[k]
		if !ok {
			continue
		}
		for _, st := range streams {
			if st.hive != a.hive || st.path != a.path || st.first < a.at || st.last > answered || st.last-st.first < progressStream {
				continue
			}
			owed++
			got := false
			for _, t := range m.progress[k] {
				if t >= a.at && t <= answered {
					got = true
					break
				}
			}
			if !got {
				c.OK = false
				c.Detail = fmt.Sprintf("%s asked %s for %s at %v and was answered at %v; the hive streamed the file from %v to %v but sent no progress to request %d",
					k.client, a.hive, a.path, a.at, answered, st.first, st.last, k.id)
				return c
			}
			break
		}
	}
	c.Detail = fmt.Sprintf("%d progress events, all consistent (%d said resuming); %d requests were owed progress during a long stream and got it; none after an answer",
		m.progressSent, m.resumedSeen, owed)
	return c
}
