package demo

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWeaknesses(t *testing.T) {
	srv := httptest.NewServer(Handler("tok"))
	defer srv.Close()
	get := func(path, auth string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String(), resp.Header
	}
	for _, tc := range []struct {
		path, auth string
		status     int
		contains   string
	}{
		{"/.git/config", "", 200, "repositoryformatversion"},
		{"/.env", "", 200, "DB_PASSWORD="},
		{"/starpipe-demo/vuln?id=1%27", "", 500, "STARPIPE-DEMO-SQL-ERROR"},
		{"/starpipe-demo/vuln?id=1", "", 200, "Product 1"},
		{"/admin/debug", "", 401, "unauthorized"},
		{"/admin/debug", "Bearer wrong", 401, "unauthorized"},
		{"/admin/debug", "Bearer tok", 200, "DEBUG=true"},
		{"/files/", "", 200, "Index of /files/"},
		{"/login", "", 200, `type="password"`},
		{"/app/admin/debug", "Bearer tok", 200, "DEBUG=true"},
		{"/app/admin/debug", "", 401, "unauthorized"},
	} {
		status, body, hdr := get(tc.path, tc.auth)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s (%s) = %d %q, want %d containing %q", tc.path, tc.auth, status, body, tc.status, tc.contains)
		}
		if hdr.Get("Server") == "" {
			t.Errorf("GET %s: no Server header", tc.path)
		}
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	err := Serve(t.Context(), "0.0.0.0:0", "tok", nil)
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("Serve on 0.0.0.0 = %v", err)
	}
}
