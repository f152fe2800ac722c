package daemon

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A command that runs Serve on a goroutine and defers Close (rbee-keeper's hive client) closes
// the daemon from two goroutines at once: both return, nothing races, and a Serve after Close
// serves nothing.
func TestServeAndCloseFromTwoGoroutines(t *testing.T) {
	t.Setenv(KeyEnv, "")
	t.Setenv(ClusterKeyEnv, "")
	d, err := Start(Options{Name: "test", DataDir: t.TempDir(), Listen: "127.0.0.1:0", Dev: true, LogLevel: "error"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := client.Get(d.URL + "/rbee/v1/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never answered at %s: %v", d.URL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	d.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	d.Close()
	if err := d.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Close: %v, want nil at once", err)
	}
	if _, err := client.Get(d.URL + "/rbee/v1/health"); err == nil {
		t.Error("the daemon still answers after Close")
	}
}

// The public API's key and the cluster's key are kept apart when both are set: a client of
// the public API cannot post envelopes as a component. One of them alone serves both.
func TestAPIAndClusterKeys(t *testing.T) {
	const apiKey, clusterKey = "api-key-0123456789abcdef", "cluster-key-0123456789abcdef"
	post := func(d *D, key string) int {
		req, _ := http.NewRequest("POST", d.URL+"/rbee/v1/envelopes", strings.NewReader(`{"envelopes":[]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	start := func(api, cluster string) *D {
		t.Setenv(KeyEnv, api)
		t.Setenv(ClusterKeyEnv, cluster)
		d, err := Start(Options{Name: "test", DataDir: t.TempDir(), Listen: "127.0.0.1:0", LogLevel: "error"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go d.Serve(ctx)
		t.Cleanup(func() { cancel(); d.Close() })
		return d
	}
	both := start(apiKey, clusterKey)
	if got := post(both, apiKey); got != http.StatusUnauthorized {
		t.Errorf("the API key posted envelopes: status %d, want 401", got)
	}
	if got := post(both, clusterKey); got == http.StatusUnauthorized {
		t.Errorf("the cluster key was refused by the transport")
	}
	if both.Key != clusterKey || len(both.Policy.Keys) != 1 || both.Policy.Keys[0] != apiKey {
		t.Errorf("sends %q, API policy %v: want the cluster key sent and the API key for the API", both.Key, both.Policy.Keys)
	}
	one := start(apiKey, "")
	if got := post(one, apiKey); got == http.StatusUnauthorized || one.Key != apiKey {
		t.Errorf("with RBEE_API_KEY alone the transport refused it (%d) or sends %q", got, one.Key)
	}
}
