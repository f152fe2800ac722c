package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const key = "0123456789abcdef0123"

func TestPolicy(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	cases := []struct {
		name   string
		p      Policy
		remote string
		bearer string
		want   int
	}{
		{"right key", Policy{Keys: []string{"other-key-0000000000", key}}, "10.0.0.1:5", key, 204},
		{"wrong key", Policy{Keys: []string{key}}, "10.0.0.1:5", key + "x", 401},
		{"no key", Policy{Keys: []string{key}}, "127.0.0.1:5", "", 401},
		{"dev loopback", Policy{DevMode: true}, "127.0.0.1:5", "", 204},
		{"dev remote", Policy{DevMode: true}, "10.0.0.1:5", "", 401},
		{"no keys no dev", Policy{}, "127.0.0.1:5", "", 401},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/v1/workers", nil)
		r.RemoteAddr = c.remote
		SetBearer(r, c.bearer)
		w := httptest.NewRecorder()
		c.p.Middleware(ok).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, w.Code, c.want, w.Body)
		}
		if w.Code == 401 {
			if !strings.Contains(w.Body.String(), `"code":"UNAUTHORIZED"`) {
				t.Errorf("%s: 401 without the error body: %s", c.name, w.Body)
			}
			if c.bearer != "" && strings.Contains(w.Body.String(), c.bearer) {
				t.Errorf("%s: the answer shows the key: %s", c.name, w.Body)
			}
		}
	}
}

func TestCheckBind(t *testing.T) {
	if err := (Policy{DevMode: true}).CheckBind("0.0.0.0:8080"); err == nil {
		t.Error("a keyless server may listen on every interface")
	}
	if err := (Policy{DevMode: true}).CheckBind(":8080"); err == nil {
		t.Error("a keyless server may listen on :8080")
	}
	if err := (Policy{DevMode: true}).CheckBind("127.0.0.1:8080"); err != nil {
		t.Errorf("dev mode on loopback refused: %v", err)
	}
	if err := (Policy{}).CheckBind("127.0.0.1:8080"); err == nil {
		t.Error("a keyless server outside dev mode was allowed")
	}
	if err := (Policy{Keys: []string{key}}).CheckBind("0.0.0.0:8080"); err != nil {
		t.Errorf("a keyed server refused a public address: %v", err)
	}
	if err := (Policy{Keys: []string{"short"}}).CheckBind("127.0.0.1:1"); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("a short key: %v (must be refused without showing the key)", err)
	}
}
