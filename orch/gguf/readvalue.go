package gguf

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// readValue reads one value of type t; depth counts the arrays it sits in.
func (p *parser) readValue(t ValueType, depth int) (any, error) {
	switch t {
	case TypeString:
		return p.c.str(p.lim.MaxStringBytes, "string value")
	case TypeArray:
		return p.readArray(depth + 1)
	}
	b, err := p.c.take(int(t.fixedSize()), "value")
	if err != nil {
		return nil, err
	}
	return decodeScalar(t, b), nil
}

// decodeScalar decodes a fixed-size value; b holds exactly t.fixedSize() bytes.
func decodeScalar(t ValueType, b []byte) any {
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return binary.LittleEndian.Uint16(b)
	case TypeInt16:
		return int16(binary.LittleEndian.Uint16(b))
	case TypeUint32:
		return binary.LittleEndian.Uint32(b)
	case TypeInt32:
		return int32(binary.LittleEndian.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(binary.LittleEndian.Uint32(b))
	case TypeUint64:
		return binary.LittleEndian.Uint64(b)
	case TypeInt64:
		return int64(binary.LittleEndian.Uint64(b))
	case TypeFloat64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	panic("gguf: decodeScalar of non-scalar type " + t.String())
}

// readArrayHead reads an array's element type and count and checks that the file can hold
// that many elements before anything is allocated for them.
func (p *parser) readArrayHead(depth int) (ArrayInfo, error) {
	at := p.c.off
	if depth > arrayDepthMax {
		return ArrayInfo{}, formatErr(ErrLimit, at, "arrays nested more than %d deep", arrayDepthMax)
	}
	et, err := p.c.u32("array element type")
	if err != nil {
		return ArrayInfo{}, err
	}
	if !ValueType(et).valid() {
		return ArrayInfo{}, formatErr(ErrInvalid, at, "array of unknown value type %d", et)
	}
	n, err := p.c.u64("array length")
	if err != nil {
		return ArrayInfo{}, err
	}
	if n > uint64(p.lim.MaxArrayLen) {
		return ArrayInfo{}, formatErr(ErrLimit, at+4, "array of %d elements is over "+
			"Limits.MaxArrayLen (%d)", n, p.lim.MaxArrayLen)
	}
	if hi, _ := bits.Mul64(n, ValueType(et).minSize()); hi != 0 {
		return ArrayInfo{}, formatErr(ErrTruncated, at+4, "array of %d %v elements needs more "+
			"bytes than any file holds", n, ValueType(et))
	}
	need := n * ValueType(et).minSize()
	return ArrayInfo{ElemType: ValueType(et), Len: n}, p.c.room(need, "array elements")
}

// readArray reads an array: in full as []any when it is short and the header's budget of
// kept elements allows, otherwise as an ArrayInfo after skipping its elements.
func (p *parser) readArray(depth int) (any, error) {
	ai, err := p.readArrayHead(depth)
	if err != nil {
		return nil, err
	}
	if ai.Len > MaxStoredArrayLen || ai.Len > p.budget {
		return ai, p.skipElems(ai, depth)
	}
	p.budget -= ai.Len
	vals := make([]any, ai.Len)
	for i := range vals {
		if vals[i], err = p.readValue(ai.ElemType, depth); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

// skipElems moves past the elements of an array whose head was just read.
func (p *parser) skipElems(ai ArrayInfo, depth int) error {
	if size := ai.ElemType.fixedSize(); size > 0 {
		return p.c.skip(ai.Len*size, "array elements") // no overflow: readArrayHead checked
	}
	for range ai.Len {
		if err := p.skipValue(ai.ElemType, depth); err != nil {
			return err
		}
	}
	return nil
}

// skipValue moves past one string or array value.
func (p *parser) skipValue(t ValueType, depth int) error {
	if t == TypeString {
		return p.c.skipStr(p.lim.MaxStringBytes, "string value")
	}
	ai, err := p.readArrayHead(depth + 1)
	if err != nil {
		return err
	}
	return p.skipElems(ai, depth+1)
}
