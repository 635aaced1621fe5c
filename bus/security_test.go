package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/starpipe/starpipe/internal/tlsconfig"
	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

const (
	testUser     = "starpipe"
	testPassword = "correct horse battery staple"
)

// secureBroker starts a single kfake broker requiring SASL with mechanism
// (and TLS when tlsServer is set), and returns its address.
func secureBroker(t *testing.T, mechanism string, tlsServer *tls.Config) []string {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(500 * time.Millisecond),
		kfake.SeedTopics(2, TopicScanResults),
		kfake.EnableSASL(),
		kfake.Superuser(mechanism, testUser, testPassword),
	}
	if tlsServer != nil {
		opts = append(opts, kfake.TLS(tlsServer))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs()
}

// testCA returns a server config for 127.0.0.1 and a client config
// trusting it, both built by internal/tlsconfig from generated files.
func testCA(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "broker", "127.0.0.1")
	server, err := tlsconfig.Server(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	server.NextProtos = nil // Kafka, not HTTP
	client, err = tlsconfig.Client(tlsconfig.ClientOptions{CAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

func TestSecureProduceConsume(t *testing.T) {
	for _, tc := range []struct {
		mechanism string
		tls       bool
	}{
		{SASLPlain, true},
		{SASLScramSHA256, false},
		{SASLScramSHA512, true},
		{"", true}, // TLS alone
	} {
		t.Run(fmt.Sprintf("sasl=%s/tls=%v", tc.mechanism, tc.tls), func(t *testing.T) {
			ctx := testCtx(t)
			var srvTLS, cliTLS *tls.Config
			if tc.tls {
				srvTLS, cliTLS = testCA(t)
			}
			var brokers []string
			if tc.mechanism == "" {
				cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS), kfake.GroupMinSessionTimeout(500*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(cluster.Close)
				brokers = cluster.ListenAddrs()
			} else {
				brokers = secureBroker(t, tc.mechanism, srvTLS)
			}
			cfg := testConfig(brokers)
			cfg.TLS = cliTLS
			if tc.mechanism != "" {
				cfg.SASL = SASL{Mechanism: tc.mechanism, Username: testUser, Password: testPassword}
			}

			if err := EnsureTopics(ctx, cfg); err != nil {
				t.Fatalf("EnsureTopics: %v", err)
			}
			if err := Ping(ctx, cfg); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			p := newTestProducer(t, cfg)
			const n = 20
			msgs := make([]Message, n)
			for i := range msgs {
				msgs[i] = keyed(fmt.Sprintf("run-%d", i%3), i)
			}
			if err := p.Publish(ctx, TopicScanResults, msgs...); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			c := newTestConsumer(t, cfg, "secure-group", TopicScanResults)
			got := fetchN(t, ctx, c, n)
			if err := c.Commit(ctx, got...); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			seen := map[string]bool{}
			for _, m := range got {
				seen[string(m.Value)] = true
			}
			for _, m := range msgs {
				if !seen[string(m.Value)] {
					t.Fatalf("message %s not consumed", m.Value)
				}
			}
		})
	}
}

func TestWrongPasswordFailsClearly(t *testing.T) {
	for _, mechanism := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mechanism, func(t *testing.T) {
			ctx := testCtx(t)
			cfg := testConfig(secureBroker(t, mechanism, nil))
			cfg.SASL = SASL{Mechanism: mechanism, Username: testUser, Password: "wrong password"}

			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("%s: error %v, want ErrAuthentication", what, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, "kafka.sasl") || !strings.Contains(msg, mechanism) || !strings.Contains(msg, testUser) {
					t.Fatalf("%s: error %q does not say which credentials failed", what, msg)
				}
				if strings.Contains(msg, "wrong password") {
					t.Fatalf("%s: error %q shows the password", what, msg)
				}
			}
			check("Ping", Ping(ctx, cfg))
			check("EnsureTopics", EnsureTopics(ctx, cfg))
			p := newTestProducer(t, cfg)
			check("Publish", p.Publish(ctx, TopicScanResults, keyed("k", 1)))
			// The consumer group reader only logs and retries; Fetch
			// reports it instead of waiting for ever.
			c := NewConsumer(cfg, "g", TopicScanResults, slog.New(slog.DiscardHandler))
			t.Cleanup(func() { c.Close() })
			_, err := c.Fetch(ctx)
			check("Fetch", err)
		})
	}
}

func TestTLSVerificationFailures(t *testing.T) {
	ctx := testCtx(t)
	srvTLS, _ := testCA(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)

	// A CA that did not sign the broker's certificate.
	_, otherCA := testCA(t)
	cfg := testConfig(cluster.ListenAddrs())
	cfg.TLS = otherCA
	err = Ping(ctx, cfg)
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); !ok {
		t.Fatalf("Ping with an untrusted CA = %v, want a certificate verification error", err)
	}

	// A plaintext client against a TLS listener fails rather than hangs.
	cfg.TLS = nil
	if err := Ping(ctx, cfg); err == nil {
		t.Fatal("plaintext Ping of a TLS broker succeeded")
	}
}

func TestSASLNeverPrinted(t *testing.T) {
	s := SASL{Mechanism: SASLScramSHA512, Username: "u", Password: "hunter2"}
	cfg := Config{SASL: s}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "sasl", s)
	for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", s), s.String(), logged.String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("password printed: %s", out)
		}
	}
}

func TestSASLValidate(t *testing.T) {
	for _, tc := range []struct {
		sasl SASL
		want string
	}{
		{SASL{}, ""},
		{SASL{Mechanism: SASLPlain, Username: "u", Password: "p"}, ""},
		{SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}, "must be one of"},
		{SASL{Mechanism: SASLScramSHA256, Username: "u"}, "needs a username and a password"},
	} {
		cfg := Config{Brokers: []string{"127.0.0.1:9092"}, SASL: tc.sasl}.WithDefaults()
		err := cfg.Validate()
		if tc.want == "" && err != nil {
			t.Errorf("%v: %v", tc.sasl, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: error %v, want %q", tc.sasl, err, tc.want)
		}
	}
}
