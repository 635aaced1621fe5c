package main

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

func TestCheckServerURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		want     string // error substring; empty: accepted
	}{
		{"https://starpipe.example.com", false, ""},
		{"https://starpipe.example.com/", false, ""},
		{"http://127.0.0.1:8080", false, ""},
		{"http://127.1.2.3:8080", false, ""},
		{"http://[::1]:8080/", false, ""},
		{"http://localhost:8080", false, ""},
		{"http://LOCALHOST:8080", false, ""},
		{"http://starpipe.example.com", false, "refusing to send the API token over plain http"},
		{"http://10.0.0.5:8080", false, "--insecure"},
		{"http://[2001:db8::1]:8080", false, "not a loopback address"},
		{"http://0.0.0.0:8080", false, "not a loopback address"},
		{"http://localhost.example.com", false, "not a loopback address"},
		{"http://starpipe.example.com", true, ""},
		{"ftp://starpipe.example.com", false, "want https or http"},
		{"starpipe.example.com:8080", false, "want a URL"},
		{"127.0.0.1:8080", false, "--server"},
		{"https://user:pw@starpipe.example.com", false, "not in the URL"},
		{"https://", false, "want a URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := checkServerURL(tc.url, tc.insecure)
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error shows URL credentials: %v", err)
			}
		})
	}
}

// uploadServer answers POST /v1/runs like the daemon and counts requests
// that carried the token.
func uploadServer(hits *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer secret-token" {
			hits.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/runs" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"id":"run-1"}`)
	})
}

func sarifFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "empty.sarif")
	if err := os.WriteFile(p, []byte(`{"version":"2.1.0","runs":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIngestServerRefusesPlainHTTPToRemoteHost(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1: nothing is dialled, the check comes first.
	_, stderr, code := run(t, "", "ingest", "--server", "http://192.0.2.1:8080", "--token", "secret-token", "--scope", "s", sarifFile(t))
	if code == 0 || !strings.Contains(stderr, "refusing to send the API token over plain http") || !strings.Contains(stderr, "--insecure") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(stderr, "secret-token") {
		t.Fatalf("error shows the token: %s", stderr)
	}
}

func TestIngestServerLoopbackHTTPAndHTTPS(t *testing.T) {
	var hits atomic.Int32
	plain := httptest.NewServer(uploadServer(&hits))
	defer plain.Close()
	out, stderr, code := run(t, "", "ingest", "--server", plain.URL, "--token", "secret-token", "--scope", "s", sarifFile(t))
	if code != 0 || !strings.Contains(out, "run-1") {
		t.Fatalf("loopback http: exit %d: %s %s", code, out, stderr)
	}

	// HTTPS with a private CA, as `serve` with http.tls would present.
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "daemon", "127.0.0.1")
	secure := httptest.NewUnstartedServer(uploadServer(&hits))
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{pair.Cert}}
	// The refused handshake below is expected; keep it out of the output.
	secure.Config.ErrorLog = log.New(io.Discard, "", 0)
	secure.StartTLS()
	defer secure.Close()
	_, stderr, code = run(t, "", "ingest", "--server", secure.URL, "--token", "secret-token", "--scope", "s", sarifFile(t))
	if code == 0 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("https without --ca-file: exit %d: %s", code, stderr)
	}
	out, stderr, code = run(t, "", "ingest", "--server", secure.URL, "--ca-file", ca.CertFile, "--token", "secret-token", "--scope", "s", sarifFile(t))
	if code != 0 || !strings.Contains(out, "run-1") {
		t.Fatalf("https with --ca-file: exit %d: %s %s", code, out, stderr)
	}
	if got := hits.Load(); got != 2 {
		t.Fatalf("%d authorised requests, want 2", got)
	}
}

func TestIngestRedirectToPlainHTTPRefused(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(uploadServer(&hits))
	defer target.Close()
	// The loopback daemon redirects to a remote plain-http host: the client
	// must not follow with the token.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// 302: the client follows with a GET (a 307 would need to replay
		// the streamed body, which it cannot).
		http.Redirect(w, r, "http://192.0.2.1:8080/v1/runs", http.StatusFound)
	}))
	defer redirect.Close()
	_, stderr, code := run(t, "", "ingest", "--server", redirect.URL, "--token", "secret-token", "--scope", "s", sarifFile(t))
	if code == 0 || !strings.Contains(stderr, "redirect to http://192.0.2.1:8080") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
