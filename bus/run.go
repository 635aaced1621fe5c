package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Handler processes one message. It returns nil once the message's effect
// is durable (the offset is committed next), an error wrapped with Poison
// when the message can never be processed (it goes to the DLQ), or any
// other error to have the same message retried. A panic is recovered and
// handled as poison (see PanicError).
type Handler func(ctx context.Context, msg Message) error

// PoisonError marks a message that no retry can fix: undecodable, an
// unknown envelope version, a payload that fails validation.
type PoisonError struct{ Err error }

// Poison wraps err so that Run moves the message to the DLQ instead of
// retrying it. Poison(nil) is nil.
func Poison(err error) error {
	if err == nil {
		return nil
	}
	return &PoisonError{Err: err}
}

func (e *PoisonError) Error() string { return "poison message: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PoisonError) Unwrap() error { return e.Err }

// IsPoison reports whether err, or an error it wraps, came from Poison.
func IsPoison(err error) bool {
	_, ok := errors.AsType[*PoisonError](err)
	return ok
}

// PanicError is a handler panic that Run recovered: the value the handler
// panicked with and the stack of its goroutine at that moment. Run treats
// it as poison (a handler that panics on a message will panic on it
// again), so the message goes to the DLQ and the consumer goes on.
type PanicError struct {
	Value any
	Stack []byte
}

// Recovered wraps a value returned by recover() as a poison PanicError
// with the current stack; call it in the deferred function that recovered.
// Handlers that must clean up after a panic (fail the run a message
// belongs to) recover themselves and return this; Run does the same for
// every other handler.
func Recovered(v any) error {
	return Poison(&PanicError{Value: v, Stack: debug.Stack()})
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Headers Run adds to a message it moves to TopicDLQ. The original
// headers are kept alongside them.
const (
	HeaderError             = "error"
	HeaderOriginalTopic     = "original_topic"
	HeaderOriginalPartition = "original_partition"
	HeaderOriginalOffset    = "original_offset"
	HeaderGroup             = "group"
	HeaderFailedAt          = "failed_at"
	// HeaderValueDropped is set when the original value plus the DLQ
	// headers would exceed MaxMessageBytes; the value is then left out and
	// must be read from the original topic while it is retained.
	HeaderValueDropped = "value_dropped"
	// HeaderPanicStack carries the stack of a handler that panicked.
	HeaderPanicStack = "panic_stack"
)

// maxErrorHeader bounds the error text copied into the DLQ header, and
// maxStackHeader the panic stack.
const (
	maxErrorHeader = 2048
	maxStackHeader = 8 << 10
)

// RunOptions tune Consumer.Run. The zero value is usable.
type RunOptions struct {
	// DLQ publishes poison messages. Nil makes Run create a producer from
	// the consumer's Config and close it on return.
	DLQ *Producer
	// InitialBackoff and MaxBackoff bound the exponential wait between
	// attempts at a message whose handler returned a retriable error.
	// Defaults: 200 ms and 30 s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DrainTimeout is how long the in-flight handler may keep running
	// after ctx is cancelled before its own context is cancelled too.
	// Default: 30 s.
	DrainTimeout time.Duration
	// Concurrency lets up to this many messages for which Parallel
	// returns true be handled at once (default 1: one at a time). Any
	// other message is a barrier: it waits until everything in flight has
	// finished and then runs alone, so messages whose order matters keep
	// it. Offsets are still committed in order per partition: a message's
	// offset is committed only once every earlier message of its
	// partition is done.
	Concurrency int
	Parallel    func(Message) bool
}

func (o RunOptions) withDefaults() RunOptions {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	return o
}

// commitTimeout bounds a commit or DLQ publish made while draining.
const commitTimeout = 10 * time.Second

// Run fetches messages one at a time, calls h, and commits each message
// once h returned nil, until ctx is done; then it closes the consumer
// (leaving the group) and returns nil. It returns an error only when the
// consumer cannot go on (invalid config, reader closed).
//
// Messages are handled in order, one at a time; scale out by running more
// consumers in the group (up to one per partition). A retriable error is
// retried on the same message, with exponential backoff, until it succeeds
// or ctx is done: a message is never skipped, so a persistent failure
// stalls this consumer's partitions, which is what the lag alert is for.
// A Poison error moves the message to TopicDLQ, then commits it.
//
// Cancelling ctx stops fetching and retrying, but the in-flight handler
// runs to completion (bounded by DrainTimeout) and its commit is made; a
// message left unprocessed is delivered again to the next consumer.
func (c *Consumer) Run(ctx context.Context, h Handler, opts RunOptions) (err error) {
	if c.err != nil {
		return c.err
	}
	defer func() {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}()
	opts = opts.withDefaults()
	dlq := opts.DLQ
	if dlq == nil {
		dlq = NewProducer(c.cfg, c.base)
		defer dlq.Close()
	}

	// work carries the handler, commit and DLQ publish. It outlives ctx by
	// DrainTimeout so that stopping intake does not abort work in flight.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(opts.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			c.log.Warn("drain timeout elapsed, cancelling handler", "drain_timeout", opts.DrainTimeout)
			cancelWork()
		}
	})
	defer wg.Wait()
	defer close(done)

	track := newOffsetTracker()
	commit := func(e *trackedMessage) func(Message) {
		return func(Message) {
			if last, ok := track.done(e); ok {
				c.commit(work, last)
			}
		}
	}
	conc := max(opts.Concurrency, 1)
	sem := make(chan struct{}, conc)
	var inflight sync.WaitGroup
	defer inflight.Wait()

	fetchDelay := opts.InitialBackoff
	for {
		msg, err := c.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return err // the reader was closed: nothing more will come
			}
			// An unreachable broker is an outage, not the end of the
			// consumer: kafka-go reconnects underneath, so wait and fetch
			// again rather than take the daemon down.
			c.log.Warn("fetch failed; retrying", "error", err, "retry_in", fetchDelay)
			if sleepCtx(ctx, fetchDelay) != nil {
				return nil
			}
			fetchDelay = min(2*fetchDelay, opts.MaxBackoff)
			continue
		}
		fetchDelay = opts.InitialBackoff
		e := track.add(msg)
		if conc > 1 && opts.Parallel != nil && opts.Parallel(msg) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			inflight.Go(func() {
				defer func() { <-sem }()
				// An error here means ctx ended mid-retry: the message
				// stays uncommitted and is delivered again.
				_ = c.process(ctx, work, h, dlq, msg, opts, commit(e))
			})
			continue
		}
		inflight.Wait()
		if err := c.process(ctx, work, h, dlq, msg, opts, commit(e)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// trackedMessage is a fetched message waiting for its handler.
type trackedMessage struct {
	msg  Message
	done bool
}

// offsetTracker keeps per-partition fetch order so that, with concurrent
// handlers, an offset is committed only when everything before it in its
// partition is done (committing offset N tells the group that every
// message up to N is processed).
type offsetTracker struct {
	mu      sync.Mutex
	pending map[int][]*trackedMessage
}

func newOffsetTracker() *offsetTracker {
	return &offsetTracker{pending: map[int][]*trackedMessage{}}
}

func (t *offsetTracker) add(m Message) *trackedMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &trackedMessage{msg: m}
	t.pending[m.Partition] = append(t.pending[m.Partition], e)
	return e
}

