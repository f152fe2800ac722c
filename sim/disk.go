package sim

import (
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Disk is a machine's simulated disk. Each file has a volatile image (what reads see) and a
// durable image (what survives a power failure). Sync copies volatile to durable; PowerFail
// throws every volatile change away. Rename and Remove are durable at once.
type Disk struct {
	files map[string]*simFile
	// FailWrites, when set, makes every WriteAt, Truncate and Sync fail: a dead disk.
	FailWrites bool
}

type simFile struct {
	volatile []byte
	durable  []byte
	// synced is false while volatile differs from durable; then dirtyFrom is the lowest
	// offset where they may differ, so Sync copies only the changed tail (logs append).
	synced    bool
	dirtyFrom int64
	// exists is false for a file created but never synced: a power failure removes it.
	durableExists bool
}

// NewDisk returns an empty disk.
func NewDisk() *Disk { return &Disk{files: map[string]*simFile{}} }

var _ node.Disk = (*Disk)(nil)

// Open implements node.Disk.
func (d *Disk) Open(name string, create bool) (node.File, error) {
	if _, ok := d.files[name]; !ok {
		if !create {
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		}
		d.files[name] = &simFile{synced: false}
	}
	return &diskFile{d: d, name: name}, nil
}

// Remove implements node.Disk.
func (d *Disk) Remove(name string) error {
	if _, ok := d.files[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, fs.ErrNotExist)
	}
	delete(d.files, name)
	return nil
}

// Rename implements node.Disk. The renamed file keeps its volatile and durable images.
func (d *Disk) Rename(oldName, newName string) error {
	f, ok := d.files[oldName]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldName, fs.ErrNotExist)
	}
	delete(d.files, oldName)
	d.files[newName] = f
	return nil
}

// List implements node.Disk.
func (d *Disk) List(prefix string) ([]string, error) {
	var names []string
	for n := range d.files { //det:sorted
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// PowerFail loses every write that was not synced, as a machine losing power does.
func (d *Disk) PowerFail() {
	for name, f := range d.files { //det:sorted (each file is handled on its own)
		if !f.durableExists {
			delete(d.files, name)
			continue
		}
		f.volatile = append([]byte(nil), f.durable...)
		f.synced = true
	}
}

// Size is the total volatile size of every file, in bytes.
func (d *Disk) Size() int64 {
	var n int64
	for _, f := range d.files { //det:sorted (a sum)
		n += int64(len(f.volatile))
	}
	return n
}

type diskFile struct {
	d    *Disk
	name string
}

func (f *diskFile) file() (*simFile, error) {
	sf, ok := f.d.files[f.name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", f.name, fs.ErrNotExist)
	}
	return sf, nil
}

func (f *diskFile) failWrite(op string) error {
	if f.d.FailWrites {
		return fmt.Errorf("%s %s: input/output error (simulated disk failure)", op, f.name)
	}
	return nil
}

func (f *diskFile) ReadAt(p []byte, off int64) (int, error) {
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	if off >= int64(len(sf.volatile)) {
		return 0, io.EOF
	}
	n := copy(p, sf.volatile[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	if err := f.failWrite("write"); err != nil {
		return 0, err
	}
	sf.dirty(min(off, int64(len(sf.volatile))))
	if end := off + int64(len(p)); end > int64(len(sf.volatile)) {
		sf.volatile = append(sf.volatile, make([]byte, end-int64(len(sf.volatile)))...)
	}
	copy(sf.volatile[off:], p)
	return len(p), nil
}

func (f *diskFile) Size() (int64, error) {
	sf, err := f.file()
	if err != nil {
		return 0, err
	}
	return int64(len(sf.volatile)), nil
}

func (f *diskFile) Truncate(size int64) error {
	sf, err := f.file()
	if err != nil {
		return err
	}
	if err := f.failWrite("truncate"); err != nil {
		return err
	}
	sf.dirty(min(size, int64(len(sf.volatile))))
	if size <= int64(len(sf.volatile)) {
		sf.volatile = sf.volatile[:size:size]
	} else {
		sf.volatile = append(sf.volatile, make([]byte, size-int64(len(sf.volatile)))...)
	}
	return nil
}

func (f *diskFile) Sync() error {
	sf, err := f.file()
	if err != nil {
		return err
	}
	if err := f.failWrite("fsync"); err != nil {
		return err
	}
	if !sf.synced || !sf.durableExists {
		from := min(sf.dirtyFrom, int64(len(sf.durable)))
		if !sf.durableExists {
			from = 0
		}
		sf.durable = append(sf.durable[:from], sf.volatile[from:]...)
		sf.synced = true
		sf.durableExists = true
	}
	return nil
}

// dirty notes a change at or after off.
func (sf *simFile) dirty(off int64) {
	if sf.synced {
		sf.synced, sf.dirtyFrom = false, off
		return
	}
	sf.dirtyFrom = min(sf.dirtyFrom, off)
}

func (f *diskFile) Close() error { return nil }
