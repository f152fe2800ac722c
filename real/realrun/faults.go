package realrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/faults"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// realKinds are the fault kinds that have a real injector (steps maps each to what it does).
var realKinds = map[string]bool{
	"crash-restart": true, "pause": true, "partition-isolate": true, "partition-symmetric": true,
	"partition-oneway": true, "partition-split": true, "net-delay": true, "net-loss": true,
	"hub-5xx": true, "hub-rate-limit": true, "hub-reset": true, "hub-hang": true, "hub-corrupt": true, "hub-ignore-range": true,
	"disk-flip": true, "disk-clobber-header": true, "disk-truncate": true,
}

// compression is the factor a scenario's times are multiplied by in a real run: a simulated
// chaos phase of ten minutes runs in the real run's shorter one, with its faults, requests and
// client timings in the same order and proportions. 1 when the scenario's phase fits.
func compression(simChaos, realChaos time.Duration) float64 {
	if simChaos <= realChaos {
		return 1
	}
	return float64(realChaos) / float64(simChaos)
}

// scaled is d compressed by r.k, at least 50ms; zero (a default) stays zero.
func (r *run) scaled(d time.Duration) time.Duration {
	if d == 0 {
		return 0
	}
	return max(time.Duration(float64(d)*r.k), 50*time.Millisecond)
}

// steps turns the scenario's faults into wall-clock steps (their times scaled); the others
// are returned as text.
func (r *run) steps(chaosFor time.Duration) ([]chaos.Step, []string) {
	var steps []chaos.Step
	var skipped []string
	k := r.k
	for _, f := range r.sc.Faults {
		desc := fmt.Sprintf("%s at %v", f.Kind, f.At)
		f.At = time.Duration(float64(f.At) * k)
		f.For = time.Duration(float64(f.For) * k)
		switch {
		case !realKinds[f.Kind]:
			skipped = append(skipped, desc+" (no real injector)")
			continue
		case corruptions[f.Kind] != 0 && f.File != catalog.DefaultPath:
			skipped = append(skipped, desc+" of "+f.File+" (only the catalog file is corrupted for real)")
			continue
		case f.At >= chaosFor:
			skipped = append(skipped, desc+fmt.Sprintf(" (after the real chaos phase of %v)", chaosFor))
			continue
		}
		if s, ok := r.step(f); ok {
			steps = append(steps, s)
		} else {
			skipped = append(skipped, desc+" (its target is not a process of this run)")
		}
	}
	if r.workerProcesses() {
		for _, s := range steps {
			if k, _, _ := strings.Cut(s.Name, " "); strings.HasPrefix(k, "partition-") || strings.HasPrefix(k, "net-") {
				// Worker processes advertise their own ports: the queen reaches them directly
				// and a worker and its hive talk directly, not through a proxy (a worker's
				// messages to the queen do cross its hive's proxy), so these faults miss
				// most of a worker's links. The simulator cuts them all.
				skipped = append(skipped, "partitions and network faults on the links of worker processes, which do not go through the proxies (queen -> worker and worker <-> hive are direct); the links between the queen, the hives and the clients are cut as scheduled")
				break
			}
		}
	}
	return steps, skipped
}

// workerProcesses reports whether a hive of the run spawns worker processes.
func (r *run) workerProcesses() bool {
	for _, h := range r.sc.Hives {
		if h.WorkerProcesses {
			return true
		}
	}
	return false
}

// step maps one fault to a step; ok is false when its targets are not processes of the run.
// A fault is counted as injected only when its Do succeeded; one that failed is said, and
// kept in the timeline with its error.
func (r *run) step(f faults.Fault) (chaos.Step, bool) {
	name := fmt.Sprintf("%s %v", f.Kind, f.Targets)
	s := chaos.Step{At: f.At, For: f.For, Name: name}
	switch f.Kind {
	case "crash-restart", "pause":
		sv := r.servers[f.Targets[0]]
		if sv == nil && f.Kind == "crash-restart" && r.isWorker(f.Targets[0]) {
			// A worker process: SIGKILL; its hive sees it exit and respawns it, as a
			// supervisor does (the simulator restarts it after For).
			id := string(f.Targets[0])
			s.Do = func() error {
				pids, err := r.workerPIDs(id)
				if err == nil && len(pids) == 0 {
					err = fmt.Errorf("realrun: no worker process of this run with --id %s is running", id)
				}
				if err != nil {
					return err
				}
				return chaos.Kill(pids[0])
			}
			s.Undo = func() error { return nil }
			break
		}
		if sv == nil {
			return s, false
		}
		if f.Kind == "crash-restart" {
			s.Do = func() error { return sv.p.Kill() }
			s.Undo = func() error { return sv.p.Start() }
		} else {
			s.Do = func() error { return chaos.Pause(sv.p.PID()) }
			s.Undo = func() error { return chaos.Resume(sv.p.PID()) }
		}
	case "partition-isolate", "partition-symmetric", "partition-oneway", "partition-split":
		links := r.links(f)
		if len(links) == 0 {
			return s, false
		}
		s.Do = func() error { return r.cut(links, +1) }
		s.Undo = func() error { return r.cut(links, -1) }
	case "net-delay":
		d := time.Duration(f.Value)
		s.Do = func() error { return r.setNet(func(n *netFaults) { n.delays = append(n.delays, d) }) }
		s.Undo = func() error { return r.setNet(func(n *netFaults) { n.delays = removeOne(n.delays, d) }) }
	case "net-loss":
		p := float64(f.Value) / 1000 // per-mille of messages
		s.Do = func() error { return r.setNet(func(n *netFaults) { n.losses = append(n.losses, p) }) }
		s.Undo = func() error { return r.setNet(func(n *netFaults) { n.losses = removeOne(n.losses, p) }) }
	case "disk-flip", "disk-clobber-header", "disk-truncate":
		var ok bool
		if s, ok = r.diskStep(s, f); !ok {
			return s, false
		}
	default:
		var ok bool
		if s, ok = r.hubStep(s, f); !ok {
			return s, false
		}
	}
	do := s.Do
	s.Do = func() error {
		if err := do(); err != nil {
			r.say("fault %s could not be injected: %v", name, err)
			return err
		}
		r.mu.Lock()
		r.injected[f.Kind]++
		r.mu.Unlock()
		r.say("fault: %s for %v", name, f.For)
		return nil
	}
	if s.For == 0 {
		s.For = time.Millisecond
	}
	return s, true
}

