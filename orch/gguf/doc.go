// Package gguf reads, validates and writes the headers of GGUF files, the model file format of
// llama.cpp.
//
// Its job is to answer, for a file the hive downloaded or found on disk, "is this a model file
// llama.cpp will load, and what is it?" (Read, Validate, Header.Info), and to make
// synthetic model files for the simulator's hub and for tests (Write, Bytes, and Synthetic,
// which reads any range of a file of any size without holding the file).
//
// A GGUF file is, in little-endian order: the magic "GGUF", a uint32 version (2 and 3 are
// accepted), a uint64 tensor count, a uint64 metadata count, the typed metadata key-value
// pairs, the tensor infos (name, dimensions, ggml type, data offset), padding up to the
// alignment (general.alignment, default 32) and the tensor data.
//
// The reader is built for hostile input: it never panics, and it checks every length it reads
// against the bytes left in the file and against Limits before it allocates, so a lying header
// costs at most a bounded amount of memory (about Limits.MaxHeaderBytes for the strings it
// keeps, plus a small fixed amount per key, tensor and kept array element). Arrays longer than
// MaxStoredArrayLen are kept only as their element type and length (ArrayInfo). It reads the
// header only, never the tensor data, so validating a 70 GB model reads a few megabytes.
//
// Errors about the file's content are *FormatError values that match (errors.Is) one of
// ErrBadMagic, ErrUnsupportedVersion, ErrTruncated, ErrLimit, ErrInvalid or ErrMissingKey;
// errors from the io.ReaderAt itself are returned wrapped, unchanged otherwise.
//
// Callers' duties: pass the file's real size (a size larger than the file reads as a
// truncated file, a smaller one hides the tail); give Read limits suited to where the file came
// from (DefaultLimits fits every public llama.cpp model); and treat a Validate error as "this
// file is not a usable model", keeping the file for inspection rather than deleting it.
//
// The package is part of the deterministic core: it keeps no state, starts no goroutines and
// draws randomness for synthetic data only from a PCG stream seeded by the caller.
package gguf
