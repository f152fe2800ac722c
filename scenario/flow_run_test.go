package scenario

import (
	"strings"
	"testing"
)

// TestControlTrafficCheckCatchesUnlimitedDownloads proves the control-traffic checker bites:
// provisioner/bandwidth-limit runs with the hives' limits removed overrun the machine's link,
// and the checker names the control message that waited behind the bodies.
func TestControlTrafficCheckCatchesUnlimitedDownloads(t *testing.T) {
	e, err := Lookup("provisioner/bandwidth-limit")
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 10; seed++ {
		sc := e.Generate(seed, Knobs{})
		sc.Provisioner = nil
		sc.Require = nil // the over-burst mark needs a limit
		res := Run(sc, Options{})
		for _, c := range res.Checkers {
			if strings.HasPrefix(c.Name, "heartbeats and other control traffic") && !c.OK {
				if !strings.Contains(c.Detail, "waited") {
					t.Fatalf("seed %d: the failure does not say what waited: %s", seed, c.Detail)
				}
				t.Logf("seed %d: %s", seed, c.Detail)
				return
			}
		}
	}
	t.Fatal("10 runs without a bandwidth limit never starved control traffic: the checker does not bite")
}
