package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// Config configures a Transport.
type Config struct {
	// Advertise is this process's base URL as its peers reach it, e.g.
	// "http://10.0.0.5:7833": where Handler is served. Empty means this process only sends
	// (nobody learns a route back to it).
	Advertise string
	// Peers are static routes: address -> base URL of the process that runs it. They win
	// over learned routes and are never replaced.
	Peers map[node.Addr]string
	// Key is the bearer key sent with every POST. Empty in keyless dev mode.
	Key string
	// Policy says who may send to this process (Handler checks it).
	Policy auth.Policy
	// Registry turns messages into envelopes and back. Nil means wire.Default.
	Registry *wire.Registry
	// Logger receives the transport's logs. Nil means discard.
	Logger *slog.Logger
	// Local reports whether an address is a node or port of this process (real.Runtime.Has).
	// Required.
	Local func(node.Addr) bool
	// Addrs lists this process's addresses (real.Runtime.Addrs), gossiped to peers at
	// Advertise. Nil means only the senders of messages become known, to their receivers.
	Addrs func() []node.Addr
	// Deliver hands a message that came from another process, or a PeerGone, to this
	// process (real.Runtime.Deliver). Required; must not block.
	Deliver func(from, to node.Addr, m node.Msg)
	// Client sends the POSTs. Nil means a client of its own with keep-alive connections, no
	// proxy, a 2 s connect timeout and a 10 s timeout per POST.
	Client *http.Client
}

// Limits of the protocol.
const (
	// EnvelopesPath is where batches are POSTed, under a peer's base URL.
	EnvelopesPath = "/rbee/v1/envelopes"
	// HealthPath answers GET without authentication.
	HealthPath = "/rbee/v1/health"
	// RefusedHeader names the index of the envelope a 400 answer refused.
	RefusedHeader = "Rbee-Refused-Envelope"

	maxBatchEnvelopes = 256
	maxBatchBytes     = 1 << 20  // a batch stops growing past this many bytes of envelopes
	maxBodyBytes      = 16 << 20 // the receiver refuses a larger body
	maxEnvelopeBytes  = maxBodyBytes - 1<<20
	maxQueued         = 1 << 16 // messages waiting for one peer
	maxQueuedBytes    = 64 << 20
	maxTries          = 3
	requestTimeout    = 10 * time.Second
	dialTimeout       = 2 * time.Second
)

// retryDelays are the waits before the second and third try of a POST: the three tries
// take about 300 ms against a peer that refuses connections at once.
var retryDelays = [maxTries - 1]time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// Validate reports everything wrong with the config.
func (c Config) Validate() error {
	var errs []error
	if c.Advertise != "" {
		if _, err := baseURL(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("Advertise: %w", err))
		}
	}
	addrs := make([]node.Addr, 0, len(c.Peers))
	for a := range c.Peers {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		if a == "" {
			errs = append(errs, errors.New("Peers has an empty address: every route needs the address it leads to"))
			continue
		}
		if _, err := baseURL(c.Peers[a]); err != nil {
			errs = append(errs, fmt.Errorf("Peers[%q]: %w", a, err))
		}
	}
	if c.Key != "" && len(c.Key) < auth.MinKeyLen {
		errs = append(errs, fmt.Errorf("Key %s is %d characters long; peers refuse keys shorter than %d: use the cluster's key (RBEE_API_KEY)",
			auth.Fingerprint(c.Key), len(c.Key), auth.MinKeyLen))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Policy: %w", err))
	}
	if c.Local == nil {
		errs = append(errs, errors.New("Local is nil: set it to the runtime's Has, so that incoming messages for other processes are not taken"))
	}
	if c.Deliver == nil {
		errs = append(errs, errors.New("Deliver is nil: set it to the runtime's Deliver, so that incoming messages reach their nodes"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("transport config: %w", errors.Join(errs...))
	}
	return nil
}

// baseURL checks and normalizes a peer's base URL: http or https, a host, no credentials,
// query or fragment, no trailing slash.
func baseURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a URL (%v): want a base URL like http://10.0.0.5:7833", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q has scheme %q: want http:// or https://, like http://10.0.0.5:7833", s, u.Scheme)
	case u.Host == "":
		return "", fmt.Errorf("%q has no host: want a base URL like http://10.0.0.5:7833", s)
	case u.User != nil:
		return "", fmt.Errorf("%q carries credentials: remove them; the key goes in Config.Key, never in a URL", redact(u))
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q has a query or fragment: want a plain base URL like http://10.0.0.5:7833", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return "", fmt.Errorf("%q has an empty port: want a base URL like http://10.0.0.5:7833", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
