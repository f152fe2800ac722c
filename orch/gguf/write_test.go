package gguf

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWriteRefusesBadSpecs(t *testing.T) {
	ok := specs["minimal"]
	with := func(f func(*Spec)) Spec { s := ok; f(&s); return s }
	extra := func(kvs ...KV) Spec { return with(func(s *Spec) { s.ExtraKV = kvs }) }
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no architecture", with(func(s *Spec) { s.Architecture = "" }), "Architecture is empty"},
		{"payload not F32", with(func(s *Spec) { s.PayloadBytes = 6 }), "multiple of 4"},
		{"negative payload", with(func(s *Spec) { s.PayloadBytes = -4 }), "multiple of 4"},
		{"extra key twice", extra(KV{"a", TypeBool, true}, KV{"a", TypeBool, false}), "written twice"},
		{"extra key reserved", extra(KV{"llama.block_count", TypeUint32, uint32(1)}), "written twice"},
		{"alignment reserved", extra(KV{"general.alignment", TypeUint32, uint32(64)}), "written twice"},
		{"value of wrong type", extra(KV{"a", TypeUint32, 5}), "does not match"},
		{"unknown value type", extra(KV{"a", ValueType(99), uint8(1)}), "does not match"},
		{"array not a slice", extra(KV{"a", TypeArray, "x"}), "want []any or ArrayInfo"},
		{"mixed array", extra(KV{"a", TypeArray, []any{uint8(1), int8(1)}}), "element 1"},
		{"array of unsupported Go type", extra(KV{"a", TypeArray, []any{1}}), "element of Go type int"},
		{"ArrayInfo of bad type", extra(KV{"a", TypeArray, ArrayInfo{ElemType: 13, Len: 1}}),
			"unknown element type"},
		{"ArrayInfo too long", extra(KV{"a", TypeArray, ArrayInfo{ElemType: TypeString, Len: 1 << 40}}),
			"would not fit"},
		{"arrays nested too deep", extra(KV{"a", TypeArray, deepArray(arrayDepthMax + 1)}), "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &headWriter{max: 1 << 10}
			err := Write(w, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tt.want)
			}
			if w.n != 0 {
				t.Errorf("Write wrote %d bytes before refusing the spec", w.n)
			}
		})
	}
}

func deepArray(depth int) any {
	v := any([]any{})
	for range depth - 1 {
		v = []any{v}
	}
	return v
}

func TestBytesPanicsOnBadSpec(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Bytes of a spec without architecture did not panic")
		}
	}()
	Bytes(Spec{})
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, io.ErrShortWrite
	}
	f.after--
	return len(p), nil
}

func TestWriteReturnsWriterErrors(t *testing.T) {
	s := specs["named-with-payload"]
	for after := range 3 {
		if err := Write(&failingWriter{after: after}, s); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("Write with a writer failing after %d writes = %v", after, err)
		}
	}
}
