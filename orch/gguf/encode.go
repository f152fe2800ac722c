package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// appendKV appends one metadata pair, checking that its value matches its type.
func appendKV(b []byte, kv KV) ([]byte, error) {
	b = appendString(b, kv.Key)
	b = binary.LittleEndian.AppendUint32(b, uint32(kv.Type))
	b, err := appendValue(b, kv.Type, kv.Value, 0)
	if err != nil {
		return nil, fmt.Errorf("gguf: key %q: %w", kv.Key, err)
	}
	return b, nil
}

// appendValue appends v, which must have the Go type that KV documents for t.
func appendValue(b []byte, t ValueType, v any, depth int) ([]byte, error) {
	if t == TypeArray {
		return appendArray(b, v, depth+1)
	}
	if vt, ok := goValueType(v); !ok || vt != t {
		return nil, fmt.Errorf("value %v of Go type %T does not match GGUF type %v", v, v, t)
	}
	return appendScalar(b, v), nil
}

// goValueType returns the GGUF type of a Go value, as KV documents them.
func goValueType(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	case []any, ArrayInfo:
		return TypeArray, true
	}
	return 0, false
}

// appendScalar appends a string or fixed-size value whose type goValueType accepted.
func appendScalar(b []byte, v any) []byte {
	le := binary.LittleEndian
	switch v := v.(type) {
	case uint8:
		return append(b, v)
	case int8:
		return append(b, byte(v))
	case bool:
		return append(b, boolByte(v))
	case uint16:
		return le.AppendUint16(b, v)
	case int16:
		return le.AppendUint16(b, uint16(v))
	case uint32:
		return le.AppendUint32(b, v)
	case int32:
		return le.AppendUint32(b, uint32(v))
	case float32:
		return le.AppendUint32(b, math.Float32bits(v))
	case uint64:
		return le.AppendUint64(b, v)
	case int64:
		return le.AppendUint64(b, uint64(v))
	case float64:
		return le.AppendUint64(b, math.Float64bits(v))
	case string:
		return appendString(b, v)
	}
	panic(fmt.Sprintf("gguf: appendScalar of %T", v))
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendArray appends a []any (its element type taken from its first element, uint8 when
// empty) or an ArrayInfo (Len zero values).
func appendArray(b []byte, v any, depth int) ([]byte, error) {
	if depth > arrayDepthMax {
		return nil, fmt.Errorf("arrays nested more than %d deep", arrayDepthMax)
	}
	switch v := v.(type) {
	case ArrayInfo:
		return appendZeroArray(b, v)
	case []any:
		return appendAnyArray(b, v, depth)
	}
	return nil, fmt.Errorf("array value of Go type %T; want []any or ArrayInfo", v)
}

func appendAnyArray(b []byte, vals []any, depth int) ([]byte, error) {
	et := TypeUint8
	if len(vals) > 0 {
		var ok bool
		if et, ok = goValueType(vals[0]); !ok {
			return nil, fmt.Errorf("array element of Go type %T", vals[0])
		}
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(et))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(vals)))
	for i, e := range vals {
		var err error
		if b, err = appendValue(b, et, e, depth); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return b, nil
}

// appendZeroArray appends an array of a.Len zero values of a.ElemType.
func appendZeroArray(b []byte, a ArrayInfo) ([]byte, error) {
	if !a.ElemType.valid() {
		return nil, fmt.Errorf("ArrayInfo of unknown element type %d", uint32(a.ElemType))
	}
	size := a.ElemType.minSize() // the zero string and the empty uint8 array are all zero bytes too
	if a.Len > uint64(DefaultLimits().MaxHeaderBytes)/size {
		return nil, fmt.Errorf("ArrayInfo of %d %v elements would not fit in "+
			"DefaultLimits().MaxHeaderBytes", a.Len, a.ElemType)
	}
	zero := make([]byte, size)
	b = binary.LittleEndian.AppendUint32(b, uint32(a.ElemType))
	b = binary.LittleEndian.AppendUint64(b, a.Len)
	for range a.Len {
		b = append(b, zero...)
	}
	return b, nil
}
