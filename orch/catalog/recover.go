package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// Limits of recovery.
const (
	// recoveriesPerCallMax bounds the recoveries one call may run: one that keeps a file
	// passing the full check, and one that replaces it if the call fails on it again.
	recoveriesPerCallMax = 2
	// asideNamesMax bounds the suffixes tried to find a free name for a file moved aside.
	asideNamesMax = 1000
	// hashChunkBytes is the read size when hashing a model file.
	hashChunkBytes = 256 << 10
	// rebuildBatchRows is how many models one rebuild transaction inserts.
	rebuildBatchRows = 1000
	// eventNamesMax bounds the file names an Event's text lists.
	eventNamesMax = 5
)

// timestampLayout names the files moved aside, in UTC: "20260101T120000Z".
const timestampLayout = "20060102T150405Z"

// rebuildResult is what a rebuild found in ModelsDir.
type rebuildResult struct {
	rebuilt    int      // models registered
	unreadable []string // files that are not valid models, in name order
}

// recover handles an error that says the catalog file is damaged. Unless force is set, it
// first reopens the file and checks it in full (integrity_check, every row): a file that
// passes is kept, for the error was transient (an I/O error) or another process has already
// replaced the file. Otherwise it moves the file aside, creates a fresh one, rebuilds it from
// the model files, and queues one Event.
func (c *Catalog) recover(cause error, force bool) error {
	c.closeConn()
	if !force {
		err := c.recheck()
		if err == nil {
			c.o.Log.Warn("catalog error did not recur; the file checks out, keeping it", "path", c.o.Path, "err", cause)
			return nil
		}
		c.closeConn()
		if !isCorruption(err) {
			return err
		}
	}
	c.o.Log.Warn("catalog corrupt, rebuilding", "path", c.o.Path, "err", cause)
	backup, err := c.o.moveAside("corrupt", c.o.Plants.Has(PlantDeleteCorrupt))
	if err != nil {
		return fmt.Errorf("catalog %s is corrupt (%v) and could not be moved aside: %w: %w; "+
			"move or delete the file by hand and restart", c.o.Path, cause, ErrUnavailable, err)
	}
	res, err := c.open()
	if err == nil && res == nil {
		// Another process rebuilt the catalog between the move and the open: the file is
		// a fresh one and its models are there.
		res = &rebuildResult{}
	}
	if err != nil {
		c.closeConn()
		return fmt.Errorf("catalog %s was corrupt (%v), was moved to %s, and could not be rebuilt: %w: %w",
			c.o.Path, cause, backup, ErrUnavailable, err)
	}
	ev := Event{
		Kind: EventRebuilt,
		Message: fmt.Sprintf("the model catalog %s was corrupt (%s); it was moved to %s and rebuilt from %d model files",
			c.o.Path, sqliteReason(cause), backup, res.rebuilt),
		Backup:     backup,
		Rebuilt:    res.rebuilt,
		Unreadable: res.unreadable,
		Suggestion: suggestion(res.unreadable, backup),
	}
	c.o.Log.Warn(ev.Message, "suggestion", ev.Suggestion)
	c.events = append(c.events, ev)
	return nil
}

// recheck opens the catalog afresh and checks every page and every row.
func (c *Catalog) recheck() error {
	res, err := c.open()
	if err != nil {
		return err
	}
	c.openEvent(res) // the file was gone: open rebuilt it
	if err := c.check("integrity_check"); err != nil {
		return err
	}
	_, err = c.allModels()
	return err
}

// openEvent is the Event of an Open that found no catalog (or an empty file) but model files.
func (c *Catalog) openEvent(res *rebuildResult) {
	if res == nil || res.rebuilt == 0 && len(res.unreadable) == 0 {
		return
	}
	ev := Event{
		Kind: EventRebuilt,
		Message: fmt.Sprintf("the model catalog %s was missing or empty; it was created and rebuilt from %d model files",
			c.o.Path, res.rebuilt),
		Rebuilt:    res.rebuilt,
		Unreadable: res.unreadable,
		Suggestion: suggestion(res.unreadable, ""),
	}
	c.o.Log.Warn(ev.Message, "suggestion", ev.Suggestion)
	c.events = append(c.events, ev)
}

// sqliteReason is an error's text without the library's prefix.
func sqliteReason(err error) string {
	return strings.TrimPrefix(err.Error(), "sqlite3: ")
}

func suggestion(unreadable []string, backup string) string {
	var sb strings.Builder
	sb.WriteString("nothing to do unless models are missing")
	if n := len(unreadable); n > 0 {
		fmt.Fprintf(&sb, "; %d files could not be read: %s; delete or re-download them", n, nameList(unreadable))
	}
	if backup != "" {
		fmt.Fprintf(&sb, "; keep the backup %s until you are satisfied, then delete it", backup)
	}
	return sb.String()
}

