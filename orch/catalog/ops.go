package catalog

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ncruces/go-sqlite3"
)

// Limits of the operations.
const (
	// busyRetriesMax is how many times a transaction that met SQLITE_BUSY is retried (each
	// after SQLite's own busy timeout) before the call fails.
	busyRetriesMax = 4
	// DefaultPageSize is the page size of ListByProvider when the caller passes 0.
	DefaultPageSize = 100
	// PageSizeMax is the largest page ListByProvider returns.
	PageSizeMax = 1000
)

// statements are the catalog's prepared statements, valid while its connection is open.
type statements struct {
	insert, get, list, all, remove *sqlite3.Stmt
}

func (s *statements) prepare(conn *sqlite3.Conn, unique bool) error {
	insert := `INSERT INTO models (` + modelColumns + `) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)`
	if unique {
		insert += ` ON CONFLICT(id) DO NOTHING`
	}
	for _, p := range []struct {
		st  **sqlite3.Stmt
		sql string
	}{
		{&s.insert, insert},
		{&s.get, `SELECT ` + modelColumns + ` FROM models WHERE id = ?1`},
		{&s.list, `SELECT ` + modelColumns + ` FROM models WHERE provider = ?1 AND id > ?2 ORDER BY id LIMIT ?3`},
		{&s.all, `SELECT ` + modelColumns + ` FROM models ORDER BY id`},
		{&s.remove, `DELETE FROM models WHERE id = ?1`},
	} {
		st, _, err := conn.Prepare(p.sql)
		if err != nil {
			s.close()
			return err
		}
		*p.st = st
	}
	return nil
}

func (s *statements) close() {
	for _, st := range []**sqlite3.Stmt{&s.insert, &s.get, &s.list, &s.all, &s.remove} {
		if *st != nil {
			(*st).Close()
			*st = nil
		}
	}
}

// write runs fn in an immediate transaction and commits it, retrying the whole transaction
// when another process holds the lock. On any error the transaction is rolled back.
func (c *Catalog) write(fn func() error) error {
	var err error
	for range busyRetriesMax + 1 {
		err = c.writeOnce(fn)
		if !errors.Is(err, sqlite3.BUSY) && !errors.Is(err, sqlite3.LOCKED) {
			return err
		}
		c.o.Log.Debug("catalog busy, retrying", "path", c.o.Path, "err", err)
	}
	return err
}

func (c *Catalog) writeOnce(fn func() error) error {
	if err := c.conn.Exec(`BEGIN IMMEDIATE`); err != nil {
		return err
	}
	if err := fn(); err != nil {
		c.rollback()
		return err
	}
	if err := c.conn.Exec(`COMMIT`); err != nil {
		c.rollback()
		return err
	}
	return nil
}

// rollback ends the open transaction, if SQLite has not already rolled it back. Its error is
// dropped: the caller returns the error that made it roll back, and a connection whose
// rollback failed fails its next call with the same I/O error.
func (c *Catalog) rollback() {
	if !c.conn.GetAutocommit() {
		_ = c.conn.Exec(`ROLLBACK`)
	}
}

// retryBusy runs a read, retrying it when another process holds the lock.
func (c *Catalog) retryBusy(fn func() error) error {
	var err error
	for range busyRetriesMax + 1 {
		err = fn()
		if !errors.Is(err, sqlite3.BUSY) && !errors.Is(err, sqlite3.LOCKED) {
			return err
		}
	}
	return err
}

// validForCatalog checks m's invariants and that its file is where ModelPath says.
func validForCatalog(m Model, modelsDir string) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if want := ModelPath(modelsDir, m.Provider, m.Reference); m.LocalPath != want {
		return invalidf("model %s: LocalPath %q: want %q (ModelPath)", m.ID, m.LocalPath, want)
	}
	return nil
}

