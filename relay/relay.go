// Package relay publishes the transactional outbox to Kafka. Everything
// starpipe must not lose (uploaded runs, scan requests, finding events) is
// first committed to PostgreSQL together with an outbox row; the relay
// delivers pending rows in order and marks them sent, so a broker that is
// down or unreachable delays work but never loses it. Delivery is
// at-least-once: a crash between publish and mark re-sends, and consumers
// are idempotent.
//
// # Rows that cannot be published
//
// A row the broker will never take (over the message size limit, say) is
// dead-lettered at once; a row the broker refuses for a reason not known
// to be final is dead-lettered after max attempts (WithMaxAttempts). A
// dead-lettered row is marked failed in the outbox, counted in
// starpipe_outbox_dead_lettered_total, fails the run or ledger row it
// queued (with the reason, in the API), and goes to starpipe.dlq (its
// payload dropped when that does not fit either). It no longer holds back
// the rows behind it, its own key's included. Failures that say nothing
// about a row (the broker unreachable, a leader election, failed
// authentication) never dead-letter anything: they are retried with
// backoff for as long as they last.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
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
	// in id order and records, row by row, what publish reports, all in
	// one transaction.
	RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []store.OutboxMessage) store.OutboxResult) (store.OutboxResult, error)
	// ListenOutbox calls notify whenever rows were committed, until ctx
	// ends (nil) or the connection fails (an error).
	ListenOutbox(ctx context.Context, notify func()) error
}

// HeaderRunID marks an outbox row that queues a run: once it is delivered
// the run moves from received to queued.
const HeaderRunID = store.HeaderRunID

// DefaultMaxAttempts is how many times the broker may refuse a row, for a
// reason not known to be final, before the row is dead-lettered.
const DefaultMaxAttempts = 5

// Headers of a dead-lettered row's copy in starpipe.dlq, besides the row's
// own and bus.HeaderError, bus.HeaderOriginalTopic, bus.HeaderFailedAt
// and bus.HeaderValueDropped.
const HeaderOutboxID = "outbox_id"

// maxErrorHeader bounds the error text in a DLQ copy's header.
const maxErrorHeader = 2048

// Relay moves outbox rows to Kafka.
type Relay struct {
	ob           Outbox
	pub          Publisher
	log          *slog.Logger
	batch        int
	poll         time.Duration
	maxAttempts  int
	published    prometheus.Counter
	failures     prometheus.Counter
	deadLettered prometheus.Counter
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

// WithMaxAttempts sets how many times the broker may refuse a row, for a
// reason not known to be final, before it is dead-lettered
// (relay.max_attempts); below 1 means DefaultMaxAttempts.
func WithMaxAttempts(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.maxAttempts = n
		}
	}
}

// WithMetrics registers the relay's counters.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(r *Relay) { reg.MustRegister(r.published, r.failures, r.deadLettered) }
}

// New builds a relay over the outbox (a *store.Store).
func New(ob Outbox, pub Publisher, log *slog.Logger, opts ...Option) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		ob:          ob,
		pub:         pub,
		log:         log.With("component", "relay"),
		batch:       200,
		poll:        time.Second,
		maxAttempts: DefaultMaxAttempts,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starpipe_outbox_published_total", Help: "Outbox messages delivered to Kafka.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starpipe_outbox_publish_failures_total", Help: "Failed attempts to deliver outbox messages.",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starpipe_outbox_dead_lettered_total",
			Help: "Outbox messages given up on: refused by the broker for good or too often; their runs failed.",
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

// Drain delivers one batch of pending rows and returns how many it sent
// or dead-lettered (rows it is done with).
func (r *Relay) Drain(ctx context.Context) (int, error) {
	res, err := r.ob.RelayOutbox(ctx, r.batch, r.publish)
	// res holds only what was committed: after a database error, nothing.
	r.published.Add(float64(len(res.Sent)))
	r.deadLettered.Add(float64(len(res.Dead)))
	return len(res.Sent) + len(res.Dead), err
}

// publish sends the claimed rows in id order, consecutive rows of one
// topic in one call, so that a key's messages keep their order on its
// partition, and reports each row's outcome. A row that fails holds back
// the later rows of its key for this pass; a failure that blames no row
// (the broker unreachable) ends the pass.
func (r *Relay) publish(ctx context.Context, msgs []store.OutboxMessage) store.OutboxResult {
	res := store.OutboxResult{Dead: map[int64]string{}}
	held := map[[2]string]bool{}
	for i := 0; i < len(msgs); {
		j := i
		var group []store.OutboxMessage
		for ; j < len(msgs) && msgs[j].Topic == msgs[i].Topic; j++ {
			if !held[keyOf(msgs[j])] {
				group = append(group, msgs[j])
			}
		}
		if !r.publishGroup(ctx, msgs[i].Topic, group, &res, held) {
			break
		}
		i = j
	}
	return res
}

func keyOf(m store.OutboxMessage) [2]string { return [2]string{m.Topic, m.Key} }

