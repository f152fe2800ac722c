// Package gpu discovers the NVIDIA GPUs of the machine it runs on, for the real runtime: what
// a hive advertises (Capabilities: "cuda:0", "cuda:1", ..., "cpu") and what its preflight
// checks VRAM against.
//
// Discovery runs nvidia-smi once:
//
//	nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,driver_version --format=csv,noheader,nounits
//
// and parses its CSV (values in MiB, reported in bytes; "[N/A]" and "[Not Supported]" as
// unknown). It never hangs: the run has a timeout, and a stuck nvidia-smi is killed with its
// process group. When there is no usable NVIDIA GPU (nvidia-smi missing, the driver not
// loaded, no device found, a wedged driver, output it cannot read), Discover returns no GPUs
// and an error that says what happened and what to do, and for which
// errors.Is(err, ErrNoNVIDIA) holds: the caller runs on CPU only.
package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds one nvidia-smi run. Its first call after boot can take seconds while
// the driver initialises the GPUs (no persistence mode), so the bound is generous.
const DefaultTimeout = 15 * time.Second

// QueryArgs are the arguments Discover gives nvidia-smi.
var QueryArgs = []string{
	"--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,driver_version",
	"--format=csv,noheader,nounits",
}

// ErrNoNVIDIA is matched (errors.Is) by every error of Discover that means "no usable NVIDIA
// GPU here": treat it as CPU only. The error itself says why.
var ErrNoNVIDIA = errors.New("no usable NVIDIA GPU")

// Unknown is the value of a memory field nvidia-smi could not report ("[N/A]").
const Unknown int64 = -1

// mib is one MiB in bytes: nvidia-smi's "nounits" memory values are MiB.
const mib = 1 << 20

// GPU is one NVIDIA GPU as nvidia-smi reports it.
type GPU struct {
	// Index is nvidia-smi's index: the N of "cuda:N" (CUDA numbers devices the same way when
	// CUDA_DEVICE_ORDER=PCI_BUS_ID).
	Index int
	// UUID is the GPU's stable identifier ("GPU-4f3c...").
	UUID string
	// Name is the product name ("NVIDIA H100 80GB HBM3").
	Name string
	// MemoryTotal, MemoryUsed and MemoryFree are in bytes; Unknown (-1) when nvidia-smi
	// printed [N/A]. When exactly one of used and free is unknown it is derived from the
	// other and the total.
	MemoryTotal, MemoryUsed, MemoryFree int64
	// DriverVersion is the NVIDIA driver's version ("550.90.07"); empty when unknown.
	DriverVersion string
}

// Capability is the capability string a worker on g runs with: "cuda:<index>".
func (g GPU) Capability() string { return "cuda:" + strconv.Itoa(g.Index) }

// Capabilities returns what a machine with gpus can run on: "cuda:<index>" for each GPU, by
// index, then "cpu" (every machine can run on its CPU).
func Capabilities(gpus []GPU) []string {
	idx := make([]int, 0, len(gpus))
	for _, g := range gpus {
		idx = append(idx, g.Index)
	}
	sort.Ints(idx)
	out := make([]string, 0, len(gpus)+1)
	for i, n := range idx {
		if i > 0 && idx[i-1] == n {
			continue
		}
		out = append(out, "cuda:"+strconv.Itoa(n))
	}
	return append(out, "cpu")
}

// Config configures discovery. The zero Config runs "nvidia-smi" from PATH with
// DefaultTimeout.
type Config struct {
	// NvidiaSMI is the nvidia-smi program: a name looked up on PATH or a path. Empty means
	// "nvidia-smi". Tests point it at a fake.
	NvidiaSMI string
	// Timeout bounds the run; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Discover returns the machine's NVIDIA GPUs, by index, with the zero Config.
func Discover(ctx context.Context) ([]GPU, error) { return Config{}.Discover(ctx) }

// Error is why Discover found no usable GPU. It matches ErrNoNVIDIA with errors.Is, and the
// underlying error (exec.ErrNotFound, context.DeadlineExceeded, ...) too.
type Error struct {
	// What happened and why, for a person.
	Reason string
	// Suggestion says what to do.
	Suggestion string
	// Output is what nvidia-smi printed (trimmed), if anything.
	Output string
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	s := "gpu: " + e.Reason + "; running on CPU only"
	if e.Output != "" {
		s += ". nvidia-smi said: " + e.Output
	}
	if e.Suggestion != "" {
		s += " (" + e.Suggestion + ")"
	}
	return s
}

// Unwrap makes errors.Is match ErrNoNVIDIA and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNoNVIDIA}
	}
	return []error{ErrNoNVIDIA, e.Err}
}

