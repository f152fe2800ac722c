package gguf

import (
	"errors"
	"testing"
)

func TestInfoRequiresArchitectureContextAndBlocks(t *testing.T) {
	arch := func(r *raw) *raw { return r.kv("general.architecture", TypeString, "llama") }
	ctx := func(r *raw) *raw { return r.kv("llama.context_length", TypeUint32, uint32(4096)) }
	blocks := func(r *raw) *raw { return r.kv("llama.block_count", TypeUint32, uint32(32)) }
	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"missing architecture", blocks(ctx(newRaw(3, 0, 2))).b, ErrMissingKey},
		{"empty architecture", blocks(ctx(newRaw(3, 0, 3).kv("general.architecture", TypeString, ""))).b,
			ErrMissingKey},
		{"architecture not a string", newRaw(3, 0, 1).kv("general.architecture", TypeUint32, uint32(1)).b,
			ErrInvalid},
		{"missing context length", blocks(arch(newRaw(3, 0, 2))).b, ErrMissingKey},
		{"context length of another architecture", blocks(arch(newRaw(3, 0, 3))).
			kv("qwen2.context_length", TypeUint32, uint32(1)).b, ErrMissingKey},
		{"missing block count", ctx(arch(newRaw(3, 0, 2))).b, ErrMissingKey},
		{"negative context length", blocks(arch(newRaw(3, 0, 3))).
			kv("llama.context_length", TypeInt32, int32(-1)).b, ErrInvalid},
		{"context length as string", blocks(arch(newRaw(3, 0, 3))).
			kv("llama.context_length", TypeString, "4096").b, ErrInvalid},
		{"file type as float", newRaw(3, 0, 4).minimalKVs().
			kv("general.file_type", TypeFloat32, float32(15)).b, ErrInvalid},
		{"file type over uint32", newRaw(3, 0, 4).minimalKVs().
			kv("general.file_type", TypeUint64, uint64(1<<32)).b, ErrInvalid},
		{"name not a string", newRaw(3, 0, 4).minimalKVs().kv("general.name", TypeBool, true).b,
			ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := validateBytes(tt.file)
			wantFormatErr(t, err, tt.want)
			t.Log(err)
		})
	}
}

func TestInfoOptionalKeysAndIntegerWidths(t *testing.T) {
	b := newRaw(3, 0, 3).kv("general.architecture", TypeString, "phi3").
		kv("phi3.context_length", TypeInt64, int64(131072)).
		kv("phi3.block_count", TypeUint8, uint8(40)).b
	info, err := validateBytes(b)
	want := Info{Architecture: "phi3", ContextLength: 131072, BlockCount: 40}
	if err != nil || info != want {
		t.Fatalf("Validate = %+v, %v; want %+v", info, err, want)
	}
	b = newRaw(3, 0, 5).minimalKVs().kv("general.file_type", TypeInt32, int32(18)).
		kv("general.name", TypeString, "x").b
	info, err = validateBytes(b)
	want = Info{Architecture: "llama", ContextLength: 4096, BlockCount: 32, FileType: 18,
		Quantization: "Q6_K", Name: "x"}
	if err != nil || info != want {
		t.Fatalf("Validate = %+v, %v; want %+v", info, err, want)
	}
}

func TestQuantizationName(t *testing.T) {
	for ftype, want := range map[uint32]string{
		0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
		11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
		17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 21: "Q2_K_S", 30: "IQ4_XS", 32: "BF16",
		36: "TQ1_0", 38: "MXFP4_MOE",
		5: "type 5", 6: "type 6", 39: "type 39", 1024: "type 1024", 1<<32 - 1: "type 4294967295",
	} {
		if got := QuantizationName(ftype); got != want {
			t.Errorf("QuantizationName(%d) = %q, want %q", ftype, got, want)
		}
	}
}

// TestValidateChecksTensorData: the data a header declares must be in the file; for ggml
// types this package does not know, only the offset is checked.
func TestValidateChecksTensorData(t *testing.T) {
	file := func(typ uint32, dims ...uint64) *raw {
		return newRaw(3, 2, 3).minimalKVs().tensor("a", 0, 0, 8).tensor("b", typ, 32, dims...).pad(32)
	}
	tests := []struct {
		name      string
		file      []byte
		truncated bool
	}{
		{"F32 complete", file(0, 8).zeros(64).b, false},
		{"F32 last tensor padded", file(0, 3).zeros(32 + 32).b, false},
		{"F32 last tensor without its padding", file(0, 3).zeros(32 + 12).b, true},
		{"F32 short", file(0, 8).zeros(63).b, true},
		{"Q4_K 256x2 complete", file(12, 256, 2).zeros(32 + 288).b, false},
		{"Q4_K 256x2 short", file(12, 256, 2).zeros(32 + 287).b, true},
		{"unknown type at end", file(1000, 1<<40).zeros(32).b, false},
		{"unknown type past end", file(1000, 1).zeros(31).b, true},
		{"huge F32", file(0, 1<<62).zeros(32).b, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := validateBytes(tt.file)
			if tt.truncated {
				wantFormatErr(t, err, ErrTruncated)
				t.Log(err)
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateOfZeroTensorsNeedsNoPadding(t *testing.T) {
	b := newRaw(3, 0, 3).minimalKVs().b
	if len(b)%32 == 0 {
		t.Fatal("the test needs a header that is not a multiple of 32 bytes")
	}
	if _, err := validateBytes(b); err != nil {
		t.Fatal(err)
	}
	if _, err := validateBytes(b[:len(b)-1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Validate of a header less one byte = %v", err)
	}
}
