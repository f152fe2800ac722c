package keeper

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// InferSpec is one inference request as a person (the CLI) or a scenario asks for it. The
// fields that come from a person are checked by ValidateRequest before anything is sent.
type InferSpec struct {
	// Model is the model reference, "provider:reference": "hf:<owner>/<repo>/<file>" or
	// "file:<path>".
	Model string `json:"model"`
	// Prompt is sent unchanged, whatever ScanPrompt finds in it.
	Prompt string `json:"prompt"`
	// MaxTokens bounds the completion: at least 1, at most the model's context length less the
	// prompt's tokens.
	MaxTokens int `json:"max_tokens"`
	// Seed makes the completion reproducible.
	Seed uint64 `json:"seed"`
	// Device, when set, is "cpu", "cuda:N" (N the GPU index) or "metal". It is checked here so
	// that a bad --device fails before any work is sent; api.InferReq has no device field (the
	// queen routes by model), so the inference client does not send it.
	Device string `json:"device,omitempty"`
	// Timeout is the client's deadline, from the first send; 0 means none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// MaxTime caps the generation itself; 0 means the server's default (api.DefaultMaxTime).
	MaxTime time.Duration `json:"max_time,omitempty"`
	// CancelAfter, when not 0, cancels the request this long after it was first sent, as a
	// person pressing Ctrl+C does.
	CancelAfter time.Duration `json:"cancel_after,omitempty"`
	// At is when the inference client sends the request, from its Start.
	At time.Duration `json:"at,omitempty"`
	// AllowInjection says the person confirmed a prompt in which ScanPrompt found
	// system-instruction patterns, or passed --allow-injection. Without it such a prompt is
	// refused.
	AllowInjection bool `json:"allow_injection,omitempty"`
}

// ModelInfo is what the client knows of a model before it sends work: the context length from
// the catalog and the slots of the workers serving it. The zero ModelInfo means nothing is
// known, and the checks that need it are skipped (the server still enforces them).
type ModelInfo struct {
	// ID is the model's catalog ID, the InferSpec.Model it describes.
	ID string `json:"id"`
	// ContextLength is the model's context window in tokens; 0 means unknown.
	ContextLength int `json:"context_length,omitempty"`
	// Slots is the number of inference slots of all workers serving the model; 0 means
	// unknown.
	Slots int `json:"slots,omitempty"`
}

// RequestError is a refused request: every problem found, each an api.Error with code
// INVALID_REQUEST that says what is wrong and what to do.
type RequestError struct {
	Problems []api.Error
	// Findings are the system-instruction patterns of an unconfirmed prompt, when that is one
	// of the problems: a CLI shows them and asks for confirmation.
	Findings []Finding
}

