package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Spec describes a synthetic GGUF file for Write: a valid version 3 file whose Info is the
// spec's, with PayloadBytes of deterministic F32 tensor data.
type Spec struct {
	// Architecture is general.architecture; required.
	Architecture string
	// ContextLength and BlockCount become {arch}.context_length and {arch}.block_count,
	// written as uint32 (as llama.cpp writes them) when they fit, as uint64 otherwise.
	ContextLength, BlockCount uint64
	// FileType is general.file_type (see QuantizationName); always written, so 0 means F32.
	FileType uint32
	// Name is general.name; written only when not empty.
	Name string
	// ExtraKV are written after the keys above, in order. Their keys must differ from each
	// other and from the keys above and general.alignment. Values follow KV's rules; an empty
	// []any is written as an array of uint8, and an ArrayInfo as Len zero values.
	ExtraKV []KV
	// PayloadBytes is the total size of the tensor data, in bytes: a multiple of 4 (F32
	// elements), split into tensors of at most 1 GiB. Zero writes no tensors.
	PayloadBytes int64
	// Seed selects the tensor data: the same spec always gives the same bytes (see Synthetic
	// for how they are made).
	Seed uint64
}

// Layout of the synthetic files.
const (
	writeAlignment   = 32         // general.alignment of written files
	tensorBytesMax   = 1 << 30    // the largest tensor Write makes, in bytes
	payloadPCGStream = 0x67677566 // "gguf": mixed into the PCG state of every payload block
)

// Write writes the GGUF file that s describes to w. It builds the header in memory, then
// streams the tensor data in 64 KiB blocks, so a multi-gigabyte payload costs no memory. It
// checks s before writing anything. The bytes are those of NewSynthetic(s).
func Write(w io.Writer, s Spec) error {
	f, err := NewSynthetic(s)
	if err != nil {
		return err
	}
	_, err = f.WriteTo(w)
	return err
}

// Bytes returns the file that s describes. It panics if s is invalid: it is for tests and
// fixtures whose specs are written by hand; use Write for specs from elsewhere.
func Bytes(s Spec) []byte {
	var b bytes.Buffer
	if err := Write(&b, s); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// tensorSizes splits a payload into the data sizes of its tensors.
func tensorSizes(payload int64) []int64 {
	var sizes []int64
	for left := payload; left > 0; left -= tensorBytesMax {
		sizes = append(sizes, min(left, tensorBytesMax))
	}
	return sizes
}

func (s Spec) check() error {
	if s.Architecture == "" {
		return errors.New("gguf: Spec.Architecture is empty")
	}
	if s.PayloadBytes < 0 || s.PayloadBytes%4 != 0 {
		return fmt.Errorf("gguf: Spec.PayloadBytes %d is not a non-negative multiple of 4 "+
			"(the size of an F32 element)", s.PayloadBytes)
	}
	seen := map[string]bool{}
	for _, k := range []string{"general.architecture", "general.name", "general.file_type",
		"general.alignment", s.Architecture + ".context_length", s.Architecture + ".block_count"} {
		seen[k] = true
	}
	for _, kv := range s.ExtraKV {
		if seen[kv.Key] {
			return fmt.Errorf("gguf: Spec.ExtraKV key %q is written twice", kv.Key)
		}
		seen[kv.Key] = true
	}
	return nil
}

// encodeHeader returns the header of s, padded to the alignment, and its tensors' sizes.
func encodeHeader(s Spec) ([]byte, []int64, error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	kvs := specKVs(s)
	sizes := tensorSizes(s.PayloadBytes)
	b := binary.LittleEndian.AppendUint32(nil, magic)
	b = binary.LittleEndian.AppendUint32(b, 3)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(sizes)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(kvs)))
	for _, kv := range kvs {
		var err error
		if b, err = appendKV(b, kv); err != nil {
			return nil, nil, err
		}
	}
	b = appendTensorInfos(b, sizes)
	return appendPadding(b), sizes, nil
}

// specKVs lists the metadata of s in the order Write writes it.
func specKVs(s Spec) []KV {
	kvs := []KV{{Key: "general.architecture", Type: TypeString, Value: s.Architecture}}
	if s.Name != "" {
		kvs = append(kvs, KV{Key: "general.name", Type: TypeString, Value: s.Name})
	}
	kvs = append(kvs,
		uintKV(s.Architecture+".context_length", s.ContextLength),
		uintKV(s.Architecture+".block_count", s.BlockCount),
		KV{Key: "general.file_type", Type: TypeUint32, Value: s.FileType},
		KV{Key: "general.alignment", Type: TypeUint32, Value: uint32(writeAlignment)})
	return append(kvs, s.ExtraKV...)
}

// uintKV makes a uint32 pair when v fits, a uint64 one otherwise.
func uintKV(key string, v uint64) KV {
	if v <= math.MaxUint32 {
		return KV{Key: key, Type: TypeUint32, Value: uint32(v)}
	}
	return KV{Key: key, Type: TypeUint64, Value: v}
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendTensorInfos appends one 1-D F32 tensor info per size, each aligned after the last.
func appendTensorInfos(b []byte, sizes []int64) []byte {
	var off uint64
	for i, n := range sizes {
		b = appendString(b, "synthetic."+strconv.Itoa(i)+".weight")
		b = binary.LittleEndian.AppendUint32(b, 1)
		b = binary.LittleEndian.AppendUint64(b, uint64(n/4))
		b = binary.LittleEndian.AppendUint32(b, ggmlF32)
		b = binary.LittleEndian.AppendUint64(b, off)
		off += uint64(paddingFor(n)) + uint64(n)
	}
	return b
}

// paddingFor returns the zero bytes that follow n bytes to reach the alignment.
func paddingFor(n int64) int64 {
	return (writeAlignment - n%writeAlignment) % writeAlignment
}

// appendPadding pads b with zeros to a multiple of the alignment.
func appendPadding(b []byte) []byte {
	return append(b, make([]byte, paddingFor(int64(len(b))))...)
}
