package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSyntheticReadAtMatchesBytes reads every spec back at random offsets and lengths,
// across the header, block, tensor-end and padding boundaries, and compares with Bytes.
func TestSyntheticReadAtMatchesBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	more := map[string]Spec{
		"three blocks and a tail": {Architecture: "llama", ContextLength: 2048, BlockCount: 2,
			PayloadBytes: 3*payloadBlockBytes + 12, Seed: 5},
	}
	for name, s := range specs {
		more[name] = s
	}
	for _, name := range slices.Sorted(maps.Keys(more)) {
		s := more[name]
		t.Run(name, func(t *testing.T) {
			want := Bytes(s)
			f, err := NewSynthetic(s)
			if err != nil {
				t.Fatal(err)
			}
			if f.Size() != int64(len(want)) {
				t.Fatalf("Size %d, Bytes has %d", f.Size(), len(want))
			}
			for i := range 300 {
				off := rng.Int64N(int64(len(want)) + 1)
				n := rng.IntN(3 * payloadBlockBytes)
				if i%3 == 0 {
					n = rng.IntN(20) // short reads, at odd offsets inside words
				}
				got := make([]byte, n)
				c, err := f.ReadAt(got, off)
				wantN := min(int64(n), int64(len(want))-off)
				if int64(c) != wantN || (c < n) != errors.Is(err, io.EOF) || (c == n && err != nil) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; the file has %d bytes", n, off, c, err, len(want))
				}
				if !bytes.Equal(got[:c], want[off:off+int64(c)]) {
					t.Fatalf("ReadAt(%d bytes at %d) differs from Bytes", n, off)
				}
			}
			if _, err := f.ReadAt(make([]byte, 1), -1); err == nil {
				t.Fatal("ReadAt at -1 did not fail")
			}
		})
	}
}

// TestSyntheticLargeNeedsNoMemory: a 5 GB file (five tensors) is a Synthetic of a few KiB; it
// validates from its header; its tensor boundaries read the same through ReadAt as through
// WriteTo; and blocks are not copies of each other.
func TestSyntheticLargeNeedsNoMemory(t *testing.T) {
	s := Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 32, FileType: 15,
		Name: "big", PayloadBytes: 5e9, Seed: 11}
	var f *Synthetic
	allocated := allocatedBytes(func() {
		var err error
		if f, err = NewSynthetic(s); err != nil {
			t.Fatal(err)
		}
	})
	if allocated > 64<<10 {
		t.Errorf("NewSynthetic of a 5 GB file allocated %d bytes", allocated)
	}
	if len(f.sizes) != 5 || f.Size() < 5e9 {
		t.Fatalf("%d tensors, %d bytes", len(f.sizes), f.Size())
	}
	// Validate reads the header only: a reader that fails past it proves it.
	info, err := Validate(prefixOnly{f, f.HeaderSize()}, f.Size())
	if err != nil || info.Name != "big" {
		t.Fatalf("Validate = %+v, %v", info, err)
	}
	// The end of tensor 0 (no padding: 1 GiB is aligned) and the start of tensor 1.
	at := f.starts[1] - 100
	got := make([]byte, 200)
	if _, err := f.ReadAt(got, at); err != nil {
		t.Fatal(err)
	}
	streamed := &windowWriter{from: at, want: got}
	if _, err := f.WriteTo(&limitedWriter{w: streamed, left: at + 200}); !errors.Is(err, errEnough) {
		t.Fatalf("WriteTo: %v", err)
	}
	if streamed.err != nil || streamed.at != at+200 {
		t.Fatalf("tensor boundary: %v (%d bytes streamed)", streamed.err, streamed.at)
	}
	a, b := make([]byte, 64), make([]byte, 64)
	f.ReadAt(a, f.starts[0])
	f.ReadAt(b, f.starts[0]+payloadBlockBytes)
	if bytes.Equal(a, b) {
		t.Fatal("blocks 0 and 1 of tensor 0 start with the same bytes")
	}
}

// prefixOnly is a file of which only the first n bytes may be read.
type prefixOnly struct {
	r io.ReaderAt
	n int64
}

func (p prefixOnly) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > p.n {
		if off >= p.n {
			return 0, fmt.Errorf("read at %d past the allowed prefix of %d bytes", off, p.n)
		}
		n, _ := p.r.ReadAt(b[:p.n-off], off)
		return n, io.EOF
	}
	return p.r.ReadAt(b, off)
}

// windowWriter checks the bytes written at [from, from+len(want)) against want.
type windowWriter struct {
	from, at int64
	want     []byte
	err      error
}

func (w *windowWriter) Write(p []byte) (int, error) {
	lo, hi := max(w.from, w.at), min(w.from+int64(len(w.want)), w.at+int64(len(p)))
	for i := lo; i < hi && w.err == nil; i++ {
		if c, want := p[i-w.at], w.want[i-w.from]; c != want {
			w.err = fmt.Errorf("byte %d is %#x, ReadAt gave %#x", i, c, want)
		}
	}
	w.at += int64(len(p))
	return len(p), nil
}

var errEnough = errors.New("enough")

// limitedWriter passes on left bytes, then fails.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errEnough
	}
	n := min(int64(len(p)), l.left)
	l.w.Write(p[:n])
	l.left -= n
	if n < int64(len(p)) {
		return int(n), errEnough
	}
	return len(p), nil
}
