package gguf

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
)

// Header is the parsed header of a GGUF file: everything before the tensor data.
type Header struct {
	// Version is the GGUF version, 2 or 3.
	Version uint32
	// TensorCount is the number of tensors the file declares; len(Tensors) == TensorCount.
	TensorCount uint64
	// KV holds the metadata in file order; keys are unique.
	KV []KV
	// Tensors holds the tensor infos in file order; names are unique.
	Tensors []TensorInfo
	// Alignment is the data alignment in bytes: general.alignment, or 32 without it.
	Alignment uint32
	// DataOffset is the file offset where the tensor data section starts: the end of the
	// tensor infos rounded up to Alignment.
	DataOffset int64
}

// Limits bound what Read accepts, and so the memory and time it spends on one file. A zero
// field means its default (see DefaultLimits); negative fields are refused.
type Limits struct {
	// MaxKV is the most metadata pairs a header may declare. Default 65,536 (real files have
	// 20 to 60).
	MaxKV int
	// MaxTensors is the most tensors a header may declare. Default 65,536 (large MoE models
	// have a few thousand).
	MaxTensors int
	// MaxStringBytes is the longest string, in bytes, anywhere in the header. Default 1 MiB
	// (chat templates, the longest real strings, are tens of KiB).
	MaxStringBytes int64
	// MaxArrayLen is the most elements one metadata array may declare. Default 16 Mi (real
	// vocabularies have up to about 260 Ki tokens).
	MaxArrayLen int64
	// MaxHeaderBytes is how far into the file the header (up to the end of the tensor infos)
	// may reach. Default 64 MiB (a 150 Ki-token vocabulary with its merges takes about 8 MiB).
	MaxHeaderBytes int64
}

// DefaultLimits returns limits that accept every public llama.cpp model while bounding what a
// hostile header can cost.
func DefaultLimits() Limits {
	return Limits{
		MaxKV:          1 << 16,
		MaxTensors:     1 << 16,
		MaxStringBytes: 1 << 20,
		MaxArrayLen:    1 << 24,
		MaxHeaderBytes: 64 << 20,
	}
}

// withDefaults fills zero fields from DefaultLimits and refuses negative ones.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	if l.MaxKV < 0 || l.MaxTensors < 0 || l.MaxStringBytes < 0 || l.MaxArrayLen < 0 ||
		l.MaxHeaderBytes < 0 {
		return l, fmt.Errorf("gguf: negative field in %+v", l)
	}
	l.MaxKV = cmp.Or(l.MaxKV, d.MaxKV)
	l.MaxTensors = cmp.Or(l.MaxTensors, d.MaxTensors)
	l.MaxStringBytes = cmp.Or(l.MaxStringBytes, d.MaxStringBytes)
	l.MaxArrayLen = cmp.Or(l.MaxArrayLen, d.MaxArrayLen)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, d.MaxHeaderBytes)
	return l, nil
}

// The fewest bytes a metadata pair (an empty key, a type, a 1-byte value) and a tensor info
// (an empty name, no dimensions, a type, an offset) can take.
const (
	kvBytesMin         = 8 + 4 + 1
	tensorInfoBytesMin = 8 + 4 + 4 + 8
)

// magic is "GGUF" read as a little-endian uint32.
const magic = 0x46554747

// defaultAlignment is the data alignment of a file without general.alignment.
const defaultAlignment = 32

// Read parses the header of the GGUF file r of size bytes: magic, version, metadata and
// tensor infos. It reads no tensor data (Validate checks that the data is there). Errors about
// the content are *FormatError; an error of r itself comes back wrapped.
//
// A Header that Read returns holds these invariants: the version is 2 or 3; the header lies
// within size and within lim.MaxHeaderBytes; there are at most lim.MaxKV keys, all distinct,
// each value of a known type and matching KV's Go types; every string is at most
// lim.MaxStringBytes long and every array at most lim.MaxArrayLen long and nested at most
// 8 deep; general.alignment, when present, is a uint32 power of two; there are at most
// lim.MaxTensors tensors, with distinct names of at most 63 bytes, at most 4 dimensions whose
// product fits an int64, rows of whole blocks for the ggml types this package knows, and
// offsets that are multiples of the alignment. These are the checks llama.cpp makes when it
// loads a header.
func Read(r io.ReaderAt, size int64, lim Limits) (Header, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return Header{}, err
	}
	if size < 0 {
		return Header{}, fmt.Errorf("gguf: negative file size %d", size)
	}
	p := &parser{c: newCursor(r, size, lim.MaxHeaderBytes), lim: lim, budget: storedElemsMax}
	if err := p.readHeader(); err != nil {
		return Header{}, err
	}
	return p.h, nil
}

// parser holds the state of one Read.
type parser struct {
	c      *cursor
	lim    Limits
	h      Header
	budget uint64 // array elements that may still be kept in full
}

