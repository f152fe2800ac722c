package chaos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Corruption is a way CorruptFile damages a file. Each is chosen so that SQLite notices it in
// a known way when the file is a database in rollback-journal mode (with WAL, checkpoint
// first: pages still in the -wal file are not touched).
type Corruption int

const (
	// FlipHeaderByte flips bits of one byte of the 16-byte SQLite magic string at the start
	// of the file: SQLite refuses the file with "file is not a database" (SQLITE_NOTADB) at
	// the first statement. The file must start with the magic.
	FlipHeaderByte Corruption = iota + 1
	// FlipPageByte sets the page-type byte of one b-tree page (not page 1 unless it is the
	// only one) to a value that is no page type: reading that page fails with SQLITE_CORRUPT
	// ("database disk image is malformed") and PRAGMA integrity_check reports the page. The
	// file must be a SQLite database.
	FlipPageByte
	// Truncate cuts the file to half its size. A SQLite database of two pages or more then
	// holds fewer pages than its header says, and SQLite fails with SQLITE_CORRUPT.
	Truncate
	// Garbage overwrites the whole file with random bytes, keeping its size: SQLite fails
	// with SQLITE_NOTADB.
	Garbage
)

var corruptionNames = map[Corruption]string{
	FlipHeaderByte: "flip-header-byte",
	FlipPageByte:   "flip-page-byte",
	Truncate:       "truncate",
	Garbage:        "garbage",
}

// String names the corruption as ParseCorruption reads it.
func (c Corruption) String() string {
	if s, ok := corruptionNames[c]; ok {
		return s
	}
	return fmt.Sprintf("Corruption(%d)", int(c))
}

// ParseCorruption reads a corruption's name (as String writes it).
func ParseCorruption(s string) (Corruption, error) {
	for c, name := range corruptionNames {
		if name == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("chaos: unknown corruption %q (known: flip-header-byte, flip-page-byte, truncate, garbage)", s)
}

// Damage says what CorruptFileDamage did, for a fault timeline.
type Damage struct {
	How    Corruption
	Backup string // the copy of the file as it was before
	// Offset, Before and After are the bytes changed in place (for FlipHeaderByte and
	// FlipPageByte, one byte; for Garbage, Offset 0 and no Before/After).
	Offset        int64
	Before, After []byte
	// OldSize and NewSize are the file's sizes before and after.
	OldSize, NewSize int64
}

// sqliteMagic is the first 16 bytes of every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// sqliteHeaderSize is the size of the database header at the start of page 1.
const sqliteHeaderSize = 100

// BackupSuffix begins the name of CorruptFile's backups: path + BackupSuffix + n.
const BackupSuffix = ".chaos-backup-"

// CorruptFile copies the file at path to path+".chaos-backup-<n>" (the first n from 1 that is
// free; the copy is synced before anything is changed), then corrupts the file as how says,
// with every random choice drawn from seed, and syncs it. It returns the backup's path. If
// the file does not suit the mode (not a SQLite database for the Flip modes, empty), it
// returns an error before making a backup or changing anything; if corrupting fails after
// the backup, the backup is kept and named in the error. The caller should stop writers of
// the file first: a process that has it open may overwrite the damage, or be confused by its
// own cached pages.
func CorruptFile(path string, how Corruption, seed uint64) (backup string, err error) {
	d, err := CorruptFileDamage(path, how, seed)
	return d.Backup, err
}

// CorruptFileDamage is CorruptFile, returning what it changed.
func CorruptFileDamage(path string, how Corruption, seed uint64) (Damage, error) {
	d := Damage{How: how}
	if _, ok := corruptionNames[how]; !ok {
		return d, fmt.Errorf("chaos: corrupt %s: unknown corruption %v", path, how)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return d, fmt.Errorf("chaos: corrupt %s (%v): %w", path, how, err)
	}
	if !fi.Mode().IsRegular() {
		return d, fmt.Errorf("chaos: corrupt %s (%v): not a regular file (%v)", path, how, fi.Mode().Type())
	}
	d.OldSize, d.NewSize = fi.Size(), fi.Size()
	if d.OldSize == 0 {
		return d, fmt.Errorf("chaos: corrupt %s (%v): the file is empty, there is nothing to corrupt", path, how)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(how)))

	// Plan the change before the backup, so that an unsuitable file is left alone.
	switch how {
	case FlipHeaderByte, FlipPageByte:
		d.Offset, d.Before, d.After, err = planFlip(path, how, rng)
		if err != nil {
			return d, fmt.Errorf("chaos: corrupt %s (%v): %w", path, how, err)
		}
	case Truncate:
		d.NewSize = d.OldSize / 2
	}

	d.Backup, err = backupFile(path, fi.Mode().Perm())
	if err != nil {
		return d, fmt.Errorf("chaos: corrupt %s (%v): backup failed, file left unchanged: %w", path, how, err)
	}
	if err := apply(path, &d, rng); err != nil {
		return d, fmt.Errorf("chaos: corrupt %s (%v): %w (the original is kept in %s)", path, how, err, d.Backup)
	}
	return d, nil
}

