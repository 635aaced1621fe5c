package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// Consumer reads one topic as a member of a consumer group and commits
// offsets only when told to. Fetch and Commit may be called from different
// goroutines, but Run is the intended way to use it.
type Consumer struct {
	cfg     Config
	group   string
	topic   string
	log     *slog.Logger
	base    *slog.Logger // without this consumer's attributes, for the DLQ producer
	metrics *Metrics
	r       *kafka.Reader
	err     error // set when cfg was invalid; r is nil then

	// authFailed is cancelled (with the failure as cause) when the reader
	// logs that the broker refused the SASL credentials, then replaced:
	// kafka-go only logs that and retries, so without it Fetch would wait
	// for ever with no error to show.
	authMu     sync.Mutex
	authCtx    context.Context
	authCancel context.CancelCauseFunc

	closing   atomic.Bool // set before closing the reader, to quiet its shutdown errors
	closeOnce sync.Once
	closeErr  error
}

// NewConsumer joins group on topic (lazily, in the background). A new
// group starts at the oldest retained message, so nothing published before
// the first consumer started is lost. An invalid cfg makes every call
// return the validation error.
func NewConsumer(cfg Config, group, topic string, logger *slog.Logger) *Consumer {
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = discardLogger()
	}
	log := logger.With("component", "bus.consumer", "group", group, "topic", topic)
	c := &Consumer{cfg: cfg, group: group, topic: topic, log: log, base: logger, metrics: cfg.Metrics}
	err := cfg.Validate()
	if err == nil && (group == "" || topic == "") {
		err = errors.New("bus: consumer needs a group and a topic")
	}
	var mech sasl.Mechanism
	if err == nil {
		mech, err = cfg.SASL.mechanism()
	}
	if err != nil {
		c.err = err
		return c
	}
	c.authCtx, c.authCancel = context.WithCancelCause(context.Background())
	c.r = kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Brokers,
		GroupID: group,
		Topic:   topic,
		Dialer: &kafka.Dialer{
			ClientID: cfg.ClientID, Timeout: 10 * time.Second, DualStack: true,
			TLS: cfg.TLS, SASLMechanism: mech,
		},
		// MinBytes 1 returns as soon as anything is there; MaxWait bounds
		// the wait (and is kafka-go's fetch deadline, hence ≥ 500 ms).
		MinBytes: 1,
		MaxWait:  cfg.MaxWait,
		// A partition fetch returns whole compressed batches; 4 MB holds a
		// few maximum-size messages per round trip, and QueueCapacity caps
		// what sits decoded in memory.
		MaxBytes:      4 << 20,
		QueueCapacity: 32,
		// 0 makes CommitMessages synchronous: Commit returns after the
		// broker stored the offset, which the at-least-once contract needs.
		CommitInterval:        0,
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        cfg.SessionTimeout,
		HeartbeatInterval:     cfg.HeartbeatInterval,
		RebalanceTimeout:      cfg.SessionTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			detail := fmt.Sprintf(msg, args...)
			level := slog.LevelWarn
			switch {
			case c.closing.Load():
				// Close cancels in-flight fetches and dials; each partition
				// reader reports it.
				level = slog.LevelDebug
			case strings.Contains(detail, "Rebalance In Progress"):
				// A member joined or left; the reader rejoins by itself.
				level = slog.LevelInfo
			case strings.Contains(detail, kafka.SASLAuthenticationFailed.Title()):
				c.failAuth(&authError{sasl: cfg.SASL, err: errors.New(detail)})
			}
			log.Log(context.Background(), level, "kafka reader error", "detail", detail)
		}),
	})
	return c
}

// failAuth ends the Fetch calls in progress with err and arms a fresh
// signal for later ones: credentials fixed on the broker side start
// working again without a restart.
func (c *Consumer) failAuth(err error) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	c.authCancel(err)
	c.authCtx, c.authCancel = context.WithCancelCause(context.Background())
}

// Group returns the consumer group id.
func (c *Consumer) Group() string { return c.group }

// Topic returns the topic this consumer reads.
func (c *Consumer) Topic() string { return c.topic }

// Fetch blocks until the next message arrives or ctx is done. The message
// is not committed: call Commit once its effect is durable.
func (c *Consumer) Fetch(ctx context.Context) (Message, error) {
	if c.err != nil {
		return Message{}, c.err
	}
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.authMu.Lock()
	authCtx := c.authCtx
	c.authMu.Unlock()
	stop := context.AfterFunc(authCtx, func() { cancel(context.Cause(authCtx)) })
	defer stop()
	km, err := c.r.FetchMessage(fctx)
	if err != nil {
		if ctx.Err() != nil {
			return Message{}, ctx.Err()
		}
		if cause := context.Cause(fctx); cause != nil && errors.Is(cause, ErrAuthentication) {
			return Message{}, fmt.Errorf("bus: fetch from %s: %w", c.topic, cause)
		}
		return Message{}, fmt.Errorf("bus: fetch from %s: %w", c.topic, err)
	}
	c.metrics.incConsumed(c.topic, c.group)
	return fromKafka(km), nil
}

// Commit stores, per partition, the offset after the highest of msgs: every
// earlier message of that partition counts as processed too. It returns
// once the group coordinator acknowledged the commit.
func (c *Consumer) Commit(ctx context.Context, msgs ...Message) error {
	if c.err != nil {
		return c.err
	}
	if len(msgs) == 0 {
		return nil
	}
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		kms[i] = kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	if err := c.r.CommitMessages(ctx, kms...); err != nil {
		c.metrics.incCommitError(c.topic, c.group)
		return fmt.Errorf("bus: commit %s in group %s: %w", c.topic, c.group, err)
	}
	return nil
}

// Close leaves the group, so the remaining members take over the
// partitions at once instead of after the session timeout. Uncommitted
// messages will be delivered again. Close is idempotent.
func (c *Consumer) Close() error {
	if c.r == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		if err := c.r.Close(); err != nil {
			c.closeErr = fmt.Errorf("bus: close consumer %s/%s: %w", c.group, c.topic, err)
		}
	})
	return c.closeErr
}
