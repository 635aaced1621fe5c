package bus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHandlerPanicGoesToDLQ: a handler that panics on a message does not
// take the consumer down and is not retried; the message goes to the DLQ
// with the panic value and stack, the panic is logged once, and the
// messages after it are handled and committed. Both the one-at-a-time
// path and the concurrent path recover.
func TestHandlerPanicGoesToDLQ(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts RunOptions
	}{
		{"sequential", RunOptions{}},
		{"concurrent", RunOptions{Concurrency: 3, Parallel: func(Message) bool { return true }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			e, cfg := startBroker(t)
			cfg.Metrics = NewMetrics()
			p := newTestProducer(t, cfg)
			var logs lockedBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))

			// One key: one partition, so the panicking message is met
			// before the ordinary ones.
			key := []byte("run-1")
			if err := p.Publish(ctx, TopicScanResults,
				Message{Key: key, Value: []byte("panic"), Headers: map[string]string{"trace": "t1"}},
				Message{Key: key, Value: []byte("ok-1")},
				Message{Key: key, Value: []byte("ok-2")},
			); err != nil {
				t.Fatal(err)
			}

			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			var mu sync.Mutex
			calls := map[string]int{}
			opts := tc.opts
			opts.DLQ = p
			c := NewConsumer(cfg, "ingest", TopicScanResults, log)
			err := c.Run(runCtx, func(ctx context.Context, m Message) error {
				mu.Lock()
				calls[string(m.Value)]++
				done := calls["ok-1"] > 0 && calls["ok-2"] > 0
				mu.Unlock()
				if string(m.Value) == "panic" {
					panic(errors.New("boom"))
				}
				if done {
					stop()
				}
				return nil
			}, opts)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if want := map[string]int{"panic": 1, "ok-1": 1, "ok-2": 1}; !maps.Equal(calls, want) {
				t.Fatalf("handler calls %v, want %v (a panic must not be retried)", calls, want)
			}
			if c, hw := commits(e, "ingest", TopicScanResults), highWatermarks(e, TopicScanResults); !maps.Equal(c, hw) {
				t.Fatalf("commits %v, want %v", c, hw)
			}

			m := fetchN(t, ctx, newTestConsumer(t, cfg, "dlq-reader", TopicDLQ), 1)[0]
			if string(m.Key) != "run-1" || string(m.Value) != "panic" || m.Headers["trace"] != "t1" {
				t.Fatalf("DLQ message %q=%q headers %v", m.Key, m.Value, m.Headers)
			}
			if h := m.Headers[HeaderError]; !strings.Contains(h, "handler panicked: boom") {
				t.Fatalf("DLQ error header %q", h)
			}
			if s := m.Headers[HeaderPanicStack]; !strings.Contains(s, "TestHandlerPanicGoesToDLQ") {
				t.Fatalf("DLQ stack header does not show the panicking function:\n%s", s)
			}
			if got := testutil.ToFloat64(cfg.Metrics.handlerErrors.WithLabelValues(TopicScanResults, "ingest", "poison")); got != 1 {
				t.Fatalf("poison handler errors = %v, want 1", got)
			}
			out := logs.String()
			n := 0
			for line := range strings.Lines(out) {
				if strings.Contains(line, "handler panicked") {
					n++
				}
			}
			if n != 1 || !strings.Contains(out, "TestHandlerPanicGoesToDLQ") {
				t.Fatalf("panic logged %d times (want once, with its stack):\n%s", n, out)
			}
		})
	}
}

func TestPanicErrorWrapping(t *testing.T) {
	cause := errors.New("boom")
	err := callHandler(t.Context(), func(context.Context, Message) error { panic(cause) }, Message{})
	pe, ok := errors.AsType[*PanicError](err)
	if !IsPoison(err) || !ok || !errors.Is(err, cause) || len(pe.Stack) == 0 {
		t.Fatalf("recovered %T %v: poison %v, panic error %v, wraps cause %v", err, err, IsPoison(err), ok, errors.Is(err, cause))
	}
	err = callHandler(t.Context(), func(context.Context, Message) error { panic("text") }, Message{})
	if !IsPoison(err) || err.Error() != "poison message: handler panicked: text" {
		t.Fatalf("recovered %v", err)
	}
	if err := callHandler(t.Context(), func(context.Context, Message) error { return nil }, Message{}); err != nil {
		t.Fatalf("no panic: %v", err)
	}
}