// planFlip chooses the byte a Flip mode changes and its new value.
func planFlip(path string, how Corruption, rng *rand.Rand) (off int64, before, after []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, nil, err
	}
	defer f.Close()
	hdr := make([]byte, sqliteHeaderSize)
	if _, err := io.ReadFull(f, hdr); err != nil || !bytes.Equal(hdr[:len(sqliteMagic)], sqliteMagic) {
		return 0, nil, nil, errors.New("not a SQLite database (no \"SQLite format 3\" header); use Truncate or Garbage for other files")
	}
	if how == FlipHeaderByte {
		off = int64(rng.IntN(len(sqliteMagic)))
		b := hdr[off]
		return off, []byte{b}, []byte{b ^ byte(1+rng.IntN(255))}, nil
	}

	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return 0, nil, nil, fmt.Errorf("bad page size %d in the SQLite header", pageSize)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, nil, err
	}
	// The page-type byte opens each b-tree page, after the 100-byte header on page 1.
	var offs []int64
	typ := make([]byte, 1)
	for pg := int64(2); pg*pageSize <= fi.Size(); pg++ {
		o := (pg - 1) * pageSize
		if _, err := f.ReadAt(typ, o); err != nil {
			return 0, nil, nil, err
		}
		if isBtreeType(typ[0]) {
			offs = append(offs, o)
		}
	}
	if len(offs) == 0 {
		// Page 1's type byte is at offset 100, the first after the header.
		if _, err := f.ReadAt(typ, sqliteHeaderSize); err != nil || !isBtreeType(typ[0]) {
			return 0, nil, nil, errors.New("no b-tree page found (is the file a SQLite database?)")
		}
		offs = append(offs, sqliteHeaderSize)
	}
	off = offs[rng.IntN(len(offs))]
	if _, err := f.ReadAt(typ, off); err != nil {
		return 0, nil, nil, err
	}
	// Any value but the four page types makes SQLite's page decoding fail.
	var bad byte
	for {
		bad = byte(rng.IntN(256))
		if !isBtreeType(bad) {
			break
		}
	}
	return off, []byte{typ[0]}, []byte{bad}, nil
}

// isBtreeType reports whether b is a b-tree page type: interior index (2), interior table
// (5), leaf index (10) or leaf table (13).
func isBtreeType(b byte) bool { return b == 2 || b == 5 || b == 10 || b == 13 }

// apply makes the change d describes (and Garbage's random bytes) and syncs the file.
func apply(path string, d *Damage, rng *rand.Rand) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	switch d.How {
	case FlipHeaderByte, FlipPageByte:
		_, err = f.WriteAt(d.After, d.Offset)
	case Truncate:
		err = f.Truncate(d.NewSize)
	case Garbage:
		err = writeGarbage(f, d.OldSize, rng)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// writeGarbage overwrites the first size bytes of f with random bytes that do not begin with
// the SQLite magic.
func writeGarbage(f *os.File, size int64, rng *rand.Rand) error {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		for i := 0; i < n; i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(buf[i:n], w[:])
		}
		if off == 0 && n >= len(sqliteMagic) && bytes.Equal(buf[:len(sqliteMagic)], sqliteMagic) {
			buf[0] ^= 0xff
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// backupFile copies path to the first free path+BackupSuffix+n, syncs the copy and its
// folder, and returns its name. A failed copy is removed.
func backupFile(path string, perm fs.FileMode) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	for n := 1; ; n++ {
		name := fmt.Sprintf("%s%s%d", path, BackupSuffix, n)
		dst, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = io.Copy(dst, src)
		if err == nil {
			err = dst.Sync()
		}
		if err = errors.Join(err, dst.Close()); err != nil {
			_ = os.Remove(name)
			return "", fmt.Errorf("copy to %s: %w", name, err)
		}
		syncDir(filepath.Dir(name))
		return name, nil
	}
}

// syncDir makes a new name in dir durable, as far as the OS allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// RestoreBackup puts a backup made by CorruptFile back at path: it copies the backup to a
// temporary file beside path and renames it over path, so path is never half-restored. The
// backup is kept. Stop the processes using path first; a SQLite -journal or -wal file left
// beside path by a crashed writer belongs to the corrupted file, not to the backup.
func RestoreBackup(path, backup string) error {
	data, err := os.ReadFile(backup)
	if err != nil {
		return fmt.Errorf("chaos: restore %s from %s: %w", path, backup, err)
	}
	fi, err := os.Stat(backup)
	if err != nil {
		return fmt.Errorf("chaos: restore %s from %s: %w", path, backup, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".chaos-restore-*")
	if err != nil {
		return fmt.Errorf("chaos: restore %s from %s: %w", path, backup, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(fi.Mode().Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("chaos: restore %s from %s: %w (path unchanged)", path, backup, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}
