package busconfig_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/busconfig"
	"github.com/starpipe/starpipe/internal/tlsconfig"
	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

// TestFromConfigReachesSecureBroker goes from configuration keys, as a
// file would set them, to a Ping of a kfake broker that requires TLS and
// SCRAM-SHA-512.
func TestFromConfigReachesSecureBroker(t *testing.T) {
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "broker", "127.0.0.1")
	srvTLS, err := tlsconfig.Server(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS.NextProtos = nil
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS),
		kfake.EnableSASL(), kfake.Superuser(bus.SASLScramSHA512, "starpipe", "pw-from-file"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("pw-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	cfg.Kafka.TLS = config.KafkaTLSConfig{Enabled: true, CAFile: ca.CertFile}
	cfg.Kafka.SASL = config.KafkaSASLConfig{Mechanism: config.SASLScramSHA512, Username: "starpipe", PasswordFile: pwFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bcfg, err := busconfig.FromConfig(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := bus.Ping(ctx, bcfg); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := bus.EnsureTopics(ctx, bcfg); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
}

func TestFromConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		k    config.KafkaConfig
		want string
	}{
		{"missing CA", config.KafkaConfig{TLS: config.KafkaTLSConfig{Enabled: true, CAFile: missing}}, "kafka.tls: ca_file"},
		{"missing password file", config.KafkaConfig{SASL: config.KafkaSASLConfig{Mechanism: config.SASLPlain, Username: "u", PasswordFile: missing}}, "kafka.sasl.password_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := busconfig.FromConfig(tc.k)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	// TLS off leaves the bus config in plaintext.
	bcfg, err := busconfig.FromConfig(config.Default().Kafka)
	if err != nil || bcfg.TLS != nil || bcfg.SASL.Enabled() {
		t.Fatalf("default: %v, tls %v, sasl %v", err, bcfg.TLS, bcfg.SASL)
	}
}
