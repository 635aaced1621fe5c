package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is what Publish sends and Fetch returns. It is bus's own type
// rather than kafka.Message so that callers do not import kafka-go, and so
// that headers read as a map: starpipe never repeats a header name.
type Message struct {
	Key     []byte
	Value   []byte
	Headers map[string]string

	// Set by Consumer.Fetch; Publish ignores them (the topic is an
	// argument, the partition comes from the key).
	Topic     string
	Partition int
	Offset    int64
	Time      time.Time
}

// size is what MaxMessageBytes bounds: the bytes the caller controls.
func (m Message) size() int {
	n := len(m.Key) + len(m.Value)
	for k, v := range m.Headers {
		n += len(k) + len(v)
	}
	return n
}

func (m Message) kafka(topic string) kafka.Message {
	km := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 {
		km.Headers = make([]kafka.Header, 0, len(m.Headers))
		for k, v := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	return km
}

func fromKafka(km kafka.Message) Message {
	m := Message{
		Key:       km.Key,
		Value:     km.Value,
		Topic:     km.Topic,
		Partition: km.Partition,
		Offset:    km.Offset,
		Time:      km.Time,
	}
	if len(km.Headers) > 0 {
		m.Headers = make(map[string]string, len(km.Headers))
		for _, h := range km.Headers {
			m.Headers[h.Key] = string(h.Value)
		}
	}
	return m
}

// ErrMessageTooLarge matches (errors.Is) both a message Publish refused
// because it exceeds Config.MaxMessageBytes and one the broker rejected
// with MESSAGE_TOO_LARGE. Either way, retrying the same message is useless.
var ErrMessageTooLarge = errors.New("bus: message too large")

// MessageTooLargeError is returned by Publish, before anything is sent,
// for a message over Config.MaxMessageBytes.
type MessageTooLargeError struct {
	Topic string
	Index int // position in the Publish call
	Size  int // key + value + headers, in bytes
	Limit int
}

func (e *MessageTooLargeError) Error() string {
	return fmt.Sprintf("bus: message %d for %s is %d bytes, over the %d-byte limit: split the batch or send the data by reference to a stored artifact",
		e.Index, e.Topic, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrMessageTooLarge) true.
func (e *MessageTooLargeError) Is(target error) bool { return target == ErrMessageTooLarge }

// PublishError reports which messages of one Publish call the brokers did
// not acknowledge. It unwraps to the per-message errors, so errors.Is
// works with kafka-go's error codes (e.g. kafka.MessageSizeTooLarge), which
// it does not on the kafka.WriteErrors it replaces.
type PublishError struct {
	Topic string
	// Errs has one entry per message of the call, nil where delivered.
	Errs []error
}

func (e *PublishError) failed() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

func (e *PublishError) Error() string {
	failed := e.failed()
	if len(failed) == 0 {
		return fmt.Sprintf("bus: publish to %s failed", e.Topic)
	}
	return fmt.Sprintf("bus: publish to %s: %d of %d messages failed, first: %v", e.Topic, len(failed), len(e.Errs), failed[0])
}

// Unwrap returns the errors of the failed messages.
func (e *PublishError) Unwrap() []error { return e.failed() }

// Is makes errors.Is(err, ErrMessageTooLarge) true when the broker
// rejected a message as too large.
func (e *PublishError) Is(target error) bool {
	if target != ErrMessageTooLarge {
		return false
	}
	for _, err := range e.failed() {
		if errors.Is(err, kafka.MessageSizeTooLarge) {
			return true
		}
	}
	return false
}

// Producer publishes keyed messages synchronously with acks=all. It is
// safe for concurrent use; concurrent Publish calls share batches.
type Producer struct {
	cfg     Config
	cfgErr  error
	log     *slog.Logger
	tr      *kafka.Transport
	w       *kafka.Writer
	metrics *Metrics

	closeOnce sync.Once
}

// NewProducer returns a producer for cfg (defaults applied). It connects
// lazily; a cfg that fails Validate makes every Publish return that error.
func NewProducer(cfg Config, logger *slog.Logger) *Producer {
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = discardLogger()
	}
	log := logger.With("component", "bus.producer")
	comp, _ := parseCompression(cfg.Compression) // checked by Validate below
	cfgErr := cfg.Validate()
	tr, err := newTransport(cfg)
	if err != nil {
		// Validate reports the same SASL problem; keep a usable transport
		// so that Close works.
		cfgErr = errors.Join(cfgErr, err)
		tr = &kafka.Transport{}
	}
	p := &Producer{
		cfg:     cfg,
		cfgErr:  cfgErr,
		log:     log,
		tr:      tr,
		metrics: cfg.Metrics,
	}
	p.w = &kafka.Writer{
		Addr:      kafka.TCP(cfg.Brokers...),
		Transport: tr,
		// Murmur2 is the Java client's and franz-go's key hash, so a run's
		// or a finding's messages land on the same partition whichever
		// client produced them; kafka.Hash (FNV-1a) matches only Sarama and
		// CRC32 only librdkafka's default.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		Compression:  comp,
		BatchTimeout: cfg.BatchTimeout,
		// The writer checks each message against BatchBytes before
		// compression; Publish already enforced MaxMessageBytes, and the
		// margin covers record framing while staying under the broker's
		// default message.max.bytes.
		BatchBytes: int64(cfg.MaxMessageBytes) + 4096,
		// Internal retries are logged at debug level: the final error is
		// returned to the caller, who logs it once.
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Debug("kafka writer error", "detail", fmt.Sprintf(msg, args...))
		}),
	}
	return p
}

// Publish sends msgs to topic and returns once the brokers acknowledged all
// of them (acks=all), or an error. On error some messages may still have
// been delivered: callers such as the outbox relay publish again, and
// consumers are idempotent. Messages with the same key keep their order.
func (p *Producer) Publish(ctx context.Context, topic string, msgs ...Message) error {
	if p.cfgErr != nil {
		return p.cfgErr
	}
	if topic == "" {
		return errors.New("bus: publish: empty topic")
	}
	if len(msgs) == 0 {
		return nil
	}
	kms := make([]kafka.Message, len(msgs))
	total := 0
	for i, m := range msgs {
		n := m.size()
		if n > p.cfg.MaxMessageBytes {
			p.metrics.incProduceError(topic)
			return &MessageTooLargeError{Topic: topic, Index: i, Size: n, Limit: p.cfg.MaxMessageBytes}
		}
		total += n
		kms[i] = m.kafka(topic)
	}
	if err := p.w.WriteMessages(ctx, kms...); err != nil {
		p.metrics.incProduceError(topic)
		if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
			return &PublishError{Topic: topic, Errs: []error(we)}
		}
		return fmt.Errorf("bus: publish %d messages to %s: %w", len(msgs), topic, explainAuth(ctx, p.cfg, err))
	}
	p.metrics.addProduced(topic, len(msgs), total)
	return nil
}

// Close flushes pending batches and releases the connections. It is
// idempotent; Publish after Close fails.
func (p *Producer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.w.Close()
		// Writer.Close does not close a caller-supplied transport.
		p.tr.CloseIdleConnections()
	})
	return err
}
