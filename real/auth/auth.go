// Package auth is the bearer-key authentication of every HTTP endpoint between rbee
// components and of the public API.
//
// Every request carries "Authorization: Bearer <key>"; a server accepts any key of its
// Keys, compared in constant time. Keys are never logged: logs and errors show a key's
// Fingerprint (the first 8 bytes of its sha256, in hex). Without keys a server runs only in
// an explicit dev mode, and then only on a loopback address, answering only loopback peers.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// CodeUnauthorized is the error code of a request without a valid key (HTTP 401).
const CodeUnauthorized api.Code = "UNAUTHORIZED"

// Policy is a server's authentication setting.
type Policy struct {
	// Keys are the accepted API keys. Empty means no key is accepted, which is only allowed in
	// DevMode.
	Keys []string
	// DevMode lets a server without keys run, bound to loopback, answering loopback peers
	// only. Never set it in production.
	DevMode bool
}

// MinKeyLen is the shortest key accepted: a shorter one is too easy to guess.
const MinKeyLen = 16

// KeysFromEnv reads keys from an environment variable: one or more keys separated by commas
// (so a key can be rotated: old and new are both accepted while clients move over).
func KeysFromEnv(name string) []string {
	var keys []string
	for _, k := range strings.Split(os.Getenv(name), ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Validate checks the keys' length and that a keyless policy is in dev mode.
func (p Policy) Validate() error {
	for _, k := range p.Keys {
		if len(k) < MinKeyLen {
			return fmt.Errorf("auth: key %s is %d characters long; use at least %d random characters (for example: openssl rand -hex 24)",
				Fingerprint(k), len(k), MinKeyLen)
		}
	}
	if len(p.Keys) == 0 && !p.DevMode {
		return errors.New("auth: no API key is set: set RBEE_API_KEY (for example to the output of openssl rand -hex 24), or pass --dev to run on loopback without keys")
	}
	return nil
}

// CheckBind refuses to listen on a non-loopback address without a key. addr is host:port as
// given to net.Listen; an empty host (":8080") means every interface and is not loopback.
func (p Policy) CheckBind(addr string) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if len(p.Keys) > 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("auth: bad listen address %q: %v", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("auth: refusing to listen on %s without an API key: anyone who can reach it could run inference and manage workers; set RBEE_API_KEY, or listen on 127.0.0.1 in dev mode", addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Fingerprint names a key in logs: "key:" and the first 8 bytes of its sha256 in hex.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "key:" + hex.EncodeToString(sum[:8])
}

// Check says whether a request may pass: a valid bearer key, or, in keyless dev mode, a
// loopback peer.
func (p Policy) Check(r *http.Request) error {
	if len(p.Keys) == 0 {
		if !p.DevMode {
			return errors.New("this server has no API keys configured and is not in dev mode")
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil || !isLoopbackHost(host) {
			return fmt.Errorf("dev mode answers loopback clients only, not %s", r.RemoteAddr)
		}
		return nil
	}
	h := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || key == "" {
		return errors.New("the request has no Authorization: Bearer <key> header")
	}
	if !p.accepts(key) {
		return fmt.Errorf("key %s is not accepted by this server", Fingerprint(key))
	}
	return nil
}

// accepts compares key with every configured key in constant time (also across keys: no
// early exit that would tell which key came close).
func (p Policy) accepts(key string) bool {
	given := sha256.Sum256([]byte(key))
	match := 0
	for _, k := range p.Keys {
		want := sha256.Sum256([]byte(k))
		match |= subtle.ConstantTimeCompare(given[:], want[:])
	}
	return match == 1
}

// Middleware answers 401 with the standard error body to a request that fails Check, and
// hands the others to next. The key itself never reaches a log.
func (p Policy) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.Check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rbee"`)
			wire.WriteError(w, http.StatusUnauthorized, api.Error{
				Code:       CodeUnauthorized,
				Message:    err.Error(),
				Suggestion: "send the cluster's API key as Authorization: Bearer <key> (rbee tools read it from RBEE_API_KEY)",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetBearer adds the key to an outgoing request; an empty key adds nothing (dev mode).
func SetBearer(r *http.Request, key string) {
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
}
