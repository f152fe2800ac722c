package faults

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rbee-sim/rbee-sim/sim"
)

// Limits of the clock kinds.
const (
	// clockDriftMaxPPM bounds clock-drift: 20% fast or slow, well inside what sim accepts.
	clockDriftMaxPPM = 200_000
	// clockOffsetMax bounds the Value of clock-skew and clock-jump.
	clockOffsetMax = 24 * time.Hour
	// clockOffsetDrawMax is the largest skew or jump Draw picks.
	clockOffsetDrawMax = 10 * time.Minute
)

// drawClock draws a clock fault on a queen or hive with Value in [-hi, hi].
func drawClock(rng *rand.Rand, k Kind, t Topology, at, maxFor time.Duration, hi int64) Fault {
	f := drawServer(rng, k, t, at, maxFor)
	f.Value = drawIn(rng, -hi, hi)
	return f
}

// checkClock is the check of the clock kinds: one queen or hive, Value in [-hi, hi].
func checkClock(t Topology, f Fault, used field, hi int64, unit string) error {
	return firstErr(unused(f, used), targets(f, 1, server(t)), valueIn(f, -hi, hi, unit))
}

// clockSkew sets a clock's offset from true time.
type clockSkew struct{}

func (clockSkew) Name() string { return "clock-skew" }
func (clockSkew) Doc() string {
	return "Targets [a], a queen or hive; Value: offset in nanoseconds (at most 24h either way). " +
		"a's clock is stepped to read true time plus Value; after For the step is undone (as an " +
		"NTP correction would), keeping whatever other clock faults did meanwhile."
}
func (clockSkew) Available(t Topology) bool { return len(t.servers()) > 0 }
func (k clockSkew) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	return drawClock(rng, k, t, at, maxFor, int64(clockOffsetDrawMax))
}
func (k clockSkew) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (clockSkew) check(t Topology, f Fault) error {
	return checkClock(t, f, fTargets|fValue|fFor, int64(clockOffsetMax), "ns")
}
func (clockSkew) apply(st *state, f Fault) func() {
	c := st.s.Clock(f.Targets[0])
	step := time.Duration(f.Value) - c.Skew(st.s.Now())
	c.Jump(st.s.Now(), step)
	return func() { c.Jump(st.s.Now(), -step) }
}
func (clockSkew) lasting() bool { return true }
func (clockSkew) describe(f Fault) string {
	return fmt.Sprintf("%s %s", one(f), signed(time.Duration(f.Value)))
}

// clockDrift makes a clock run fast or slow.
type clockDrift struct{}

func (clockDrift) Name() string { return "clock-drift" }
func (clockDrift) Doc() string {
	return "Targets [a], a queen or hive; Value: drift in ppm, in [-200000, 200000]. a's clock " +
		"runs fast (positive) or slow until For passes, then at the drift it had before; of " +
		"overlapping drifts the latest still active wins."
}
func (clockDrift) Available(t Topology) bool { return len(t.servers()) > 0 }
func (k clockDrift) Draw(rng *rand.Rand, t Topology, at, maxFor time.Duration) Fault {
	return drawClock(rng, k, t, at, maxFor, clockDriftMaxPPM)
}
func (k clockDrift) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (clockDrift) check(t Topology, f Fault) error {
	return checkClock(t, f, fTargets|fValue|fFor, clockDriftMaxPPM, "ppm")
}
func (clockDrift) apply(st *state, f Fault) func() { return st.pushDrift(f.Targets[0], f.Value) }
func (clockDrift) lasting() bool                   { return true }
func (clockDrift) describe(f Fault) string         { return fmt.Sprintf("%s %+dppm", one(f), f.Value) }

// clockJump steps a clock forwards or backwards, once.
type clockJump struct{}

func (clockJump) Name() string { return "clock-jump" }
func (clockJump) Doc() string {
	return "Targets [a], a queen or hive; Value: nanoseconds (at most 24h either way). a's clock " +
		"jumps by Value, backwards when negative. Instant: For is 0 and nothing is undone."
}
func (clockJump) Available(t Topology) bool { return len(t.servers()) > 0 }
func (k clockJump) Draw(rng *rand.Rand, t Topology, at, _ time.Duration) Fault {
	return drawClock(rng, k, t, at, 0, int64(clockOffsetDrawMax))
}
func (k clockJump) Inject(s *sim.Sim, t Topology, f Fault) { injectAlone(k, s, t, f) }
func (clockJump) check(t Topology, f Fault) error {
	return checkClock(t, f, fTargets|fValue, int64(clockOffsetMax), "ns")
}
func (clockJump) apply(st *state, f Fault) func() {
	st.s.Clock(f.Targets[0]).Jump(st.s.Now(), time.Duration(f.Value))
	return nil
}
func (clockJump) lasting() bool { return false }
func (clockJump) describe(f Fault) string {
	return fmt.Sprintf("%s %s", one(f), signed(time.Duration(f.Value)))
}
