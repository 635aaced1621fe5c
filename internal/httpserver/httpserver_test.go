package httpserver_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/httpserver"
	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

// start serves h with cfg on a loopback port and returns the address.
func start(t *testing.T, cfg config.HTTPConfig, h http.Handler) (*http.Server, string) {
	t.Helper()
	srv, err := httpserver.New(cfg, "127.0.0.1:0", h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- httpserver.Serve(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

func TestNewAppliesTimeouts(t *testing.T) {
	cfg := config.Default().HTTP
	srv, err := httpserver.New(cfg, ":0", http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv.ReadHeaderTimeout != cfg.ReadHeaderTimeout || srv.IdleTimeout != cfg.IdleTimeout ||
		srv.ReadTimeout != 0 || srv.WriteTimeout != 0 || srv.MaxHeaderBytes != cfg.MaxHeaderBytes {
		t.Fatalf("server timeouts %+v do not follow %+v", srv, cfg)
	}
	if srv.TLSConfig != nil || httpserver.Scheme(srv) != "http" {
		t.Fatal("TLS on without http.tls")
	}
}

func TestServesHTTPSFromCertificateFiles(t *testing.T) {
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "starpipe", "127.0.0.1")
	cfg := config.Default().HTTP
	cfg.TLS = config.ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile}
	srv, addr := start(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %v", r.Proto, r.TLS != nil)
	}))
	if httpserver.Scheme(srv) != "https" {
		t.Fatal("scheme is not https")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("HTTPS GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0 true" {
		t.Fatalf("body %q, want HTTP/2 over TLS", body)
	}

	// Plain HTTP to the TLS port gets no answer from the handler.
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	resp, err = (&http.Client{Transport: plain}).Get("http://" + addr + "/")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "true") {
			t.Fatal("plain HTTP reached the handler")
		}
	}
}

func TestNewFailsOnBadCertificateFiles(t *testing.T) {
	cfg := config.Default().HTTP
	cfg.TLS = config.ServerTLSConfig{CertFile: t.TempDir() + "/missing.pem", KeyFile: t.TempDir() + "/missing-key.pem"}
	_, err := httpserver.New(cfg, ":0", http.NotFoundHandler(), nil)
	if err == nil || !strings.Contains(err.Error(), "http.tls: cert_file") {
		t.Fatalf("New = %v, want an http.tls cert_file error", err)
	}
}

// TestBodyReadTimeout: a body that stops moving is cut off; one that keeps
// moving is not, however long it takes in total.
func TestBodyReadTimeout(t *testing.T) {
	const timeout = time.Second
	cfg := config.Default().HTTP
	cfg.BodyReadTimeout = timeout
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, 1)
	_, addr := start(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		results <- result{n, err}
	}))

	t.Run("stalled body is cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n%s", strings.Repeat("a", 1000))
		// ... and nothing more: the handler's read must fail.
		r := <-results
		if r.err == nil || r.n != 1000 {
			t.Fatalf("handler read %d bytes, err %v; want 1000 and a timeout", r.n, r.err)
		}
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() {
			t.Fatalf("error %v is not a timeout", r.err)
		}
	})

	t.Run("slow moving body completes", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 30 chunks 1/15 of the timeout apart: the upload takes twice the
		// timeout in total, but never pauses for long.
		const chunks = 30
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", chunks*10)
		tick := time.NewTicker(timeout / 15)
		defer tick.Stop()
		for range chunks {
			<-tick.C
			if _, err := c.Write([]byte("0123456789")); err != nil {
				t.Fatal(err)
			}
		}
		r := <-results
		if r.err != nil || r.n != chunks*10 {
			t.Fatalf("handler read %d bytes, err %v", r.n, r.err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s", resp.Status)
		}
	})
}
