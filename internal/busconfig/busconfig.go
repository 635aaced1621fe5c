// Package busconfig turns the daemon's kafka configuration section into a
// bus.Config: it reads the TLS files and the SASL password file, which
// neither config (plain data) nor bus (no file configuration) should do.
package busconfig

import (
	"fmt"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/tlsconfig"
)

// FromConfig returns the bus configuration for k, defaults applied. It
// fails when a TLS file or the password file cannot be read; the error
// names the key and never holds the password.
func FromConfig(k config.KafkaConfig) (bus.Config, error) {
	cfg := bus.Config{
		Brokers:           k.Brokers,
		Partitions:        k.Partitions,
		ReplicationFactor: k.ReplicationFactor,
		ClientID:          k.ClientID,
		Compression:       k.Compression,
		SessionTimeout:    k.SessionTimeout,
	}
	if k.SessionTimeout > 0 {
		// Heartbeats well inside the session, as Kafka's defaults keep them.
		cfg.HeartbeatInterval = max(k.SessionTimeout/10, 100*time.Millisecond)
	}
	if k.TLS.Enabled {
		tc, err := tlsconfig.Client(tlsconfig.ClientOptions{
			CAFile:             k.TLS.CAFile,
			CertFile:           k.TLS.CertFile,
			KeyFile:            k.TLS.KeyFile,
			ServerName:         k.TLS.ServerName,
			InsecureSkipVerify: k.TLS.InsecureSkipVerify,
		})
		if err != nil {
			return bus.Config{}, fmt.Errorf("kafka.%w", err)
		}
		cfg.TLS = tc
	}
	if k.SASL.Mechanism != "" {
		pw, err := k.SASL.ResolvePassword()
		if err != nil {
			return bus.Config{}, err
		}
		cfg.SASL = bus.SASL{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: pw}
	}
	return cfg.WithDefaults(), nil
}
