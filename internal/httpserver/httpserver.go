// Package httpserver builds the daemon's *http.Server from the http
// configuration section: HTTPS from certificate files, and timeouts that
// end stalled clients without cutting off a long upload that keeps moving.
package httpserver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/tlsconfig"
)

// New returns a server for h on addr configured by cfg. With cfg.TLS set
// the certificate files are loaded now (a wrong path fails here, at start)
// and srv.TLSConfig is set; run it with Serve, which then speaks HTTPS.
// The server's own errors (TLS handshakes, bad requests) go to log at warn
// level instead of the standard logger.
func New(cfg config.HTTPConfig, addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "http")
	if cfg.BodyReadTimeout > 0 {
		h = BodyReadTimeout(h, cfg.BodyReadTimeout)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.TLS.Enabled() {
		tc, err := tlsconfig.Server(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http.%w", err)
		}
		srv.TLSConfig = tc
	}
	return srv, nil
}

// Serve serves srv on ln, over TLS when srv.TLSConfig is set (New sets it
// from http.tls). Like http.Server.Serve it returns http.ErrServerClosed
// after Shutdown.
func Serve(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		// The certificate comes from TLSConfig.GetCertificate, so no
		// file names here.
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// Scheme is "https" when srv serves TLS, else "http", for logging the
// address clients should use.
func Scheme(srv *http.Server) string {
	if srv.TLSConfig != nil {
		return "https"
	}
	return "http"
}

// BodyReadTimeout wraps h so that every read of a request body must
// receive data within d: the connection's read deadline is pushed forward
// before each read. A multi-GB upload at any steady rate completes; a
// client that stops sending holds its connection, its upload slot and its
// staged chunks for at most d. (http.Server.ReadTimeout bounds the whole
// request instead, which no value suits both a 1 KB and a 4 GB upload.)
func BodyReadTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &progressBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d}
		}
		h.ServeHTTP(w, r)
	})
}

type progressBody struct {
	io.ReadCloser
	rc          *http.ResponseController
	d           time.Duration
	unsupported bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	if !b.unsupported {
		if err := b.rc.SetReadDeadline(time.Now().Add(b.d)); errors.Is(err, http.ErrNotSupported) {
			// A wrapped ResponseWriter without Unwrap: serve without the
			// bound rather than fail the request.
			b.unsupported = true
		}
	}
	return b.ReadCloser.Read(p)
}
