package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms Config.SASL accepts, spelled as Kafka spells them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL holds broker credentials. The zero value means no authentication.
// Its String, GoString and LogValue never show the password, so a Config
// printed or logged whole does not leak it.
type SASL struct {
	// Mechanism is one of SASLPlain, SASLScramSHA256, SASLScramSHA512, or
	// empty for none. PLAIN sends the password as is: use it over TLS.
	Mechanism string
	Username  string
	Password  string
}

// Enabled reports whether credentials are configured.
func (s SASL) Enabled() bool { return s.Mechanism != "" }

func (s SASL) String() string {
	if !s.Enabled() {
		return "none"
	}
	return fmt.Sprintf("%s user=%q password=[redacted]", s.Mechanism, s.Username)
}

// GoString keeps %#v from printing the password.
func (s SASL) GoString() string { return "bus.SASL{" + s.String() + "}" }

// LogValue keeps slog from printing the password.
func (s SASL) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username))
}

// mechanism returns kafka-go's implementation of s, nil when s is empty.
func (s SASL) mechanism() (sasl.Mechanism, error) {
	if !s.Enabled() {
		return nil, nil
	}
	if s.Username == "" || s.Password == "" {
		return nil, fmt.Errorf("sasl: %s needs a username and a password", s.Mechanism)
	}
	switch s.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if s.Mechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// The error names the stringprep rule, never the password.
			return nil, fmt.Errorf("sasl: %s credentials: %w", s.Mechanism, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("sasl: mechanism %q, must be one of %s, %s, %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}

// ErrAuthentication matches (errors.Is) a broker's refusal of the
// configured SASL credentials. Retrying with the same credentials is
// useless: fix kafka.sasl.
var ErrAuthentication = errors.New("bus: the broker refused the SASL credentials")

// authError wraps a SASL authentication failure with what was configured
// (never the password), so that the error says what to fix.
type authError struct {
	sasl SASL
	err  error
}

func (e *authError) Error() string {
	return fmt.Sprintf("bus: SASL %s authentication as %q failed (check kafka.sasl username and password): %v", e.sasl.Mechanism, e.sasl.Username, e.err)
}

func (e *authError) Unwrap() []error { return []error{ErrAuthentication, e.err} }

// explainAuth turns an authentication failure behind err into an
// authError; other errors pass unchanged. kafka-go's Transport (producer,
// admin, ping) reports a broker that refuses the credentials by closing the
// connection as a bare "unexpected EOF", or as BROKER_NOT_AVAILABLE, so on
// such an error one connection is dialled with kafka.Dialer, which reports
// the refusal as SASL_AUTHENTICATION_FAILED, to tell them apart.
func explainAuth(ctx context.Context, cfg Config, err error) error {
	if err == nil || !cfg.SASL.Enabled() {
		return err
	}
	if isAuthFailure(err) {
		return &authError{sasl: cfg.SASL, err: err}
	}
	if !mayBeAuthFailure(err) {
		return err
	}
	if probe := probeAuth(ctx, cfg); probe != nil {
		return &authError{sasl: cfg.SASL, err: errors.Join(err, probe)}
	}
	return err
}

// mayBeAuthFailure is false for errors a broker sent after it accepted the
// connection, and for the caller's own cancellation.
func mayBeAuthFailure(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, kafka.BrokerNotAvailable) {
		return true
	}
	var kerr kafka.Error
	return !errors.As(err, &kerr)
}

func isAuthFailure(err error) bool {
	return errors.Is(err, kafka.SASLAuthenticationFailed) || errors.Is(err, kafka.IllegalSASLState)
}

// probeAuth dials the brokers one at a time and returns the first
// authentication failure, or nil if none refused the credentials (or none
// answered, or ctx ended).
func probeAuth(ctx context.Context, cfg Config) error {
	if ctx.Err() != nil {
		return nil
	}
	mech, err := cfg.SASL.mechanism()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := &kafka.Dialer{ClientID: cfg.ClientID, Timeout: 5 * time.Second, DualStack: true, TLS: cfg.TLS, SASLMechanism: mech}
	for _, b := range cfg.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		if isAuthFailure(err) {
			return err
		}
	}
	return nil
}