// Register adds m to the catalog, unless a model with its ID is there already; inserted says
// whether this call added it. The row has committed when Register returns. It validates m
// first (see Model.Validate; LocalPath must be ModelPath's), but trusts that m describes the
// file at LocalPath. If the call finds the catalog corrupt, the rebuild may register the
// model from its file before the call is retried; inserted is then false.
func (c *Catalog) Register(m Model) (inserted bool, err error) {
	if err := validForCatalog(m, c.o.ModelsDir); err != nil {
		return false, err
	}
	err = c.do("register "+m.ID, func() error {
		if c.o.Plants.Has(PlantAckBeforeCommit) {
			inserted, err = c.insertUncommitted(m)
			return err
		}
		var n int64
		err := c.write(func() error {
			var err error
			n, err = c.insert(m)
			return err
		})
		inserted = n == 1
		return err
	})
	return inserted, err
}

// insert runs the insert statement inside the caller's transaction and returns the rows it
// added.
func (c *Catalog) insert(m Model) (int64, error) {
	defer c.st.insert.Reset()
	if err := bindModel(c.st.insert, m); err != nil {
		return 0, err
	}
	if err := c.st.insert.Exec(); err != nil {
		return 0, err
	}
	return c.conn.Changes(), nil
}

// insertUncommitted is Register under the plant catalog-ack-before-commit: it leaves the
// transaction open, acknowledges, and commits at the next call.
func (c *Catalog) insertUncommitted(m Model) (bool, error) {
	if err := c.conn.Exec(`BEGIN IMMEDIATE`); err != nil {
		return false, err
	}
	n, err := c.insert(m)
	if err != nil {
		c.rollback()
		return false, err
	}
	c.pending = true
	return n == 1, nil
}

// commitPending commits what insertUncommitted left open.
func (c *Catalog) commitPending() error {
	if !c.pending {
		return nil
	}
	c.pending = false
	if err := c.conn.Exec(`COMMIT`); err != nil {
		c.rollback()
		return err
	}
	return nil
}

// Get returns the model with this ID; found is false when there is none.
func (c *Catalog) Get(id string) (m Model, found bool, err error) {
	if id == "" {
		return Model{}, false, invalidf("Get: model ID is empty")
	}
	err = c.do("get "+id, func() error {
		return c.retryBusy(func() error {
			var err error
			m, found, err = c.get(id)
			return err
		})
	})
	return m, found, err
}

func (c *Catalog) get(id string) (Model, bool, error) {
	st := c.st.get
	defer st.Reset()
	if err := st.BindText(1, id); err != nil {
		return Model{}, false, err
	}
	if !st.Step() {
		return Model{}, false, st.Err()
	}
	m, err := c.readModel(st)
	return m, err == nil, err
}

