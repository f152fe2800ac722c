package provision_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/provision"
	"github.com/rbee-sim/rbee-sim/sim"
)

// benchGB is the size of BenchmarkDownload's file. The default keeps `go test -bench .` short
// on a 2-core CI machine; the numbers are those of 5 GB:
//
//	go test -run '^$' -bench BenchmarkDownload -benchtime 1x ./orch/provision/ -args -provision.bench-gb=5
var benchGB = flag.Float64("provision.bench-gb", 0.5,
	"tensor data of BenchmarkDownload's synthetic GGUF file, in GB (1e9 bytes)")

const (
	benchBandwidth = 100e6 // the hub's bandwidth, bytes per simulated second (100 MB/s)
	benchKeepBytes = 4 << 20
	benchRepo      = "bench/Bench-GGUF"
	benchFile      = "bench.F32.gguf"
)

// BenchmarkDownload: one provisioner downloads one synthetic GGUF file from the simulated hub
// at 100 MB/s simulated (the hub's per-connection bandwidth; the provisioner itself is not
// limited), for several hub chunk sizes. The file is benchGB*1e9 bytes of tensor data plus a
// header of a few hundred bytes: 0.5 GB by default, 5 GB with -provision.bench-gb=5. Nothing
// holds the file: the hub generates each chunk when it sends it (sim.HubMaterializeMaxBytes),
// the provisioner hashes the body as it writes it, and the disk keeps each file's first 4 MiB
// and its size only (headDisk).
//
// The hub computes the file's sha256 once, before the timings. Each download then makes three
// passes over the bytes: the hub generates them, the simulator's trace takes a CRC32 of each
// chunk, and the provisioner hashes them. The network delivers in order (fixed 1 ms latency,
// no jitter), so no chunk is retried.
//
// Metrics, per download: events (simulator events: hub timers, deliveries, provisioner timers),
// sim-s (simulated seconds from start to Done), wall-s, compression (sim-s/wall-s), B/s (file
// bytes per wall second) and readback-B (bytes read from the disk: the GGUF header window and
// the lease files, never the body).
func BenchmarkDownload(b *testing.B) {
	payload := int64(*benchGB*1e9) &^ 3 // a whole number of F32 elements
	if payload <= 0 {
		b.Fatalf("-provision.bench-gb=%v gives no data", *benchGB)
	}
	spec := gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 32, FileType: 0,
		Name: "bench", PayloadBytes: payload, Seed: 1}
	hub := sim.NewHub(sim.HubConfig{BandwidthBytesPerSec: benchBandwidth,
		Files: []sim.HubFile{{Repo: benchRepo, Revision: "main", File: benchFile, Spec: spec}}})
	size, sum, _ := hub.Stat(benchRepo, "main", benchFile) // the hub's one sha256 pass
	syn, _ := hub.Open(benchRepo, "main", benchFile)
	wantHead := make([]byte, min(size, benchKeepBytes))
	syn.ReadAt(wantHead, 0)
	for _, chunk := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("size=%gGB/chunk=%dKiB", *benchGB, chunk>>10), func(b *testing.B) {
			hub.SetChunkBytes(chunk)
			var r benchRun
			for b.Loop() {
				r = runDownload(b, hub)
			}
			if !r.done.Err.OK() || r.done.SHA256 != sum || r.done.Size != size {
				b.Fatalf("download ended with %+v; want the hub's %d bytes with sha256 %s", r.done, size, sum)
			}
			if got := r.disk.files[r.done.Path]; got == nil || got.size != size || !bytes.Equal(got.head, wantHead) {
				b.Fatalf("the model file on the disk is not the hub's")
			}
			wall := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(r.events), "events")
			b.ReportMetric(r.sim.Seconds(), "sim-s")
			b.ReportMetric(wall, "wall-s")
			b.ReportMetric(r.sim.Seconds()/wall, "compression")
			b.ReportMetric(float64(size)/wall, "B/s")
			b.ReportMetric(float64(r.disk.readBytes), "readback-B")
		})
	}
}

type benchRun struct {
	done   provision.Done
	disk   *headDisk
	events uint64
	sim    time.Duration
}

// runDownload runs one download of the bench file from hub to a fresh headDisk.
func runDownload(b *testing.B, hub *sim.Hub) benchRun {
	s := sim.New(sim.Options{Seed: 1})
	s.Network().SetDefault(sim.LinkConfig{Latency: time.Millisecond})
	disk := newHeadDisk(benchKeepBytes)
	f := &fetcher{p: provision.New(provision.DefaultConfig()), disk: disk, stop: s.Stop,
		req: provision.Request{Repo: benchRepo, File: benchFile, Requester: "hive", ReqID: 1}}
	s.Add("hub", "hub", 0, func() node.Node { return hub })
	s.Add("hive", "hive", 0, func() node.Node { return f })
	s.Run(24 * time.Hour)
	if f.done == nil {
		b.Fatalf("no Done after %v simulated", s.Now())
	}
	return benchRun{done: *f.done, disk: disk, events: s.Trace().Events(), sim: s.Now()}
}

