package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// validBackupName checks a backup's file name: not the catalog or its journal, not in
// ModelsDir (rebuild would read it as a model), not a temporary or journal name.
func (o Options) validBackupName(name string) error {
	switch {
	case name == "":
		return invalidf("backup name is empty")
	case name == o.Path || strings.HasPrefix(name, o.Path+"-") || strings.HasPrefix(name, o.Path+".restoring"):
		return invalidf("backup name %q: must not be the catalog %q or one of its working files", name, o.Path)
	case strings.HasPrefix(name, o.ModelsDir):
		return invalidf("backup name %q: must not be in the models folder %q", name, o.ModelsDir)
	case strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, "-journal"):
		return invalidf("backup name %q: must not end with .tmp or -journal", name)
	}
	return nil
}

// Backup writes a consistent snapshot of the catalog to the file name on the Disk (replacing
// it), while other processes may keep writing: SQLite's online backup copies every page under
// one read lock. The snapshot is written to name+".tmp", synced, then renamed, so name is
// always a whole backup.
func (c *Catalog) Backup(name string) error {
	if err := c.o.validBackupName(name); err != nil {
		return err
	}
	return c.do("backup to "+name, func() error { return c.backup(name) })
}

func (c *Catalog) backup(name string) error {
	tmp := name + ".tmp"
	for _, n := range []string{tmp + "-journal", tmp} {
		if err := c.o.Disk.Remove(n); err != nil && !node.IsNotExist(err) {
			return err
		}
	}
	err := ensureFile(c.o.Disk, tmp)
	if err == nil {
		err = c.retryBusy(func() error { return c.conn.Backup("main", c.o.uri(tmp, false)) })
	}
	if err == nil {
		err = syncFile(c.o.Disk, tmp)
	}
	if err == nil {
		err = c.o.checkSnapshot(tmp)
	}
	if err == nil {
		err = c.o.Disk.Rename(tmp, name)
	}
	if err == nil {
		c.o.Log.Info("catalog backed up", "path", c.o.Path, "backup", name)
		return nil
	}
	c.o.Disk.Remove(tmp) // best effort: a partial snapshot is worthless
	var bad *badSnapshot
	if errors.As(err, &bad) {
		// The copy of a catalog that read fine fails its check: the catalog carries damage
		// its reads did not meet (a zeroed page passes its checksum). Recover it.
		return &corruptError{fmt.Sprintf("its backup failed a check (%s)", bad.reason)}
	}
	if isCorruption(err) && c.check("quick_check") == nil {
		// The catalog reads fine: the error was the backup file's, not a reason to rebuild.
		return fmt.Errorf("writing the backup %s failed: %s", name, sqliteReason(err))
	}
	return err
}

func syncFile(d node.Disk, name string) error {
	f, err := d.Open(name, false)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Restore replaces the catalog at o.Path with the backup backupName (a file Backup wrote).
// It first checks the backup (quick_check, a schema version this code can open), then keeps
// the current catalog aside as "<Path>.replaced-<time>" rather than deleting it. No Catalog
// may be open on o.Path (in any process) while Restore runs; the next Open migrates a version
// 1 backup.
func Restore(o Options, backupName string) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if err := o.validBackupName(backupName); err != nil {
		return err
	}
	if err := o.checkBackup(backupName); err != nil {
		return err
	}
	data, err := node.ReadFile(o.Disk, backupName)
	if err != nil {
		return fmt.Errorf("catalog restore: reading %s: %w", backupName, err)
	}
	// Copy first, then swap, so that a failure or crash never leaves neither catalog.
	staged := o.Path + ".restoring"
	if err := node.WriteFileAtomic(o.Disk, staged, data); err != nil {
		return fmt.Errorf("catalog restore: writing %s: %w; the catalog was not changed", staged, err)
	}
	aside := ""
	if exists, err := anyExists(o.Disk, o.Path, o.Path+"-journal"); err != nil {
		return err
	} else if exists {
		if aside, err = o.moveAside("replaced", false); err != nil {
			return fmt.Errorf("catalog restore: moving the current catalog aside: %w; the catalog was not changed", err)
		}
	}
	if err := o.Disk.Rename(staged, o.Path); err != nil {
		return fmt.Errorf("catalog restore: %w; the backup is staged at %s and the old catalog at %q: "+
			"rename one of them to %s", err, staged, aside, o.Path)
	}
	o.Log.Info("catalog restored", "path", o.Path, "backup", backupName, "old_catalog", aside)
	// Processes with the old catalog open must reopen it.
	if _, err := o.bumpGeneration(0); err != nil {
		return fmt.Errorf("catalog restore: the backup is in place, but other processes could not be told (%w); restart them", err)
	}
	return nil
}

// checkBackup opens a backup read-only and checks its integrity and version.
func (o Options) checkBackup(name string) error {
	if ok, err := fileExists(o.Disk, name); err != nil || !ok {
		return fmt.Errorf("catalog restore: backup %s not found (%v); list the backups and pick one", name, err)
	}
	conn, err := sqlite3.OpenFlags(o.uri(name, true), sqlite3.OPEN_READONLY|sqlite3.OPEN_URI)
	if err != nil {
		return fmt.Errorf("catalog restore: backup %s cannot be opened: %w", name, err)
	}
	defer conn.Close()
	c := &Catalog{o: o, conn: conn}
	v, err := userVersion(conn)
	if err == nil {
		err = c.check("quick_check")
	}
	if err == nil && (v < 1 || v > SchemaVersion) {
		err = fmt.Errorf("schema version %d, want 1-%d", v, SchemaVersion)
	}
	if err != nil {
		return fmt.Errorf("catalog restore: backup %s is not a usable catalog (%v); the catalog was not changed: "+
			"pick another backup", name, err)
	}
	return nil
}

// badSnapshot says a freshly written backup failed its check.
type badSnapshot struct{ reason string }

func (b *badSnapshot) Error() string { return "the backup failed its check: " + b.reason }

// checkSnapshot opens a written backup read-only and checks it, so a damaged catalog is never
// backed up as if it were sound.
func (o Options) checkSnapshot(name string) error {
	conn, err := sqlite3.OpenFlags(o.uri(name, true), sqlite3.OPEN_READONLY|sqlite3.OPEN_URI)
	if err != nil {
		return &badSnapshot{sqliteReason(err)}
	}
	defer conn.Close()
	st, _, err := conn.Prepare(`PRAGMA quick_check`)
	if err != nil {
		return &badSnapshot{sqliteReason(err)}
	}
	defer st.Close()
	var problems []string
	for st.Step() {
		problems = append(problems, st.ColumnText(0))
	}
	if err := st.Err(); err != nil {
		return &badSnapshot{sqliteReason(err)}
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return &badSnapshot{strings.Join(problems, "; ")}
	}
	if err := conn.Exec(`SELECT count(*) FROM models`); err != nil {
		return &badSnapshot{sqliteReason(err)}
	}
	return nil
}
