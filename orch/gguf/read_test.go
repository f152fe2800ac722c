package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
)

// TestReadRefusesMalformedHeaders covers every error path of Read on a hand-made header
// (scenario provisioner/gguf-validation: bad magic, unsupported version, truncated header).
func TestReadRefusesMalformedHeaders(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		lim  Limits
		want error
	}{
		{"empty file", nil, Limits{}, ErrTruncated},
		{"bad magic", append([]byte("GGML"), newRaw(3, 0, 0).b[4:]...), Limits{}, ErrBadMagic},
		{"safetensors", []byte(`{"__metadata__":{}}`), Limits{}, ErrBadMagic},
		{"version 1", newRaw(1, 0, 0).b, Limits{}, ErrUnsupportedVersion},
		{"version 4", newRaw(4, 0, 0).b, Limits{}, ErrUnsupportedVersion},
		{"version 0", newRaw(0, 0, 0).b, Limits{}, ErrUnsupportedVersion},
		{"big-endian version 3", newRaw(3<<24, 0, 0).b, Limits{}, ErrUnsupportedVersion},
		{"truncated in version", newRaw(3, 0, 0).b[:6], Limits{}, ErrTruncated},
		{"kv count huge", newRaw(3, 0, math.MaxUint64).b, Limits{}, ErrLimit},
		{"kv count over MaxKV", newRaw(3, 0, 11).minimalKVs().b, Limits{MaxKV: 10}, ErrLimit},
		{"kv count past end of file", newRaw(3, 0, 1000).minimalKVs().b, Limits{}, ErrTruncated},
		{"tensor count huge", newRaw(3, 1<<62, 3).minimalKVs().b, Limits{}, ErrLimit},
		{"tensor count past end of file", newRaw(3, 100, 3).minimalKVs().b, Limits{}, ErrTruncated},
		{"key length 2^63", newRaw(3, 0, 1).u64(1 << 63).zeros(64).b, Limits{}, ErrLimit},
		{"key length max uint64", newRaw(3, 0, 1).u64(math.MaxUint64).zeros(64).b, Limits{}, ErrLimit},
		{"key length past end of file", newRaw(3, 0, 1).u64(100).str("abc").b, Limits{}, ErrTruncated},
		{"string value length 2^63", newRaw(3, 0, 1).str("k").u32(uint32(TypeString)).u64(1 << 63).b,
			Limits{}, ErrLimit},
		{"string over MaxStringBytes", newRaw(3, 0, 1).kv("k", TypeString, "0123456789").b,
			Limits{MaxStringBytes: 9}, ErrLimit},
		{"unknown value type", newRaw(3, 0, 1).str("k").u32(13).u32(0).b, Limits{}, ErrInvalid},
		{"truncated scalar", newRaw(3, 0, 1).str("k").u32(uint32(TypeUint64)).u32(0).b,
			Limits{}, ErrTruncated},
		{"array count huge", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(uint32(TypeUint8)).u64(1 << 62).b, Limits{}, ErrLimit},
		{"array bytes overflow uint64", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(uint32(TypeString)).u64(1 << 62).b, Limits{MaxArrayLen: math.MaxInt64}, ErrTruncated},
		{"array count past end of file", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(uint32(TypeUint32)).u64(1000).zeros(100).b, Limits{}, ErrTruncated},
		{"array of unknown type", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(200).u64(0).b, Limits{}, ErrInvalid},
		{"array string element 2^63", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(uint32(TypeString)).u64(1).u64(1 << 63).b, Limits{}, ErrLimit},
		{"long array string element 2^63", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).
			u32(uint32(TypeString)).u64(2000).u64(1 << 63).zeros(16000).b, Limits{}, ErrLimit},
		{"arrays nested 9 deep", nested(9), Limits{}, ErrLimit},
		{"duplicate key", newRaw(3, 0, 4).minimalKVs().kv("llama.block_count", TypeUint32,
			uint32(1)).b, Limits{}, ErrInvalid},
		{"alignment 0", newRaw(3, 0, 1).kv("general.alignment", TypeUint32, uint32(0)).b,
			Limits{}, ErrInvalid},
		{"alignment 48", newRaw(3, 0, 1).kv("general.alignment", TypeUint32, uint32(48)).b,
			Limits{}, ErrInvalid},
		{"alignment as uint64", newRaw(3, 0, 1).kv("general.alignment", TypeUint64, uint64(32)).b,
			Limits{}, ErrInvalid},
		{"tensor with 5 dims", newRaw(3, 1, 0).tensor("t", 0, 0, 1, 1, 1, 1, 1).b, Limits{}, ErrInvalid},
		{"tensor with negative dim", newRaw(3, 1, 0).tensor("t", 0, 0, 4, math.MaxUint64).b,
			Limits{}, ErrInvalid},
		{"tensor with 2^64 elements", newRaw(3, 1, 0).tensor("t", 0, 0, 1<<32, 1<<32).b,
			Limits{}, ErrInvalid},
		{"tensor offset not aligned", newRaw(3, 1, 0).tensor("t", 0, 16, 4).b, Limits{}, ErrInvalid},
		{"Q4_0 row not whole blocks", newRaw(3, 1, 0).tensor("t", 2, 0, 33, 2).b, Limits{}, ErrInvalid},
		{"duplicate tensor", newRaw(3, 2, 0).tensor("t", 0, 0, 4).tensor("t", 0, 32, 4).b,
			Limits{}, ErrInvalid},
		{"tensor name of 64 bytes", newRaw(3, 1, 0).tensor(string(make([]byte, 64)), 0, 0, 4).b,
			Limits{}, ErrInvalid},
		{"tensor info truncated", newRaw(3, 1, 0).tensor("t", 0, 0, 4).b[:40], Limits{}, ErrTruncated},
		{"header over MaxHeaderBytes", newRaw(3, 0, 3).minimalKVs().b, Limits{MaxHeaderBytes: 64},
			ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readBytes(tt.file, tt.lim)
			wantFormatErr(t, err, tt.want)
			t.Log(err)
		})
	}
}