// done marks e finished and returns the newest message of its partition
// whose predecessors are all finished, if that advanced.
func (t *offsetTracker) done(e *trackedMessage) (Message, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.done = true
	q := t.pending[e.msg.Partition]
	n := 0
	for n < len(q) && q[n].done {
		n++
	}
	if n == 0 {
		return Message{}, false
	}
	last := q[n-1].msg
	t.pending[e.msg.Partition] = q[n:]
	return last, true
}

// process handles one message until it is committed or ctx is done.
func (c *Consumer) process(ctx, work context.Context, h Handler, dlq *Producer, msg Message, opts RunOptions, commit func(Message)) error {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     opts.InitialBackoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         opts.MaxBackoff,
	}
	b.Reset()
	for attempt := 1; ; attempt++ {
		herr := callHandler(work, h, msg)
		if herr == nil {
			commit(msg)
			return nil
		}
		log := c.log.With("partition", msg.Partition, "offset", msg.Offset, "attempt", attempt)
		if IsPoison(herr) {
			c.metrics.incHandlerError(c.topic, c.group, "poison")
			if pe, ok := errors.AsType[*PanicError](herr); ok {
				log.Error("handler panicked, moving the message to the DLQ", "error", herr, "stack", string(pe.Stack))
			} else {
				log.Warn("poison message, moving it to the DLQ", "error", herr)
			}
			if err := c.deadLetter(ctx, work, dlq, msg, herr, opts); err != nil {
				return err
			}
			c.metrics.incDLQ(c.topic, c.group)
			commit(msg)
			return nil
		}
		c.metrics.incHandlerError(c.topic, c.group, "retriable")
		if ctx.Err() != nil {
			log.Info("stopping with message unprocessed; it will be redelivered", "error", herr)
			return ctx.Err()
		}
		wait := b.NextBackOff()
		log.Warn("handler failed, retrying", "error", herr, "backoff", wait)
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
}

