package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// raw builds GGUF bytes by hand, for headers that Write would refuse to make.
type raw struct{ b []byte }

func newRaw(version uint32, tensors, kvs uint64) *raw {
	r := &raw{}
	return r.u32(magic).u32(version).u64(tensors).u64(kvs)
}

func (r *raw) u8(v uint8) *raw   { r.b = append(r.b, v); return r }
func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) str(s string) *raw { r.b = appendString(r.b, s); return r }

// kv appends a pair of a scalar or array type, encoded as Write would.
func (r *raw) kv(key string, t ValueType, v any) *raw {
	b, err := appendKV(r.b, KV{Key: key, Type: t, Value: v})
	if err != nil {
		panic(err)
	}
	r.b = b
	return r
}

// tensor appends a tensor info.
func (r *raw) tensor(name string, typ uint32, off uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(typ).u64(off)
}

// minimalKVs appends the three keys Info requires, for architecture "llama".
func (r *raw) minimalKVs() *raw {
	return r.kv("general.architecture", TypeString, "llama").
		kv("llama.context_length", TypeUint32, uint32(4096)).
		kv("llama.block_count", TypeUint32, uint32(32))
}

func (r *raw) pad(align int) *raw {
	for len(r.b)%align != 0 {
		r.b = append(r.b, 0)
	}
	return r
}

func (r *raw) zeros(n int) *raw { r.b = append(r.b, make([]byte, n)...); return r }

func readBytes(b []byte, lim Limits) (Header, error) {
	return Read(bytes.NewReader(b), int64(len(b)), lim)
}

func validateBytes(b []byte) (Info, error) {
	return Validate(bytes.NewReader(b), int64(len(b)))
}

// sentinels are the errors every FormatError must match one of.
var sentinels = []error{ErrBadMagic, ErrUnsupportedVersion, ErrTruncated, ErrLimit, ErrInvalid,
	ErrMissingKey}

// wantFormatErr fails t unless err is a *FormatError matching want.
func wantFormatErr(t *testing.T, err, want error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not match %q", err, want)
	}
}

// zeroFile is a file of size bytes: data, then zeros. It stands for a huge file that a test
// cannot afford to hold.
type zeroFile struct {
	data []byte
	size int64
}

func (z zeroFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-off))
	for i := range n {
		p[i] = 0
		if off+int64(i) < int64(len(z.data)) {
			p[i] = z.data[off+int64(i)]
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// headWriter keeps the first max bytes written to it and counts the rest.
type headWriter struct {
	head []byte
	max  int
	n    int64
}

func (w *headWriter) Write(p []byte) (int, error) {
	if keep := w.max - len(w.head); keep > 0 {
		w.head = append(w.head, p[:min(keep, len(p))]...)
	}
	w.n += int64(len(p))
	return len(p), nil
}