// publishGroup publishes rows of one topic and records their outcomes in
// res; it returns false when the pass must end.
func (r *Relay) publishGroup(ctx context.Context, topic string, group []store.OutboxMessage, res *store.OutboxResult, held map[[2]string]bool) bool {
	ids := func(ms []store.OutboxMessage) []int64 {
		out := make([]int64, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	for len(group) > 0 {
		batch := make([]bus.Message, len(group))
		for i, m := range group {
			batch[i] = bus.Message{Key: []byte(m.Key), Value: m.Payload, Headers: m.Headers}
		}
		err := r.pub.Publish(ctx, topic, batch...)
		if err == nil {
			res.Sent = append(res.Sent, ids(group)...)
			return true
		}
		err = fmt.Errorf("publishing %d outbox messages to %s: %w", len(group), topic, err)
		// Refused before anything was sent: that row goes, the rest is
		// sent again.
		if tl, ok := errors.AsType[*bus.MessageTooLargeError](err); ok && tl.Index >= 0 && tl.Index < len(group) {
			m := group[tl.Index]
			rest := append(group[:tl.Index:tl.Index], group[tl.Index+1:]...)
			if !r.deadLetter(ctx, m, fmt.Errorf("publishing outbox row %d to %s: %w", m.ID, topic, tl), res) {
				// It stays pending, and so do the rows of its key behind it.
				res.Failed = append(res.Failed, m.ID)
				held[keyOf(m)] = true
				rest = slices.DeleteFunc(rest, func(o store.OutboxMessage) bool { return o.ID > m.ID && keyOf(o) == keyOf(m) })
			}
			group = rest
			continue
		}
		pe, ok := errors.AsType[*bus.PublishError](err)
		if !ok || len(pe.Errs) != len(group) {
			// Nothing to blame a row for: the broker is unreachable, or
			// the client cannot work. Retry it all later.
			res.Failed = append(res.Failed, ids(group)...)
			res.Err = err
			return false
		}
		if len(group) > 1 && slices.ContainsFunc(pe.Errs, func(e error) bool { return bus.RefusalOf(e) != bus.NotRefused }) {
			// A broker refuses a whole record batch for one message in
			// it (over message.max.bytes, say), so the refusal blames no
			// message in particular: ask again one at a time, so that
			// only the message at fault is refused.
			for i, m := range group {
				switch {
				case pe.Errs[i] == nil:
					res.Sent = append(res.Sent, m.ID)
				case held[keyOf(m)]:
					// Its key's earlier row failed just now: not tried.
				case !r.publishGroup(ctx, topic, group[i:i+1], res, held):
					return false
				}
			}
			return true
		}
		return r.perMessage(ctx, group, pe.Errs, err, res, held)
	}
	return true
}

// perMessage records the outcome of each row of a call the broker
// answered message by message.
func (r *Relay) perMessage(ctx context.Context, group []store.OutboxMessage, errs []error, callErr error, res *store.OutboxResult, held map[[2]string]bool) bool {
	goOn := true
	for i, m := range group {
		e := errs[i]
		if e == nil {
			// Delivered, even behind a row of its key that was not: it
			// cannot be taken back, and sending it again would not
			// restore the order.
			res.Sent = append(res.Sent, m.ID)
			continue
		}
		rowErr := fmt.Errorf("publishing outbox row %d to %s: %w", m.ID, m.Topic, e)
		switch bus.RefusalOf(e) {
		case bus.RefusedForGood:
			if r.deadLetter(ctx, m, rowErr, res) {
				continue
			}
			goOn = false
		case bus.Refused:
			if m.Refusals+1 >= r.maxAttempts {
				if r.deadLetter(ctx, m, fmt.Errorf("refused %d times (relay.max_attempts): %w", m.Refusals+1, rowErr), res) {
					continue
				}
				goOn = false
			} else {
				res.Refused = append(res.Refused, m.ID)
				held[keyOf(m)] = true
				if res.Err == nil {
					res.Err = rowErr
				}
				continue
			}
		default:
			goOn = false
		}
		res.Failed = append(res.Failed, m.ID)
		held[keyOf(m)] = true
		if res.Err == nil {
			res.Err = callErr
		}
	}
	return goOn
}

// deadLetter puts a copy of m in starpipe.dlq (without its payload when
// the copy does not fit, and as a bare notice naming the row when even
// that does not) and records m as dead in res. It reports false, with
// res.Err set, when the DLQ cannot be written to: the row then stays
// pending, to be refused and dead-lettered again on a later pass, since a
// row given up on must leave a trace in Kafka as well as in the database.
func (r *Relay) deadLetter(ctx context.Context, m store.OutboxMessage, cause error, res *store.OutboxResult) bool {
	errText := cause.Error()
	if len(errText) > maxErrorHeader {
		errText = errText[:maxErrorHeader]
	}
	notice := map[string]string{
		bus.HeaderError:         errText,
		bus.HeaderOriginalTopic: m.Topic,
		bus.HeaderFailedAt:      time.Now().UTC().Format(time.RFC3339Nano),
		HeaderOutboxID:          strconv.FormatInt(m.ID, 10),
	}
	hdr := maps.Clone(m.Headers)
	if hdr == nil {
		hdr = map[string]string{}
	}
	maps.Copy(hdr, notice)
	copies := []bus.Message{
		{Key: []byte(m.Key), Value: m.Payload, Headers: hdr},
		{Key: []byte(m.Key), Headers: withDropped(hdr)},
		{Headers: withDropped(notice)},
	}
	var err error
	for _, c := range copies {
		if err = r.pub.Publish(ctx, bus.TopicDLQ, c); err == nil || !errors.Is(err, bus.ErrMessageTooLarge) {
			break
		}
	}
	if err != nil {
		if res.Err == nil {
			res.Err = fmt.Errorf("dead-lettering outbox row %d: %w", m.ID, err)
		}
		return false
	}
	r.log.Error("outbox row dead-lettered", "outbox_id", m.ID, "topic", m.Topic, "key", m.Key,
		"run_id", m.Headers[HeaderRunID], "err", cause)
	res.Dead[m.ID] = cause.Error()
	return true
}

func withDropped(h map[string]string) map[string]string {
	h = maps.Clone(h)
	h[bus.HeaderValueDropped] = "true"
	return h
}
