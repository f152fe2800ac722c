package sim

import (
	"errors"
	"syscall"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/provision"
)

// The provisioner checks free space before a download on disks that can report it.
var _ provision.FreeSpacer = (*Disk)(nil)

// freeBytes is d.FreeBytes, failing the test on an error (it never returns one).
func freeBytes(t *testing.T, d *Disk) int64 {
	t.Helper()
	n, err := d.FreeBytes()
	if err != nil {
		t.Fatalf("FreeBytes: %v", err)
	}
	return n
}

// TestFreeBytesWithoutBudgetIsLarge: a disk with no space budget is unlimited and reports 1 PiB
// minus what it holds (provisioner/hub-errors: the free-space check never refuses on it).
func TestFreeBytesWithoutBudgetIsLarge(t *testing.T) {
	d := NewDisk()
	if got := freeBytes(t, d); got != 1<<50 {
		t.Fatalf("empty disk without a budget: %d free, want 1 PiB", got)
	}
	f, _ := d.Open("a", true)
	if _, err := f.WriteAt(make([]byte, 1000), 0); err != nil {
		t.Fatal(err)
	}
	if got := freeBytes(t, d); got != 1<<50-1000 {
		t.Fatalf("1000 bytes written without a budget: %d free, want 1 PiB - 1000", got)
	}
}

// TestFreeBytesFollowsBudget: with a budget the room is budget minus used, it shrinks with
// writes and grows back with removals, a write of exactly the room left succeeds and one byte
// more fails with ENOSPC, and a budget below what is used reports 0, never a negative number.
func TestFreeBytesFollowsBudget(t *testing.T) {
	d := syncedFile(t, "a", "0123456789") // 10 bytes
	d.SetSpaceBudget(100)
	if got := freeBytes(t, d); got != 90 {
		t.Fatalf("budget 100, 10 used: %d free, want 90", got)
	}
	g, _ := d.Open("b", true)
	if _, err := g.WriteAt(make([]byte, 91), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write one byte past the free room: %v, want ENOSPC", err)
	}
	if got := freeBytes(t, d); got != 90 {
		t.Fatalf("a failed write changed the free room: %d, want 90", got)
	}
	if _, err := g.WriteAt(make([]byte, 90), 0); err != nil {
		t.Fatalf("a write of exactly the free room: %v", err)
	}
	if got := freeBytes(t, d); got != 0 {
		t.Fatalf("disk filled to its budget: %d free, want 0", got)
	}
	if err := d.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if got := freeBytes(t, d); got != 90 {
		t.Fatalf("after removing the 90-byte file: %d free, want 90", got)
	}
	d.SetSpaceBudget(4) // below what is used: what is there stays, no room is left
	if got := freeBytes(t, d); got != 0 {
		t.Fatalf("budget 4 with 10 used: %d free, want 0 (never negative)", got)
	}
	d.SetSpaceBudget(0)
	if got := freeBytes(t, d); got != 1<<50-10 {
		t.Fatalf("budget lifted: %d free, want 1 PiB - 10", got)
	}
}