// fetcher is a hive reduced to its provisioner: it requests one file at start and stops the
// simulation when the Done comes. The provisioner sees disk instead of the machine's disk.
type fetcher struct {
	p    *provision.Provisioner
	disk node.Disk
	req  provision.Request
	done *provision.Done
	stop func()
}

// diskEnv is an Env with another disk.
type diskEnv struct {
	node.Env
	disk node.Disk
}

func (e diskEnv) Disk() node.Disk { return e.disk }

func (f *fetcher) Start(env node.Env) {
	e := diskEnv{env, f.disk}
	f.p.Start(e)
	f.p.Request(e, f.req)
}

func (f *fetcher) Handle(env node.Env, from node.Addr, m node.Msg) {
	if f.p.Handle(diskEnv{env, f.disk}, from, m) {
		return
	}
	if d, ok := m.(provision.Done); ok {
		f.done = &d
		f.stop()
	}
}

// errDiscarded is the error of a read past the bytes a headDisk keeps.
var errDiscarded = errors.New("headDisk: these bytes were discarded")

// headDisk is a node.Disk that keeps the first keep bytes of each file and only the size of
// the rest, so that a 5 GB download takes a few MiB. Every write is durable at once. A read of
// a discarded byte fails (it never reads as zeros), so the benchmark fails if the provisioner
// reads a body back; readBytes counts the bytes read.
type headDisk struct {
	keep      int64
	files     map[string]*headFile
	readBytes int64
}

type headFile struct {
	head []byte // the first min(size, keep) bytes
	size int64
}

func newHeadDisk(keep int64) *headDisk {
	return &headDisk{keep: keep, files: map[string]*headFile{}}
}

var _ node.Disk = (*headDisk)(nil)

func (d *headDisk) Open(name string, create bool) (node.File, error) {
	if _, ok := d.files[name]; !ok {
		if !create {
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		}
		d.files[name] = &headFile{}
	}
	return &headHandle{d: d, name: name}, nil
}

func (d *headDisk) Remove(name string) error {
	if _, ok := d.files[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, fs.ErrNotExist)
	}
	delete(d.files, name)
	return nil
}

func (d *headDisk) Rename(oldName, newName string) error {
	f, ok := d.files[oldName]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldName, fs.ErrNotExist)
	}
	delete(d.files, oldName)
	d.files[newName] = f
	return nil
}

func (d *headDisk) List(prefix string) ([]string, error) {
	var names []string
	for n := range d.files {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// headHandle is an open file of a headDisk; it follows renames and removals by name, as
// MemDisk's files do.
type headHandle struct {
	d    *headDisk
	name string
}

func (h *headHandle) file() (*headFile, error) {
	f, ok := h.d.files[h.name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", h.name, fs.ErrNotExist)
	}
	return f, nil
}

func (h *headHandle) ReadAt(p []byte, off int64) (int, error) {
	f, err := h.file()
	if err != nil {
		return 0, err
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), f.size-off)
	if off+n > int64(len(f.head)) {
		return 0, fmt.Errorf("read of %s at %d, %d bytes: %w", h.name, off, n, errDiscarded)
	}
	copy(p, f.head[off:off+n])
	h.d.readBytes += n
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (h *headHandle) WriteAt(p []byte, off int64) (int, error) {
	f, err := h.file()
	if err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	if keepEnd := min(end, h.d.keep); keepEnd > int64(len(f.head)) {
		f.head = append(f.head, make([]byte, keepEnd-int64(len(f.head)))...)
	}
	if off < int64(len(f.head)) {
		copy(f.head[off:], p)
	}
	f.size = max(f.size, end)
	return len(p), nil
}

func (h *headHandle) Size() (int64, error) {
	f, err := h.file()
	if err != nil {
		return 0, err
	}
	return f.size, nil
}

func (h *headHandle) Truncate(size int64) error {
	f, err := h.file()
	if err != nil {
		return err
	}
	keepEnd := min(size, h.d.keep)
	if keepEnd < int64(len(f.head)) {
		f.head = f.head[:keepEnd]
	} else {
		f.head = append(f.head, make([]byte, keepEnd-int64(len(f.head)))...)
	}
	f.size = size
	return nil
}

func (h *headHandle) Sync() error  { return nil }
func (h *headHandle) Close() error { return nil }
