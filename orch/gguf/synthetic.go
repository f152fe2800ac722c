package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
)

// payloadBlockBytes is the unit of synthetic tensor data: each block of a tensor comes from its
// own PCG state, so any byte of a file can be made without making the bytes before it.
const payloadBlockBytes = 64 << 10

// Synthetic is the file a Spec describes, readable at any offset without holding it: the
// header lives in memory (a few KiB for the specs of the simulator) and the tensor data is
// generated on demand, so a 70 GB synthetic model costs no more memory than a 7 KB one.
//
// The tensor data of tensor t is cut into 64 KiB blocks (the last one shorter); block k is the
// little-endian words of a PCG whose state is (Spec.Seed, mix(t, k)), truncated to the block's
// length. After each tensor come zero bytes up to the alignment. Write, Bytes and ReadAt give
// the same bytes, and reading a range costs at most one block of work more than its length.
//
// A Synthetic is immutable; its methods may be called from several goroutines at once.
type Synthetic struct {
	header []byte  // the header, padded to the alignment: the data section starts at len(header)
	sizes  []int64 // each tensor's data size, without padding
	starts []int64 // each tensor's data's file offset
	seed   uint64
	size   int64
}

// NewSynthetic checks s and returns the file it describes.
func NewSynthetic(s Spec) (*Synthetic, error) {
	hdr, sizes, err := encodeHeader(s)
	if err != nil {
		return nil, err
	}
	f := &Synthetic{header: hdr, sizes: sizes, seed: s.Seed}
	off := int64(len(hdr))
	for _, n := range sizes {
		f.starts = append(f.starts, off)
		off += n + paddingFor(n)
	}
	f.size = off
	return f, nil
}

// Size is the file's length in bytes.
func (f *Synthetic) Size() int64 { return f.size }

// HeaderSize is the length of the header with its padding: where the tensor data starts.
// Validate needs only these first bytes of the file (and its size).
func (f *Synthetic) HeaderSize() int64 { return int64(len(f.header)) }

// ReadAt implements io.ReaderAt: it fills p with the file's bytes from off. It returns io.EOF
// with fewer than len(p) bytes when the file ends first, and an error for a negative off.
func (f *Synthetic) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("gguf: Synthetic.ReadAt at a negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := len(p)
	p = p[:min(int64(want), f.size-off)]
	n := len(p)
	for len(p) > 0 {
		c := f.fill(p, off)
		p, off = p[c:], off+int64(c)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// fill writes the file's bytes from off (within the file) into a prefix of p and returns its
// length: up to the end of the region (header, tensor block or padding) that holds off.
func (f *Synthetic) fill(p []byte, off int64) int {
	if off < int64(len(f.header)) {
		return copy(p, f.header[off:])
	}
	t := sort.Search(len(f.starts), func(i int) bool { return f.starts[i] > off }) - 1
	in := off - f.starts[t] // offset within tensor t's data and padding
	if in >= f.sizes[t] {
		end := f.sizes[t] + paddingFor(f.sizes[t])
		c := int(min(int64(len(p)), end-in))
		clear(p[:c])
		return c
	}
	block := in / payloadBlockBytes
	from := in % payloadBlockBytes
	blockLen := min(payloadBlockBytes, f.sizes[t]-block*payloadBlockBytes)
	c := int(min(int64(len(p)), blockLen-from))
	fillBlock(p[:c], f.seed, t, block, int(from))
	return c
}

// WriteTo implements io.WriterTo: it writes the whole file to w, the tensor data one block at
// a time.
func (f *Synthetic) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(f.header)
	written := int64(n)
	if err != nil {
		return written, fmt.Errorf("gguf: writing header: %w", err)
	}
	if len(f.sizes) == 0 {
		return written, nil
	}
	buf := make([]byte, min(payloadBlockBytes, f.sizes[0]))
	var zeros [writeAlignment]byte
	for t, size := range f.sizes {
		for block := int64(0); block*payloadBlockBytes < size; block++ {
			b := buf[:min(int64(len(buf)), size-block*payloadBlockBytes)]
			fillBlock(b, f.seed, t, block, 0)
			n, err := w.Write(b)
			written += int64(n)
			if err != nil {
				return written, fmt.Errorf("gguf: writing tensor data: %w", err)
			}
		}
		n, err := w.Write(zeros[:paddingFor(size)])
		written += int64(n)
		if err != nil {
			return written, fmt.Errorf("gguf: writing tensor padding: %w", err)
		}
	}
	return written, nil
}

// fillBlock writes bytes [from, from+len(p)) of payload block (tensor, block) into p.
func fillBlock(p []byte, seed uint64, tensor int, block int64, from int) {
	src := rand.NewPCG(seed, blockState(tensor, block))
	for range from / 8 {
		src.Uint64()
	}
	var word [8]byte
	i := 0
	if skip := from % 8; skip > 0 {
		binary.LittleEndian.PutUint64(word[:], src.Uint64())
		i = copy(p, word[skip:])
	}
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], src.Uint64())
	}
	if i < len(p) {
		binary.LittleEndian.PutUint64(word[:], src.Uint64())
		copy(p[i:], word[:])
	}
}

// blockState is the low word of block (tensor, block)'s PCG state: the block's key run through
// the SplitMix64 finalizer, so that neighbouring blocks start far apart.
func blockState(tensor int, block int64) uint64 {
	z := payloadPCGStream<<32 ^ uint64(tensor)<<24 ^ uint64(block)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
