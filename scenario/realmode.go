package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/sqlitevfs"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/sim"
)

// What a run on real processes needs of the scenario's model files, and how the judge reads
// the machines' disks after such a run.

// ModelFileBytes is the content of model file i of sc.Models, byte for byte what the
// simulator writes (a broken file is cut in half).
func (sc Scenario) ModelFileBytes(i int) []byte { return (&run{sc: sc}).modelBody(i) }

// ModelFilePath is where model file i lies on its machine's disk: catalog.ModelPath under
// the models folder, as the hives look for it.
func (sc Scenario) ModelFilePath(i int) string {
	mf := sc.Models[i]
	return catalog.ModelPath(catalog.DefaultModelsDir, mf.Provider, mf.Reference)
}

// V1CatalogRows are the rows of the schema-v1 catalog machine starts with (its model files
// marked V1 and present at the start), as the simulator writes them; nil when it starts
// without one.
func (sc Scenario) V1CatalogRows(machine string) []catalog.Model {
	r := &run{sc: sc}
	var out []catalog.Model
	for i, mf := range sc.Models {
		if mf.V1 && mf.At == 0 && mf.Machine == machine {
			out = append(out, r.v1Model(i))
		}
	}
	return out
}

// disk is a machine's disk as the judge reads it: the simulator's, or after a run on real
// processes the machine's folder (RealRun.Disks). A machine whose folder the judge was not
// given reads as a disk with nothing on it that can be opened.
func (r *run) disk(machine string) node.Disk {
	if r.s != nil {
		return r.s.Disk(machine)
	}
	if dir, ok := r.realDisks[machine]; ok {
		if d, err := real.NewOSDisk(dir); err == nil {
			return d
		}
	}
	return noDisk{machine}
}

// openFinalCatalog opens machine's catalog after the run, as a hive would (recovering it if
// needed): through the simulated disk's VFS, or on a real run with SQLite's own VFS in the
// machine's folder, as rbee-hive opens it.
func (r *run) openFinalCatalog(machine string) (*catalog.Catalog, func(), error) {
	if r.s != nil {
		d := r.s.Disk(machine)
		name := sqlitevfs.Register(d)
		cat, _, err := catalog.Open(catalog.Options{Disk: d, VFS: name, Now: func() time.Time { return sim.Epoch.Add(r.s.Now()) }})
		if err != nil {
			sqlitevfs.Unregister(name)
			return nil, nil, err
		}
		return cat, func() { cat.Close(); sqlitevfs.Unregister(name) }, nil
	}
	dir, ok := r.realDisks[machine]
	if !ok {
		return nil, nil, fmt.Errorf("the judge was not given the folder of machine %s's disk (RealRun.Disks)", machine)
	}
	d, err := real.NewOSDisk(dir)
	if err != nil {
		return nil, nil, err
	}
	cat, _, err := catalog.Open(catalog.Options{Disk: d, Dir: d.Dir(), Now: time.Now})
	if err != nil {
		return nil, nil, err
	}
	return cat, func() { cat.Close() }, nil
}

// noDisk is the disk of a machine whose folder the judge does not have.
type noDisk struct{ machine string }

func (d noDisk) err(name string) error {
	return &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: the judge has no folder for machine %s", fs.ErrNotExist, d.machine)}
}
func (d noDisk) Open(name string, _ bool) (node.File, error) { return nil, d.err(name) }
func (d noDisk) Remove(name string) error                    { return d.err(name) }
func (d noDisk) Rename(name, _ string) error                 { return d.err(name) }
func (d noDisk) List(string) ([]string, error)               { return nil, errors.ErrUnsupported }
