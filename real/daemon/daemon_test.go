package daemon

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A command that runs Serve on a goroutine and defers Close (rbee-keeper's hive client) closes
// the daemon from two goroutines at once: both return, nothing races, and a Serve after Close
// serves nothing.
func TestServeAndCloseFromTwoGoroutines(t *testing.T) {
	t.Setenv(KeyEnv, "")
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
