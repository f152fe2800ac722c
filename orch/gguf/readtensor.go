package gguf

import "math"

// readTensors reads the tensor infos that the preamble counted.
func (p *parser) readTensors() error {
	n := p.h.TensorCount
	// The count was checked against the file size when the data section was still unread;
	// check it again against what is left now.
	if n > uint64(p.c.size-p.c.off)/tensorInfoBytesMin {
		return formatErr(ErrTruncated, p.c.off, "%d tensor infos need at least %d bytes each, "+
			"but only %d bytes are left in the file", n, tensorInfoBytesMin, p.c.size-p.c.off)
	}
	seen := make(map[string]bool, min(n, 1024))
	p.h.Tensors = make([]TensorInfo, 0, min(n, 1024))
	for range n {
		at := p.c.off
		t, err := p.readTensor()
		if err != nil {
			return err
		}
		if seen[t.Name] {
			return formatErr(ErrInvalid, at, "tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		p.h.Tensors = append(p.h.Tensors, t)
	}
	return nil
}

// readTensor reads one tensor info and checks it as llama.cpp does when it loads the file.
func (p *parser) readTensor() (TensorInfo, error) {
	at := p.c.off
	name, err := p.c.str(p.lim.MaxStringBytes, "tensor name")
	if err != nil {
		return TensorInfo{}, err
	}
	if len(name) > tensorNameMaxBytes {
		return TensorInfo{}, formatErr(ErrInvalid, at, "tensor name %q is %d bytes, over "+
			"ggml's %d", name[:tensorNameMaxBytes], len(name), tensorNameMaxBytes)
	}
	t := TensorInfo{Name: name}
	if t.Dims, err = p.readDims(name); err != nil {
		return TensorInfo{}, err
	}
	if t.Type, err = p.c.u32("tensor type"); err != nil {
		return TensorInfo{}, err
	}
	if err := checkBlocks(t, at); err != nil {
		return TensorInfo{}, err
	}
	return t, p.readOffset(&t)
}

// readDims reads a tensor's dimension count and extents.
func (p *parser) readDims(name string) ([]uint64, error) {
	at := p.c.off
	nd, err := p.c.u32("tensor dimension count")
	if err != nil {
		return nil, err
	}
	if nd > tensorDimsMax {
		return nil, formatErr(ErrInvalid, at, "tensor %q has %d dimensions, over ggml's %d",
			name, nd, tensorDimsMax)
	}
	dims := make([]uint64, nd)
	for i := range dims {
		if dims[i], err = p.c.u64("tensor dimension"); err != nil {
			return nil, err
		}
	}
	if _, ok := elems(dims); !ok {
		return nil, formatErr(ErrInvalid, at, "tensor %q has dimensions %v: negative, or more "+
			"than %d elements", name, dims, int64(math.MaxInt64))
	}
	return dims, nil
}

// checkBlocks refuses a tensor of a known block type whose rows are not whole blocks.
func checkBlocks(t TensorInfo, at int64) error {
	gt, known := lookupGGML(t.Type)
	if !known {
		return nil
	}
	if t.rowElems()%gt.blockElems != 0 {
		return formatErr(ErrInvalid, at, "tensor %q of type %s has dimensions %v: the first is "+
			"not a multiple of the block size %d", t.Name, gt.name, t.Dims, gt.blockElems)
	}
	return nil
}

// readOffset reads a tensor's data offset, which must be a multiple of the alignment.
func (p *parser) readOffset(t *TensorInfo) error {
	at := p.c.off
	off, err := p.c.u64("tensor offset")
	if err != nil {
		return err
	}
	if off%uint64(p.h.Alignment) != 0 {
		return formatErr(ErrInvalid, at, "tensor %q has data offset %d, not a multiple of the "+
			"alignment %d", t.Name, off, p.h.Alignment)
	}
	t.Offset = off
	return nil
}
