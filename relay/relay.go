// Package relay publishes the transactional outbox to Kafka. Everything
// starpipe must not lose (uploaded runs, scan requests, finding events) is
// first committed to PostgreSQL together with an outbox row; the relay
// delivers pending rows in order and marks them sent, so a broker that is
// down or unreachable delays work but never loses it. Delivery is
// at-least-once: a crash between publish and mark re-sends, and consumers
// are idempotent.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store"
)

// Publisher is the part of the Kafka producer the relay uses.
type Publisher interface {
	Publish(ctx context.Context, topic string, msgs ...bus.Message) error
}

// Outbox is the part of the store the relay uses: *store.Store implements
// it.
type Outbox interface {
	// RelayOutbox claims up to limit pending rows, calls publish with them
	// in id order and marks them sent when it returns nil, all in one
	// transaction.
	RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []store.OutboxMessage) error) (int, error)
	// ListenOutbox calls notify whenever rows were committed, until ctx
	// ends (nil) or the connection fails (an error).
	ListenOutbox(ctx context.Context, notify func()) error
}

// HeaderRunID marks an outbox row that queues a run: once it is delivered
// the run moves from received to queued.
const HeaderRunID = store.HeaderRunID

// Relay moves outbox rows to Kafka.
type Relay struct {
	ob        Outbox
	pub       Publisher
	log       *slog.Logger
	batch     int
	poll      time.Duration
	published prometheus.Counter
	failures  prometheus.Counter
}

// Option configures a Relay.
type Option func(*Relay)

// WithPollInterval sets how often the relay looks for rows when no
// notification arrives (notifications can be missed across reconnects).
func WithPollInterval(d time.Duration) Option { return func(r *Relay) { r.poll = d } }

// WithBatchSize sets how many rows one transaction claims at most.
func WithBatchSize(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.batch = n
		}
	}
}

// WithMetrics registers the relay's counters.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(r *Relay) { reg.MustRegister(r.published, r.failures) }
}

// New builds a relay over the outbox (a *store.Store).
func New(ob Outbox, pub Publisher, log *slog.Logger, opts ...Option) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		ob:    ob,
		pub:   pub,
		log:   log.With("component", "relay"),
		batch: 200,
		poll:  time.Second,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starpipe_outbox_published_total", Help: "Outbox messages delivered to Kafka.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starpipe_outbox_publish_failures_total", Help: "Failed attempts to deliver outbox messages.",
		}),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Run delivers rows until ctx is cancelled. Failures are retried with
// backoff; they never stop the loop.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		r.listen(ctx, wake)
	}()
	// The listener holds a pooled connection; Run returns only once it has
	// given it back, so that closing the pool after Run never waits on it.
	defer func() { <-listening }()
	backoff := 250 * time.Millisecond
	for {
		n, err := r.Drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := r.poll
		if err != nil {
			r.failures.Inc()
			r.log.Warn("outbox delivery failed; will retry", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = 250 * time.Millisecond
			if n > 0 {
				continue // more may be waiting
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// listen turns NOTIFYs into wake-ups; on any error it reconnects after a
// pause, and the poll interval covers the gap.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := r.ob.ListenOutbox(ctx, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		r.log.Debug("outbox listener reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Drain delivers one batch of pending rows and returns how many it sent.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	sent, err := r.ob.RelayOutbox(ctx, r.batch, r.publish)
	if err != nil {
		return 0, err
	}
	r.published.Add(float64(sent))
	return sent, nil
}

// publish sends consecutive rows of one topic in one call, in id order, so
// a key's messages keep their order on its partition.
func (r *Relay) publish(ctx context.Context, msgs []store.OutboxMessage) error {
	for i := 0; i < len(msgs); {
		j := i
		var batch []bus.Message
		for ; j < len(msgs) && msgs[j].Topic == msgs[i].Topic; j++ {
			batch = append(batch, bus.Message{Key: []byte(msgs[j].Key), Value: msgs[j].Payload, Headers: msgs[j].Headers})
		}
		if err := r.pub.Publish(ctx, msgs[i].Topic, batch...); err != nil {
			return fmt.Errorf("publishing %d outbox messages to %s: %w", len(batch), msgs[i].Topic, err)
		}
		i = j
	}
	return nil
}
