package tlsconfig_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/internal/tlsconfig"
	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

// serveTLS serves "ok" over TLS with cfg on a loopback port and returns its
// address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func TestServerServesGeneratedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "server", "127.0.0.1", "localhost")
	cfg, err := tlsconfig.Server(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	addr := serveTLS(t, cfg)

	client, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body = %q", body)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(pair.Serial) != 0 {
		t.Fatalf("served serial %v, want %v", got, pair.Serial)
	}

	// TLS 1.1 is refused.
	old := client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}

	// A client that does not trust the CA fails verification.
	_, err = tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS12})
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); !ok {
		t.Fatalf("untrusted dial error = %v, want a certificate verification error", err)
	}
}

func TestServerReloadsRenewedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	first := ca.Issue(t, dir, "server", "127.0.0.1")
	cfg, err := tlsconfig.Server(first.CertFile, first.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)
	client := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}

	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := served(); got != first.Serial.String() {
		t.Fatalf("serial %s, want %s", got, first.Serial)
	}
	// Renewal in place: same paths, new certificate and key.
	second := ca.Issue(t, dir, "server", "127.0.0.1")
	if got := served(); got != second.Serial.String() {
		t.Fatalf("after renewal serial %s, want %s", got, second.Serial)
	}
	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(second.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != second.Serial.String() {
		t.Fatalf("after broken renewal serial %s, want %s", got, second.Serial)
	}
}

func TestServerAndClientErrors(t *testing.T) {
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "server", "127.0.0.1")
	other := ca.Issue(t, "", "other", "127.0.0.1")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"server without key", func() error { _, err := tlsconfig.Server(pair.CertFile, ""); return err }, "both cert_file and key_file"},
		{"server missing cert", func() error { _, err := tlsconfig.Server(missing, pair.KeyFile); return err }, "cert_file"},
		{"server key of another cert", func() error { _, err := tlsconfig.Server(pair.CertFile, other.KeyFile); return err }, "private key does not match"},
		{"client garbage CA", func() error { _, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: garbage}); return err }, "holds no PEM certificate"},
		{"client missing CA", func() error { _, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: missing}); return err }, "ca_file"},
		{"client cert without key", func() error {
			_, err := tlsconfig.Client(tlsconfig.ClientOptions{CertFile: pair.CertFile})
			return err
		}, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestClientMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	srvPair := ca.Issue(t, "", "server", "127.0.0.1")
	cliPair := ca.Issue(t, "", "client")
	srv, err := tlsconfig.Server(srvPair.CertFile, srvPair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.ClientCAs, srv.ClientAuth = ca.Pool, tls.RequireAndVerifyClientCert
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server's view of each handshake: with TLS 1.3 the client finishes
	// before the server has checked its certificate.
	results := make(chan error)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			results <- c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name    string
		opts    tlsconfig.ClientOptions
		wantErr bool
	}{
		{"with client certificate", tlsconfig.ClientOptions{CAFile: ca.CertFile, CertFile: cliPair.CertFile, KeyFile: cliPair.KeyFile, ServerName: "127.0.0.1"}, false},
		{"without client certificate", tlsconfig.ClientOptions{CAFile: ca.CertFile}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := tlsconfig.Client(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			c, dialErr := tls.Dial("tcp", ln.Addr().String(), cli)
			serverErr := <-results
			if c != nil {
				c.Close()
			}
			if dialErr != nil && !tc.wantErr {
				t.Fatalf("dial: %v", dialErr)
			}
			if (serverErr != nil) != tc.wantErr {
				t.Fatalf("server handshake error = %v, want error %v", serverErr, tc.wantErr)
			}
		})
	}
}
