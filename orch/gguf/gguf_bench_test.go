package gguf

import (
	"bytes"
	"testing"
)

// BenchmarkValidate validates files from their headers: a minimal one, and one shaped like a
// real 32k-vocabulary model (tokens, scores and token types as large arrays).
func BenchmarkValidate(b *testing.B) {
	vocab := Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 32, FileType: 15,
		Name: "Llama-2-7b", PayloadBytes: 1 << 20, Seed: 1, ExtraKV: []KV{
			{Key: "tokenizer.ggml.model", Type: TypeString, Value: "llama"},
			{Key: "tokenizer.ggml.tokens", Type: TypeArray, Value: ArrayInfo{ElemType: TypeString, Len: 32000}},
			{Key: "tokenizer.ggml.scores", Type: TypeArray, Value: ArrayInfo{ElemType: TypeFloat32, Len: 32000}},
			{Key: "tokenizer.ggml.token_type", Type: TypeArray, Value: ArrayInfo{ElemType: TypeInt32, Len: 32000}},
			{Key: "llama.rope.dimension_count", Type: TypeUint32, Value: uint32(128)},
		}}
	for _, bc := range []struct {
		name string
		spec Spec
	}{{"minimal", specs["minimal"]}, {"vocab32k", vocab}} {
		file := Bytes(bc.spec)
		r := bytes.NewReader(file)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Validate(r, int64(len(file))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}