// Error implements error: the problems, one after the other.
func (e *RequestError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// APIError folds the problems into one api.Error, for a record that holds a single error.
func (e *RequestError) APIError() api.Error {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	msgs := make([]string, len(e.Problems))
	sugs := make([]string, 0, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Message
		if p.Suggestion != "" {
			sugs = append(sugs, p.Suggestion)
		}
	}
	return api.Error{Code: api.CodeInvalidRequest, Message: strings.Join(msgs, "; "), Suggestion: strings.Join(sugs, "; ")}
}

// Model reference providers the client accepts.
const (
	providerHF   = "hf"
	providerFile = "file"
)

// modelExample is the well-formed reference error messages show.
const modelExample = "hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"

// cudaIndexDigitsMax bounds the digits of the N in "cuda:N".
const cudaIndexDigitsMax = 3

// ValidateRequest checks one request before any work is sent, and returns nil or a
// *RequestError listing every problem:
//   - Model is a well-formed reference (see ValidateModelRef);
//   - Device, when set, is a known device (see ValidateDevice);
//   - Prompt is not empty, and has no system-instruction patterns (ScanPrompt) unless
//     AllowInjection is set;
//   - MaxTokens >= 1 and, when m.ContextLength is known, MaxTokens <= the context length less
//     the prompt's tokens (whitespace-separated words);
//   - Timeout, MaxTime and CancelAfter are not negative.
//
// m describes the model the request names, or is the zero ModelInfo; a ModelInfo of another
// model is a caller's bug and panics.
func ValidateRequest(r InferSpec, m ModelInfo) error {
	if m.ID != "" && m.ID != r.Model {
		panic(fmt.Sprintf("keeper: ValidateRequest of model %q given the ModelInfo of %q", r.Model, m.ID))
	}
	var e RequestError
	add := func(err *api.Error) {
		if err != nil {
			e.Problems = append(e.Problems, *err)
		}
	}
	add(modelRefProblem(r.Model))
	if r.Device != "" {
		add(deviceProblem(r.Device))
	}
	if strings.TrimSpace(r.Prompt) == "" {
		add(invalid("the prompt is empty", "give the text to complete"))
	} else if f := ScanPrompt(r.Prompt); len(f) > 0 && !r.AllowInjection {
		e.Findings = f
		add(invalid(fmt.Sprintf("the prompt contains system-instruction patterns (%s), which can take over the model's instructions", describeFindings(f)),
			"check the prompt; if it is meant, confirm it or pass --allow-injection (the prompt is sent unchanged)"))
	}
	add(maxTokensProblem(r, m))
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", r.Timeout}, {"max_time", r.MaxTime}, {"cancel_after", r.CancelAfter}} {
		if d.v < 0 {
			flag := "--" + strings.ReplaceAll(d.name, "_", "-")
			add(invalid(fmt.Sprintf("%s %v is negative", d.name, d.v), fmt.Sprintf("use a positive %s, or 0 for none", flag)))
		}
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

// ValidateBatch checks a batch of prompts sent at once to one model: each request as
// ValidateRequest does (problems prefixed "prompt i:"), and that the batch fits the slots of
// the workers serving the model. A batch larger than m.Slots is refused with a suggestion to
// split it, unless queue is set (the caller accepts that requests wait for a free slot).
// Every spec must name m's model when m.ID is set.
func ValidateBatch(specs []InferSpec, m ModelInfo, queue bool) error {
	var e RequestError
	for i, s := range specs {
		err := ValidateRequest(s, m)
		if err == nil {
			continue
		}
		re := err.(*RequestError)
		for _, p := range re.Problems {
			p.Message = fmt.Sprintf("prompt %d: %s", i+1, p.Message)
			e.Problems = append(e.Problems, p)
		}
		e.Findings = append(e.Findings, re.Findings...)
	}
	if n, s := len(specs), m.Slots; s > 0 && n > s && !queue {
		batches := (n + s - 1) / s
		e.Problems = append(e.Problems, *invalid(
			fmt.Sprintf("a batch of %d prompts needs %d slots, but the workers serving %s have %d", n, n, m.ID, s),
			fmt.Sprintf("split it into %d batches of at most %d prompts, or pass --queue to let prompts wait for a free slot", batches, s)))
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return &e
}

// ValidateModelRef checks a model reference: "hf:<owner>/<repo>/<file>" (at least three
// non-empty path segments) or "file:<path>" (a non-empty path), without whitespace, control
// characters, or "." and ".." segments. It returns nil or an api.Error.
func ValidateModelRef(ref string) error {
	if p := modelRefProblem(ref); p != nil {
		return *p
	}
	return nil
}

// ValidateDevice checks a backend/device value: "cpu", "cuda:N" with N a GPU index, or
// "metal". It returns nil or an api.Error that names the valid values.
func ValidateDevice(device string) error {
	if p := deviceProblem(device); p != nil {
		return *p
	}
	return nil
}

func invalid(message, suggestion string) *api.Error {
	return &api.Error{Code: api.CodeInvalidRequest, Message: message, Suggestion: suggestion}
}

func modelRefProblem(ref string) *api.Error {
	suggest := fmt.Sprintf("write it as hf:<owner>/<repo>/<file>, e.g. %s, or file:<path>", modelExample)
	if ref == "" {
		return invalid("no model given", suggest)
	}
	if i := strings.IndexFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return invalid(fmt.Sprintf("model %q contains whitespace or a control character at byte %d", ref, i), suggest)
	}
	provider, path, ok := strings.Cut(ref, ":")
	if !ok {
		return invalid(fmt.Sprintf("model %q has no provider", ref), suggest)
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, s := range segs {
		if s == "." || s == ".." {
			return invalid(fmt.Sprintf("model %q has a %q path segment", ref, s), suggest)
		}
	}
	switch provider {
	case providerHF:
		if len(segs) < 3 || slicesContainEmpty(segs) {
			return invalid(fmt.Sprintf("model %q does not name an owner, a repository and a file", ref), suggest)
		}
	case providerFile:
		if path == "" || slicesContainEmpty(segs) {
			return invalid(fmt.Sprintf("model %q does not name a file", ref), suggest)
		}
	default:
		return invalid(fmt.Sprintf("model provider %q is not supported; the providers are %s and %s", provider, providerHF, providerFile), suggest)
	}
	return nil
}

func slicesContainEmpty(segs []string) bool {
	for _, s := range segs {
		if s == "" {
			return true
		}
	}
	return false
}

func deviceProblem(device string) *api.Error {
	const valid = "cpu, cuda:N (N the GPU index, e.g. cuda:0) or metal"
	switch device {
	case "cpu", "metal":
		return nil
	case "cuda", "gpu":
		return invalid(fmt.Sprintf("device %q does not say which GPU; the devices are %s", device, valid), "use --device cuda:0 for the first GPU")
	}
	if n, ok := strings.CutPrefix(device, "cuda:"); ok {
		if _, err := strconv.ParseUint(n, 10, 16); err == nil && len(n) <= cudaIndexDigitsMax {
			return nil
		}
		return invalid(fmt.Sprintf("device %q: %q is not a GPU index", device, n), "use --device cuda:N with N a number, e.g. cuda:0")
	}
	return invalid(fmt.Sprintf("device %q is not one of %s", device, valid), "use --device cpu, --device cuda:0 or --device metal")
}

// promptTokens estimates the prompt's length in tokens as its whitespace-separated words.
func promptTokens(prompt string) int { return len(strings.Fields(prompt)) }

func maxTokensProblem(r InferSpec, m ModelInfo) *api.Error {
	if r.MaxTokens < 1 {
		return invalid(fmt.Sprintf("max_tokens %d is less than 1", r.MaxTokens), "use --max-tokens 1 or more")
	}
	if m.ContextLength <= 0 {
		return nil
	}
	prompt := promptTokens(r.Prompt)
	room := m.ContextLength - prompt
	switch {
	case room < 1:
		return invalid(fmt.Sprintf("the prompt's %d tokens fill the %d-token context of %s, leaving no room for a completion", prompt, m.ContextLength, m.ID),
			fmt.Sprintf("shorten the prompt to fewer than %d words", m.ContextLength))
	case r.MaxTokens > room && prompt == 0:
		return invalid(fmt.Sprintf("max_tokens %d exceeds the %d-token context of %s", r.MaxTokens, m.ContextLength, m.ID),
			fmt.Sprintf("use --max-tokens %d or less", room))
	case r.MaxTokens > room:
		return invalid(fmt.Sprintf("max_tokens %d exceeds the %d-token context of %s, of which the prompt takes %d", r.MaxTokens, m.ContextLength, m.ID, prompt),
			fmt.Sprintf("use --max-tokens %d or less", room))
	}
	return nil
}

// Finding is a system-instruction pattern found in a prompt.
type Finding struct {
	// Rule names the pattern: "ignore-instructions", "role-override", "system-prefix",
	// "chat-template-system", "inst-tag", "markdown-system-header".
	Rule string `json:"rule"`
	// Match is the text that matched, as it is in the prompt.
	Match string `json:"match"`
	// Offset is the match's byte offset in the prompt, Line its line (from 1).
	Offset int `json:"offset"`
	Line   int `json:"line"`
}

// injectionRules are the patterns ScanPrompt looks for. Each is narrow enough to leave
// ordinary prompts alone: "you are now" needs a new role after it, "### System" must be a
// whole heading (not "### System requirements").
var injectionRules = []struct {
	rule string
	re   *regexp.Regexp
}{
	{"ignore-instructions", regexp.MustCompile(`(?i)\b(?:ignore|disregard|forget)\s+(?:(?:the|your|my)\s+)?(?:all|any|previous|prior|above|earlier|preceding|system)\s+(?:(?:of|the|your|previous|prior|above|earlier|preceding|system)\s+){0,3}(?:instructions?|prompts?|rules|directions|guidelines)\b`)},
	{"role-override", regexp.MustCompile(`(?i)\byou\s+are\s+now\s+(?:(?:a|an|my)\s+\w+|no\s+longer|free|unrestricted|unfiltered|jailbroken|dan|in\s+\w+\s+mode|acting\s+as|playing)\b`)},
	{"system-prefix", regexp.MustCompile(`(?im)^[ \t]*system[ \t]*:`)},
	{"chat-template-system", regexp.MustCompile(`(?i)<\|im_start\|>\s*system|<\|system\|>|<<SYS>>|<\|start_header_id\|>\s*system`)},
	{"inst-tag", regexp.MustCompile(`(?i)\[/?INST\]`)},
	{"markdown-system-header", regexp.MustCompile(`(?im)^[ \t]*#{1,6}[ \t]*system(?:[ \t]+(?:prompt|message|instructions?))?[ \t]*:?[ \t]*$`)},
}

// ScanPrompt returns the system-instruction patterns in a prompt (instructions to ignore
// earlier instructions, a new role, a "system:" line, chat-template system markers), in the
// order they appear, or nil. It never changes the prompt: a request with findings needs the
// person's confirmation (InferSpec.AllowInjection) and is then sent as written.
func ScanPrompt(prompt string) []Finding {
	var out []Finding
	for _, r := range injectionRules {
		for _, loc := range r.re.FindAllStringIndex(prompt, -1) {
			match := strings.TrimLeft(prompt[loc[0]:loc[1]], " \t")
			start := loc[1] - len(match)
			out = append(out, Finding{Rule: r.rule, Match: match, Offset: start, Line: 1 + strings.Count(prompt[:start], "\n")})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}

// findingsShownMax bounds how many findings an error message quotes.
const findingsShownMax = 3

func describeFindings(fs []Finding) string {
	parts := make([]string, 0, findingsShownMax+1)
	for i, f := range fs {
		if i == findingsShownMax {
			parts = append(parts, fmt.Sprintf("and %d more", len(fs)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%q on line %d", f.Match, f.Line))
	}
	return strings.Join(parts, ", ")
}
