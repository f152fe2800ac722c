package chaos

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// makeDB writes a SQLite database of a few dozen pages (a table and an index) at dir/name.
func makeDB(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "catalog.db")
	conn, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Exec(`
		CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
		CREATE INDEX models_name ON models(name);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
		INSERT INTO models(name) SELECT printf('model-%0200d', i) FROM n;`)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// probe opens path fresh and reads all of it: integrity_check, then a full scan of the table
// and of the index. It returns integrity_check's verdict ("ok" or its first message) and the
// first error.
func probe(t *testing.T, path string) (verdict string, err error) {
	t.Helper()
	conn, err := sqlite3.Open(path)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	for i, q := range []string{
		`PRAGMA integrity_check`,
		`SELECT count(*), sum(length(name)) FROM models`,
		`SELECT count(*) FROM models INDEXED BY models_name WHERE name > ''`,
	} {
		stmt, _, err := conn.Prepare(q)
		if err != nil {
			return verdict, err
		}
		for stmt.Step() {
			if i == 0 && verdict == "" {
				verdict = stmt.ColumnText(0)
			}
		}
		err = errors.Join(stmt.Err(), stmt.Close())
		if err != nil {
			return verdict, err
		}
	}
	return verdict, nil
}

func TestCorruptFileModes(t *testing.T) {
	for _, tc := range []struct {
		how  Corruption
		want error // the SQLite error a fresh open and read must give
	}{
		{FlipHeaderByte, sqlite3.NOTADB},
		{FlipPageByte, sqlite3.CORRUPT},
		{Truncate, sqlite3.CORRUPT},
		{Garbage, sqlite3.NOTADB},
	} {
		t.Run(tc.how.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := makeDB(t, dir)
			if v, err := probe(t, path); err != nil || v != "ok" {
				t.Fatalf("fresh database: %q, %v", v, err)
			}
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			d, err := CorruptFileDamage(path, tc.how, 42)
			if err != nil {
				t.Fatal(err)
			}
			if d.Backup != path+".chaos-backup-1" {
				t.Errorf("backup at %s", d.Backup)
			}
			backup, err := os.ReadFile(d.Backup)
			if err != nil || !bytes.Equal(backup, orig) {
				t.Fatalf("backup differs from the original (%v)", err)
			}
			bad, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(bad, orig) {
				t.Fatal("file unchanged")
			}
			switch tc.how {
			case Truncate:
				if len(bad) != len(orig)/2 || !bytes.Equal(bad, orig[:len(bad)]) {
					t.Fatalf("truncated to %d bytes, want the first %d of the original", len(bad), len(orig)/2)
				}
			case FlipHeaderByte, FlipPageByte:
				if len(bad) != len(orig) || countDiff(bad, orig) != 1 || d.Offset >= int64(len(orig)) ||
					orig[d.Offset] != d.Before[0] || bad[d.Offset] != d.After[0] {
					t.Fatalf("want exactly the one byte Damage names changed: %+v", d)
				}
				if tc.how == FlipHeaderByte && d.Offset >= 16 {
					t.Fatalf("header flip at %d, outside the magic", d.Offset)
				}
				if tc.how == FlipPageByte && d.Offset < 4096 {
					t.Fatalf("page flip at %d, in page 1 of a multi-page database", d.Offset)
				}
			case Garbage:
				if len(bad) != len(orig) {
					t.Fatalf("garbage changed the size to %d", len(bad))
				}
			}

			verdict, err := probe(t, path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("fresh open after %v: verdict %q, error %v; want %v", tc.how, verdict, err, tc.want)
			}
			if tc.how == FlipPageByte && (verdict == "" || verdict == "ok") {
				t.Fatalf("integrity_check after a page flip says %q, want it to report the page", verdict)
			}

			// Same seed, same damage; and the backup brings the database back.
			again := filepath.Join(t.TempDir(), "copy.db")
			if err := os.WriteFile(again, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := CorruptFile(again, tc.how, 42); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(again); !bytes.Equal(b, bad) {
				t.Error("the same seed gave different damage")
			}
			if err := RestoreBackup(path, d.Backup); err != nil {
				t.Fatal(err)
			}
			if v, err := probe(t, path); err != nil || v != "ok" {
				t.Fatalf("after RestoreBackup: %q, %v", v, err)
			}
		})
	}
}

func countDiff(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestCorruptFileNumbersBackups(t *testing.T) {
	path := makeDB(t, t.TempDir())
	orig, _ := os.ReadFile(path)
	first, err := CorruptFile(path, FlipHeaderByte, 1)
	if err != nil {
		t.Fatal(err)
	}
	afterFirst, _ := os.ReadFile(path)
	second, err := CorruptFile(path, Garbage, 2) // Garbage needs no SQLite header
	if err != nil {
		t.Fatal(err)
	}
	if first != path+".chaos-backup-1" || second != path+".chaos-backup-2" {
		t.Fatalf("backups %s, %s", first, second)
	}
	b1, _ := os.ReadFile(first)
	b2, _ := os.ReadFile(second)
	if !bytes.Equal(b1, orig) || !bytes.Equal(b2, afterFirst) {
		t.Fatal("a backup does not hold the file as it was before its corruption")
	}
}

func TestCorruptFileRefusesWithoutTouching(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database, but long enough to have a header of sorts........................................."), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		how  Corruption
		says string
	}{
		{text, FlipHeaderByte, "not a SQLite database"},
		{text, FlipPageByte, "not a SQLite database"},
		{empty, Truncate, "empty"},
		{filepath.Join(dir, "missing.db"), Garbage, "no such file"},
		{text, Corruption(99), "unknown corruption"},
	} {
		_, err := CorruptFile(tc.path, tc.how, 0)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("CorruptFile(%s, %v) = %v, want an error saying %q", filepath.Base(tc.path), tc.how, err, tc.says)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*"+BackupSuffix+"*")); len(m) != 0 {
		t.Fatalf("refused corruptions left backups: %v", m)
	}
}

func TestParseCorruption(t *testing.T) {
	for _, c := range []Corruption{FlipHeaderByte, FlipPageByte, Truncate, Garbage} {
		got, err := ParseCorruption(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCorruption(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseCorruption("bitrot"); err == nil {
		t.Error("an unknown name parsed")
	}
}
