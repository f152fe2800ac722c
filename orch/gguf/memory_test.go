package gguf

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestReadMemoryIsBounded feeds headers that claim huge strings, arrays and counts, in files
// small and (apparently) huge, and checks that Read refuses them without allocating them.
func TestReadMemoryIsBounded(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name string
		file io.ReaderAt
		size int64
		lim  Limits
		want error
	}{
		{"1 GiB key in a small file", bytes.NewReader(newRaw(3, 0, 1).u64(gib).zeros(100).b), 124,
			Limits{}, ErrLimit},
		{"1 GiB string value in a 2 GiB file", zeroFile{newRaw(3, 0, 1).str("k").
			u32(uint32(TypeString)).u64(gib).b, 2 * gib}, 2 * gib, Limits{}, ErrLimit},
		{"1 GiB string under a 2 GiB string limit", zeroFile{newRaw(3, 0, 1).str("k").
			u32(uint32(TypeString)).u64(gib).b, 2 * gib}, 2 * gib,
			Limits{MaxStringBytes: 2 * gib}, ErrLimit},
		{"1 GiB string in a file of 1 KiB", zeroFile{newRaw(3, 0, 1).str("k").
			u32(uint32(TypeString)).u64(gib).b, 1 << 10}, 1 << 10,
			Limits{MaxStringBytes: 2 * gib, MaxHeaderBytes: 2 * gib}, ErrTruncated},
		{"16 Mi strings in a 2 GiB file", zeroFile{newRaw(3, 0, 1).str("k").
			u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(1 << 24).b, 2 * gib}, 2 * gib,
			Limits{}, ErrLimit},
		{"64 Ki tensors in a 2 GiB file", zeroFile{newRaw(3, 1<<16, 0).b, 2 * gib}, 2 * gib,
			Limits{}, ErrInvalid},
		{"64 Ki keys in a 2 GiB file", zeroFile{newRaw(3, 0, 1<<16).b, 2 * gib}, 2 * gib,
			Limits{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			allocated := allocatedBytes(func() { _, err = Read(tt.file, tt.size, tt.lim) })
			wantFormatErr(t, err, tt.want)
			t.Logf("%v; allocated %d bytes", err, allocated)
			if allocated > 2<<20 {
				t.Errorf("Read allocated %d bytes", allocated)
			}
		})
	}
}

// TestReadKeepsAtMostTheElementBudget: once a header's kept array elements reach
// storedElemsMax, further arrays come back as ArrayInfo.
func TestReadKeepsAtMostTheElementBudget(t *testing.T) {
	const arrays = storedElemsMax/MaxStoredArrayLen + 2
	r := newRaw(3, 0, arrays)
	for i := range arrays {
		r.kv(string(rune('a'+i%26))+string(rune('a'+i/26)), TypeArray,
			ArrayInfo{ElemType: TypeUint32, Len: MaxStoredArrayLen})
	}
	h, err := readBytes(r.b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i, kv := range h.KV {
		if _, ok := kv.Value.([]any); ok {
			kept++
		} else if kv.Value != (ArrayInfo{ElemType: TypeUint32, Len: MaxStoredArrayLen}) {
			t.Fatalf("KV %d = %#v", i, kv.Value)
		}
	}
	if kept != storedElemsMax/MaxStoredArrayLen {
		t.Errorf("%d arrays kept in full, want %d", kept, storedElemsMax/MaxStoredArrayLen)
	}
}

// TestReadAllocationsForARealShapedHeader bounds allocations per Read of a small model.
func TestReadAllocationsForARealShapedHeader(t *testing.T) {
	b := Bytes(specs["extra-kv"])
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := readBytes(b, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per Read", allocs)
	if allocs > 120 {
		t.Errorf("%.0f allocations per Read of a %d-byte file", allocs, len(b))
	}
}

type failingReader struct{ err error }

func (f failingReader) ReadAt([]byte, int64) (int, error) { return 0, f.err }

func TestReadPassesReaderErrorsThrough(t *testing.T) {
	disk := errors.New("disk on fire")
	_, err := Read(failingReader{disk}, 1000, Limits{})
	var fe *FormatError
	if !errors.Is(err, disk) || errors.As(err, &fe) {
		t.Fatalf("Read = %v; want the reader's error, not a FormatError", err)
	}
}

func TestReadOfFileShorterThanItsSize(t *testing.T) {
	b := Bytes(specs["minimal"])
	_, err := Read(bytes.NewReader(b[:40]), int64(len(b)), Limits{})
	wantFormatErr(t, err, ErrTruncated)
	t.Log(err)
}
