package gguf

import (
	"errors"
	"fmt"
	"testing"
)

// fuzzLimits are small limits, so that the fuzzer reaches the limit paths too.
var fuzzLimits = Limits{MaxKV: 16, MaxTensors: 8, MaxStringBytes: 256, MaxArrayLen: 4096,
	MaxHeaderBytes: 1 << 16}

// FuzzRead: on any input, Read and Validate never panic, every error about the content is a
// *FormatError matching one sentinel, a successful Read stays within its limits, and reading
// is deterministic.
func FuzzRead(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []Limits{DefaultLimits(), fuzzLimits} {
			h, err := readBytes(data, lim)
			checkFuzzResult(t, h, err, lim)
			again, err2 := readBytes(data, lim)
			if fmt.Sprintf("%#v %v", h, err) != fmt.Sprintf("%#v %v", again, err2) {
				t.Fatal("two Reads of the same bytes differ")
			}
		}
		info, err := validateBytes(data)
		if err != nil {
			checkSentinel(t, err)
		} else if info.Architecture == "" {
			t.Fatal("Validate succeeded without an architecture")
		}
	})
}

func checkFuzzResult(t *testing.T, h Header, err error, lim Limits) {
	if err != nil {
		checkSentinel(t, err)
		return
	}
	if len(h.KV) > lim.MaxKV || len(h.Tensors) > lim.MaxTensors ||
		uint64(len(h.Tensors)) != h.TensorCount {
		t.Fatalf("%d KVs, %d tensors (count %d) under limits %+v", len(h.KV), len(h.Tensors),
			h.TensorCount, lim)
	}
	if h.Version != 2 && h.Version != 3 || h.Alignment == 0 || h.DataOffset%int64(h.Alignment) != 0 {
		t.Fatalf("accepted version %d, alignment %d, data offset %d", h.Version, h.Alignment,
			h.DataOffset)
	}
	if _, err := h.Info(); err != nil {
		checkSentinel(t, err)
	}
}

// checkSentinel fails unless err is a *FormatError that matches exactly one sentinel.
func checkSentinel(t *testing.T, err error) {
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	matched := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			matched++
		}
	}
	if matched != 1 {
		t.Fatalf("error %v matches %d sentinels", err, matched)
	}
}

// fuzzSeeds are real-shaped headers: written files, some truncated, one with big arrays.
func fuzzSeeds() [][]byte {
	minimal := Bytes(specs["minimal"])
	payload := Bytes(Spec{Architecture: "qwen2", ContextLength: 32768, BlockCount: 24,
		FileType: 15, Name: "Qwen2.5 0.5B", PayloadBytes: 100, Seed: 1})
	extra := Bytes(Spec{Architecture: "llama", ContextLength: 8192, BlockCount: 16, FileType: 1,
		ExtraKV: extraKVs()[:13]})
	vocab := Bytes(Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 2, FileType: 2,
		ExtraKV: []KV{
			{Key: "tokenizer.ggml.tokens", Type: TypeArray, Value: ArrayInfo{ElemType: TypeString, Len: 1100}},
			{Key: "tokenizer.ggml.scores", Type: TypeArray, Value: ArrayInfo{ElemType: TypeFloat32, Len: 1100}},
		}})
	tensors := newRaw(3, 2, 3).minimalKVs().tensor("tok_embd.weight", 12, 0, 256, 4).
		tensor("output_norm.weight", 0, 576, 256).pad(32).zeros(576 + 1024).b
	return [][]byte{minimal, payload, extra, vocab, tensors,
		minimal[:len(minimal)/2], payload[:len(payload)-10], extra[:100], vocab[:300], tensors[:90]}
}
