package nuclei_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starpipe/starpipe/scan/internal/dnstest"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
)

// redirectTemplates follow redirects, in the standard client and in the
// raw (unsafe) one, and match anything, so that a request that reaches
// the redirect's target would be seen there.
const redirectTemplates = `id: starpipe-test-follow
info:
  name: follows redirects
  author: starpipe
  severity: info
http:
  - method: GET
    path:
      - "{{BaseURL}}/go"
    redirects: true
    max-redirects: 3
    matchers:
      - type: status
        status: [200, 302, 404]
`

const rawRedirectTemplate = `id: starpipe-test-follow-raw
info:
  name: follows redirects (raw)
  author: starpipe
  severity: info
http:
  - raw:
      - |
        GET /go HTTP/1.1
        Host: {{Hostname}}

    unsafe: true
    redirects: true
    max-redirects: 3
    matchers:
      - type: status
        status: [200, 302, 404]
`

// countingServer serves HTTP on ip and counts the connections it
// accepts and the requests carrying header h.
type countingServer struct {
	url      string
	conns    atomic.Int64
	mu       sync.Mutex
	requests []http.Header
}

func newCountingServer(t *testing.T, ip string, h http.Handler) *countingServer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingServer{url: "http://" + ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cs.mu.Lock()
			cs.requests = append(cs.requests, r.Header.Clone())
			cs.mu.Unlock()
			if h != nil {
				h.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(http.StatusOK)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				cs.conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return cs
}

func (c *countingServer) headers() []http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]http.Header(nil), c.requests...)
}

func redirectTemplateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"follow.yaml": redirectTemplates, "follow-raw.yaml": rawRedirectTemplate} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runJob runs a nuclei job in the scanner with the given network policy.
func runJob(t *testing.T, cfg nuclei.Config, network *scanexec.Network) error {
	t.Helper()
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: t.TempDir()}
	return r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: &cfg, Network: network}, &bytes.Buffer{})
}

// TestPolicyRefusesAddressesAtConnectTime checks that the scanner never
// connects to an address the network policy refuses, whether a redirect
// of an allowed target or a target name's DNS answer leads there; with a
// policy that allows it, the same scans do connect (so the counter can
// see a connection).
func TestPolicyRefusesAddressesAtConnectTime(t *testing.T) {
	only1 := &scanexec.Network{Allow: []string{"127.0.0.1/32"}, DenyPublic: true}
	all := &scanexec.Network{Allow: []string{"127.0.0.0/8"}, DenyPublic: true}
	tmpl := redirectTemplateDir(t)

	for _, tc := range []struct {
		name    string
		network *scanexec.Network
		want    bool // a connection to 127.0.0.2 expected
	}{
		{"refused", only1, false},
		{"allowed", all, true},
	} {
		t.Run("redirect/"+tc.name, func(t *testing.T) {
			forbidden := newCountingServer(t, "127.0.0.2", nil)
			origin := newCountingServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, forbidden.url+"/landed", http.StatusFound)
			}))
			if err := runJob(t, nuclei.Config{Targets: []string{origin.url}, TemplateDirs: []string{tmpl}, Timeout: time.Minute}, tc.network); err != nil {
				t.Fatalf("scan: %v", err)
			}
			if origin.conns.Load() == 0 {
				t.Fatal("the allowed target was never reached: the test proves nothing")
			}
			if got := forbidden.conns.Load() > 0; got != tc.want {
				t.Errorf("connections to 127.0.0.2 after a redirect: %d, want any: %v", forbidden.conns.Load(), tc.want)
			}
		})
		t.Run("dns/"+tc.name, func(t *testing.T) {
			forbidden := newCountingServer(t, "127.0.0.2", nil)
			resolver := dnstest.Serve(t, "127.0.0.1", &dnstest.Zone{Apex: "starpipe.test.", A: map[string]string{"evil.starpipe.test.": "127.0.0.2"}})
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(forbidden.url, "http://"))
			target := "http://evil.starpipe.test:" + port
			if err := runJob(t, nuclei.Config{Targets: []string{target}, TemplateDirs: []string{tmpl}, Resolvers: []string{resolver}, Timeout: time.Minute}, tc.network); err != nil {
				t.Fatalf("scan: %v", err)
			}
			if got := forbidden.conns.Load() > 0; got != tc.want {
				t.Errorf("connections to 127.0.0.2 (the name's address): %d, want any: %v", forbidden.conns.Load(), tc.want)
			}
		})
	}
}

// TestPolicyRefusesLiteralTargetAndResolver checks that a refused address
// given directly, as a target or as a resolver, fails the scan instead of
// producing an empty (clean-looking) result.
func TestPolicyRefusesLiteralTargetAndResolver(t *testing.T) {
	only1 := &scanexec.Network{Allow: []string{"127.0.0.1/32"}, DenyPublic: true}
	forbidden := newCountingServer(t, "127.0.0.2", nil)
	tmpl := redirectTemplateDir(t)
	for name, cfg := range map[string]nuclei.Config{
		"target":   {Targets: []string{forbidden.url}, TemplateDirs: []string{tmpl}},
		"resolver": {Targets: []string{"http://127.0.0.1:1"}, TemplateDirs: []string{tmpl}, Resolvers: []string{"127.0.0.2:53"}},
		"metadata": {Targets: []string{"http://169.254.169.254/latest/meta-data/"}, TemplateDirs: []string{tmpl}},
	} {
		t.Run(name, func(t *testing.T) {
			err := runJob(t, cfg, only1)
			if err == nil || !strings.Contains(err.Error(), "not in scan.allow_networks") {
				t.Fatalf("scan error = %v, want a refusal naming scan.allow_networks", err)
			}
		})
	}
	if n := forbidden.conns.Load(); n != 0 {
		t.Errorf("%d connections to the refused target", n)
	}
}

// TestCredentialNotSentAcrossRedirect checks that an authenticated scan's
// headers never reach another host through a redirect, in the standard
// and the raw client. Without a credential the same templates do follow
// the redirect to that host: the control that the test can fail.
func TestCredentialNotSentAcrossRedirect(t *testing.T) {
	all := &scanexec.Network{Allow: []string{"127.0.0.0/8"}, DenyPublic: true}
	tmpl := redirectTemplateDir(t)
	const secret = "sp-redirect-secret-91b2"
	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"anonymous", nil},
		{"authenticated", []string{"X-Api-Key: " + secret, "Authorization: Bearer " + secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := newCountingServer(t, "127.0.0.2", nil)
			origin := newCountingServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.url+"/landed", http.StatusFound)
			}))
			if err := runJob(t, nuclei.Config{Targets: []string{origin.url}, TemplateDirs: []string{tmpl}, Headers: tc.headers, Timeout: time.Minute}, all); err != nil {
				t.Fatalf("scan: %v", err)
			}
			if tc.headers != nil {
				sawKey := false
				for _, h := range origin.headers() {
					sawKey = sawKey || h.Get("X-Api-Key") == secret
				}
				if !sawKey {
					t.Fatal("the target itself never got the credential: the test proves nothing")
				}
			}
			got := other.headers()
			for _, h := range got {
				for k, vs := range h {
					for _, v := range vs {
						if strings.Contains(v, secret) {
							t.Errorf("the other host received the credential in %s", k)
						}
					}
				}
			}
			switch {
			case tc.headers == nil && len(got) == 0:
				t.Error("anonymous scan did not follow the redirect: the authenticated case proves nothing")
			case tc.headers != nil && len(got) > 0:
				t.Errorf("authenticated scan followed a redirect to another host (%d requests)", len(got))
			}
		})
	}
}
