package faults

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Topology is what faults may target.
type Topology struct {
	// Hub is the simulated model hub (sim.Hub), if the run has one; hub faults target it.
	Hub     node.Addr   `json:"hub,omitempty"`
	Queens  []node.Addr `json:"queens"`
	Hives   []node.Addr `json:"hives"`
	Clients []node.Addr `json:"clients"`
	// Machines gives the machine of each address (for power failures); missing means the
	// address is its own machine.
	Machines map[node.Addr]string `json:"machines,omitempty"`
	// Devices per hive: the device names its workers use ("cuda:0"), for device faults.
	Devices map[node.Addr][]string `json:"devices,omitempty"`
	// Workers per hive, for worker hangs.
	Workers map[node.Addr][]string `json:"workers,omitempty"`
	// Files per hive: the files on the hive's machine's disk that disk faults may target.
	Files map[node.Addr][]string `json:"files,omitempty"`
	// Processes are worker processes (llm-worker-rbee): crashes, pauses and partitions may
	// target them like queens and hives. Their machine is in Machines.
	Processes []node.Addr `json:"processes,omitempty"`
	// Engines are the inference engines of the worker processes (sim.Engine), for engine
	// faults.
	Engines []node.Addr `json:"engines,omitempty"`
}

// Fault is one scheduled fault: plain data, JSON-encodable, so rapid can shrink a schedule and
// a failing schedule can be saved and replayed. Durations are nanoseconds in JSON. Which fields
// a kind uses, and what Value means for it, is in the kind's Doc.
type Fault struct {
	Kind string `json:"kind"` // a catalogue name
	// At is the true simulated time the fault starts.
	At time.Duration `json:"at"`
	// For is how long until it heals, restarts or resumes; 0 for instant faults.
	For     time.Duration `json:"for,omitempty"`
	Targets []node.Addr   `json:"targets,omitempty"`
	// Groups are the sides of a partition into groups.
	Groups [][]node.Addr `json:"groups,omitempty"`
	// Value is kind-specific: per-mille probability, nanoseconds or ppm.
	Value  int64  `json:"value,omitempty"`
	Device string `json:"device,omitempty"` // for device faults
	Worker string `json:"worker,omitempty"` // for worker hangs
	File   string `json:"file,omitempty"`   // for disk faults: a file on the target's machine
}

// Schedule is a list of faults, usually sorted by At.
type Schedule []Fault

// Validate checks a schedule against the topology it will run on: every kind is known, every
// target exists and has the role its kind needs, At and For are not negative, values are in
// their kind's range, and no fault sets a field its kind does not use. The error names each
// bad fault's index and the field at fault.
func (sch Schedule) Validate(t Topology) error {
	var errs []error
	for i, f := range sch {
		if err := validateFault(t, f); err != nil {
			errs = append(errs, fmt.Errorf("fault %d (%s at %v): %w", i, f.Kind, f.At, err))
		}
	}
	return errors.Join(errs...)
}

func validateFault(t Topology, f Fault) error {
	k, ok := lookup(f.Kind)
	if !ok {
		return fmt.Errorf("kind: unknown fault kind %q; known kinds: %s", f.Kind, strings.Join(names(), ", "))
	}
	if f.At < 0 {
		return fmt.Errorf("at: %v is negative", f.At)
	}
	if f.For < 0 {
		return fmt.Errorf("for: %v is negative", f.For)
	}
	return k.check(t, f)
}

// Summary is the schedule in human-readable form, one line per fault:
// "12.5s partition-isolate queen-1 for 30s".
func (sch Schedule) Summary() string {
	lines := make([]string, len(sch))
	for i, f := range sch {
		lines[i] = f.summary()
	}
	return strings.Join(lines, "\n")
}

func (f Fault) summary() string {
	b := fmt.Sprintf("%v %s", f.At, f.Kind)
	k, ok := lookup(f.Kind)
	if !ok {
		return b + fmt.Sprintf(" (unknown kind) targets %v value %d", f.Targets, f.Value)
	}
	if d := k.describe(f); d != "" {
		b += " " + d
	}
	if k.lasting() || f.For != 0 {
		b += fmt.Sprintf(" for %v", f.For)
	}
	return b
}

// action names the start or end of f in the trace: "fault partition-isolate start queen-1".
func (f Fault) action(what string) string {
	name := "fault " + f.Kind + " " + what
	if l := f.label(); l != "" {
		name += " " + l
	}
	return name
}

// label names a fault's targets in an action name: "queen-1", "a,b|c".
func (f Fault) label() string {
	parts := []string{joinAddrs(f.Targets, ",")}
	if len(f.Groups) > 0 {
		gs := make([]string, len(f.Groups))
		for i, g := range f.Groups {
			gs[i] = joinAddrs(g, ",")
		}
		parts = append(parts, strings.Join(gs, "|"))
	}
	for _, s := range []string{f.Device, f.Worker, f.File} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.TrimSpace(strings.Join(parts, " "))
}

func joinAddrs(as []node.Addr, sep string) string {
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = string(a)
	}
	return strings.Join(ss, sep)
}

// sortedAddrs returns the sorted union of the lists, without duplicates.
func sortedAddrs(lists ...[]node.Addr) []node.Addr {
	var out []node.Addr
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// nodes is every address faults know, sorted.
func (t Topology) nodes() []node.Addr { return sortedAddrs(t.Queens, t.Hives, t.Processes, t.Clients) }

// servers are the queens, hives and worker processes: what crashes, pauses and clock faults
// may target.
func (t Topology) servers() []node.Addr {
	return slices.DeleteFunc(sortedAddrs(t.Queens, t.Hives, t.Processes), t.isClient)
}

func (t Topology) isClient(a node.Addr) bool { return slices.Contains(t.Clients, a) }
func (t Topology) isNode(a node.Addr) bool   { return slices.Contains(t.nodes(), a) }
func (t Topology) isServer(a node.Addr) bool { return slices.Contains(t.servers(), a) }
func (t Topology) isHive(a node.Addr) bool   { return slices.Contains(t.Hives, a) }

// machine is the machine an address runs on.
func (t Topology) machine(a node.Addr) string {
	if m, ok := t.Machines[a]; ok && m != "" {
		return m
	}
	return string(a)
}

// onMachine is every known address on machine m, sorted.
func (t Topology) onMachine(m string) []node.Addr {
	var out []node.Addr
	for _, a := range t.nodes() {
		if t.machine(a) == m {
			out = append(out, a)
		}
	}
	return out
}

// clientOn is a client that runs on machine m, or "" when none does.
func (t Topology) clientOn(m string) node.Addr {
	for _, c := range sortedAddrs(t.Clients) {
		if t.machine(c) == m {
			return c
		}
	}
	return ""
}

// hivesWith returns the hives that have at least one entry in per, sorted.
func (t Topology) hivesWith(per map[node.Addr][]string) []node.Addr {
	var out []node.Addr
	for _, h := range sortedAddrs(t.Hives) {
		if len(per[h]) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// sortedStrings returns a sorted copy.
func sortedStrings(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}
