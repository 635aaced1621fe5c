// Package tlsconfig builds the *tls.Config values starpipe uses: one for
// the HTTP listener of `serve` and one for Kafka client connections. Both
// come from PEM files named in admin configuration; nothing here reads the
// network or the API.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// MinVersion is the oldest protocol either side accepts. TLS 1.0 and 1.1
// are deprecated (RFC 8996); every client and broker starpipe talks to
// speaks 1.2.
const MinVersion = tls.VersionTLS12

// Server returns a listener configuration serving the certificate chain in
// certFile with the private key in keyFile. The files are read once now, so
// that a wrong path or a key that does not match fails at start-up, and
// again on the first handshake after either file changed: a renewed
// certificate (certbot, cert-manager) is picked up without a restart. A
// renewal that fails to load keeps the previous certificate.
func Server(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both cert_file and key_file are needed")
	}
	r := &reloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     MinVersion,
		GetCertificate: r.get,
		// HTTP/2 first, as net/http's own ListenAndServeTLS would offer.
		NextProtos: []string{"h2", "http/1.1"},
	}, nil
}

// reloader serves the most recently loaded key pair and reloads it when a
// file's size or modification time changes.
type reloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod fileStamp
	keyMod  fileStamp
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

// load reads both files; the caller holds mu or is the constructor.
func (r *reloader) load() error {
	cs, err := stamp(r.certFile)
	if err != nil {
		return fmt.Errorf("tls: cert_file: %w", err)
	}
	ks, err := stamp(r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: key_file: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, cs, ks
	return nil
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, errC := stamp(r.certFile)
	ks, errK := stamp(r.keyFile)
	if errC == nil && errK == nil && (cs != r.certMod || ks != r.keyMod) {
		// A renewal writes the two files one after the other; a half
		// written pair fails to load and the old certificate stays until
		// the next handshake tries again.
		_ = r.load()
	}
	return r.cert, nil
}

// ClientOptions are the file-based settings of a TLS client (the Kafka
// connection). The zero value verifies the server against the system roots.
type ClientOptions struct {
	// CAFile holds the PEM certificates trusted to sign the server's
	// certificate. When set, the system roots are not used: a broker
	// behind a private CA cannot be impersonated with a public certificate.
	CAFile string
	// CertFile and KeyFile are a client certificate for mutual TLS; both
	// or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate
	// (when brokers are reached by an address not in their certificate).
	ServerName string
	// InsecureSkipVerify turns off certificate verification. Only for a
	// test cluster: anyone on the path can then read and change traffic.
	InsecureSkipVerify bool
}

// Client returns a client configuration for o.
func Client(o ClientOptions) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         MinVersion,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // admin opt-in, documented as test-only
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca_file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading client certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	return c, nil
}
