package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rbee-sim/rbee-sim/scenario"
)

// CanaryPlant is one planted bug's line in the canary's report (rbee-sim canary).
type CanaryPlant struct {
	Plant    string  `json:"plant"`
	Breaks   string  `json:"breaks"`
	Scenario string  `json:"scenario"`
	Budget   uint64  `json:"budget_seeds"`
	Caught   bool    `json:"caught"`
	Seed     uint64  `json:"seed,omitempty"`
	Seeds    uint64  `json:"seeds_run"`
	Seconds  float64 `json:"seconds"`
	Stage    string  `json:"stage,omitempty"`
	Checker  string  `json:"checker,omitempty"`
	Detail   string  `json:"detail,omitempty"`
	Faults   int     `json:"faults,omitempty"`
	// Shrunk is the minimised reproduction's size (scenario.Shrink).
	Shrunk *scenario.ShrinkStats `json:"shrunk,omitempty"`
	// Folder is the caught failure's folder, relative to the folder of the report that holds
	// this line (canary.json's, or a soak report's that includes it).
	Folder  string `json:"folder,omitempty"`
	Replay  string `json:"replay,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// OK says the plant was caught within its budget, by a run that was not invalid.
func (p CanaryPlant) OK() bool { return p.Caught && p.Problem == "" }

// CanaryReport is canary.json.
type CanaryReport struct {
	Plants    []CanaryPlant `json:"plants"`
	CaughtAll bool          `json:"caught_all"`
}

// Caught counts the plants caught.
func (c *CanaryReport) Caught() int {
	n := 0
	for _, p := range c.Plants {
		if p.OK() {
			n++
		}
	}
	return n
}

// WriteCanary writes canary.json into dir.
func WriteCanary(dir string, c *CanaryReport) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("canary: cannot create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "canary.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("canary: cannot write %s: %w", path, err)
	}
	return path, nil
}

// ReadCanary reads a canary report (canary.json, or the folder that holds it) for a report
// written into out: each plant's failure folder is made relative to out.
func ReadCanary(path, out string) (*CanaryReport, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "canary.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the canary report: %w", err)
	}
	var c CanaryReport
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s is not a canary report (rbee-sim canary writes canary.json): %w", path, err)
	}
	if len(c.Plants) == 0 {
		return nil, fmt.Errorf("%s lists no planted bug: not a canary report", path)
	}
	for i, p := range c.Plants {
		if p.Folder != "" {
			c.Plants[i].Folder = relativeTo(out, filepath.Join(filepath.Dir(path), p.Folder))
		}
	}
	return &c, nil
}

// relativeTo names path relative to dir when it can, with forward slashes (for links).
func relativeTo(dir, path string) string {
	if rel, err := filepath.Rel(dir, path); err == nil {
		return filepath.ToSlash(rel)
	}
	return filepath.ToSlash(path)
}
