package real

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// OSDisk is a node.Disk over a folder of the OS: file name "a/b" is the file dir/a/b. Names
// are slash-separated relative paths without "." or ".." elements; parent folders are created
// as needed. Rename and Remove sync the folders they change, so they are durable when they
// return, as the Disk contract says. It is safe for concurrent use (the OS serialises).
type OSDisk struct {
	dir string
}

var _ node.Disk = (*OSDisk)(nil)

// NewOSDisk returns the disk in dir, creating the folder if it is missing.
func NewOSDisk(dir string) (*OSDisk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("real: disk folder %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("real: cannot create the disk folder: %w", err)
	}
	return &OSDisk{dir: abs}, nil
}

// Dir is the disk's folder, an absolute path.
func (d *OSDisk) Dir() string { return d.dir }

// path maps a file name to its OS path, refusing names that could leave the folder. The
// error matches fs.ErrInvalid.
func (d *OSDisk) path(name string) (string, error) {
	if !fs.ValidPath(name) || name == "." || strings.Contains(name, `\`) {
		return "", fmt.Errorf("real: bad file name %q: want a relative slash-separated path "+
			"without '.', '..' or empty elements (%w)", name, fs.ErrInvalid)
	}
	return filepath.Join(d.dir, filepath.FromSlash(name)), nil
}

// Open implements node.Disk; with create set it also creates missing parent folders.
func (d *OSDisk) Open(name string, create bool) (node.File, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements node.Disk.
func (d *OSDisk) Remove(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// Rename implements node.Disk; it creates newName's parent folders.
func (d *OSDisk) Rename(oldName, newName string) error {
	oldPath, err := d.path(oldName)
	if err != nil {
		return err
	}
	newPath, err := d.path(newName)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(newPath), 0o755); err != nil {
		return err
	}
	if err := os.Rename(oldPath, newPath); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(newPath)); err != nil {
		return err
	}
	if filepath.Dir(oldPath) == filepath.Dir(newPath) {
		return nil
	}
	return syncDir(filepath.Dir(oldPath))
}

// List implements node.Disk: the regular files whose names start with prefix, sorted.
func (d *OSDisk) List(prefix string) ([]string, error) {
	root := d.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 { // walk only the prefix's folder
		p, err := d.path(prefix[:i])
		if err != nil {
			return nil, err
		}
		root = p
	}
	var names []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.dir, p)
		if name := filepath.ToSlash(rel); err == nil && strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return err
	})
	if err != nil && !(root != d.dir && errors.Is(err, fs.ErrNotExist)) {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// syncDir makes a folder's entries (a created, renamed or removed file) durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// osFile is a node.File over an *os.File.
type osFile struct{ f *os.File }

func (f osFile) ReadAt(p []byte, off int64) (int, error)  { return f.f.ReadAt(p, off) }
func (f osFile) WriteAt(p []byte, off int64) (int, error) { return f.f.WriteAt(p, off) }
func (f osFile) Truncate(size int64) error                { return f.f.Truncate(size) }
func (f osFile) Sync() error                              { return f.f.Sync() }
func (f osFile) Close() error                             { return f.f.Close() }

// Size implements node.File.
func (f osFile) Size() (int64, error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
