package sim

import "time"

// Epoch is the wall-clock time at simulated time zero.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ppmScale is one million parts per million.
const ppmScale = 1_000_000

// Clock is one node's wall clock: offset from true time by a skew, running fast or slow by a
// drift in parts per million, and able to jump. It is piecewise linear in true time.
type Clock struct {
	baseTrue  time.Duration // true time at the last rebase
	baseLocal time.Duration // local time (since Epoch) at the last rebase
	driftPPM  int64         // local seconds per true second = 1 + driftPPM/1e6
}

// Local is the clock's reading at true time t, as a duration since Epoch.
func (c *Clock) Local(t time.Duration) time.Duration {
	elapsed := t - c.baseTrue
	return c.baseLocal + elapsed + time.Duration(int64(elapsed)/ppmScale*c.driftPPM+int64(elapsed)%ppmScale*c.driftPPM/ppmScale)
}

// TrueDelay converts a local duration into the true duration it takes on this clock, rounded
// up so a timer never fires early by its own clock.
func (c *Clock) TrueDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	rate := ppmScale + c.driftPPM
	q := int64(d) / rate * ppmScale
	r := int64(d) % rate * ppmScale
	return time.Duration(q + (r+rate-1)/rate)
}

// SetSkew sets the clock so that it reads true time plus skew at true time now.
func (c *Clock) SetSkew(now, skew time.Duration) {
	c.baseTrue, c.baseLocal = now, now+skew
}

// Jump moves the clock by delta (negative: backwards) at true time now.
func (c *Clock) Jump(now, delta time.Duration) {
	c.baseLocal = c.Local(now) + delta
	c.baseTrue = now
}

// SetDrift changes the drift at true time now; the reading stays continuous.
func (c *Clock) SetDrift(now time.Duration, ppm int64) {
	if ppm <= -ppmScale/2 || ppm >= ppmScale {
		panic("sim: clock drift out of range (-500000, 1000000) ppm")
	}
	c.baseLocal = c.Local(now)
	c.baseTrue = now
	c.driftPPM = ppm
}

// DriftPPM is the clock's current drift.
func (c *Clock) DriftPPM() int64 { return c.driftPPM }

// Skew is how far the clock is ahead of true time at true time now.
func (c *Clock) Skew(now time.Duration) time.Duration { return c.Local(now) - now }
