package gguf

import "strconv"

// ValueType is the type tag of a metadata value, as stored in the file.
type ValueType uint32

// The metadata value types of GGUF.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
}

// String returns the type's name as the GGUF spec spells it in lower case ("uint32").
func (t ValueType) String() string {
	if !t.valid() {
		return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
	}
	return valueTypeNames[t]
}

func (t ValueType) valid() bool { return t <= TypeFloat64 }

// fixedSize returns the encoded size of a scalar of type t, or 0 for strings and arrays.
func (t ValueType) fixedSize() uint64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize returns the fewest bytes one value of type t can take in a file: a string is at
// least its 8-byte length, an array at least its 4-byte element type and 8-byte count.
func (t ValueType) minSize() uint64 {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return t.fixedSize()
}

// KV is one metadata key-value pair.
//
// Value holds, by Type: uint8, int8, uint16, int16, uint32, int32, float32, bool, string,
// uint64, int64 or float64 for scalars, and for TypeArray either []any (elements of one of
// those Go types, or nested []any / ArrayInfo for arrays of arrays) or ArrayInfo when the array
// was too long to keep.
type KV struct {
	Key   string
	Type  ValueType
	Value any
}

// ArrayInfo stands for an array whose elements were not kept: Read returns it for arrays of
// more than MaxStoredArrayLen elements (a tokenizer vocabulary, say), and Write accepts it to
// write Len zero values of ElemType (empty strings, zeros, false, or empty uint8 arrays).
type ArrayInfo struct {
	ElemType ValueType
	Len      uint64
}

// MaxStoredArrayLen is the longest array Read keeps in full, as []any; a longer one becomes
// an ArrayInfo. Arrays also become ArrayInfo once a header's kept elements reach
// storedElemsMax, so that memory stays bounded whatever the file holds.
const MaxStoredArrayLen = 1024

// storedElemsMax bounds the array elements one Read keeps in full, over the whole header.
const storedElemsMax = 1 << 16

// arrayDepthMax bounds the nesting of arrays of arrays; real files nest at most once.
const arrayDepthMax = 8
