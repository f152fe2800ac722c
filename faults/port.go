package faults

import (
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/sim"
)

// deviceFallback is the device a failed device's workers fall back to.
const deviceFallback = "cpu"

// GPUPort is the address a hive's device port sends from ("gpu:hive-1").
func GPUPort(hive node.Addr) node.Addr { return "gpu:" + hive }

// ProcPort is the address a hive's process-table port sends from ("proc:hive-1").
func ProcPort(hive node.Addr) node.Addr { return "proc:" + hive }

// deviceFault fails a GPU under a hive.
type deviceFault struct{}

func (deviceFault) Name() string { return "device-fault" }
func (deviceFault) Doc() string {
	return "Targets [hive]; Device: one of the hive's Devices. The hive's device port tells it " +
		"the device failed (api.DeviceFault from gpu:<hive>) and its workers fall back to cpu. " +
		"Instant: For is 0; the device does not come back."
}
func (deviceFault) Available(t Topology) bool { return len(t.hivesWith(t.Devices)) > 0 }
func (k deviceFault) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	mustAvailable(k, t)
	h := pick(rng, t.hivesWith(t.Devices))
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{h}, Device: pick(rng, sortedStrings(t.Devices[h]))}
}
func (k deviceFault) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (deviceFault) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fDevice), targets(f, 1, hive(t)),
		listed("device", f.Device, one(f), t.Devices))
}
func (deviceFault) apply(st *state, f Fault) func() {
	h := f.Targets[0]
	st.s.Inject(GPUPort(h), h, api.DeviceFault{Device: f.Device, Fallback: deviceFallback})
	return nil
}
func (deviceFault) lasting() bool           { return false }
func (deviceFault) describe(f Fault) string { return string(one(f)) + " " + f.Device }

// workerHang makes a worker stop answering health probes for a while.
type workerHang struct{}

func (workerHang) Name() string { return "worker-hang" }
func (workerHang) Doc() string {
	return "Targets [hive]; Worker: one of the hive's Workers. The hive's process port tells it " +
		"the worker hangs for For (api.WorkerHang from proc:<hive>): it stops answering health " +
		"probes while its work goes on. The hive ends the hang itself."
}
func (workerHang) Available(t Topology) bool { return len(t.hivesWith(t.Workers)) > 0 }
func (k workerHang) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	mustAvailable(k, t)
	h := pick(rng, t.hivesWith(t.Workers))
	return Fault{Kind: k.Name(), At: at, Targets: []node.Addr{h}, Worker: pick(rng, sortedStrings(t.Workers[h])),
		For: drawFor(rng, maxFor)}
}
func (k workerHang) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (workerHang) check(t Topology, f Fault) error {
	return firstErr(unused(f, fTargets|fWorker|fFor), targets(f, 1, hive(t)),
		listed("worker", f.Worker, one(f), t.Workers))
}
func (workerHang) apply(st *state, f Fault) func() {
	h := f.Targets[0]
	st.s.Inject(ProcPort(h), h, api.WorkerHang{Worker: f.Worker, For: f.For})
	return nil
}

// lasting is false: the hang's end is the hive's business, carried in the message.
func (workerHang) lasting() bool           { return false }
func (workerHang) describe(f Fault) string { return string(one(f)) + " " + f.Worker }
