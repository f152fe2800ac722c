package gguf

import (
	"math"
	"math/bits"
	"strconv"
)

// TensorInfo describes one tensor of the file; its data is not read.
type TensorInfo struct {
	Name string
	// Dims are the tensor's extents, fastest-varying first (ggml's ne[0], ne[1], ...); at most
	// tensorDimsMax of them, and their product fits in an int64.
	Dims []uint64
	// Type is the ggml element type (0 F32, 1 F16, 2 Q4_0, ..., 12 Q4_K, ...).
	Type uint32
	// Offset is where the tensor's data starts, in bytes from the start of the data section
	// (Header.DataOffset); a multiple of the file's alignment.
	Offset uint64
}

// Limits of ggml that llama.cpp enforces when it loads a file.
const (
	tensorDimsMax      = 4  // GGML_MAX_DIMS
	tensorNameMaxBytes = 63 // GGML_MAX_NAME - 1 (the C buffer keeps a NUL)
)

// ggmlType is one row of ggml's type table: elements per block and bytes per block.
type ggmlType struct {
	name       string
	blockElems uint64
	blockBytes uint64
}

// ggmlTypes is indexed by ggml type id; ids removed from ggml (4, 5, 31-33, 36-38) are empty.
// Sizes follow ggml's type_traits (and gguf-py's GGML_QUANT_SIZES).
var ggmlTypes = [...]ggmlType{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144},
	13: {"Q5_K", 256, 176}, 14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292},
	16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74}, 18: {"IQ3_XXS", 256, 98},
	19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56},
	30: {"BF16", 1, 2}, 34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66},
	39: {"MXFP4", 32, 17}, 40: {"NVFP4", 64, 36}, 41: {"Q1_0", 128, 18},
}

// ggmlF32 is the ggml type id of float32 tensors, the only type Write produces.
const ggmlF32 = 0

// lookupGGML returns the table row of a ggml type id, if this package knows it.
func lookupGGML(id uint32) (ggmlType, bool) {
	if uint64(id) >= uint64(len(ggmlTypes)) || ggmlTypes[id].blockElems == 0 {
		return ggmlType{}, false
	}
	return ggmlTypes[id], true
}

// ggmlTypeName names a ggml type id ("Q4_K"), or "type N" for one this package does not know.
func ggmlTypeName(id uint32) string {
	if t, ok := lookupGGML(id); ok {
		return t.name
	}
	return "type " + strconv.FormatUint(uint64(id), 10)
}

// elems returns the number of elements of dims, and false if it does not fit in an int64.
func elems(dims []uint64) (uint64, bool) {
	n := uint64(1)
	for _, d := range dims {
		hi, lo := bits.Mul64(n, d)
		if d > math.MaxInt64 || hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return n, true
}

// rowElems returns the extent of the first dimension; ggml gives a missing one the extent 1.
func (t TensorInfo) rowElems() uint64 {
	if len(t.Dims) == 0 {
		return 1
	}
	return t.Dims[0]
}

// dataBytes returns the size of a tensor's data, and false if its type is unknown, its rows
// are not whole blocks, or the size overflows a uint64.
func (t TensorInfo) dataBytes() (uint64, bool) {
	gt, ok := lookupGGML(t.Type)
	if !ok {
		return 0, false
	}
	n, ok := elems(t.Dims)
	if !ok || t.rowElems()%gt.blockElems != 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(n/gt.blockElems, gt.blockBytes)
	return lo, hi == 0
}

// alignUp rounds n up to a multiple of align (a power of two), and reports overflow.
func alignUp(n, align uint64) (uint64, bool) {
	r := (n + align - 1) &^ (align - 1)
	return r, r >= n
}
