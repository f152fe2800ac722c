package catalog

// CleanupSummary says what Cleanup did. Lists are in name order.
type CleanupSummary struct {
	// RowsRemoved is how many rows were removed because their file was missing, not a valid
	// model, or not the file the row describes (size or SHA-256 differ).
	RowsRemoved int
	// FilesAdopted is how many valid model files without a row were registered.
	FilesAdopted int
	// BytesAdopted is the total size of the adopted files.
	BytesAdopted int64
	// Removed are the IDs of the removed rows.
	Removed []string
	// Adopted are the IDs of the adopted models.
	Adopted []string
	// Unregistered are valid model files without a row that were left unregistered (adopt
	// was false).
	Unregistered []string
	// Unreadable are files in ModelsDir that are not valid models. Cleanup never deletes a
	// file: the user decides.
	Unreadable []string
}

// Cleanup reconciles the catalog with the model files: it removes rows whose file is missing
// or fails validation (GGUF header, size, SHA-256), and with adopt registers valid model
// files that have no row. It reads and hashes every model file. All changes commit in one
// transaction.
func (c *Catalog) Cleanup(adopt bool) (CleanupSummary, error) {
	var sum CleanupSummary
	err := c.do("cleanup", func() error {
		var err error
		sum, err = c.cleanup(adopt)
		return err
	})
	return sum, err
}

// fileCheck is what inspect found for one file.
type fileCheck struct {
	m   Model
	err error
}

func (c *Catalog) cleanup(adopt bool) (CleanupSummary, error) {
	var sum CleanupSummary
	rows, err := c.allModels()
	if err != nil {
		return sum, err
	}
	checked := map[string]fileCheck{} // by file name; lookups only
	keep := map[string]bool{}         // files a kept row describes
	for _, r := range rows {
		ok, err := fileExists(c.o.Disk, r.LocalPath)
		if err != nil {
			return sum, err
		}
		if ok {
			m, err := c.inspect(r.LocalPath)
			checked[r.LocalPath] = fileCheck{m, err}
			if err == nil && m.SizeBytes == r.SizeBytes && m.SHA256 == r.SHA256 {
				keep[r.LocalPath] = true
				continue
			}
		}
		if len(sum.Removed) == 0 || sum.Removed[len(sum.Removed)-1] != r.ID { // duplicates (plant)
			sum.Removed = append(sum.Removed, r.ID)
		}
	}
	adopted, err := c.cleanupFiles(&sum, checked, keep, adopt)
	if err != nil {
		return sum, err
	}
	err = c.write(func() error {
		if err := c.removeRows(sum.Removed); err != nil {
			return err
		}
		sum.Adopted, sum.BytesAdopted = nil, 0
		for _, m := range adopted {
			n, err := c.insert(m)
			if err != nil {
				return err
			}
			if n == 1 {
				sum.Adopted = append(sum.Adopted, m.ID)
				sum.BytesAdopted += m.SizeBytes
			}
		}
		return nil
	})
	if err != nil {
		return CleanupSummary{}, err
	}
	sum.RowsRemoved, sum.FilesAdopted = len(sum.Removed), len(sum.Adopted)
	c.o.Log.Info("catalog cleanup", "rows_removed", sum.RowsRemoved, "files_adopted", sum.FilesAdopted,
		"unregistered", len(sum.Unregistered), "unreadable", len(sum.Unreadable))
	return sum, nil
}

// cleanupFiles sorts the files of ModelsDir that no kept row describes into unreadable,
// unregistered, and (with adopt) the models to adopt.
func (c *Catalog) cleanupFiles(sum *CleanupSummary, checked map[string]fileCheck, keep map[string]bool,
	adopt bool) ([]Model, error) {
	names, err := c.o.Disk.List(c.o.ModelsDir)
	if err != nil {
		return nil, err
	}
	now := c.o.Now()
	var adopted []Model
	for _, name := range names {
		if inProgress(name) || keep[name] {
			continue
		}
		fc, ok := checked[name]
		if !ok {
			fc.m, fc.err = c.inspect(name)
		}
		switch {
		case fc.err != nil:
			c.o.Log.Warn("model file unreadable", "file", name, "err", fc.err)
			sum.Unreadable = append(sum.Unreadable, name)
		case adopt:
			fc.m.DownloadedAt = now
			adopted = append(adopted, fc.m)
		default:
			sum.Unregistered = append(sum.Unregistered, name)
		}
	}
	return adopted, nil
}

// allModels reads every row in ID order.
func (c *Catalog) allModels() ([]Model, error) {
	var models []Model
	err := c.retryBusy(func() error {
		models = models[:0]
		st := c.st.all
		defer st.Reset()
		for st.Step() {
			m, err := c.readModel(st)
			if err != nil {
				return err
			}
			models = append(models, m)
		}
		return st.Err()
	})
	return models, err
}

// removeRows deletes rows by ID inside the caller's transaction.
func (c *Catalog) removeRows(ids []string) error {
	st := c.st.remove
	for _, id := range ids {
		if err := st.BindText(1, id); err != nil {
			return err
		}
		err := st.Exec()
		st.Reset()
		if err != nil {
			return err
		}
	}
	return nil
}
