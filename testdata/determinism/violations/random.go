package violations

import (
	crand "crypto/rand" // want rand untyped
	mrand "math/rand"   // want rand untyped
	"math/rand/v2"
)

func draws(r *rand.Rand) {
	_ = rand.IntN(3)        // want rand untyped
	shuffle := rand.Shuffle // want rand untyped
	_ = shuffle
	_ = rand.New(rand.NewPCG(1, 2))
	_ = rand.NewChaCha8([32]byte{})
	_ = rand.NewZipf(r, 2, 1, 10)
	var _ rand.Source = rand.NewPCG(3, 4)
	_ = r.IntN(3)
	_ = mrand.Intn
	_ = crand.Read
}
