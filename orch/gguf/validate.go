package gguf

import "io"

// Validate checks that the GGUF file r of size bytes is a model llama.cpp can load, as far as
// its header tells: Read with DefaultLimits, every tensor's data inside the file, and the
// metadata Info needs. It returns the model's Info.
//
// For a tensor of a ggml type this package knows, its data (rounded up to the alignment, as
// llama.cpp reads it) must end within the file; for an unknown type only its offset must. A
// truncated file gives an error that matches ErrTruncated.
func Validate(r io.ReaderAt, size int64) (Info, error) {
	h, err := Read(r, size, DefaultLimits())
	if err != nil {
		return Info{}, err
	}
	if err := h.checkData(size); err != nil {
		return Info{}, err
	}
	return h.Info()
}

// checkData checks that the data of every tensor lies within a file of size bytes.
func (h Header) checkData(size int64) error {
	if len(h.Tensors) == 0 {
		return nil // the header alone was read within size
	}
	var have uint64 // bytes of the data section present in the file
	if size > h.DataOffset {
		have = uint64(size - h.DataOffset)
	}
	for _, t := range h.Tensors {
		end, ok := t.dataEnd(uint64(h.Alignment))
		if !ok || end > have {
			return h.truncatedAt(t, size)
		}
	}
	return nil
}

// dataEnd returns where a tensor's padded data ends in the data section (its offset for an
// unknown type), and false on overflow.
func (t TensorInfo) dataEnd(align uint64) (uint64, bool) {
	n, known := t.dataBytes()
	if !known {
		_, isKnownType := lookupGGML(t.Type)
		return t.Offset, !isKnownType // a known type that overflowed cannot fit in any file
	}
	padded, ok := alignUp(n, align)
	end := t.Offset + padded
	return end, ok && end >= t.Offset
}

func (h Header) truncatedAt(t TensorInfo, size int64) error {
	n, _ := t.dataBytes()
	return formatErr(ErrTruncated, size, "tensor %q (%s, %v, %d bytes at data offset %d; the "+
		"data section starts at file offset %d) does not fit in the file of %d bytes; the file "+
		"is incomplete: download it again", t.Name, ggmlTypeName(t.Type), t.Dims, n, t.Offset,
		h.DataOffset, size)
}
