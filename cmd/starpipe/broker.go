package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/internal/tlsconfig"
)

func init() { subcommands = append(subcommands, newBrokerCmd) }

// brokerPasswordEnv carries the SASL password of --user, so that it is
// neither on the command line (visible in ps) nor in a file unless chosen.
const brokerPasswordEnv = "STARPIPE_BROKER_PASSWORD"

type brokerFlags struct {
	data, listen, advertise      string
	partitions                   int
	retention, retentionInterval time.Duration
	syncWrites                   bool
	tlsCert, tlsKey              string
	user, passwordFile           string
	insecure                     bool
	logLevel, logFormat          string
}

func newBrokerCmd() *cobra.Command {
	var fl brokerFlags
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker on its own",
		Long: `Runs the broker that ` + "`starpipe dev`" + ` embeds (franz-go's kfake) as a process of its
own, so that several ` + "`starpipe serve`" + ` replicas on one machine or a test rig can
share it. It keeps topics, records and consumer offsets in --data, enforces
--retention, and stops cleanly on SIGINT or SIGTERM. Once it listens it
prints "brokers: ADDR" for kafka.brokers / STARPIPE_KAFKA_BROKERS.

kfake is a test broker with a young disk format: this is for one machine and
for tests. Production points kafka.brokers at a real Kafka cluster.

Listening on a non-loopback address needs --user (SASL PLAIN and SCRAM;
password from $` + brokerPasswordEnv + ` or --password-file), or --insecure
to let anyone who reaches the port read and write every topic. --tls-cert and
--tls-key make the listener TLS only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := fl.embeddedConfig(os.LookupEnv)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), fl.logLevel, fl.logFormat)
			return runBroker(cmd.Context(), cfg, log, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.data, "data", "", "data directory (created 0700); required")
	f.StringVar(&fl.listen, "listen", "127.0.0.1:9092", "host:port to listen on")
	f.StringVar(&fl.advertise, "advertise", "", "host or host:port clients are told to connect to (required with a wildcard --listen)")
	f.IntVar(&fl.partitions, "partitions", bus.DefaultPartitions, "partitions of the starpipe topics when first created")
	f.DurationVar(&fl.retention, "retention", 7*24*time.Hour, "how long records are kept")
	f.DurationVar(&fl.retentionInterval, "retention-interval", 5*time.Minute, "how often retention is enforced")
	f.BoolVar(&fl.syncWrites, "sync-writes", false, "fsync every produced batch (slower; a crash loses nothing acknowledged)")
	f.StringVar(&fl.tlsCert, "tls-cert", "", "PEM certificate chain: the listener speaks TLS only")
	f.StringVar(&fl.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&fl.user, "user", "", "SASL user clients must authenticate as (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
	f.StringVar(&fl.passwordFile, "password-file", "", "file holding --user's password (default: $"+brokerPasswordEnv+")")
	f.BoolVar(&fl.insecure, "insecure", false, "allow a non-loopback --listen without --user")
	f.StringVar(&fl.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&fl.logFormat, "log-format", "auto", "json, text or auto")
	return cmd
}

// embeddedConfig checks the flags and turns them into the broker's
// configuration; lookup is os.LookupEnv outside tests.
func (fl brokerFlags) embeddedConfig(lookup func(string) (string, bool)) (bus.EmbeddedConfig, error) {
	var errs []error
	if strings.TrimSpace(fl.data) == "" {
		errs = append(errs, errors.New("--data is required: the broker keeps topics and offsets there"))
	}
	host, _, listenErr := net.SplitHostPort(fl.listen)
	if listenErr != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", fl.listen, listenErr))
	}
	if fl.partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions %d: must be at least 1", fl.partitions))
	}
	if fl.retention <= 0 || fl.retentionInterval <= 0 {
		errs = append(errs, errors.New("--retention and --retention-interval must be positive"))
	}
	cfg := bus.EmbeddedConfig{
		DataDir:           fl.data,
		Listen:            fl.listen,
		Advertise:         fl.advertise,
		Partitions:        fl.partitions,
		Retention:         fl.retention,
		RetentionInterval: fl.retentionInterval,
		SyncWrites:        fl.syncWrites,
	}
	switch {
	case fl.tlsCert != "" && fl.tlsKey != "":
		tc, err := tlsconfig.Server(fl.tlsCert, fl.tlsKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("--tls-cert/--tls-key: %w", err))
		} else {
			tc.NextProtos = nil // Kafka, not HTTP
			cfg.TLS = tc
		}
	case fl.tlsCert != "" || fl.tlsKey != "":
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if fl.user != "" {
		pw, err := brokerPassword(fl.passwordFile, lookup)
		if err != nil {
			errs = append(errs, err)
		} else {
			cfg.Users = map[string]string{fl.user: pw}
		}
	} else if fl.passwordFile != "" {
		errs = append(errs, errors.New("--password-file needs --user"))
	}
	if listenErr == nil && fl.user == "" && !fl.insecure && !isLoopbackHost(host) {
		errs = append(errs, fmt.Errorf("--listen %s is not a loopback address: anyone who reaches it could read and write every topic; "+
			"set --user (with $%s or --password-file), or --insecure on a trusted network", fl.listen, brokerPasswordEnv))
	}
	if len(errs) > 0 {
		return bus.EmbeddedConfig{}, errors.Join(errs...)
	}
	return cfg, nil
}

func brokerPassword(file string, lookup func(string) (string, bool)) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		if pw := strings.TrimRight(string(b), "\r\n"); pw != "" {
			return pw, nil
		}
		return "", fmt.Errorf("--password-file %s is empty", file)
	}
	if pw, ok := lookup(brokerPasswordEnv); ok && pw != "" {
		return pw, nil
	}
	return "", fmt.Errorf("--user needs a password: set $%s or --password-file", brokerPasswordEnv)
}

// runBroker runs the broker until ctx ends (SIGINT or SIGTERM in main),
// then closes it, which flushes its state to the data directory.
func runBroker(ctx context.Context, cfg bus.EmbeddedConfig, log *slog.Logger, out io.Writer) error {
	emb, err := bus.StartEmbedded(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer emb.Close()
	fmt.Fprintf(out, "brokers: %s\n", strings.Join(emb.Addrs(), ","))
	<-ctx.Done()
	log.Info("stopping broker", "reason", context.Cause(ctx))
	return nil
}
