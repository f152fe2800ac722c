package gguf

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// specs are the synthetic files the round-trip tests write and read back.
var specs = map[string]Spec{
	"minimal": {Architecture: "llama", ContextLength: 4096, BlockCount: 32, FileType: 15},
	"named-with-payload": {Architecture: "qwen2", ContextLength: 32768, BlockCount: 28,
		FileType: 7, Name: "Qwen2.5 0.5B Instruct", PayloadBytes: 1000, Seed: 7},
	"uint64-metadata": {Architecture: "mamba", ContextLength: 1 << 40, BlockCount: 1 << 33,
		FileType: 0, PayloadBytes: 4, Seed: 1},
	"unknown-file-type": {Architecture: "gemma3", ContextLength: 131072, BlockCount: 62,
		FileType: 999, PayloadBytes: 64 << 10, Seed: 3},
	"extra-kv": {Architecture: "llama", ContextLength: 8192, BlockCount: 80, FileType: 1,
		Name: "tiny", PayloadBytes: 96, Seed: 9, ExtraKV: extraKVs()},
}

func extraKVs() []KV {
	return []KV{
		{Key: "tokenizer.ggml.model", Type: TypeString, Value: "gpt2"},
		{Key: "llama.rope.freq_base", Type: TypeFloat32, Value: float32(500000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Type: TypeFloat64, Value: 1e-5},
		{Key: "tokenizer.ggml.add_bos_token", Type: TypeBool, Value: true},
		{Key: "test.int8", Type: TypeInt8, Value: int8(-8)},
		{Key: "test.uint8", Type: TypeUint8, Value: uint8(200)},
		{Key: "test.int16", Type: TypeInt16, Value: int16(-300)},
		{Key: "test.uint16", Type: TypeUint16, Value: uint16(60000)},
		{Key: "test.int32", Type: TypeInt32, Value: int32(-70000)},
		{Key: "test.int64", Type: TypeInt64, Value: int64(-1 << 40)},
		{Key: "test.uint64", Type: TypeUint64, Value: uint64(1 << 63)},
		{Key: "llama.rope.dimension_sections", Type: TypeArray,
			Value: []any{int32(16), int32(24), int32(24), int32(0)}},
		{Key: "test.nested", Type: TypeArray,
			Value: []any{[]any{"a", "bc"}, []any{}, ArrayInfo{ElemType: TypeUint32, Len: 2000}}},
		{Key: "tokenizer.ggml.tokens", Type: TypeArray,
			Value: ArrayInfo{ElemType: TypeString, Len: 5000}},
		{Key: "tokenizer.ggml.scores", Type: TypeArray,
			Value: ArrayInfo{ElemType: TypeFloat32, Len: 3}},
	}
}

func (s Spec) wantInfo() Info {
	return Info{Architecture: s.Architecture, ContextLength: s.ContextLength,
		BlockCount: s.BlockCount, FileType: s.FileType,
		Quantization: QuantizationName(s.FileType), Name: s.Name}
}

// readBack is what Read returns for a written value: short ArrayInfos come back as []any of
// zero values and empty arrays as []any{}.
func readBack(v any) any {
	switch v := v.(type) {
	case ArrayInfo:
		if v.Len > MaxStoredArrayLen {
			return v
		}
		out := make([]any, v.Len)
		for i := range out {
			out[i] = zeroValue(v.ElemType)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = readBack(e)
		}
		return out
	}
	return v
}

func zeroValue(t ValueType) any {
	if t == TypeArray {
		return []any{}
	}
	return decodeScalar(t, make([]byte, 8))
}

// TestRoundTrip writes each spec and reads it back: the files the simulated hub serves must
// validate, and a catalog rebuilt from them must find the spec's Info (scenario
// catalog/corruption-recovery).
func TestRoundTrip(t *testing.T) {
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			b := Bytes(s)
			info, err := validateBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.wantInfo(), info); diff != "" {
				t.Errorf("Info (-want +got):\n%s", diff)
			}
			h, err := readBytes(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			checkHeader(t, s, h, int64(len(b)))
		})
	}
}

