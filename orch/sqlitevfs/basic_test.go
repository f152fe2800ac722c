package sqlitevfs

import (
	"database/sql"
	"slices"
	"testing"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/node/nodetest"
	"github.com/rbee-sim/rbee-sim/sim"
)

// open opens dbName on the VFS name, failing the test on error.
func open(t testing.TB, vfsName, dbName string) *sqlite3.Conn {
	t.Helper()
	c, err := sqlite3.Open("file:" + dbName + "?vfs=" + vfsName)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func register(t testing.TB, d node.Disk) string {
	name := Register(d)
	t.Cleanup(func() { Unregister(name) })
	return name
}

func queryString(t testing.TB, c *sqlite3.Conn, q string) string {
	t.Helper()
	s, _, err := c.Prepare(q)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Step() {
		t.Fatalf("%s: no row: %v", q, s.Err())
	}
	return s.ColumnText(0)
}

func TestBasicOnDisks(t *testing.T) {
	for _, tc := range []struct {
		name string
		disk node.Disk
	}{
		{"memdisk", nodetest.NewMemDisk()},
		{"simdisk", sim.NewDisk()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := register(t, tc.disk)
			c := open(t, name, "catalog.db")
			if err := c.Exec(`PRAGMA journal_mode=DELETE`); err != nil {
				t.Fatal(err)
			}
			if err := c.Exec(`CREATE TABLE m (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if err := c.Exec(`BEGIN; INSERT INTO m(name) VALUES ('a'), ('b'); INSERT INTO m(name) VALUES ('c'); COMMIT`); err != nil {
				t.Fatal(err)
			}
			if got := queryString(t, c, `SELECT group_concat(name, ',') FROM (SELECT name FROM m ORDER BY id)`); got != "a,b,c" {
				t.Fatalf("rows = %q", got)
			}
			if got := queryString(t, c, `PRAGMA integrity_check`); got != "ok" {
				t.Fatalf("integrity_check = %q", got)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			files, err := tc.disk.List("")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(files, []string{"catalog.db"}) {
				t.Fatalf("files on disk = %q", files)
			}
			data, err := node.ReadFile(tc.disk, "catalog.db")
			if err != nil || len(data) < 100 || string(data[:16]) != "SQLite format 3\x00" {
				t.Fatalf("catalog.db: %d bytes, %v", len(data), err)
			}

			// Reopen through database/sql and read back.
			db, err := sql.Open("sqlite3", "file:catalog.db?vfs="+name)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM m`).Scan(&n); err != nil || n != 3 {
				t.Fatalf("count = %d, %v", n, err)
			}
		})
	}
}
