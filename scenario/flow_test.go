package scenario

import (
	"testing"
	"time"
)

// steady is n arrivals of size bytes, every gap.
func steady(start time.Duration, n int, size int64, gap time.Duration) []arrival {
	var out []arrival
	for i := range n {
		out = append(out, arrival{at: start + time.Duration(i)*gap, bytes: size})
	}
	return out
}

// TestWorstWindow: a steady stream at the limit passes; a burst of up to the slack passes; a
// stream 10% over the limit fails over a long window though every one-second window is within
// limit plus slack; a short spike fails as a one-second window; the window it names holds the
// bytes it says.
func TestWorstWindow(t *testing.T) {
	const limit, chunk = 1 << 20, 64 << 10
	ms := time.Millisecond
	atLimit := steady(0, 160, chunk, 62500*time.Microsecond) // 16 chunks a second = 1 MiB/s
	if w, ok := worstWindow(atLimit, limit, chunk); !ok {
		t.Fatalf("a stream at the limit failed: %+v", w)
	}
	burst := append(steady(0, 8, chunk, ms), steady(2*time.Second, 160, chunk, 62500*time.Microsecond)...)
	if w, ok := worstWindow(burst, limit, 8*chunk+chunk); !ok {
		t.Fatalf("a burst within the slack failed: %+v", w)
	}
	over := steady(0, 600, chunk, 56818*time.Microsecond) // 1.1 MiB/s for about 34 s
	w, ok := worstWindow(over, limit, 2*chunk)
	if ok {
		t.Fatal("a stream 10% over the limit passed")
	}
	if w.length <= time.Second || w.bytes <= w.allowed {
		t.Fatalf("over the limit: window %+v should be longer than a second and hold more than allowed", w)
	}
	spike := append(steady(0, 16, chunk, 62500*time.Microsecond), steady(time.Second+100*ms, 20, chunk, ms)...)
	w, ok = worstWindow(spike, limit, 2*chunk)
	if ok {
		t.Fatal("a spike of 20 chunks in 20 ms after a second at the limit passed")
	}
	var sum int64
	for _, a := range spike {
		if a.at > w.from && a.at <= w.to {
			sum += a.bytes
		}
	}
	if sum != w.bytes || w.bytes <= w.allowed {
		t.Fatalf("window %+v: holds %d bytes by recount", w, sum)
	}
	if _, ok := worstWindow(nil, limit, 0); !ok {
		t.Fatal("no arrivals failed")
	}
}
