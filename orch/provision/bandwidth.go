package provision

import "time"

// bucket is a token bucket of bytes. Tokens may go negative: a chunk already received is
// counted in full.
type bucket struct {
	tokens float64
	at     time.Time
}

// spend takes n bytes from the bucket at time now and returns how long to wait before reading
// more: 0 while tokens remain, else until the bucket is full again. A clock that jumps back
// adds nothing.
func (b *bucket) spend(now time.Time, n int64, cfg Config) time.Duration {
	rate := float64(cfg.BandwidthBytesPerSec)
	if rate == 0 {
		return 0
	}
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(float64(cfg.BurstBytes), b.tokens+dt.Seconds()*rate)
	}
	b.at = now
	b.tokens -= float64(n)
	if b.tokens > 0 {
		return 0
	}
	return time.Duration((float64(cfg.BurstBytes) - b.tokens) / rate * float64(time.Second))
}
