package catalog

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/ncruces/go-sqlite3"

	"github.com/rbee-sim/rbee-sim/orch/node"
)

// SchemaVersion is the catalog schema this code writes, kept in PRAGMA user_version. Version 1
// lacked the vram_required column.
const SchemaVersion = 2

// checkRowsMax bounds the problems quick_check and integrity_check report.
const checkRowsMax = 10

// modelColumns are the columns of a Model, in the order bindModel and readModel use; the
// last one, vram_required, is the one version 2 added.
const modelColumns = `id, provider, reference, local_path, size_bytes, sha256, architecture, ` +
	`context_length, quantization, downloaded_at_unix_nano, vram_required`

const modelColumnsV1 = `id, provider, reference, local_path, size_bytes, sha256, architecture, ` +
	`context_length, quantization, downloaded_at_unix_nano`

// schemaDDL creates the catalog's table and index at a schema version. unique is false only
// under the plant catalog-no-dedupe, which drops the key on id.
func schemaDDL(version int, unique bool) string {
	id := "id TEXT NOT NULL PRIMARY KEY"
	if !unique {
		id = "id TEXT NOT NULL"
	}
	vram := ""
	if version >= 2 {
		vram = ",\n\tvram_required INTEGER NOT NULL DEFAULT 0"
	}
	return `CREATE TABLE models (
	` + id + `,
	provider TEXT NOT NULL,
	reference TEXT NOT NULL,
	local_path TEXT NOT NULL,
	size_bytes INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	architecture TEXT NOT NULL,
	context_length INTEGER NOT NULL,
	quantization TEXT NOT NULL,
	downloaded_at_unix_nano INTEGER NOT NULL` + vram + `
);
CREATE INDEX models_provider_id ON models(provider, id);
PRAGMA user_version = ` + fmt.Sprint(version) + `;`
}

// migrateV1ToV2 adds the version 2 column; it runs in one transaction with the version bump.
const migrateV1ToV2 = `ALTER TABLE models ADD COLUMN vram_required INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;`

// uri is the SQLite URI of a file on the Disk.
func (o Options) uri(name string, readOnly bool) string {
	p := name
	if o.VFS == "" {
		p = filepath.ToSlash(filepath.Join(o.Dir, filepath.FromSlash(name)))
	}
	p = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(p)
	var q []string
	if o.VFS != "" {
		q = append(q, "vfs="+url.QueryEscape(o.VFS))
	}
	if readOnly {
		q = append(q, "mode=ro")
	}
	if len(q) == 0 {
		return "file:" + p
	}
	return "file:" + p + "?" + strings.Join(q, "&")
}

