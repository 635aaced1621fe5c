package spec

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/vault"
)

// testOptions are the admin bounds the spec tests validate with: two
// analysers, and 10.0.0.0/8 and ::1 allowed besides public addresses.
var testOptions = Options{
	Analyzers: []string{"gosec", "semgrep"},
	Network: netpolicy.New(netpolicy.Options{Allow: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}),
}

func TestWordlistName(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "top.txt"), []byte("www\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := testOptions
	opts.WordlistDir = dir
	tests := []struct{ name, want string }{
		{"top.txt", ""},
		{"../top.txt", "without a path"},
		{"/etc/passwd", "without a path"},
		{"missing.txt", "no word list"},
	}
	for _, tt := range tests {
		s := valid(finding.KindExternal)
		s.Amass.WordlistName = tt.name
		err := s.Validate(opts)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "amass.wordlist_name" || !strings.Contains(fe.Reason, tt.want) {
			t.Errorf("%s: %v, want amass.wordlist_name ~ %q", tt.name, err, tt.want)
		}
	}
}

type scopes map[string]vault.Scope

func (m scopes) CredentialScope(_ context.Context, name string) (vault.Scope, error) {
	sc, ok := m[name]
	if !ok {
		return vault.Scope{}, ErrUnknownCredential
	}
	return sc, nil
}

type hosts map[string][]netip.Addr

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestAdmit(t *testing.T) {
	opts := testOptions
	opts.Credentials = scopes{
		"app":    {Targets: []string{"https://app.example.com/api"}},
		"plain":  {Targets: []string{"http://legacy.example.com/"}, AllowHTTP: true},
		"legacy": {},
	}
	opts.Resolver = hosts{
		"app.example.com":    {netip.MustParseAddr("93.184.215.14")},
		"rebind.example.com": {netip.MustParseAddr("169.254.169.254")},
	}
	auth := func(cred string, urls ...string) Schedule {
		s := valid(finding.KindAuthenticated)
		s.Credential, s.Targets.URLs = cred, urls
		return s
	}
	tests := []struct {
		name         string
		s            Schedule
		field, would string
	}{
		{"under prefix", auth("app", "https://app.example.com/api/v1"), "", ""},
		{"prefix itself", auth("app", "https://app.example.com/api"), "", ""},
		{"plain http allowed", auth("plain", "http://legacy.example.com/x"), "", ""},
		{"unresolvable name passes", auth("app", "https://app.example.com/api"), "", ""},
		{"other host", auth("app", "https://evil.example.net/api"), "targets.urls[0]", `credential "app" may not be sent to https://evil.example.net/api`},
		{"segment boundary", auth("app", "https://app.example.com/apix"), "targets.urls[0]", "not under the credential's targets"},
		{"dot segments", auth("app", "https://app.example.com/api/../admin"), "targets.urls[0]", "not under"},
		{"other port", auth("app", "https://app.example.com:8443/api"), "targets.urls[0]", "not under"},
		{"http without allow_http", auth("app", "http://app.example.com/api"), "targets.urls[0]", "allow_http"},
		{"second target elsewhere", auth("app", "https://app.example.com/api", "https://evil.example.net/"), "targets.urls[1]", "may not be sent"},
		{"unknown credential", auth("nope", "https://app.example.com/api"), "credential", `no credential named "nope"`},
		{"credential without targets", auth("legacy", "https://app.example.com/api"), "credential", "has no targets"},
		{"name resolving to metadata", auth("app", "https://rebind.example.com/"), "targets.urls[0]", "resolves to 169.254.169.254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(opts); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err := Admit(context.Background(), tt.s, opts)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Admit = %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Reason, tt.would) {
				t.Fatalf("Admit = %v, want %s ~ %q", err, tt.field, tt.would)
			}
		})
	}
}
