package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ncruces/go-sqlite3"
)

// checkShape compares the catalog file's size with what its header declares, before every
// call. SQLite fills a read past the end of a shortened file with zeros and, with page
// checksums, a zero page carries a matching zero checksum: a catalog truncated while open
// would otherwise answer as if rows were missing, with no error. A damaged header or a size
// that is not what the header says is corruption.
func (c *Catalog) checkShape() error {
	f, err := c.o.Disk.Open(c.o.Path, false)
	if err != nil {
		return &corruptError{fmt.Sprintf("the catalog file cannot be opened any more: %v", err)}
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	var hdr [100]byte
	if n, err := f.ReadAt(hdr[:], 0); n < len(hdr) {
		if err != nil && err != io.EOF {
			return err
		}
		return &corruptError{fmt.Sprintf("the catalog file is %d bytes, shorter than its 100-byte header: it was truncated", size)}
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(hdr[28:32]))
	switch {
	case pageSize < 512 || pageSize&(pageSize-1) != 0:
		return &corruptError{fmt.Sprintf("the catalog's header declares a page size of %d bytes, which SQLite never writes", pageSize)}
	case size%pageSize != 0:
		return &corruptError{fmt.Sprintf("the catalog file is %d bytes, not a whole number of %d-byte pages: it was truncated", size, pageSize)}
	case size < pages*pageSize:
		return &corruptError{fmt.Sprintf("the catalog file is %d bytes, but its header declares %d pages of %d bytes: it was truncated", size, pages, pageSize)}
	case hdr[20] != 8:
		return &corruptError{fmt.Sprintf("the catalog's header says %d reserved bytes per page, not the 8 its page checksums need: the header is damaged", hdr[20])}
	}
	return nil
}

// schemaLost reports a plain SQLite error that only a damaged file gives: the catalog's table
// is gone (the file was emptied under an open connection) or the header names a file format
// SQLite never writes (a damaged header byte).
func schemaLost(err error) bool {
	var se *sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	msg := se.Error()
	return strings.Contains(msg, "no such table") || strings.Contains(msg, "unsupported file format")
}
