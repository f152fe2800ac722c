package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/real/auth"
	"github.com/rbee-sim/rbee-sim/real/wire"
)

// getJSON GETs path from the queen's public API into v, turning an error body into a message
// that says what to do.
func getJSON(c commonFlags, path string, v any) error {
	req, err := http.NewRequest("GET", c.queenURL+path, nil)
	if err != nil {
		return fmt.Errorf("bad --queen-url %q: %v", c.queenURL, err)
	}
	auth.SetBearer(req, firstKey())
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the queen at %s: %v; is queen-rbee running there? (set --queen-url or RBEE_QUEEN_URL)", c.queenURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		if e, ok := wire.ReadError(body); ok {
			return e
		}
		return fmt.Errorf("the queen answered %s: %.200s", resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the queen's answer to %s is not what this rbee-keeper (version %s) reads: %v", path, version, err)
	}
	return nil
}

func workersCmd(args []string, stdout, stderr io.Writer) int {
	var c commonFlags
	fs := flag.NewFlagSet("workers", flag.ContinueOnError)
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the registry as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	var out struct {
		Workers []api.WorkerRecord `json:"workers"`
		Epoch   uint64             `json:"epoch"`
	}
	if err := getJSON(c, "/v1/workers", &out); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper workers:", err)
		return 3
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(out)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tHIVE\tMODEL\tDEVICE\tSLOTS\tSTATE\tHEALTH")
	for _, w := range out.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", w.ID, w.Hive, w.Model, w.Capability, w.Slots, w.State, w.Health)
	}
	tw.Flush()
	if len(out.Workers) == 0 {
		fmt.Fprintln(stderr, "no workers registered: start a hive with --worker (see the README)")
	}
	return 0
}

func modelsCmd(args []string, stdout, stderr io.Writer) int {
	var c commonFlags
	fs := flag.NewFlagSet("models", flag.ContinueOnError)
	c.register(fs)
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := getJSON(c, "/v1/models", &out); err != nil {
		fmt.Fprintln(stderr, "rbee-keeper models:", err)
		return 3
	}
	for _, m := range out.Data {
		fmt.Fprintln(stdout, m.ID)
	}
	return 0
}
