package nodetest

import (
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// MemDisk is a simple in-memory node.Disk: every write is durable at once. Tests that need
// crash semantics use the simulator's disk instead.
type MemDisk struct {
	files map[string][]byte
}

// NewMemDisk returns an empty MemDisk.
func NewMemDisk() *MemDisk { return &MemDisk{files: map[string][]byte{}} }

var _ node.Disk = (*MemDisk)(nil)

// Open implements node.Disk.
func (d *MemDisk) Open(name string, create bool) (node.File, error) {
	if _, ok := d.files[name]; !ok {
		if !create {
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		}
		d.files[name] = nil
	}
	return &memFile{d: d, name: name}, nil
}

// Remove implements node.Disk.
func (d *MemDisk) Remove(name string) error {
	if _, ok := d.files[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, fs.ErrNotExist)
	}
	delete(d.files, name)
	return nil
}

// Rename implements node.Disk.
func (d *MemDisk) Rename(oldName, newName string) error {
	b, ok := d.files[oldName]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldName, fs.ErrNotExist)
	}
	delete(d.files, oldName)
	d.files[newName] = b
	return nil
}

// List implements node.Disk.
func (d *MemDisk) List(prefix string) ([]string, error) {
	var names []string
	for n := range d.files {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

type memFile struct {
	d    *MemDisk
	name string
}

func (f *memFile) data() ([]byte, error) {
	b, ok := f.d.files[f.name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", f.name, fs.ErrNotExist)
	}
	return b, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	b, err := f.data()
	if err != nil {
		return 0, err
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	b, err := f.data()
	if err != nil {
		return 0, err
	}
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[off:], p)
	f.d.files[f.name] = b
	return len(p), nil
}

func (f *memFile) Size() (int64, error) {
	b, err := f.data()
	return int64(len(b)), err
}

func (f *memFile) Truncate(size int64) error {
	b, err := f.data()
	if err != nil {
		return err
	}
	if size <= int64(len(b)) {
		f.d.files[f.name] = b[:size]
	} else {
		f.d.files[f.name] = append(b, make([]byte, size-int64(len(b)))...)
	}
	return nil
}

func (f *memFile) Sync() error  { return nil }
func (f *memFile) Close() error { return nil }