// cut starts (by +1) or ends (by -1) one partition of links: a link is healed only when no
// partition cuts it any more.
func (r *run) cut(links []*chaos.Proxy, by int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, px := range links {
		r.net.cuts[px] += by
		switch n := r.net.cuts[px]; {
		case by > 0 && n == 1:
			errs = append(errs, px.Partition(chaos.PartitionBlackhole))
		case n <= 0:
			delete(r.net.cuts, px)
			px.Heal()
		}
	}
	return errors.Join(errs...)
}

// setNet changes the network faults that are on and applies their sum to every proxy: the
// delays add up and the losses compound, as in the simulator. A lost message is a reset
// connection (TCP cannot lose bytes), and a chunk carries many messages: hence the 20.
func (r *run) setNet(change func(*netFaults)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	change(&r.net)
	var delay time.Duration
	for _, d := range r.net.delays {
		delay += d
	}
	kept := 1.0
	for _, p := range r.net.losses {
		kept *= 1 - p
	}
	var errs []error
	for k, px := range r.proxies {
		if k[1] == scenario.HubAddr {
			continue // a hive's connection to the hub is left alone, as in the simulator
		}
		errs = append(errs, px.SetDelay(delay, 0), px.SetDrop((1-kept)/20))
	}
	return errors.Join(errs...)
}

// removeOne removes the first v from xs.
func removeOne[T comparable](xs []T, v T) []T {
	for i, x := range xs {
		if x == v {
			return append(xs[:i:i], xs[i+1:]...)
		}
	}
	return xs
}

// isWorker reports whether a is one of the scenario's worker processes.
func (r *run) isWorker(a node.Addr) bool {
	for _, h := range r.sc.Hives {
		if !h.WorkerProcesses {
			continue
		}
		for _, w := range h.Workers {
			if node.Addr(w.ID) == a {
				return true
			}
		}
	}
	return false
}

// workerPIDs finds the running llm-worker-rbee processes of this run (their hive gave them
// this run's data folder) with --id id, or every one of them when id is empty, from /proc.
// Only this run's: another run's workers, or a deployment's with the same worker IDs, are
// never touched.
func (r *run) workerPIDs(id string) ([]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	ours := "\x00RBEE_DATA_DIR=" + filepath.Join(r.o.Dir, "data") + "\x00"
	want := "\x00--id\x00" + id + "\x00"
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), cluster.Worker) || id != "" && !strings.Contains("\x00"+string(b), want) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil || !strings.Contains("\x00"+string(env), ours) {
			continue
		}
		out = append(out, pid)
	}
	return out, nil
}

// links are the proxies a partition cuts.
func (r *run) links(f faults.Fault) []*chaos.Proxy {
	var out []*chaos.Proxy
	add := func(from, to node.Addr) {
		if px := r.proxies[[2]node.Addr{from, to}]; px != nil {
			out = append(out, px)
		}
	}
	switch f.Kind {
	case "partition-isolate":
		// The hive's link to the hub too, as the simulator's partition cuts every link.
		for _, o := range append(r.addrs(), scenario.HubAddr) {
			add(f.Targets[0], o)
			add(o, f.Targets[0])
		}
	case "partition-symmetric":
		add(f.Targets[0], f.Targets[1])
		add(f.Targets[1], f.Targets[0])
	case "partition-oneway":
		add(f.Targets[0], f.Targets[1])
	case "partition-split":
		for i, g := range f.Groups {
			for j, h := range f.Groups {
				if i == j {
					continue
				}
				for _, a := range g {
					for _, b := range h {
						add(a, b)
					}
				}
			}
		}
	}
	return out
}
