package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic names. Keys: schedule id, run id, finding id, original key.
const (
	TopicScanRequests  = "starpipe.scan.requests"
	TopicScanResults   = "starpipe.scan.results"
	TopicFindingEvents = "starpipe.finding.events"
	TopicDLQ           = "starpipe.dlq"
)

// Topics lists every topic starpipe uses, in provisioning order.
func Topics() []string {
	return []string{TopicScanRequests, TopicScanResults, TopicFindingEvents, TopicDLQ}
}

// Defaults applied by Config.WithDefaults.
const (
	DefaultPartitions        = 6
	DefaultReplicationFactor = 1
	DefaultClientID          = "starpipe"
	// DefaultCompression is zstd: a ~100 KB findings batch shrinks 6.6×
	// (snappy 3.7×, lz4 3.9×) for about 0.27 ms of compression on this
	// 2-core box (snappy 0.19 ms), which is noise at starpipe's rates of
	// batches per scan; the bytes saved are disk and network on every
	// replica for every retention day. Needs Kafka ≥ 2.1. See
	// BENCHMARKS.bus.md.
	DefaultCompression = "zstd"
	// DefaultBatchTimeout is short because Publish is synchronous: every
	// partial batch (each partition a call touches) waits this long before
	// it is sent, so it adds to every Publish. Measured with 8 × 100 KB per
	// call: 1 ms → 3.8 ms per call, 5 ms → 7.5 ms, 20 ms → 27 ms. A call's
	// messages are batched together anyway; only concurrent callers gain
	// from a longer linger. (0 would mean kafka-go's default of 1 s.)
	DefaultBatchTimeout = time.Millisecond
	// DefaultMaxMessageBytes keeps one message well under Kafka's default
	// message.max.bytes (1 048 588) even with record and header overhead.
	DefaultMaxMessageBytes   = 900_000
	DefaultSessionTimeout    = 30 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultMaxWait           = 500 * time.Millisecond

	// maxMessageBytesLimit is the ceiling Validate accepts: the broker
	// default limit less room for the record batch framing.
	maxMessageBytesLimit = 1_000_000
)

// Config configures the Kafka clients. The zero value plus Brokers is
// usable after WithDefaults.
type Config struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// Partitions and ReplicationFactor are used when EnsureTopics creates a
	// missing topic; existing topics are left as they are.
	Partitions        int
	ReplicationFactor int
	// ClientID is sent to the brokers, visible in their logs and quotas.
	ClientID string
	// Compression is one of none, gzip, snappy, lz4, zstd.
	Compression string
	// BatchTimeout is how long the producer waits to fill a batch.
	BatchTimeout time.Duration
	// MaxMessageBytes bounds key+value+headers of one message; larger
	// messages are rejected by Publish before anything is sent.
	MaxMessageBytes int
	// SessionTimeout and HeartbeatInterval tune consumer-group liveness:
	// a crashed consumer's partitions move after SessionTimeout.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	// MaxWait is how long a fetch waits for data; it is also kafka-go's
	// fetch deadline, and below ~500 ms the reader can stall in i/o
	// timeouts under load, so Validate rejects smaller values.
	MaxWait time.Duration
	// TLS, when set, encrypts every broker connection with it (built from
	// file configuration by internal/tlsconfig). Nil is plaintext.
	TLS *tls.Config
	// SASL authenticates every broker connection; the zero value does
	// not.
	SASL SASL
	// Metrics, if set, receives the producer and consumer counters. It is
	// wiring, not file configuration.
	Metrics *Metrics
}

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	return c
}

// Validate reports every problem in c at once. Call it after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one broker address is required"))
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("brokers: %q is not host:port", b))
		}
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions: %d, must be at least 1", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("replication_factor: %d, must be at least 1", c.ReplicationFactor))
	}
	if _, err := parseCompression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if c.BatchTimeout < 0 {
		errs = append(errs, fmt.Errorf("batch_timeout: %s, must not be negative", c.BatchTimeout))
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > maxMessageBytesLimit {
		errs = append(errs, fmt.Errorf("max_message_bytes: %d, must be between 1 and %d (the broker's default message.max.bytes is about 1 MB; send large data by reference)", c.MaxMessageBytes, maxMessageBytesLimit))
	}
	if c.HeartbeatInterval <= 0 || c.SessionTimeout <= c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("session_timeout %s must be greater than heartbeat_interval %s (both positive)", c.SessionTimeout, c.HeartbeatInterval))
	}
	if c.MaxWait < DefaultMaxWait {
		errs = append(errs, fmt.Errorf("max_wait: %s, must be at least %s (shorter fetch deadlines stall kafka-go's reader)", c.MaxWait, DefaultMaxWait))
	}
	if _, err := c.SASL.mechanism(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("bus config: %w", errors.Join(errs...))
	}
	return nil
}

func parseCompression(s string) (kafka.Compression, error) {
	switch s {
	case "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("compression: %q, must be one of none, gzip, snappy, lz4, zstd", s)
}
