package node

import (
	"errors"
	"io"
	"io/fs"
)

// Disk is a machine's durable storage: a flat namespace of files shared by every process on
// the machine. Writes are volatile until the file is synced: a crash may lose (or, at sector
// granularity, tear) anything written since the last Sync. Rename and Remove are durable when
// they return, as on a journaling file system after the directory is synced.
type Disk interface {
	// Open opens a file. With create set, a missing file is created empty; otherwise a missing
	// file gives an error that matches fs.ErrNotExist.
	Open(name string, create bool) (File, error)
	// Remove deletes a file; a missing file gives an error that matches fs.ErrNotExist.
	Remove(name string) error
	// Rename moves a file, replacing any file already at newName.
	Rename(oldName, newName string) error
	// List returns the names of the files that start with prefix, in sorted order.
	List(prefix string) ([]string, error)
}

// File is an open file on a Disk.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Size is the file's current length in bytes.
	Size() (int64, error)
	// Truncate sets the file's length.
	Truncate(size int64) error
	// Sync makes every write so far durable.
	Sync() error
	// Close releases the handle; it does not sync.
	Close() error
}

// ReadFile returns the whole content of a file.
func ReadFile(d Disk, name string) ([]byte, error) {
	f, err := d.Open(name, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, err
	}
	return buf, nil
}

// WriteFileAtomic replaces a file's content durably: it writes and syncs name+".tmp", then
// renames it over name, so a crash leaves either the old content or the new, never a mix.
func WriteFileAtomic(d Disk, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := d.Open(tmp, true)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return d.Rename(tmp, name)
}

// IsNotExist reports whether err says a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
