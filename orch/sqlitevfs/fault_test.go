package sqlitevfs

import (
	"fmt"
	"hash"
	"syscall"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// faultDisk wraps a disk to count its mutating calls, trace writes, crash at the k-th
// mutating call and inject errors.
type faultDisk struct {
	node.Disk
	// ops counts mutating calls (WriteAt, Truncate, Sync, Remove, Rename) so far.
	ops int
	// crashAt, when positive, makes the crashAt-th mutating call run onCrash instead, and
	// every later call fail: the process died and its power with it.
	crashAt int
	onCrash func()
	crashed bool
	// writeErr, syncErr, when set, are what WriteAt and Sync return.
	writeErr, syncErr error
	// trace, when set, receives every write.
	trace hash.Hash
}

var errDead = fmt.Errorf("process crashed: %w", syscall.EIO)

// mutate counts a mutating call and says whether it may go ahead.
func (d *faultDisk) mutate() error {
	if d.crashed {
		return errDead
	}
	d.ops++
	if d.ops == d.crashAt {
		d.crashed = true
		if d.onCrash != nil {
			d.onCrash()
		}
		return errDead
	}
	return nil
}

func (d *faultDisk) Open(name string, create bool) (node.File, error) {
	if d.crashed {
		return nil, errDead
	}
	f, err := d.Disk.Open(name, create)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, d: d, name: name}, nil
}

func (d *faultDisk) Remove(name string) error {
	if err := d.mutate(); err != nil {
		return err
	}
	if d.trace != nil {
		fmt.Fprintf(d.trace, "remove %s\n", name)
	}
	return d.Disk.Remove(name)
}

func (d *faultDisk) Rename(oldName, newName string) error {
	if err := d.mutate(); err != nil {
		return err
	}
	return d.Disk.Rename(oldName, newName)
}

type faultFile struct {
	node.File
	d    *faultDisk
	name string
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if f.d.crashed {
		return 0, errDead
	}
	return f.File.ReadAt(p, off)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.d.mutate(); err != nil {
		return 0, err
	}
	if f.d.writeErr != nil {
		return 0, f.d.writeErr
	}
	if f.d.trace != nil {
		fmt.Fprintf(f.d.trace, "write %s %d %d\n", f.name, off, len(p))
		f.d.trace.Write(p)
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.d.mutate(); err != nil {
		return err
	}
	if f.d.writeErr != nil {
		return f.d.writeErr
	}
	return f.File.Truncate(size)
}

func (f *faultFile) Sync() error {
	if err := f.d.mutate(); err != nil {
		return err
	}
	if f.d.syncErr != nil {
		return f.d.syncErr
	}
	return f.File.Sync()
}
