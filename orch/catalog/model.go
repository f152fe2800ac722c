package catalog

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what a Model may hold. They keep every model file name a valid single path element
// on every file system the real runtime runs on, and keep rows small.
const (
	providerBytesMax = 32
	// fileNameBytesMax bounds the escaped reference, the last element of a model's file name.
	fileNameBytesMax = 255
	// labelBytesMax bounds Architecture and Quantization.
	labelBytesMax  = 64
	sha256HexChars = 64
)

// Suffixes of files in the models folder that are not (yet) model files: downloads in
// progress, and the temporary files of node.WriteFileAtomic. Rebuild and Cleanup skip them, and
// no reference may end with one, so that no model's file name can look like them.
var inProgressSuffixes = []string{".partial", ".tmp"}

// ErrInvalid is matched (errors.Is) by every error about a caller's input: a Model that breaks
// one of its invariants, a bad page token or page size, a bad file name.
var ErrInvalid = errors.New("invalid catalog input")

// Model is one model in the catalog: a GGUF file on the hive's disk and what the hive knows
// about it. Validate lists its invariants.
type Model struct {
	// ID is "<Provider>:<Reference>", e.g.
	// "hf:TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_K_M.gguf".
	ID string
	// Provider names where the model came from: "hf", "file", ...
	Provider string
	// Reference names the model at its provider.
	Reference string
	// LocalPath is the model file's name on the Disk: ModelPath(ModelsDir, Provider, Reference).
	LocalPath string
	// SizeBytes is the file's size.
	SizeBytes int64
	// SHA256 is the file's SHA-256, 64 lowercase hex digits.
	SHA256 string
	// Architecture is the GGUF general.architecture ("llama").
	Architecture string
	// ContextLength is the GGUF {arch}.context_length, in tokens.
	ContextLength int64
	// Quantization is the GGUF file type in words ("Q4_K_M").
	Quantization string
	// VRAMRequired is the hive's estimate of the GPU memory the model needs, in bytes; 0 means
	// unknown. It is the column schema version 2 added.
	VRAMRequired int64
	// DownloadedAt is when the model was registered, by the hive's clock.
	DownloadedAt time.Time
}

