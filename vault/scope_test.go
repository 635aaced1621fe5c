package vault

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScopePermits(t *testing.T) {
	s := Scope{Targets: []string{"https://app.example.com/api", "https://admin.example.com:8443/", "http://legacy.example.com/x/"}, AllowHTTP: true}
	tests := []struct {
		target string
		ok     bool
	}{
		{"https://app.example.com/api", true},
		{"https://app.example.com/api/", true},
		{"https://app.example.com/api/v1/users", true},
		{"https://APP.example.com./api", true},
		{"https://app.example.com:443/api", true},
		{"https://app.example.com/apix", false},
		{"https://app.example.com/", false},
		{"https://app.example.com/api/../admin", false},
		{"https://app.example.com/api/%2e%2e/admin", false},
		{"http://app.example.com/api", false},
		{"https://app.example.com:444/api", false},
		{"https://app.example.com.evil.net/api", false},
		{"https://evil.net/https://app.example.com/api", false},
		{"https://user@app.example.com/api", false},
		{"https://admin.example.com:8443/anything", true},
		{"https://admin.example.com/anything", false},
		{"http://legacy.example.com/x", true},
		{"http://legacy.example.com/x/y", true},
		{"http://legacy.example.com/y", false},
		{"legacy.example.com:80", false}, // host:port is http://host:port/, not under /x/
		{"ftp://app.example.com/api", false},
	}
	for _, tt := range tests {
		if err := s.Permits(tt.target); (err == nil) != tt.ok {
			t.Errorf("Permits(%s) = %v, want ok=%v", tt.target, err, tt.ok)
		}
	}
	if err := (Scope{}).Permits("https://app.example.com/"); !errors.Is(err, ErrNoTargets) {
		t.Errorf("empty scope: %v, want ErrNoTargets", err)
	}
	noHTTP := Scope{Targets: []string{"https://app.example.com/"}}
	if err := noHTTP.Permits("http://app.example.com/"); err == nil || !strings.Contains(err.Error(), "allow_http") {
		t.Errorf("http without allow_http: %v", err)
	}
}

func TestScopeValidate(t *testing.T) {
	tests := []struct {
		s     Scope
		field string
	}{
		{Scope{Targets: []string{"https://a.example/"}}, ""},
		{Scope{Targets: []string{"http://a.example/"}, AllowHTTP: true}, ""},
		{Scope{}, "targets"},
		{Scope{Targets: []string{"http://a.example/"}}, "targets[0]"},
		{Scope{Targets: []string{"https://a.example/", "a.example"}}, "targets[1]"},
		{Scope{Targets: []string{"https://u:p@a.example/"}}, "targets[0]"},
		{Scope{Targets: []string{"https://a.example/?q=1"}}, "targets[0]"},
		{Scope{Targets: []string{"https:///x"}}, "targets[0]"},
	}
	for _, tt := range tests {
		err := tt.s.Validate("c")
		var ce *CredentialError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%v: %v", tt.s, err)
		case tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field):
			t.Errorf("%v: %v, want field %s", tt.s, err, tt.field)
		}
	}
}

// TestCheckRedirect follows real redirects between two loopback servers
// (two origins: same address, different ports): the credential's header
// reaches the target and a same-origin redirect, never the other origin.
func TestCheckRedirect(t *testing.T) {
	seen := map[string]string{}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen["other"+r.URL.Path] = r.Header.Get("X-Api-Key") + "|" + r.Header.Get("Authorization")
	}))
	defer other.Close()
	var target *httptest.Server
	target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen["target"+r.URL.Path] = r.Header.Get("X-Api-Key")
		switch r.URL.Path {
		case "/app/start":
			http.Redirect(w, r, target.URL+"/app/next", http.StatusFound)
		case "/app/next":
			http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
		case "/app/outside":
			http.Redirect(w, r, "/private", http.StatusFound)
		}
	}))
	defer target.Close()

	c := Credential{Name: "gw", Kind: KindHeader, HeaderName: "X-Api-Key", Secret: Secret("k-1"),
		Targets: []string{target.URL + "/app"}, AllowHTTP: true}
	client := &http.Client{CheckRedirect: c.CheckRedirect(nil)}
	hdrs, err := c.Headers()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/app/start", "/app/outside"} {
		req, _ := http.NewRequest(http.MethodGet, target.URL+path, nil)
		name, value, _ := strings.Cut(hdrs[0], ": ")
		req.Header.Set(name, value)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := map[string]string{
		"target/app/start":   "k-1",
		"target/app/next":    "k-1", // same origin, under the prefix
		"other/landing":      "|",   // another origin: nothing
		"target/app/outside": "k-1",
		"target/private":     "", // same origin, outside the prefix
	}
	for k, v := range want {
		if got, ok := seen[k]; !ok || got != v {
			t.Errorf("%s saw %q (requested: %v), want %q", k, got, ok, v)
		}
	}
}