// ListByProvider returns one page of the provider's models in ID order, at most pageSize of
// them (0: DefaultPageSize, at most PageSizeMax), starting after pageToken ("" for the first
// page). next is the token of the following page, "" after the last. Pages are keyset-based:
// a model registered or removed while a caller pages through is seen or not, but no other
// model is skipped or repeated.
func (c *Catalog) ListByProvider(provider string, pageSize int, pageToken string) (models []Model, next string, err error) {
	if err := validProvider(provider); err != nil {
		return nil, "", err
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	if pageSize < 0 || pageSize > PageSizeMax {
		return nil, "", invalidf("page size %d: want 1-%d, or 0 for %d", pageSize, PageSizeMax, DefaultPageSize)
	}
	after, err := decodePageToken(provider, pageToken)
	if err != nil {
		return nil, "", err
	}
	var more bool
	err = c.do("list "+provider, func() error {
		return c.retryBusy(func() error {
			var err error
			models, more, err = c.list(provider, after, pageSize)
			return err
		})
	})
	if err != nil {
		return nil, "", err
	}
	if more {
		next = encodePageToken(models[len(models)-1].ID)
	}
	return models, next, nil
}

// list reads up to pageSize models of provider with IDs after after; more says whether
// others follow.
func (c *Catalog) list(provider, after string, pageSize int) (models []Model, more bool, err error) {
	st := c.st.list
	defer st.Reset()
	if err := st.BindText(1, provider); err != nil {
		return nil, false, err
	}
	if err := st.BindText(2, after); err != nil {
		return nil, false, err
	}
	if err := st.BindInt(3, pageSize+1); err != nil {
		return nil, false, err
	}
	models = make([]Model, 0, pageSize)
	for st.Step() {
		if len(models) == pageSize {
			return models, true, nil
		}
		m, err := c.readModel(st)
		if err != nil {
			return nil, false, err
		}
		models = append(models, m)
	}
	return models, false, st.Err()
}

// pageTokenPrefix versions the token format.
const pageTokenPrefix = "k1."

// encodePageToken makes the opaque token of the page after the model lastID.
func encodePageToken(lastID string) string {
	return pageTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// decodePageToken returns the last ID of the previous page ("" for the first page).
func decodePageToken(provider, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	bad := func(why string) error {
		return invalidf("page token %q for provider %q: %s; pass the next token a previous "+
			"ListByProvider of this provider returned, or \"\" to start again", token, provider, why)
	}
	enc, ok := strings.CutPrefix(token, pageTokenPrefix)
	if !ok {
		return "", bad("unknown format")
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", bad("not base64url")
	}
	id := string(raw)
	if !utf8.ValidString(id) || !strings.HasPrefix(id, provider+":") || len(id) == len(provider)+1 {
		return "", bad("not a position in this provider's models")
	}
	return id, nil
}

// Remove deletes the model's row; removing a model that is not there is not an error. It
// leaves the model file alone: the caller deletes it after Remove returns (a crash between
// leaves a file that Cleanup can adopt or the user can delete, never a row without a file).
func (c *Catalog) Remove(id string) error {
	if id == "" {
		return invalidf("Remove: model ID is empty")
	}
	return c.do("remove "+id, func() error {
		return c.write(func() error {
			defer c.st.remove.Reset()
			if err := c.st.remove.BindText(1, id); err != nil {
				return err
			}
			return c.st.remove.Exec()
		})
	})
}

// bindModel binds m to a statement whose parameters are modelColumns (the first
// st.BindCount() of them).
func bindModel(st *sqlite3.Stmt, m Model) error {
	vals := []any{m.ID, m.Provider, m.Reference, m.LocalPath, m.SizeBytes, m.SHA256,
		m.Architecture, m.ContextLength, m.Quantization, m.DownloadedAt.UnixNano(), m.VRAMRequired}
	for i := range st.BindCount() {
		var err error
		switch v := vals[i].(type) {
		case string:
			err = st.BindText(i+1, v)
		case int64:
			err = st.BindInt64(i+1, v)
		default:
			panic(fmt.Sprintf("catalog: bindModel: column %d has type %T", i, v))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readModel reads a row of modelColumns and checks it: a row that breaks Model's invariants
// means the file is damaged.
func (c *Catalog) readModel(st *sqlite3.Stmt) (Model, error) {
	m := Model{
		ID:            st.ColumnText(0),
		Provider:      st.ColumnText(1),
		Reference:     st.ColumnText(2),
		LocalPath:     st.ColumnText(3),
		SizeBytes:     st.ColumnInt64(4),
		SHA256:        st.ColumnText(5),
		Architecture:  st.ColumnText(6),
		ContextLength: st.ColumnInt64(7),
		Quantization:  st.ColumnText(8),
		DownloadedAt:  time.Unix(0, st.ColumnInt64(9)).UTC(),
		VRAMRequired:  st.ColumnInt64(10),
	}
	if err := validForCatalog(m, c.o.ModelsDir); err != nil {
		return Model{}, &corruptError{fmt.Sprintf("a row is damaged: %v", err)}
	}
	return m, nil
}
