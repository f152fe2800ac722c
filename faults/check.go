package faults

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// field names the optional fields of a Fault, for checking that a kind uses only its own.
type field uint8

const (
	fTargets field = 1 << iota
	fGroups
	fValue
	fDevice
	fWorker
	fFor
	fFile
)

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// unused checks that f sets no field outside used.
func unused(f Fault, used field) error {
	set := []struct {
		f    field
		name string
		on   bool
		val  any
	}{
		{fTargets, "targets", len(f.Targets) > 0, f.Targets},
		{fGroups, "groups", len(f.Groups) > 0, f.Groups},
		{fValue, "value", f.Value != 0, f.Value},
		{fDevice, "device", f.Device != "", f.Device},
		{fWorker, "worker", f.Worker != "", f.Worker},
		{fFor, "for", f.For != 0, f.For},
		{fFile, "file", f.File != "", f.File},
	}
	for _, s := range set {
		if s.on && used&s.f == 0 {
			return fmt.Errorf("%s: %s does not use %s (got %v)", s.name, f.Kind, s.name, s.val)
		}
	}
	return nil
}

// role is a set of addresses a kind may target, with its name for error messages.
type role struct {
	name string
	has  func(node.Addr) bool
}

func anyNode(t Topology) role { return role{"node (queen, hive or client)", t.isNode} }
func server(t Topology) role  { return role{"queen or hive", t.isServer} }
func hive(t Topology) role    { return role{"hive", t.isHive} }

// targets checks that f has n distinct targets, each with role r.
func targets(f Fault, n int, r role) error {
	if len(f.Targets) != n {
		return fmt.Errorf("targets: %s needs %d target(s), got %d (%v)", f.Kind, n, len(f.Targets), f.Targets)
	}
	for i, a := range f.Targets {
		if !r.has(a) {
			return fmt.Errorf("targets[%d]: %q is not a %s of the topology", i, a, r.name)
		}
		for j := range i {
			if f.Targets[j] == a {
				return fmt.Errorf("targets[%d]: %q is also targets[%d]; the targets must differ", i, a, j)
			}
		}
	}
	return nil
}

// valueIn checks lo <= f.Value <= hi.
func valueIn(f Fault, lo, hi int64, unit string) error {
	if f.Value < lo || f.Value > hi {
		return fmt.Errorf("value: %d is outside [%d, %d] %s", f.Value, lo, hi, unit)
	}
	return nil
}

// listed checks that what (a device or worker) is one of hive h's entries in per.
func listed(name, what string, h node.Addr, per map[node.Addr][]string) error {
	for _, x := range per[h] {
		if x == what {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not a %s of hive %q (it has %v)", name, what, name, h, per[h])
}