// connect opens a read-write connection to the catalog file, creating it when missing.
func (o Options) connect(name string) (*sqlite3.Conn, error) {
	if err := ensureFile(o.Disk, name); err != nil {
		return nil, err
	}
	conn, err := sqlite3.OpenFlags(o.uri(name, false), sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE|sqlite3.OPEN_URI)
	if err != nil {
		return nil, err
	}
	if o.BusyTimeout > 0 {
		if err := conn.BusyTimeout(o.BusyTimeout); err != nil {
			conn.Close()
			return nil, err
		}
	}
	// DELETE journal: the sqlitevfs VFS has no shared memory for WAL. FULL sync: a commit is
	// durable when it returns. cell_size_check: find damaged pages sooner.
	err = conn.Exec(`PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; PRAGMA cell_size_check=ON;`)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// open opens (creating, migrating, checking) the catalog file. When it created the file, it
// registers the model files already on disk and returns what it found; otherwise rebuilt is
// nil.
func (c *Catalog) open() (rebuilt *rebuildResult, err error) {
	if c.gen, err = c.o.readGeneration(); err != nil {
		return nil, err
	}
	exists, err := fileExists(c.o.Disk, c.o.Path)
	if err != nil {
		return nil, err
	}
	if exists {
		// Refuse a newer catalog before opening it read-write: that could roll back its
		// journal or otherwise touch it.
		if err := c.probeVersion(); err != nil {
			return nil, err
		}
	}
	if c.conn, err = c.o.connect(c.o.Path); err != nil {
		return nil, err
	}
	created, err := c.prepareSchema()
	if err != nil {
		return nil, err
	}
	// Page checksums: SQLite alone does not notice a flipped byte inside a row (only
	// integrity_check would); with them every page read is verified and damage becomes an
	// error the catalog recovers from, never a wrong answer. Idempotent; the first time it
	// rewrites the file (VACUUM).
	if err := c.enableChecksums(); err != nil {
		if isDiskFull(err) || errors.Is(err, sqlite3.IOERR) {
			return nil, err
		}
		// The header's reserved-bytes field is not what checksums need: a damaged header.
		return nil, &corruptError{fmt.Sprintf("page checksums cannot be enabled: %s", sqliteReason(err))}
	}
	if err := c.check("quick_check"); err != nil {
		return nil, err
	}
	if err := c.st.prepare(c.conn, !c.o.Plants.Has(PlantNoDedupe)); err != nil {
		return nil, &corruptError{fmt.Sprintf("the catalog's schema does not match version %d: %v", SchemaVersion, err)}
	}
	if !created {
		return nil, nil
	}
	// This process made a new file: connections of others to the old one must reopen.
	if c.gen, err = c.o.bumpGeneration(c.gen); err != nil {
		return nil, err
	}
	res, err := c.rebuild()
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// probeVersion reads the schema version read-only and refuses a newer catalog. Errors other
// than corruption (a hot journal a read-only connection cannot roll back, a lock) are left
// for the read-write open to meet.
func (c *Catalog) probeVersion() error {
	conn, err := sqlite3.OpenFlags(c.o.uri(c.o.Path, true), sqlite3.OPEN_READONLY|sqlite3.OPEN_URI)
	if err != nil {
		if isCorruption(err) {
			return err
		}
		return nil
	}
	defer conn.Close()
	v, err := userVersion(conn)
	switch {
	case err != nil && isCorruption(err):
		return err
	case err == nil && v > SchemaVersion:
		return c.newerError(v)
	}
	return nil
}

func (c *Catalog) newerError(v int) error {
	return fmt.Errorf("catalog %s: %w: its schema version is %d and this rbee-hive knows versions up to %d; "+
		"the file was left untouched: upgrade rbee-hive to use it", c.o.Path, ErrNewerVersion, v, SchemaVersion)
}

// prepareSchema brings the open file to SchemaVersion: it creates an empty file's schema
// (created is then true) or migrates a version 1 catalog.
func (c *Catalog) prepareSchema() (created bool, err error) {
	v, err := userVersion(c.conn)
	if err != nil {
		return false, err
	}
	switch {
	case v == SchemaVersion:
		return false, nil
	case v > SchemaVersion:
		return false, c.newerError(v)
	case v == 1:
		return false, c.migrateV1()
	case v == 0:
		return c.initialize()
	}
	return false, &corruptError{fmt.Sprintf("schema version %d is not one rbee-hive ever wrote", v)}
}

// initialize creates the schema in an empty file, in one transaction.
func (c *Catalog) initialize() (created bool, err error) {
	err = c.write(func() error {
		created = false
		v, err := userVersion(c.conn)
		if err != nil || v != 0 {
			return err // another process initialized it first
		}
		tables, err := queryInt(c.conn, `SELECT count(*) FROM sqlite_schema`)
		if err != nil {
			return err
		}
		if tables > 0 {
			return &corruptError{"the file has tables but no schema version: it is not an rbee model catalog"}
		}
		if err := c.conn.Exec(schemaDDL(SchemaVersion, !c.o.Plants.Has(PlantNoDedupe))); err != nil {
			return err
		}
		created = true
		return nil
	})
	return created, err
}

// migrateV1 adds version 2's column: ALTER TABLE and the version bump commit together, so a
// crash leaves a complete version 1 catalog that the next Open migrates.
func (c *Catalog) migrateV1() error {
	err := c.write(func() error {
		v, err := userVersion(c.conn)
		if err != nil || v != 1 {
			return err // another process migrated it first
		}
		return c.conn.Exec(migrateV1ToV2)
	})
	if err == nil {
		c.o.Log.Info("catalog migrated", "path", c.o.Path, "from_version", 1, "to_version", SchemaVersion)
	}
	return err
}

// check runs PRAGMA quick_check or integrity_check and turns its complaints into a
// corruptError.
func (c *Catalog) check(pragma string) error {
	st, _, err := c.conn.Prepare(fmt.Sprintf(`PRAGMA %s(%d)`, pragma, checkRowsMax))
	if err != nil {
		return err
	}
	defer st.Close()
	var problems []string
	for st.Step() {
		problems = append(problems, st.ColumnText(0))
	}
	if err := st.Err(); err != nil {
		return err
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	return &corruptError{pragma + " found: " + strings.Join(problems, "; ")}
}

func userVersion(conn *sqlite3.Conn) (int, error) {
	return queryInt(conn, `PRAGMA user_version`)
}

// queryInt runs a query of one integer.
func queryInt(conn *sqlite3.Conn, query string) (int, error) {
	st, _, err := conn.Prepare(query)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if !st.Step() {
		if err := st.Err(); err != nil {
			return 0, err
		}
		panic(fmt.Sprintf("catalog: %q returned no row", query))
	}
	return st.ColumnInt(0), nil
}

// CreateV1 writes a version 1 catalog (no vram_required column) holding models at o.Path, for
// tests and the harness's migration scenarios. The file must not exist or be empty. Each
// model must be valid; its VRAMRequired is not stored.
func CreateV1(o Options, models []Model) (err error) {
	o, err = o.withDefaults()
	if err != nil {
		return err
	}
	for _, m := range models {
		if err := validForCatalog(m, o.ModelsDir); err != nil {
			return err
		}
	}
	conn, err := o.connect(o.Path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
	}()
	c := &Catalog{o: o, conn: conn}
	return c.write(func() error {
		if v, err := userVersion(conn); err != nil || v != 0 {
			return fmt.Errorf("catalog %s: CreateV1 needs an empty file, found schema version %d (%v)", o.Path, v, err)
		}
		if err := conn.Exec(schemaDDL(1, true)); err != nil {
			return err
		}
		return insertAll(conn, `INSERT INTO models (`+modelColumnsV1+`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)`, models)
	})
}

// insertAll inserts models with a statement of bindModel's parameters.
func insertAll(conn *sqlite3.Conn, query string, models []Model) error {
	st, _, err := conn.Prepare(query)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, m := range models {
		if err := bindModel(st, m); err != nil {
			return err
		}
		if err := st.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// ensureFile creates an empty file when name is missing, through the Disk, which creates its
// folders too (the OS VFS of SQLite does not); SQLite reads an empty file as an empty
// database.
func ensureFile(d node.Disk, name string) error {
	f, err := d.Open(name, true)
	if err != nil {
		return err
	}
	return f.Close()
}

// enableChecksums turns on page checksums. The first time, for a catalog that has rows (a
// migrated v1 catalog), that rewrites the whole file with VACUUM; go-sqlite3 v0.37 writes
// pages with bad checksums when that VACUUM spills dirty pages out of the page cache (seen
// from about 20,000 rows with the default cache), so the cache is made large enough to hold
// the file for the VACUUM, then set back.
func (c *Catalog) enableChecksums() error {
	var pages, pageSize int64
	if st, _, err := c.conn.Prepare(`SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`); err == nil {
		if st.Step() {
			pages, pageSize = st.ColumnInt64(0), st.ColumnInt64(1)
		}
		st.Close()
	}
	kib := pages*pageSize/1024*2 + 4096
	if err := c.conn.Exec(fmt.Sprintf(`PRAGMA cache_size = -%d`, kib)); err != nil {
		return err
	}
	err := c.conn.EnableChecksums("main")
	if rerr := c.conn.Exec(`PRAGMA cache_size = -2000`); err == nil {
		err = rerr
	}
	return err
}
