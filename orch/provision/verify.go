package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// hashChunkBytes is how much of a file hashFile and partialHash.catchUp read at a time.
const hashChunkBytes = 1 << 20

// partialHash is the running sha256 of a download's partial file: the sum of its first n
// bytes, folded in by write as this process writes them, so that the end of a download checks
// the file's sha256 without reading it back.
//
// It lives in memory only. Bytes this process did not write in this run (a partial file left
// by a crash, a cancelled download or another process) are read back once, by catchUp before
// the next write or the final check: for a resumed download that is the resumed part, once.
// It starts over (h nil) when the file is cut below n, and whenever the lease is taken (another
// process may have written the file since this one last did).
//
// What it does not see: a byte of the partial file changed on the disk after this process wrote
// it (media corruption). The GGUF header is read back from the disk at the end, the rest is
// not; reading the whole file back would catch that and cost a second pass over it.
type partialHash struct {
	h hash.Hash // nil: nothing hashed yet
	n int64     // bytes of the partial file folded into h
}

// reset forgets the hashed bytes: the next catchUp reads the partial file from its start.
func (ph *partialHash) reset() { ph.h, ph.n = nil, 0 }

// catchUp folds the bytes [n, upTo) of the partial file f into the hash, reading them back,
// so that the hash covers the file's first upTo bytes. It starts over from byte 0 when upTo is
// below n. On error the hash is reset.
func (ph *partialHash) catchUp(f node.File, upTo int64) error {
	if ph.h == nil || upTo < ph.n {
		ph.h, ph.n = sha256.New(), 0
	}
	if ph.n == upTo {
		return nil
	}
	buf := make([]byte, min(upTo-ph.n, hashChunkBytes))
	for ph.n < upTo {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), upTo-ph.n)], ph.n)
		ph.h.Write(buf[:k])
		ph.n += int64(k)
		if err != nil && !(errors.Is(err, io.EOF) && ph.n == upTo) {
			ph.reset()
			return fmt.Errorf("reading the partial file back to hash it: %w", err)
		}
		if k == 0 && err == nil {
			ph.reset()
			return fmt.Errorf("reading the partial file back to hash it: %w", io.ErrNoProgress)
		}
	}
	return nil
}

// add folds bytes just written at byte n of the partial file into the hash.
func (ph *partialHash) add(data []byte) {
	ph.h.Write(data)
	ph.n += int64(len(data))
}

// sum is the hash in lowercase hex.
func (ph *partialHash) sum() string { return hex.EncodeToString(ph.h.Sum(nil)) }

// hashPartial returns the sha256 of the partial file's first d.pos bytes (from the running
// hash, reading back only what it does not cover yet) and the file's size.
func (p *Provisioner) hashPartial(env node.Env, d *download) (string, int64, error) {
	f, err := env.Disk().Open(d.partial(), false)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return "", 0, err
	}
	if err := d.hash.catchUp(f, d.pos); err != nil {
		return "", 0, err
	}
	return d.hash.sum(), size, nil
}

// finish verifies a complete partial file and renames it into place, then reports Done: its
// size on the disk and its sha256 (the running hash, see partialHash) must be the hub's, and
// its GGUF header (read back from the disk, the tensor data is not) must validate. The partial
// file is synced before the rename, so the model file is never torn. A file that fails is
// removed and fetched again, at most RetryAttemptsMax times.
func (p *Provisioner) finish(env node.Env, d *download) {
	p.closeReq(env, d)
	p.syncPartial(env, d)
	sum, n, err := p.hashPartial(env, d)
	if err != nil {
		p.truncate(env, d, 0)
		p.retry(env, d, fmt.Sprintf("cannot read %s: %v", d.partial(), err), 0)
		return
	}
	why := ""
	if (n != d.size || sum != d.sha) && !p.cfg.Plants.Has(PlantSkipChecksum) {
		env.Observe(node.Mark("checksum mismatch, retrying"))
		why = fmt.Sprintf("%d bytes with sha256 %s, expected %d bytes with sha256 %s", n, sum, d.size, d.sha)
	} else if err := validateFile(env.Disk(), d.partial()); err != nil {
		env.Observe(node.Mark("downloaded file is not a valid GGUF, retrying"))
		why = err.Error()
	}
	if why != "" {
		p.discard(env, d, why)
		return
	}
	if err := env.Disk().Rename(d.partial(), d.id); err != nil {
		p.fail(env, d, diskError(d, err))
		return
	}
	p.end(env, d, Done{Path: d.id, SHA256: sum, Size: n})
}