// checkHeader checks the header Read returned for the file Write made of s.
func checkHeader(t *testing.T, s Spec, h Header, size int64) {
	t.Helper()
	var want []KV
	for _, kv := range specKVs(s) {
		want = append(want, KV{Key: kv.Key, Type: kv.Type, Value: readBack(kv.Value)})
	}
	if diff := cmp.Diff(want, h.KV); diff != "" {
		t.Errorf("KV (-want +got):\n%s", diff)
	}
	if h.Version != 3 || h.Alignment != 32 || h.DataOffset%32 != 0 {
		t.Errorf("version %d, alignment %d, data offset %d", h.Version, h.Alignment, h.DataOffset)
	}
	var dataBytes, end int64
	for _, ti := range h.Tensors {
		n, _ := ti.dataBytes()
		dataBytes += int64(n)
		end = int64(ti.Offset) + int64(n) + paddingFor(int64(n))
	}
	if dataBytes != s.PayloadBytes || h.TensorCount != uint64(len(h.Tensors)) {
		t.Errorf("%d tensors (count %d) of %d bytes, want %d bytes", len(h.Tensors),
			h.TensorCount, dataBytes, s.PayloadBytes)
	}
	if len(h.Tensors) > 0 && h.DataOffset+end != size {
		t.Errorf("data ends at %d, file size %d", h.DataOffset+end, size)
	}
}

func TestWriteIsDeterministicPerSeed(t *testing.T) {
	s := specs["named-with-payload"]
	a, b := Bytes(s), Bytes(s)
	if !bytes.Equal(a, b) {
		t.Fatal("the same spec gave different bytes")
	}
	s.Seed++
	c := Bytes(s)
	if len(c) != len(a) || bytes.Equal(a, c) {
		t.Fatal("another seed gave the same tensor data (or another length)")
	}
	h, _ := readBytes(a, Limits{})
	if !bytes.Equal(a[:h.DataOffset], c[:h.DataOffset]) {
		t.Fatal("the seed changed the header")
	}
}

// TestWriteStreamsLargePayload writes a 2 GiB payload (three tensors) without keeping it,
// then validates the file from its header alone.
func TestWriteStreamsLargePayload(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GiB of generated data")
	}
	s := Spec{Architecture: "llama", ContextLength: 2048, BlockCount: 4, FileType: 0,
		PayloadBytes: 2<<30 + 4, Seed: 42}
	w := &headWriter{max: 1 << 20, head: make([]byte, 0, 1<<20)}
	allocated := allocatedBytes(func() {
		if err := Write(w, s); err != nil {
			t.Fatal(err)
		}
	})
	if allocated > 4<<20 {
		t.Errorf("Write allocated %d bytes for a 2 GiB payload; it must stream", allocated)
	}
	f := zeroFile{data: w.head, size: w.n}
	h, err := Read(f, f.size, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 3 {
		t.Errorf("%d tensors, want 3", len(h.Tensors))
	}
	checkHeader(t, s, h, f.size)
	if info, err := Validate(f, f.size); err != nil || info != s.wantInfo() {
		t.Fatalf("Validate = %+v, %v", info, err)
	}
	if _, err := Validate(f, f.size-4); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Validate of the file less 4 bytes = %v, want ErrTruncated", err)
	}
}

// allocatedBytes returns the bytes f allocated on the heap.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestLookup(t *testing.T) {
	h, err := readBytes(Bytes(specs["extra-kv"]), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	kv, ok := h.Lookup("tokenizer.ggml.tokens")
	if want := (ArrayInfo{ElemType: TypeString, Len: 5000}); !ok || kv.Value != want {
		t.Errorf("Lookup(tokenizer.ggml.tokens) = %+v, %v; want %+v", kv, ok, want)
	}
	if _, ok := h.Lookup("no.such.key"); ok {
		t.Error("Lookup found a key that is not there")
	}
}
