package real

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

func newTestDisk(t *testing.T) *OSDisk {
	t.Helper()
	d, err := NewOSDisk(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOSDiskRoundTrip(t *testing.T) {
	d := newTestDisk(t)
	f, err := d.Open("models/a/blob", true)
	mustDo(t, err)
	_, err = f.WriteAt([]byte("hello world"), 0)
	mustDo(t, err)
	mustDo(t, f.Truncate(5))
	mustDo(t, f.Sync())
	size, err := f.Size()
	if size != 5 || err != nil {
		t.Errorf("Size = %d, %v; want 5", size, err)
	}
	buf := make([]byte, 8)
	if n, err := f.ReadAt(buf, 0); n != 5 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt past the end = %d, %v; want 5, io.EOF", n, err)
	}
	mustDo(t, f.Close())

	mustDo(t, node.WriteFileAtomic(d, "catalog.json", []byte("{}")))
	mustDo(t, d.Rename("models/a/blob", "models/b/blob"))
	checkList(t, d, "", "catalog.json", "models/b/blob")
	checkList(t, d, "models/", "models/b/blob")
	checkList(t, d, "models/b/bl", "models/b/blob")
	checkList(t, d, "nothing/here/")
	if got, err := node.ReadFile(d, "models/b/blob"); string(got) != "hello" || err != nil {
		t.Errorf("ReadFile after Rename = %q, %v; want hello", got, err)
	}
	mustDo(t, d.Remove("models/b/blob"))
	checkList(t, d, "models/")
	if _, err := os.Stat(filepath.Join(d.Dir(), "catalog.json")); err != nil {
		t.Errorf("catalog.json is not a file in the disk's folder: %v", err)
	}
}

func checkList(t *testing.T, d *OSDisk, prefix string, want ...string) {
	t.Helper()
	got, err := d.List(prefix)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List(%q) = %q, %v; want %q", prefix, got, err, want)
	}
}

func TestOSDiskMissingFiles(t *testing.T) {
	d := newTestDisk(t)
	_, openErr := d.Open("nope", false)
	removeErr := d.Remove("nope")
	renameErr := d.Rename("nope", "other")
	_, readErr := node.ReadFile(d, "dir/nope")
	for what, err := range map[string]error{"Open": openErr, "Remove": removeErr, "Rename": renameErr, "ReadFile": readErr} {
		if !node.IsNotExist(err) {
			t.Errorf("%s of a missing file: %v, want an error matching fs.ErrNotExist", what, err)
		}
	}
}

func TestOSDiskRefusesBadNames(t *testing.T) {
	d := newTestDisk(t)
	for _, name := range []string{"", ".", "..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a/", `a\..\b`} {
		if _, err := d.Open(name, true); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Open(%q): %v, want an error matching fs.ErrInvalid", name, err)
		}
		if err := d.Rename("ok", name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Rename(ok, %q): %v, want an error matching fs.ErrInvalid", name, err)
		}
	}
	if _, err := d.List("../"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("List(../): %v, want an error matching fs.ErrInvalid", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(d.Dir())); len(entries) != 1 {
		t.Errorf("bad names created files next to the disk: %v", entries)
	}
}
