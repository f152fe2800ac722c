package sqlitevfs

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
)

// DeterministicRandom returns a reader of an endless ChaCha8 stream seeded by seed, safe for
// concurrent use. SQLite draws its randomness (the rollback journal's nonce, random(),
// randomblob(), super-journal names) from crypto/rand.Reader, which the library reads directly
// on every draw; a simulation process sets
//
//	rand.Reader = sqlitevfs.DeterministicRandom(seed) // crypto/rand
//
// once at start, before any SQLite call, so that the bytes SQLite writes to the disk depend
// on the run seed only. Never do so in a process that also needs real cryptographic keys.
// In a test, testing/cryptotest.SetGlobalRandom(t, seed) does the same and undoes it.
func DeterministicRandom(seed uint64) io.Reader {
	var s [32]byte
	copy(s[:], "rbee-sim sqlite random ")
	binary.LittleEndian.PutUint64(s[24:], seed)
	return &lockedChaCha8{c: rand.NewChaCha8(s)}
}

type lockedChaCha8 struct {
	mu sync.Mutex
	c  *rand.ChaCha8
}

// Read fills p and never fails.
func (r *lockedChaCha8) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c.Read(p)
}