// nested returns a file with one key holding arrays nested depth deep.
func nested(depth int) []byte {
	r := newRaw(3, 0, 1).str("k").u32(uint32(TypeArray))
	for range depth - 1 {
		r.u32(uint32(TypeArray)).u64(1)
	}
	return r.u32(uint32(TypeUint8)).u64(0).b
}

func TestReadAcceptsNestingUpToTheLimit(t *testing.T) {
	h, err := readBytes(nested(arrayDepthMax), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := any([]any{})
	for range arrayDepthMax - 1 {
		want = []any{want}
	}
	if !equalAny(h.KV[0].Value, want) {
		t.Errorf("got %#v, want %#v", h.KV[0].Value, want)
	}
}

func equalAny(a, b any) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }

func TestReadAcceptsVersion2(t *testing.T) {
	b := Bytes(specs["minimal"])
	b[4] = 2
	h, err := readBytes(b, Limits{})
	if err != nil || h.Version != 2 {
		t.Fatalf("Read = version %d, %v", h.Version, err)
	}
}

func TestReadRefusesNegativeArguments(t *testing.T) {
	b := Bytes(specs["minimal"])
	if _, err := Read(bytes.NewReader(b), -1, Limits{}); err == nil {
		t.Error("Read accepted a negative size")
	}
	if _, err := readBytes(b, Limits{MaxKV: -1}); err == nil {
		t.Error("Read accepted a negative limit")
	}
}

// TestEveryPrefixIsTruncated cuts a small valid file at every length: Validate must say
// ErrTruncated each time (a truncated download), and Read must too until the header is whole
// (scenario provisioner/gguf-validation).
func TestEveryPrefixIsTruncated(t *testing.T) {
	for _, name := range []string{"extra-kv", "named-with-payload"} {
		b := Bytes(specs[name])
		headerEnd := headerEnd(specs[name])
		for n := range len(b) {
			_, err := validateBytes(b[:n])
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("%s: Validate of the first %d of %d bytes = %v, want ErrTruncated",
					name, n, len(b), err)
			}
			_, err = readBytes(b[:n], Limits{})
			if n < headerEnd && !errors.Is(err, ErrTruncated) || n >= headerEnd && err != nil {
				t.Fatalf("%s: Read of the first %d bytes (header ends at %d) = %v", name, n,
					headerEnd, err)
			}
		}
	}
}

// headerEnd returns where the tensor infos of the file Write makes of s end.
func headerEnd(s Spec) int {
	r := newRaw(3, uint64(len(tensorSizes(s.PayloadBytes))), uint64(len(specKVs(s))))
	for _, kv := range specKVs(s) {
		r.kv(kv.Key, kv.Type, kv.Value)
	}
	return len(appendTensorInfos(r.b, tensorSizes(s.PayloadBytes)))
}