// Discover runs nvidia-smi and returns the GPUs it reports, sorted by index. On failure it
// returns no GPUs and an *Error (errors.Is(err, ErrNoNVIDIA)), except when ctx itself ends
// first: then the error wraps ctx.Err() and not ErrNoNVIDIA, since nothing was learnt.
func (c Config) Discover(ctx context.Context) ([]GPU, error) {
	bin := c.NvidiaSMI
	if bin == "" {
		bin = "nvidia-smi"
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, &Error{Err: err,
			Reason:     fmt.Sprintf("%s was not found (%v), so this machine has no NVIDIA driver installed, or it is not on PATH", bin, err),
			Suggestion: "to use NVIDIA GPUs, install the NVIDIA driver (it brings nvidia-smi) and check that `nvidia-smi` runs"}
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, path, QueryArgs...)
	// A wedged driver can leave nvidia-smi (and anything it started) stuck in the kernel:
	// kill its whole group, and stop waiting for its pipes soon after.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out := trimOutput(stdout.String() + "\n" + stderr.String())
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("gpu: GPU discovery was cancelled before nvidia-smi answered: %w", ctx.Err())
	case runCtx.Err() != nil:
		return nil, &Error{Err: runCtx.Err(), Output: out,
			Reason:     fmt.Sprintf("%s did not answer within %v: the NVIDIA driver is probably stuck", path, timeout),
			Suggestion: "check `nvidia-smi` by hand and the kernel log (dmesg) for NVIDIA errors (Xid); a reboot usually clears a wedged driver"}
	case err != nil:
		return nil, runError(path, err, out)
	}
	gpus, err := Parse(stdout.String())
	if err != nil {
		return nil, &Error{Err: err, Output: out,
			Reason:     fmt.Sprintf("cannot read the output of %s: %v", path, err),
			Suggestion: "run `nvidia-smi " + strings.Join(QueryArgs, " ") + "` by hand; an unusual driver version may print another format, please report it"}
	}
	if len(gpus) == 0 {
		return nil, &Error{Output: out,
			Reason:     path + " ran but listed no GPU",
			Suggestion: "check `nvidia-smi -L`; a GPU hidden from this container needs the NVIDIA container runtime (--gpus all)"}
	}
	return gpus, nil
}

// runError explains a failed nvidia-smi run from its output.
func runError(path string, err error, out string) *Error {
	e := &Error{Err: err, Output: out}
	low := strings.ToLower(out)
	switch {
	case strings.Contains(low, "couldn't communicate with the nvidia driver"),
		strings.Contains(low, "driver/library version mismatch"),
		strings.Contains(low, "failed to initialize nvml"):
		e.Reason = fmt.Sprintf("%s cannot talk to the NVIDIA driver (%v): the driver is not loaded, or does not match its libraries", path, err)
		e.Suggestion = "check `lsmod | grep nvidia`; after a driver or kernel update, reboot; reinstall the driver if it persists"
	case strings.Contains(low, "no devices were found"):
		e.Reason = fmt.Sprintf("%s found no NVIDIA GPU (%v)", path, err)
		e.Suggestion = "check `lspci | grep -i nvidia`; inside a container, run it with the NVIDIA container runtime (--gpus all)"
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOEXEC):
		e.Reason = fmt.Sprintf("%s cannot be run (%v)", path, err)
		e.Suggestion = "check that it is the NVIDIA driver's nvidia-smi and that it is executable"
	default:
		e.Reason = fmt.Sprintf("%s failed (%v)", path, err)
		e.Suggestion = "run `nvidia-smi` by hand to see what is wrong with the driver"
	}
	return e
}

// trimOutput is output for an error message: trimmed, lines joined, at most 500 bytes.
func trimOutput(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s = strings.Join(lines, " | ")
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

// Parse reads nvidia-smi's output for QueryArgs: one line per GPU,
// "index, uuid, name, memory.total, memory.used, memory.free, driver_version", memory in MiB.
// Blank lines are skipped; spaces around values do not matter; a name with commas is kept
// whole. The GPUs come back sorted by index.
func Parse(out string) ([]GPU, error) {
	var gpus []GPU
	seen := map[int]bool{}
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" {
			continue
		}
		g, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		if seen[g.Index] {
			return nil, fmt.Errorf("line %d %q: GPU index %d is listed twice", n+1, line, g.Index)
		}
		seen[g.Index] = true
		gpus = append(gpus, g)
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].Index < gpus[j].Index })
	return gpus, nil
}

func parseLine(line string) (GPU, error) {
	f := strings.Split(line, ",")
	if len(f) < 7 {
		return GPU{}, fmt.Errorf("%d fields, want 7 (index, uuid, name, memory.total, memory.used, memory.free, driver_version)", len(f))
	}
	// A name with commas: the first two fields and the last four are fixed.
	name := strings.Join(f[2:len(f)-4], ",")
	f = append(append(f[:2:2], name), f[len(f)-4:]...)
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	var g GPU
	idx, err := strconv.Atoi(f[0])
	if err != nil || idx < 0 {
		return GPU{}, fmt.Errorf("index %q is not a number", f[0])
	}
	g.Index, g.UUID, g.Name = idx, value(f[1]), value(f[2])
	mem := make([]int64, 3)
	for i, s := range f[3:6] {
		if mem[i], err = memory(s); err != nil {
			return GPU{}, err
		}
	}
	g.MemoryTotal, g.MemoryUsed, g.MemoryFree = mem[0], mem[1], mem[2]
	if g.MemoryTotal != Unknown {
		switch {
		case g.MemoryUsed == Unknown && g.MemoryFree != Unknown:
			g.MemoryUsed = max(g.MemoryTotal-g.MemoryFree, 0)
		case g.MemoryFree == Unknown && g.MemoryUsed != Unknown:
			g.MemoryFree = max(g.MemoryTotal-g.MemoryUsed, 0)
		}
	}
	g.DriverVersion = value(f[6])
	return g, nil
}

// unknown reports whether nvidia-smi printed "no value": [N/A], [Not Supported], [Unknown
// Error], [Insufficient Permissions], or N/A without brackets (older drivers).
func unknown(s string) bool {
	return s == "" || strings.HasPrefix(s, "[") || strings.EqualFold(s, "N/A") || strings.EqualFold(s, "Not Supported")
}

func value(s string) string {
	if unknown(s) {
		return ""
	}
	return s
}

// memory turns a MiB value into bytes (Unknown when nvidia-smi printed none). A "MiB" suffix
// (output without nounits) is accepted.
func memory(s string) (int64, error) {
	if unknown(s) {
		return Unknown, nil
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, "MiB"))
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mib {
		return 0, fmt.Errorf("memory value %q is not a number of MiB", s)
	}
	return v * mib, nil
}
