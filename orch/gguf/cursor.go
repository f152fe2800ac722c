package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readChunkBytes is how much the cursor reads from the file at a time.
const readChunkBytes = 64 << 10

// cursor reads a GGUF header front to back through a small window over an io.ReaderAt. It
// refuses to move past the end of the file (ErrTruncated) or past the header limit
// (ErrLimit) before it reads or allocates anything.
type cursor struct {
	r      io.ReaderAt
	size   int64  // the file's size in bytes
	limit  int64  // the header must end at or before this offset
	off    int64  // the next byte to read
	buf    []byte // file bytes from bufOff; cap is the window size
	bufOff int64
}

func newCursor(r io.ReaderAt, size, limit int64) *cursor {
	window := min(int64(readChunkBytes), size, limit)
	return &cursor{r: r, size: size, limit: limit, buf: make([]byte, 0, max(window, 8))}
}

// room checks that n more bytes lie within the file and within the header limit.
func (c *cursor) room(n uint64, what string) error {
	if left := c.size - c.off; n > uint64(left) {
		return formatErr(ErrTruncated, c.off, "%s needs %d bytes but the file ends %d bytes later",
			what, n, left)
	}
	if n > uint64(c.limit-c.off) {
		return formatErr(ErrLimit, c.off, "%s of %d bytes would end the header past "+
			"Limits.MaxHeaderBytes (%d)", what, n, c.limit)
	}
	return nil
}

// skip moves past n bytes without reading them.
func (c *cursor) skip(n uint64, what string) error {
	if err := c.room(n, what); err != nil {
		return err
	}
	c.off += int64(n)
	return nil
}

// take returns the next n bytes (n at most the window size) and moves past them. The slice
// is valid until the next call.
func (c *cursor) take(n int, what string) ([]byte, error) {
	if err := c.room(uint64(n), what); err != nil {
		return nil, err
	}
	end := c.off + int64(n)
	if c.off < c.bufOff || end > c.bufOff+int64(len(c.buf)) {
		if err := c.fill(n); err != nil {
			return nil, err
		}
	}
	b := c.buf[c.off-c.bufOff : end-c.bufOff]
	c.off = end
	return b, nil
}

// fill loads the window from the current offset; at least n bytes must arrive.
func (c *cursor) fill(n int) error {
	want := min(int64(cap(c.buf)), c.size-c.off)
	got, err := c.r.ReadAt(c.buf[:want], c.off)
	c.buf, c.bufOff = c.buf[:got], c.off
	if got >= n {
		return nil
	}
	return c.readErr(err)
}

// readErr turns a short read into an error: ErrTruncated when the file is shorter than its
// stated size, the reader's own error otherwise.
func (c *cursor) readErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return formatErr(ErrTruncated, c.off, "the file ends before its stated size of %d bytes", c.size)
	}
	return fmt.Errorf("gguf: reading at offset %d: %w", c.off, err)
}

func (c *cursor) u32(what string) (uint32, error) {
	b, err := c.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *cursor) u64(what string) (uint64, error) {
	b, err := c.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// strLen reads a string's length and checks it against maxBytes and the bytes left.
func (c *cursor) strLen(maxBytes int64, what string) (uint64, error) {
	at := c.off
	n, err := c.u64(what)
	if err != nil {
		return 0, err
	}
	if n > uint64(maxBytes) {
		return 0, formatErr(ErrLimit, at, "%s is %d bytes long, over Limits.MaxStringBytes (%d)",
			what, n, maxBytes)
	}
	return n, c.room(n, what)
}

// str reads a GGUF string: a uint64 length, then that many bytes.
func (c *cursor) str(maxBytes int64, what string) (string, error) {
	n, err := c.strLen(maxBytes, what)
	if err != nil {
		return "", err
	}
	if n <= uint64(cap(c.buf)) {
		b, err := c.take(int(n), what)
		return string(b), err
	}
	b := make([]byte, n) // n was checked against the limit and the file size above
	got, err := c.r.ReadAt(b, c.off)
	if uint64(got) < n {
		return "", c.readErr(err)
	}
	c.off += int64(n)
	return string(b), nil
}

// skipStr moves past a GGUF string without reading its bytes.
func (c *cursor) skipStr(maxBytes int64, what string) error {
	n, err := c.strLen(maxBytes, what)
	if err != nil {
		return err
	}
	return c.skip(n, what)
}