// discard removes a partial file that failed verification and fetches the file again, from
// HEAD (the file may have changed on the hub), or ends the download after too many failures.
func (p *Provisioner) discard(env node.Env, d *download, why string) {
	if err := env.Disk().Remove(d.partial()); err != nil && !node.IsNotExist(err) {
		p.fail(env, d, diskError(d, err))
		return
	}
	d.pos, d.synced, d.haveMeta, d.resumed = 0, 0, false, false
	d.hash.reset()
	d.verifyFailed++
	if d.verifyFailed > p.cfg.RetryAttemptsMax {
		p.fail(env, d, api.Errorf(CodeDownloadFailed, "the file on the hub may be broken; try "+
			"again later", "%s failed verification %d times: %s", d.name(), d.verifyFailed, why))
		return
	}
	p.retry(env, d, "verification failed: "+why, 0)
}

// finishedModel reports whether a valid model file is in place at path, and its Done.
func finishedModel(disk node.Disk, path string) (Done, bool) {
	sum, n, err := hashFile(disk, path)
	if err != nil || validateFile(disk, path) != nil {
		return Done{}, false
	}
	return Done{ID: path, Path: path, SHA256: sum, Size: n}, true
}

// validateFile runs gguf.Validate on a file: it reads the header (and the tensor infos) only,
// and checks the tensor data's extent against the file's size.
func validateFile(disk node.Disk, name string) error {
	f, err := disk.Open(name, false)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	_, err = gguf.Validate(f, size)
	return err
}

// hashFile returns a file's sha256 in lowercase hex and its size.
func hashFile(disk node.Disk, name string) (string, int64, error) {
	f, err := disk.Open(name, false)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	buf := make([]byte, min(size, hashChunkBytes))
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && off == size) {
			return "", 0, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// validSHA256 reports whether s is 64 lowercase hex digits.
func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// partialSize is the length of the download's partial file; 0 if there is none.
func (p *Provisioner) partialSize(env node.Env, d *download) int64 {
	f, err := env.Disk().Open(d.partial(), false)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return 0
	}
	return n
}

// truncate cuts (or creates) the partial file to n bytes and syncs it. A cut below the hashed
// bytes resets the running hash, and so does a cut while the lease is not held: tryLease cuts
// the file to what the last holder synced just before it takes the lease, and the bytes there
// may be another process's.
func (p *Provisioner) truncate(env node.Env, d *download, n int64) {
	if n < d.hash.n || !d.held {
		d.hash.reset()
	}
	f, err := env.Disk().Open(d.partial(), true)
	if err == nil {
		err = f.Truncate(n)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if err != nil {
		env.Log().Warn("provision: cannot truncate partial file", "file", d.id, "err", err)
	}
	d.pos, d.synced = n, n
}

// write appends data to the partial file at pos and folds it into the running hash, after
// reading back the bytes before pos that the hash does not cover yet (the first write of a
// resumed download). On error the file is cut back to pos.
func (p *Provisioner) write(env node.Env, d *download, data []byte) error {
	f, err := env.Disk().Open(d.partial(), true)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := d.hash.catchUp(f, d.pos); err != nil {
		return err
	}
	if _, err := f.WriteAt(data, d.pos); err != nil {
		f.Truncate(d.pos) // best effort: the sync before the next use reports what stuck
		return err
	}
	d.hash.add(data)
	d.pos += int64(len(data))
	return nil
}

// syncPartial makes the partial file durable and records the synced size in the lease.
func (p *Provisioner) syncPartial(env node.Env, d *download) {
	f, err := env.Disk().Open(d.partial(), false)
	if err != nil {
		return
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		env.Log().Warn("provision: cannot sync partial file", "file", d.id, "err", err)
		return
	}
	d.synced = d.pos
	if d.held {
		if err := p.writeLease(env, d); err != nil {
			env.Log().Warn("provision: cannot update lease", "file", d.id, "err", err)
		}
	}
}

// checkSpace refuses a download that would leave less than FreeSpaceMarginBytes free on a
// disk that can tell (FreeSpacer).
func (p *Provisioner) checkSpace(env node.Env, d *download) api.Error {
	fs, ok := env.Disk().(FreeSpacer)
	if !ok {
		return api.Error{}
	}
	free, err := fs.FreeBytes()
	need := d.size - d.pos + p.cfg.FreeSpaceMarginBytes
	if err != nil || free >= need {
		return api.Error{}
	}
	return api.Errorf(CodeDownloadFailed, fmt.Sprintf("free at least %d bytes on the disk", need-free),
		"not enough disk space for %s: %d bytes to fetch plus a margin of %d, %d free",
		d.name(), d.size-d.pos, p.cfg.FreeSpaceMarginBytes, free)
}

// diskError is the error of a download stopped by a disk failure.
func diskError(d *download, err error) api.Error {
	return api.Errorf(CodeDownloadFailed, "check the disk", "disk error downloading %s: %v", d.name(), err)
}