// nameList lists at most eventNamesMax names.
func nameList(names []string) string {
	if len(names) <= eventNamesMax {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:eventNamesMax], ", "), len(names)-eventNamesMax)
}

// moveAside renames the catalog file and its journal to "<Path>.<tag>-<time>" (plus
// "-journal"), picking a free name, and returns that name; del deletes them instead (the
// plant catalog-delete-corrupt). The journal moves first: a crash between the two renames
// must not leave a hot journal next to a new catalog.
func (o Options) moveAside(tag string, del bool) (string, error) {
	base := o.Path + "." + tag + "-" + o.Now().UTC().Format(timestampLayout)
	aside := ""
	for i := 1; i <= asideNamesMax && aside == ""; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		taken, err := anyExists(o.Disk, name, name+"-journal")
		if err != nil {
			return "", err
		}
		if !taken {
			aside = name
		}
	}
	if aside == "" {
		return "", fmt.Errorf("no free name among %d tried after %s; delete old backups", asideNamesMax, base)
	}
	for _, suffix := range []string{"-journal", ""} {
		var err error
		if del {
			err = o.Disk.Remove(o.Path + suffix)
		} else {
			err = o.Disk.Rename(o.Path+suffix, aside+suffix)
		}
		if err != nil && !node.IsNotExist(err) {
			return "", err
		}
	}
	return aside, nil
}

func anyExists(d node.Disk, names ...string) (bool, error) {
	for _, n := range names {
		ok, err := fileExists(d, n)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func fileExists(d node.Disk, name string) (bool, error) {
	f, err := d.Open(name, false)
	if node.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f.Close()
	return true, nil
}

// rebuild registers every valid model file in ModelsDir, in batches of one transaction each.
func (c *Catalog) rebuild() (rebuildResult, error) {
	models, unreadable, err := c.scanModels()
	if err != nil {
		return rebuildResult{}, err
	}
	res := rebuildResult{unreadable: unreadable}
	for start := 0; start < len(models); start += rebuildBatchRows {
		batch := models[start:min(start+rebuildBatchRows, len(models))]
		err := c.write(func() error {
			n := 0
			for _, m := range batch {
				added, err := c.insert(m)
				if err != nil {
					return err
				}
				n += int(added)
			}
			res.rebuilt += n
			return nil
		})
		if err != nil {
			return rebuildResult{}, err
		}
	}
	return res, nil
}

// scanModels reads every file in ModelsDir except files in progress: valid model files come
// back as Models (dated Now), the others as unreadable, in name order.
func (c *Catalog) scanModels() (models []Model, unreadable []string, err error) {
	names, err := c.o.Disk.List(c.o.ModelsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the model files in %s: %w", c.o.ModelsDir, err)
	}
	now := c.o.Now()
	for _, name := range names {
		if inProgress(name) {
			continue
		}
		m, err := c.inspect(name)
		if err != nil {
			c.o.Log.Warn("model file unreadable", "file", name, "err", err)
			unreadable = append(unreadable, name)
			continue
		}
		m.DownloadedAt = now
		models = append(models, m)
	}
	return models, unreadable, nil
}

func inProgress(name string) bool {
	for _, s := range inProgressSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// inspect reads a model file: its name gives provider and reference, its GGUF header the
// rest, and its bytes the SHA-256. DownloadedAt is left to the caller.
func (c *Catalog) inspect(name string) (Model, error) {
	provider, reference, err := ParseModelPath(c.o.ModelsDir, name)
	if err != nil {
		return Model{}, err
	}
	f, err := c.o.Disk.Open(name, false)
	if err != nil {
		return Model{}, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return Model{}, err
	}
	info, err := gguf.Validate(f, size)
	if err != nil {
		return Model{}, err
	}
	sum, err := hashFile(f, size)
	if err != nil {
		return Model{}, err
	}
	m := Model{
		ID: provider + ":" + reference, Provider: provider, Reference: reference, LocalPath: name,
		SizeBytes: size, SHA256: sum, Architecture: info.Architecture,
		ContextLength: int64(min(info.ContextLength, 1<<62)), Quantization: info.Quantization,
		DownloadedAt: c.o.Now(),
	}
	if c.o.VRAMEstimate != nil {
		m.VRAMRequired = c.o.VRAMEstimate(m)
	}
	if err := validForCatalog(m, c.o.ModelsDir); err != nil {
		return Model{}, err
	}
	return m, nil
}

// hashFile returns the SHA-256 of the first size bytes of r, in lowercase hex.
func hashFile(r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.NewSectionReader(r, 0, size), make([]byte, hashChunkBytes))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
