package gguf

import (
	"math"
	"strconv"
)

// Info is what the rest of the system needs to know about a model file.
type Info struct {
	// Architecture is general.architecture ("llama", "qwen2", ...).
	Architecture string
	// ContextLength is {arch}.context_length, in tokens.
	ContextLength uint64
	// BlockCount is {arch}.block_count, the number of transformer layers.
	BlockCount uint64
	// FileType is general.file_type (llama.cpp's LLAMA_FTYPE), 0 when absent.
	FileType uint32
	// Quantization names FileType ("Q4_K_M"; "type N" for one this package does not know),
	// or is empty when the file has no general.file_type.
	Quantization string
	// Name is general.name, empty when absent.
	Name string
}

// Lookup returns the metadata pair with the given key.
func (h Header) Lookup(key string) (KV, bool) {
	for _, kv := range h.KV {
		if kv.Key == key {
			return kv, true
		}
	}
	return KV{}, false
}

// Info extracts the model's Info. It requires general.architecture (a non-empty string),
// {arch}.context_length and {arch}.block_count (unsigned or non-negative integers of any
// width); general.file_type (an integer that fits a uint32) and general.name (a string) are
// optional. A missing key gives ErrMissingKey, a key of the wrong type ErrInvalid.
func (h Header) Info() (Info, error) {
	var in Info
	var err error
	if in.Architecture, err = h.requiredString("general.architecture"); err != nil {
		return Info{}, err
	}
	if in.ContextLength, err = h.requiredUint(in.Architecture + ".context_length"); err != nil {
		return Info{}, err
	}
	if in.BlockCount, err = h.requiredUint(in.Architecture + ".block_count"); err != nil {
		return Info{}, err
	}
	if in.Name, _, err = h.optionalString("general.name"); err != nil {
		return Info{}, err
	}
	return in, h.fileType(&in)
}

func (h Header) requiredString(key string) (string, error) {
	s, ok, err := h.optionalString(key)
	if err == nil && (!ok || s == "") {
		err = formatErr(ErrMissingKey, -1, "%s is missing or empty; llama.cpp cannot load the "+
			"model without it", key)
	}
	return s, err
}

func (h Header) optionalString(key string) (string, bool, error) {
	kv, ok := h.Lookup(key)
	if !ok {
		return "", false, nil
	}
	s, isString := kv.Value.(string)
	if !isString {
		return "", false, formatErr(ErrInvalid, -1, "%s is a %v, not a string", key, kv.Type)
	}
	return s, true, nil
}

func (h Header) requiredUint(key string) (uint64, error) {
	kv, ok := h.Lookup(key)
	if !ok {
		return 0, formatErr(ErrMissingKey, -1, "%s is missing; llama.cpp cannot load the "+
			"model without it", key)
	}
	v, ok := asUint(kv.Value)
	if !ok {
		return 0, formatErr(ErrInvalid, -1, "%s is %v (%v), not a non-negative integer",
			key, kv.Value, kv.Type)
	}
	return v, nil
}

// fileType sets FileType and Quantization from the optional general.file_type.
func (h Header) fileType(in *Info) error {
	kv, ok := h.Lookup("general.file_type")
	if !ok {
		return nil
	}
	v, ok := asUint(kv.Value)
	if !ok || v > math.MaxUint32 {
		return formatErr(ErrInvalid, -1, "general.file_type is %v (%v), not a uint32",
			kv.Value, kv.Type)
	}
	in.FileType = uint32(v)
	in.Quantization = QuantizationName(in.FileType)
	return nil
}

// asUint converts a scalar integer value to uint64, refusing negative values and non-integers.
func asUint(v any) (uint64, bool) {
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// fileTypeNames is llama.cpp's LLAMA_FTYPE table; ids it removed or never used are empty.
var fileTypeNames = [...]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0",
	9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
	15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS",
	21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S",
	27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
	33: "Q4_0_4_4", 34: "Q4_0_4_8", 35: "Q4_0_8_8", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

// QuantizationName names a llama.cpp file type (general.file_type): 15 is "Q4_K_M". A type
// this package does not know is "type N".
func QuantizationName(fileType uint32) string {
	if uint64(fileType) < uint64(len(fileTypeNames)) && fileTypeNames[fileType] != "" {
		return fileTypeNames[fileType]
	}
	return "type " + strconv.FormatUint(uint64(fileType), 10)
}