func (p *parser) readHeader() error {
	if err := p.readPreamble(); err != nil {
		return err
	}
	nKV, err := p.readCount("metadata count", uint64(p.lim.MaxKV), "MaxKV", kvBytesMin)
	if err != nil {
		return err
	}
	if err := p.readKVs(nKV); err != nil {
		return err
	}
	if p.h.Alignment, err = p.alignment(); err != nil {
		return err
	}
	if err := p.readTensors(); err != nil {
		return err
	}
	return p.setDataOffset()
}

// readPreamble reads the magic, the version and the tensor count.
func (p *parser) readPreamble() error {
	m, err := p.c.u32("magic")
	if err != nil {
		return err
	}
	if m != magic {
		return formatErr(ErrBadMagic, 0, "the file starts with %q, not \"GGUF\"", le32Text(m))
	}
	if p.h.Version, err = p.c.u32("version"); err != nil {
		return err
	}
	if err := checkVersion(p.h.Version); err != nil {
		return err
	}
	p.h.TensorCount, err = p.readCount("tensor count", uint64(p.lim.MaxTensors), "MaxTensors",
		tensorInfoBytesMin)
	return err
}

func checkVersion(v uint32) error {
	switch {
	case v == 2 || v == 3:
		return nil
	case v == 1:
		return formatErr(ErrUnsupportedVersion, 4, "version 1 (32-bit counts, 2023) is not "+
			"supported; convert the model again with a current llama.cpp")
	case swap32(v) == 2 || swap32(v) == 3:
		return formatErr(ErrUnsupportedVersion, 4, "version %d read big-endian: big-endian "+
			"GGUF files are not supported", swap32(v))
	}
	return formatErr(ErrUnsupportedVersion, 4, "version %d; only 2 and 3 are supported", v)
}

// readCount reads a uint64 count and checks it against its limit and against the bytes
// left, given the fewest bytes one item takes.
func (p *parser) readCount(what string, limit uint64, limitName string, minItemBytes uint64) (uint64, error) {
	at := p.c.off
	n, err := p.c.u64(what)
	if err != nil {
		return 0, err
	}
	if n > limit {
		return 0, formatErr(ErrLimit, at, "%s %d is over Limits.%s (%d)", what, n, limitName, limit)
	}
	if n > uint64(p.c.size-p.c.off)/minItemBytes {
		return 0, formatErr(ErrTruncated, at, "%s %d needs at least %d bytes each, but only %d "+
			"bytes are left in the file", what, n, minItemBytes, p.c.size-p.c.off)
	}
	return n, nil
}

func (p *parser) readKVs(n uint64) error {
	seen := make(map[string]bool, min(n, 64))
	p.h.KV = make([]KV, 0, min(n, 64))
	for range n {
		at := p.c.off
		kv, err := p.readKV()
		if err != nil {
			return err
		}
		if seen[kv.Key] {
			return formatErr(ErrInvalid, at, "metadata key %q appears twice", kv.Key)
		}
		seen[kv.Key] = true
		p.h.KV = append(p.h.KV, kv)
	}
	return nil
}

func (p *parser) readKV() (KV, error) {
	key, err := p.c.str(p.lim.MaxStringBytes, "metadata key")
	if err != nil {
		return KV{}, err
	}
	at := p.c.off
	t, err := p.c.u32("value type")
	if err != nil {
		return KV{}, withKey(err, key)
	}
	if !ValueType(t).valid() {
		return KV{}, formatErr(ErrInvalid, at, "key %q has unknown value type %d", key, t)
	}
	v, err := p.readValue(ValueType(t), 0)
	if err != nil {
		return KV{}, withKey(err, key)
	}
	return KV{Key: key, Type: ValueType(t), Value: v}, nil
}

// withKey names the metadata key in a FormatError's reason.
func withKey(err error, key string) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		fe.Reason = fmt.Sprintf("key %q: %s", key, fe.Reason)
	}
	return err
}

// alignment returns general.alignment, checked as llama.cpp does: a uint32 power of two.
func (p *parser) alignment() (uint32, error) {
	kv, ok := p.h.Lookup("general.alignment")
	if !ok {
		return defaultAlignment, nil
	}
	a, isU32 := kv.Value.(uint32)
	if !isU32 || a == 0 || a&(a-1) != 0 {
		return 0, formatErr(ErrInvalid, p.c.off, "general.alignment is %v (%v); it must be a "+
			"uint32 power of two", kv.Value, kv.Type)
	}
	return a, nil
}

// setDataOffset records where the data section starts.
func (p *parser) setDataOffset() error {
	off, ok := alignUp(uint64(p.c.off), uint64(p.h.Alignment))
	if !ok || off > math.MaxInt64 {
		return formatErr(ErrInvalid, p.c.off, "data offset overflows")
	}
	p.h.DataOffset = int64(off)
	return nil
}

func le32Text(v uint32) string {
	return string([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

func swap32(v uint32) uint32 {
	return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24
}