// callHandler calls h and turns a panic into a poison PanicError, so that
// one message a handler cannot cope with neither takes the process down
// nor, once the process restarted, meets the same panic for ever.
func callHandler(ctx context.Context, h Handler, msg Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = Recovered(v)
		}
	}()
	return h(ctx, msg)
}

// commit stores msg's offset. A failed commit is logged and not retried:
// the message will be delivered again and handlers are idempotent, while
// retrying a commit across a rebalance could not succeed anyway.
func (c *Consumer) commit(work context.Context, msg Message) {
	ctx, cancel := context.WithTimeout(work, commitTimeout)
	defer cancel()
	if err := c.Commit(ctx, msg); err != nil {
		c.log.Warn("commit failed; the message will be redelivered", "partition", msg.Partition, "offset", msg.Offset, "error", err)
	}
}

// deadLetter publishes msg to TopicDLQ, retrying until it succeeds or ctx
// is done: committing a poison message that is not in the DLQ would lose it.
func (c *Consumer) deadLetter(ctx, work context.Context, dlq *Producer, msg Message, cause error, opts RunOptions) error {
	headers := make(map[string]string, len(msg.Headers)+6)
	maps.Copy(headers, msg.Headers)
	errText := cause.Error()
	if len(errText) > maxErrorHeader {
		errText = errText[:maxErrorHeader]
	}
	headers[HeaderError] = errText
	if pe, ok := errors.AsType[*PanicError](cause); ok {
		stack := pe.Stack
		if len(stack) > maxStackHeader {
			stack = stack[:maxStackHeader]
		}
		headers[HeaderPanicStack] = string(stack)
	}
	headers[HeaderOriginalTopic] = msg.Topic
	headers[HeaderOriginalPartition] = strconv.Itoa(msg.Partition)
	headers[HeaderOriginalOffset] = strconv.FormatInt(msg.Offset, 10)
	headers[HeaderGroup] = c.group
	headers[HeaderFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	out := Message{Key: msg.Key, Value: msg.Value, Headers: headers}

	b := &backoff.ExponentialBackOff{
		InitialInterval:     opts.InitialBackoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         opts.MaxBackoff,
	}
	b.Reset()
	for {
		pctx, cancel := context.WithTimeout(work, commitTimeout)
		err := dlq.Publish(pctx, TopicDLQ, out)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrMessageTooLarge) && out.Value != nil {
			out.Value = nil
			out.Headers[HeaderValueDropped] = "true"
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := b.NextBackOff()
		c.log.Error("publishing to the DLQ failed, retrying", "partition", msg.Partition, "offset", msg.Offset, "error", err, "backoff", wait)
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// discardLogger is used when a caller passes a nil logger.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
