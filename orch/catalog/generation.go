package catalog

import (
	"strconv"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// The generation file tells processes that share a catalog file that one of them replaced it
// (rebuilt it after corruption, re-created it, or restored a backup). A connection to the old
// file, or a page cache of it, would otherwise go on answering from what is now the backup:
// SQLite recognises changes by a counter in the file's header, and a new file can carry the
// same counter as the old one. Every call compares the generation it opened with the file's
// and reopens when they differ.

func (o Options) generationFile() string { return o.Path + ".generation" }

// readGeneration returns the catalog's generation; a missing file is generation 0.
func (o Options) readGeneration() (uint64, error) {
	b, err := node.ReadFile(o.Disk, o.generationFile())
	if node.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		// A damaged generation file: treat it as a change, and let the next bump rewrite it.
		return 0, nil
	}
	return n, nil
}

// bumpGeneration records that this process replaced the catalog file.
func (o Options) bumpGeneration(seen uint64) (uint64, error) {
	cur, err := o.readGeneration()
	if err != nil {
		return seen, err
	}
	next := max(cur, seen) + 1
	return next, node.WriteFileAtomic(o.Disk, o.generationFile(), []byte(strconv.FormatUint(next, 10)+"\n"))
}

// reopenIfReplaced reopens the connection when another process replaced the catalog file
// since this one opened it.
func (c *Catalog) reopenIfReplaced() error {
	if c.conn == nil {
		return nil
	}
	g, err := c.o.readGeneration()
	if err != nil || g == c.gen {
		return err
	}
	c.o.Log.Info("the catalog file was replaced by another process; reopening", "path", c.o.Path)
	c.closeConn()
	res, err := c.open()
	if err == nil {
		c.openEvent(res)
	}
	return err
}
