package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// KafkaTLSConfig encrypts the connections to the brokers.
type KafkaTLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile holds the PEM certificates that sign the brokers'
	// certificates; empty trusts the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for brokers that
	// require mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is checked against the brokers' certificates instead of
	// the host part of each broker address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate: test clusters only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// KafkaSASLConfig authenticates to the brokers.
type KafkaSASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns
	// SASL off.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password, or PasswordFile holding it (a trailing newline is
	// dropped). STARPIPE_KAFKA_SASL_PASSWORD wins over both.
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// SASL mechanisms kafka.sasl.mechanism accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Secret is a configuration value that must never reach a log or an error
// message: it prints as [redacted] with fmt and slog. Convert it with
// string() where the value itself is needed.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString covers %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue covers slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText covers encoding/json (slog's JSON handler) and YAML output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ResolvePassword returns the configured password: the password key (or
// its environment override) or else the contents of password_file.
func (s KafkaSASLConfig) ResolvePassword() (string, error) {
	if s.Password != "" {
		return string(s.Password), nil
	}
	if s.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("kafka.sasl.password_file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("kafka.sasl.password_file %s is empty", s.PasswordFile)
	}
	return pw, nil
}

// HTTPConfig tunes the HTTP listener of the api role.
type HTTPConfig struct {
	TLS ServerTLSConfig `yaml:"tls"`
	// ReadHeaderTimeout bounds how long a client may take to send the
	// request line and headers (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. An upload
	// of several GB over a slow link takes as long as it takes, so the
	// default is 0 (none) and BodyReadTimeout bounds a stalled body instead.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// BodyReadTimeout is the longest a request body may go without sending
	// a byte: a slow upload that keeps moving is never cut off, a stalled
	// one is. 0 turns it off.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response, which includes reading an upload's body,
	// hence 0 (none) by default.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// ServerTLSConfig makes the listener speak HTTPS. Both files or neither;
// they are read again when they change (certificate renewal).
type ServerTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the listener serves TLS.
func (t ServerTLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// DefaultHTTP is the http section's default.
func DefaultHTTP() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout: 10 * time.Second,
		BodyReadTimeout:   time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// applySecurityEnv applies the overrides of the TLS, SASL and HTTP keys.
func (c *Config) applySecurityEnv(lookup func(string) (string, bool)) {
	str := func(key string, dst *string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	str("STARPIPE_KAFKA_SASL_MECHANISM", &c.Kafka.SASL.Mechanism)
	str("STARPIPE_KAFKA_SASL_USERNAME", &c.Kafka.SASL.Username)
	if v, ok := lookup("STARPIPE_KAFKA_SASL_PASSWORD"); ok && v != "" {
		c.Kafka.SASL.Password = Secret(v)
		c.Kafka.SASL.PasswordFile = "" // the environment wins over the file
	}
	str("STARPIPE_HTTP_TLS_CERT_FILE", &c.HTTP.TLS.CertFile)
	str("STARPIPE_HTTP_TLS_KEY_FILE", &c.HTTP.TLS.KeyFile)
}

// validateSecurity checks the kafka.tls, kafka.sasl and http sections.
func (c *Config) validateSecurity() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	t := c.Kafka.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		bad("kafka.tls.enabled", "is false but other kafka.tls keys are set; set enabled: true or remove them")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("kafka.tls.cert_file", "cert_file and key_file go together (client certificate and its key)")
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		bad("kafka.tls.insecure_skip_verify", "contradicts ca_file: with it, no certificate is checked")
	}

	s := c.Kafka.SASL
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" {
			bad("kafka.sasl.mechanism", "is empty but credentials are set; choose %s, %s or %s", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			bad("kafka.sasl.username", "is required with mechanism %s", s.Mechanism)
		}
		switch {
		case s.Password == "" && s.PasswordFile == "":
			bad("kafka.sasl.password", "is required with mechanism %s: set password_file or STARPIPE_KAFKA_SASL_PASSWORD", s.Mechanism)
		case s.Password != "" && s.PasswordFile != "":
			bad("kafka.sasl.password_file", "and password are both set; keep one")
		}
		// PLAIN hands the password to anyone on the path unless TLS
		// protects it; SCRAM never sends it.
		if s.Mechanism == SASLPlain && !t.Enabled && !allLoopback(c.Kafka.Brokers) {
			bad("kafka.sasl.mechanism", "PLAIN without kafka.tls sends the password in clear to %v; enable kafka.tls or use %s", c.Kafka.Brokers, SASLScramSHA512)
		}
	default:
		bad("kafka.sasl.mechanism", "%q is not one of %s, %s, %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}

	h := c.HTTP
	if (h.TLS.CertFile == "") != (h.TLS.KeyFile == "") {
		bad("http.tls", "cert_file and key_file go together")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"http.read_timeout", h.ReadTimeout},
		{"http.body_read_timeout", h.BodyReadTimeout},
		{"http.write_timeout", h.WriteTimeout},
		{"http.idle_timeout", h.IdleTimeout},
	} {
		if d.v < 0 {
			bad(d.key, "must not be negative (0 turns it off)")
		}
	}
	if h.ReadHeaderTimeout <= 0 {
		bad("http.read_header_timeout", "must be positive: without it a client can hold a connection open by sending headers slowly")
	}
	if h.MaxHeaderBytes < 4<<10 || h.MaxHeaderBytes > 16<<20 {
		bad("http.max_header_bytes", "must be between 4096 and 16777216")
	}
	return errs
}

// allLoopback reports whether every broker address is a loopback host,
// where a clear-text password does not cross a network.
func allLoopback(brokers []string) bool {
	if len(brokers) == 0 {
		return false
	}
	for _, b := range brokers {
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
