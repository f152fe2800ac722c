// Package textgen is the toy language model of rbee: completions that are a pure function of
// (prompt, seed), drawn from a small vocabulary, with end-of-sequence at a seeded position.
//
// The simulator's engine, the real runtime's built-in CPU engine and the checkers all use it,
// so any engine regenerates the same tokens for the same request (what failover relies on)
// and a checker can tell, token by token, whether a completion is right, in simulation and on
// real processes alike.
package textgen

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"

	"github.com/rbee-sim/rbee-sim/orch/api"
)

// Vocab is the words tokens are drawn from, each with a leading space.
var Vocab = func() []string {
	words := []string{"the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on",
		"bee", "hive", "queen", "worker", "honey", "flower", "field", "sun", "wing", "wax", "comb",
		"swarm", "nectar", "pollen", "summer", "buzz", "dance", "home", "light", "day", "night",
		"small", "busy", "golden", "warm", "quiet", "over", "under", "with", "from", "she", "they",
		"flies", "builds", "finds", "brings", "sings", "waits", "turns", "grows", "keeps", "opens",
		"first", "last", "every", "each", "many", "one", "two", "three", "then", "."}
	for i, w := range words {
		words[i] = " " + w
	}
	return words
}()

// completionHash is the root of a completion's randomness: FNV-1a of the prompt and the seed.
func completionHash(prompt string, seed uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(prompt))
	var b [8]byte
	for i := range b {
		b[i] = byte(seed >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64()
}

// Tokens is the stream a completion's token texts come from: Next gives token 0, 1, 2, ...
type Tokens struct{ rng *rand.Rand }

// NewTokens starts the token stream of (prompt, seed).
func NewTokens(prompt string, seed uint64) *Tokens {
	return &Tokens{rng: rand.New(rand.NewPCG(completionHash(prompt, seed), 0x746f6b656e))} // "token"
}

// Next is the next token's text.
func (t *Tokens) Next() string { return Vocab[t.rng.IntN(len(Vocab))] }

// EOSPosition is how many tokens a completion has before its end-of-sequence, drawn from its
// own stream: geometric with mean eosMean (each token is the last with probability
// 1/eosMean), at least 1; 0 when eosMean is 0 or the end comes after maxTokens. The draw for
// a larger maxTokens extends the one for a smaller: the position does not depend on it.
func EOSPosition(prompt string, seed uint64, eosMean, maxTokens int) int {
	if eosMean <= 0 {
		return 0
	}
	rng := rand.New(rand.NewPCG(completionHash(prompt, seed), 0x656f73)) // "eos"
	for n := 1; n <= maxTokens; n++ {
		if rng.IntN(eosMean) == 0 {
			return n
		}
	}
	return 0
}

// Completion is the completion every engine with this eosMean gives for (prompt, seed,
// maxTokens) when nothing stops it: its token texts and its finish reason (stop at
// end-of-sequence, or length at maxTokens). An EOS exactly at maxTokens is a stop.
func Completion(prompt string, seed uint64, maxTokens, eosMean int) ([]string, api.FinishReason) {
	if maxTokens < 1 {
		panic(errors.New("textgen: Completion: maxTokens must be at least 1"))
	}
	n, reason := maxTokens, api.FinishLength
	if eos := EOSPosition(prompt, seed, eosMean, maxTokens); eos > 0 {
		n, reason = eos, api.FinishStop
	}
	tokens := NewTokens(prompt, seed)
	texts := make([]string, n)
	for i := range texts {
		texts[i] = tokens.Next()
	}
	return texts, reason
}