// Validate checks the invariants every Model in the catalog holds:
//   - Provider is 1-32 bytes of lowercase letters, digits and '-', starting with a letter;
//   - Reference is valid UTF-8 without control characters, its escaped form (see ModelPath)
//     fits in 255 bytes, and it does not end with ".partial" or ".tmp";
//   - ID is Provider + ":" + Reference;
//   - SizeBytes > 0, ContextLength > 0, VRAMRequired >= 0;
//   - SHA256 is 64 lowercase hex digits;
//   - Architecture is 1-64 bytes and Quantization at most 64, both printable UTF-8;
//   - DownloadedAt is set and representable in Unix nanoseconds.
//
// LocalPath depends on the catalog's models folder; Catalog.Register checks it.
// Every error names the field and matches ErrInvalid.
func (m Model) Validate() error {
	if err := validProvider(m.Provider); err != nil {
		return err
	}
	if err := validReference(m.Reference); err != nil {
		return err
	}
	if want := m.Provider + ":" + m.Reference; m.ID != want {
		return invalidf("model ID %q: want provider:reference, %q", m.ID, want)
	}
	switch {
	case m.SizeBytes <= 0:
		return invalidf("model %s: SizeBytes %d: want > 0", m.ID, m.SizeBytes)
	case !isSHA256Hex(m.SHA256):
		return invalidf("model %s: SHA256 %q: want 64 lowercase hex digits", m.ID, m.SHA256)
	case m.ContextLength <= 0:
		return invalidf("model %s: ContextLength %d: want > 0", m.ID, m.ContextLength)
	case m.VRAMRequired < 0:
		return invalidf("model %s: VRAMRequired %d: want >= 0 (0: unknown)", m.ID, m.VRAMRequired)
	case m.DownloadedAt.IsZero() || !time.Unix(0, m.DownloadedAt.UnixNano()).Equal(m.DownloadedAt):
		return invalidf("model %s: DownloadedAt %v: want a time between 1678 and 2262", m.ID, m.DownloadedAt)
	}
	if m.Architecture == "" {
		return invalidf("model %s: Architecture is empty", m.ID)
	}
	if err := validLabel(m.ID, "Architecture", m.Architecture); err != nil {
		return err
	}
	return validLabel(m.ID, "Quantization", m.Quantization)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("catalog: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func validProvider(p string) error {
	if p == "" || len(p) > providerBytesMax {
		return invalidf("provider %q: want 1-%d bytes", p, providerBytesMax)
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		letter := b >= 'a' && b <= 'z'
		if !letter && (i == 0 || !(b >= '0' && b <= '9' || b == '-')) {
			return invalidf("provider %q: want lowercase letters, digits and '-', starting with a letter", p)
		}
	}
	return nil
}

func validReference(r string) error {
	if r == "" {
		return invalidf("reference is empty")
	}
	if !utf8.ValidString(r) || hasControl(r) {
		return invalidf("reference %q: want UTF-8 text without control characters", r)
	}
	if n := len(escapeReference(r)); n > fileNameBytesMax {
		return invalidf("reference %q: its file name would be %d bytes, over %d", r, n, fileNameBytesMax)
	}
	for _, s := range inProgressSuffixes {
		if strings.HasSuffix(r, s) {
			return invalidf("reference %q: must not end with %q (reserved for files in progress)", r, s)
		}
	}
	return nil
}

func validLabel(id, field, v string) error {
	if len(v) > labelBytesMax || !utf8.ValidString(v) || hasControl(v) {
		return invalidf("model %s: %s %q: want at most %d bytes of printable UTF-8", id, field, v, labelBytesMax)
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func isSHA256Hex(s string) bool {
	if len(s) != sha256HexChars {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// ModelPath returns the file name on the Disk of the model (provider, reference):
// modelsDir + provider + "/" + the reference escaped into one path element. Bytes other than
// ASCII letters, digits, '-', '_' and '.' become %XX (uppercase hex), and so does a leading
// '.', so the name never holds "/", "..", or a hidden file:
//
//	ModelPath("models/", "hf", "TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_K_M.gguf")
//	  == "models/hf/TheBloke%2FTinyLlama-1.1B-GGUF%2Ftinyllama.Q4_K_M.gguf"
//
// modelsDir gets a trailing "/" if it lacks one. ParseModelPath is the inverse. ModelPath does
// not validate; Model.Validate does.
func ModelPath(modelsDir, provider, reference string) string {
	return dirPrefix(modelsDir) + provider + "/" + escapeReference(reference)
}

// ParseModelPath is the inverse of ModelPath: it returns the provider and reference of a model
// file name, or an error matching ErrInvalid when name is not one ModelPath returns for a
// valid provider and reference (a foreign file, a non-canonical escape).
func ParseModelPath(modelsDir, name string) (provider, reference string, err error) {
	rest, ok := strings.CutPrefix(name, dirPrefix(modelsDir))
	if !ok {
		return "", "", invalidf("file %q is not in the models folder %q", name, dirPrefix(modelsDir))
	}
	provider, escaped, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(escaped, "/") {
		return "", "", invalidf("file %q: want %s<provider>/<escaped reference>", name, dirPrefix(modelsDir))
	}
	if err := validProvider(provider); err != nil {
		return "", "", fmt.Errorf("file %q: %w", name, err)
	}
	reference, ok = unescapeReference(escaped)
	if !ok || escapeReference(reference) != escaped {
		return "", "", invalidf("file %q: %q is not an escaped model reference", name, escaped)
	}
	if err := validReference(reference); err != nil {
		return "", "", fmt.Errorf("file %q: %w", name, err)
	}
	return provider, reference, nil
}

func dirPrefix(dir string) string {
	return strings.TrimSuffix(dir, "/") + "/"
}

func keepByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '-' || b == '_' || b == '.'
}

func escapeReference(r string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(r))
	for i := 0; i < len(r); i++ {
		b := r[i]
		if keepByte(b) && !(i == 0 && b == '.') {
			sb.WriteByte(b)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[b>>4])
		sb.WriteByte(hex[b&0xf])
	}
	return sb.String()
}

func unescapeReference(s string) (string, bool) {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		sb.WriteByte(hi<<4 | lo)
		i += 2
	}
	return sb.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
