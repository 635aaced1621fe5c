package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testTimeout bounds every integration test so that a hang fails fast.
const testTimeout = 20 * time.Second

// startBroker starts an in-memory embedded broker and returns a client
// config for it with short group timings.
func startBroker(t *testing.T) (*Embedded, Config) {
	t.Helper()
	e, err := StartEmbedded(t.Context(), EmbeddedConfig{GroupMinSessionTimeout: 500 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, testConfig(e.Addrs())
}

func testConfig(brokers []string) Config {
	return Config{
		Brokers:           brokers,
		SessionTimeout:    2 * time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
	}.WithDefaults()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newTestProducer(t *testing.T, cfg Config) *Producer {
	p := NewProducer(cfg, testLogger(t))
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestConsumer(t *testing.T, cfg Config, group, topic string) *Consumer {
	c := NewConsumer(cfg, group, topic, testLogger(t))
	t.Cleanup(func() { c.Close() })
	return c
}

func fetchN(t *testing.T, ctx context.Context, c *Consumer, n int) []Message {
	t.Helper()
	out := make([]Message, 0, n)
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetched %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// commits returns the group's committed offsets on topic, by partition.
func commits(e *Embedded, group, topic string) map[int32]int64 {
	out := map[int32]int64{}
	g := e.cluster.GroupInfo(group)
	if g == nil {
		return out
	}
	for p, c := range g.Commits[topic] {
		out[p] = c.Offset
	}
	return out
}

// highWatermarks returns the end offsets of topic's non-empty partitions.
func highWatermarks(e *Embedded, topic string) map[int32]int64 {
	out := map[int32]int64{}
	for _, pi := range e.cluster.PartitionInfos(topic) {
		if pi.HighWatermark > 0 {
			out[pi.Partition] = pi.HighWatermark
		}
	}
	return out
}

func keyed(key string, i int) Message {
	return Message{
		Key:     []byte(key),
		Value:   []byte(key + "/" + strconv.Itoa(i)),
		Headers: map[string]string{"seq": strconv.Itoa(i)},
	}
}

func TestEnsureTopicsIdempotent(t *testing.T) {
	ctx := testCtx(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := testConfig(cluster.ListenAddrs())

	if err := EnsureTopics(ctx, cfg); err != nil {
		t.Fatalf("first EnsureTopics: %v", err)
	}
	// A second call, even asking for fewer partitions, changes nothing.
	cfg3 := cfg
	cfg3.Partitions = 3
	if err := EnsureTopics(ctx, cfg3); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	for _, topic := range Topics() {
		if n := len(cluster.PartitionInfos(topic)); n != 6 {
			t.Errorf("%s has %d partitions, want 6", topic, n)
		}
	}
	if err := Ping(ctx, cfg); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	cluster.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := Ping(pctx, cfg); err == nil {
		t.Fatal("Ping succeeded against a stopped broker")
	}
}

func TestProduceConsumeCommitResume(t *testing.T) {
	ctx := testCtx(t)
	e, cfg := startBroker(t)
	cfg.Metrics = NewMetrics()
	p := newTestProducer(t, cfg)

	var sent []Message
	for i := range 3 {
		for _, key := range []string{"run-a", "run-b", "run-c", "run-d"} {
			sent = append(sent, keyed(key, i))
		}
	}
	if err := p.Publish(ctx, TopicScanResults, sent...); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(cfg.Metrics.produced.WithLabelValues(TopicScanResults)); got != 12 {
		t.Fatalf("produced metric = %v, want 12", got)
	}

	c1 := newTestConsumer(t, cfg, "resume", TopicScanResults)
	got := fetchN(t, ctx, c1, len(sent))

	// Same key, same partition, in publish order.
	partOf := map[string]int{}
	lastSeq := map[string]int{}
	for _, m := range got {
		k := string(m.Key)
		if p, ok := partOf[k]; ok && p != m.Partition {
			t.Fatalf("key %s on partitions %d and %d", k, p, m.Partition)
		}
		partOf[k] = m.Partition
		seq, _ := strconv.Atoi(m.Headers["seq"])
		if prev, ok := lastSeq[k]; ok && seq != prev+1 {
			t.Fatalf("key %s: seq %d after %d", k, seq, prev)
		}
		lastSeq[k] = seq
		if m.Topic != TopicScanResults || string(m.Value) != fmt.Sprintf("%s/%d", k, seq) {
			t.Fatalf("unexpected message %+v", m)
		}
	}

	// Commit a prefix of the fetch order: per partition that is a prefix
	// too, so exactly the rest must come back.
	const done = 7
	if err := c1.Commit(ctx, got[:done]...); err != nil {
		t.Fatal(err)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := newTestConsumer(t, cfg, "resume", TopicScanResults)
	again := fetchN(t, ctx, c2, len(sent)-done)
	want := map[string]bool{}
	for _, m := range got[done:] {
		want[string(m.Value)] = true
	}
	for _, m := range again {
		if !want[string(m.Value)] {
			t.Fatalf("redelivered %s, which was committed or never sent", m.Value)
		}
		delete(want, string(m.Value))
	}
	if err := c2.Commit(ctx, again...); err != nil {
		t.Fatal(err)
	}
	if c, hw := commits(e, "resume", TopicScanResults), highWatermarks(e, TopicScanResults); !maps.Equal(c, hw) {
		t.Fatalf("commits %v, want the high watermarks %v", c, hw)
	}
}

func TestTwoConsumersSplitPartitions(t *testing.T) {
	ctx := testCtx(t)
	e, cfg := startBroker(t)
	const group = "split"
	c1 := newTestConsumer(t, cfg, group, TopicFindingEvents)
	c2 := newTestConsumer(t, cfg, group, TopicFindingEvents)
	// Both readers join in the background; produce only once the group has
	// settled so that no message is fetched under a stale assignment.
	if _, err := e.cluster.WaitGroupStable(ctx, group, 2); err != nil {
		t.Fatalf("group did not settle: %v", err)
	}

	p := newTestProducer(t, cfg)
	var msgs []Message
	for i := range 60 {
		msgs = append(msgs, keyed("finding-"+strconv.Itoa(i), i))
	}
	if err := p.Publish(ctx, TopicFindingEvents, msgs...); err != nil {
		t.Fatal(err)
	}

	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var total atomic.Int64
	parts := [2]map[int]int{{}, {}}
	var wg sync.WaitGroup
	for i, c := range []*Consumer{c1, c2} {
		wg.Go(func() {
			for {
				m, err := c.Fetch(fctx)
				if err != nil {
					return
				}
				parts[i][m.Partition]++
				if err := c.Commit(fctx, m); err != nil && fctx.Err() == nil {
					t.Errorf("commit: %v", err)
				}
				if total.Add(1) == int64(len(msgs)) {
					stop()
				}
			}
		})
	}
	wg.Wait()
	if total.Load() != int64(len(msgs)) {
		t.Fatalf("consumed %d of %d", total.Load(), len(msgs))
	}
	if len(parts[0]) == 0 || len(parts[1]) == 0 {
		t.Fatalf("one consumer got nothing: %v", parts)
	}
	all := map[int]bool{}
	for p := range parts[0] {
		if _, shared := parts[1][p]; shared {
			t.Fatalf("partition %d read by both consumers: %v", p, parts)
		}
		all[p] = true
	}
	for p := range parts[1] {
		all[p] = true
	}
	if len(all) != 6 {
		t.Fatalf("partitions read: %v, want all 6", parts)
	}
}

func TestPoisonGoesToDLQ(t *testing.T) {
	ctx := testCtx(t)
	e, cfg := startBroker(t)
	cfg.Metrics = NewMetrics()
	p := newTestProducer(t, cfg)

	good, err := Encode(TypeRunStarted, map[string]string{"run_id": "r1"})
	if err != nil {
		t.Fatal(err)
	}
	// Same key: same partition, so the poison one is met first.
	key := []byte("run-1")
	if err := p.Publish(ctx, TopicScanResults,
		Message{Key: key, Value: []byte("{broken"), Headers: map[string]string{"trace": "t1"}},
		Message{Key: key, Value: good},
	); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var handled []string
	c := NewConsumer(cfg, "ingest", TopicScanResults, testLogger(t))
	err = c.Run(runCtx, func(ctx context.Context, m Message) error {
		env, err := Decode(m.Value)
		if err != nil {
			return err
		}
		handled = append(handled, env.Type)
		stop()
		return nil
	}, RunOptions{DLQ: p})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(handled, []string{TypeRunStarted}) {
		t.Fatalf("handled %v", handled)
	}
	// Both offsets are committed: the loop moved on past the poison one.
	hw := highWatermarks(e, TopicScanResults)
	if c := commits(e, "ingest", TopicScanResults); !maps.Equal(c, hw) {
		t.Fatalf("commits %v, want %v", c, hw)
	}

	dlq := newTestConsumer(t, cfg, "dlq-reader", TopicDLQ)
	m := fetchN(t, ctx, dlq, 1)[0]
	var part int32
	for p := range hw {
		part = p
	}
	if string(m.Key) != "run-1" || string(m.Value) != "{broken" {
		t.Fatalf("DLQ message %q=%q", m.Key, m.Value)
	}
	h := m.Headers
	if !strings.Contains(h[HeaderError], "decode envelope") || h[HeaderOriginalTopic] != TopicScanResults ||
		h[HeaderOriginalPartition] != strconv.Itoa(int(part)) || h[HeaderOriginalOffset] != "0" ||
		h[HeaderGroup] != "ingest" || h["trace"] != "t1" || h[HeaderFailedAt] == "" {
		t.Fatalf("DLQ headers %v", h)
	}
	if got := testutil.ToFloat64(cfg.Metrics.dlq.WithLabelValues(TopicScanResults, "ingest")); got != 1 {
		t.Fatalf("dlq metric = %v", got)
	}
}

func TestRetriableErrorRetriesWithoutCommit(t *testing.T) {
	ctx := testCtx(t)
	e, cfg := startBroker(t)
	p := newTestProducer(t, cfg)
	if err := p.Publish(ctx, TopicScanRequests, keyed("schedule-1", 0)); err != nil {
		t.Fatal(err)
	}
	opts := RunOptions{DLQ: p, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

	// First run: the handler keeps failing; stop after the third attempt.
	runCtx, stop := context.WithCancel(ctx)
	var offsets []int64
	c1 := NewConsumer(cfg, "worker", TopicScanRequests, testLogger(t))
	err := c1.Run(runCtx, func(_ context.Context, m Message) error {
		offsets = append(offsets, m.Offset)
		if len(offsets) == 3 {
			stop()
		}
		return errors.New("database unavailable")
	}, opts)
	stop()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(offsets, []int64{0, 0, 0}) {
		t.Fatalf("attempted offsets %v, want the same message three times", offsets)
	}
	if c := commits(e, "worker", TopicScanRequests); len(c) != 0 {
		t.Fatalf("failed message was committed: %v", c)
	}

	// Second run: the message comes back; it fails once more, then works.
	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	attempts := 0
	var value string
	c2 := NewConsumer(cfg, "worker", TopicScanRequests, testLogger(t))
	err = c2.Run(runCtx, func(_ context.Context, m Message) error {
		attempts++
		if attempts == 1 {
			return errors.New("still down")
		}
		value = string(m.Value)
		stop()
		return nil
	}, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if attempts != 2 || value != "schedule-1/0" {
		t.Fatalf("attempts %d, value %q", attempts, value)
	}
	if c, hw := commits(e, "worker", TopicScanRequests), highWatermarks(e, TopicScanRequests); !maps.Equal(c, hw) {
		t.Fatalf("commits %v, want %v", c, hw)
	}
}

func TestRunDrainsInFlightHandler(t *testing.T) {
	ctx := testCtx(t)
	e, cfg := startBroker(t)
	p := newTestProducer(t, cfg)
	if err := p.Publish(ctx, TopicScanResults, keyed("run-9", 0)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	started := make(chan struct{})
	var handlerErr error
	errc := make(chan error, 1)
	c := NewConsumer(cfg, "drain", TopicScanResults, testLogger(t))
	go func() {
		errc <- c.Run(runCtx, func(hctx context.Context, _ Message) error {
			close(started)
			<-runCtx.Done() // shutdown begins while the handler works
			handlerErr = hctx.Err()
			return nil
		}, RunOptions{DLQ: p})
	}()
	<-started
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if handlerErr != nil {
		t.Fatalf("handler context cancelled with the run: %v", handlerErr)
	}
	if c, hw := commits(e, "drain", TopicScanResults), highWatermarks(e, TopicScanResults); !maps.Equal(c, hw) {
		t.Fatalf("in-flight message not committed: commits %v, want %v", c, hw)
	}
}

func TestOversizedMessageRejected(t *testing.T) {
	ctx := testCtx(t)

	t.Run("client limit", func(t *testing.T) {
		e, cfg := startBroker(t)
		cfg.MaxMessageBytes = 1000
		p := newTestProducer(t, cfg)
		err := p.Publish(ctx, TopicScanResults,
			Message{Key: []byte("k"), Value: make([]byte, 10)},
			Message{Key: []byte("k"), Value: make([]byte, 1000)},
		)
		if !errors.Is(err, ErrMessageTooLarge) {
			t.Fatalf("got %v, want ErrMessageTooLarge", err)
		}
		tl, ok := errors.AsType[*MessageTooLargeError](err)
		if !ok || tl.Index != 1 || tl.Size != 1001 || tl.Limit != 1000 {
			t.Fatalf("got %#v", err)
		}
		if !strings.Contains(err.Error(), "1001 bytes, over the 1000-byte limit") {
			t.Fatalf("unclear message: %v", err)
		}
		if hw := highWatermarks(e, TopicScanResults); len(hw) != 0 {
			t.Fatalf("something was sent: %v", hw)
		}
	})

	t.Run("broker limit", func(t *testing.T) {
		// A broker with a smaller message.max.bytes than the client's
		// limit: the rejection arrives inside kafka.WriteErrors.
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
			kfake.BrokerConfigs(map[string]string{"message.max.bytes": "20000"}))
		if err != nil {
			t.Fatal(err)
		}
		defer cluster.Close()
		cfg := testConfig(cluster.ListenAddrs())
		cfg.Compression = "none"
		if err := EnsureTopics(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		p := newTestProducer(t, cfg)
		big := make([]byte, 50_000)
		rand.Read(big)
		err = p.Publish(ctx, TopicScanResults, Message{Key: []byte("k"), Value: big})
		if err == nil {
			t.Fatal("broker accepted an oversized message")
		}
		pe, ok := errors.AsType[*PublishError](err)
		if !ok || len(pe.Errs) != 1 {
			t.Fatalf("got %#v, want a PublishError for one message", err)
		}
		if !errors.Is(err, ErrMessageTooLarge) || !errors.Is(err, kafka.MessageSizeTooLarge) {
			t.Fatalf("broker rejection not recognised: %v", err)
		}
	})
}

func TestEmbeddedKeepsDataAcrossRestart(t *testing.T) {
	ctx := testCtx(t)
	// An existing directory open to others is made private: the broker's
	// files inside are 0644 and hold every message.
	dir := filepath.Join(t.TempDir(), "kafka")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func() (*Embedded, Config) {
		e, err := StartEmbedded(ctx, EmbeddedConfig{DataDir: dir, GroupMinSessionTimeout: 500 * time.Millisecond}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return e, testConfig(e.Addrs())
	}

	e1, cfg := start()
	if fi, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Fatalf("broker data directory mode %v, want 0700", fi.Mode().Perm())
	}
	p := NewProducer(cfg, testLogger(t))
	var sent []Message
	for i := range 6 {
		sent = append(sent, keyed("run-"+strconv.Itoa(i%3), i))
	}
	if err := p.Publish(ctx, TopicScanResults, sent...); err != nil {
		t.Fatal(err)
	}
	c := NewConsumer(cfg, "ingest", TopicScanResults, testLogger(t))
	got := fetchN(t, ctx, c, len(sent))
	if err := c.Commit(ctx, got[:4]...); err != nil {
		t.Fatal(err)
	}
	c.Close()
	p.Close()
	e1.Close()

	e2, cfg := start()
	t.Cleanup(e2.Close) // after the consumers' cleanups, which run first
	c = newTestConsumer(t, cfg, "ingest", TopicScanResults)
	rest := fetchN(t, ctx, c, 2)
	want := []string{string(got[4].Value), string(got[5].Value)}
	var have []string
	for _, m := range rest {
		have = append(have, string(m.Value))
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(have, want) {
		t.Fatalf("after restart got %v, want the uncommitted %v", have, want)
	}
	c.Close()

	fresh := newTestConsumer(t, cfg, "fresh", TopicScanResults)
	if all := fetchN(t, ctx, fresh, len(sent)); len(all) != len(sent) {
		t.Fatalf("records lost across restart: %d of %d", len(all), len(sent))
	}
}

func TestEmbeddedAppliesRetention(t *testing.T) {
	ctx := testCtx(t)
	e, err := StartEmbedded(ctx, EmbeddedConfig{Retention: time.Millisecond, RetentionInterval: 20 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newTestProducer(t, testConfig(e.Addrs()))
	if err := p.Publish(ctx, TopicDLQ, keyed("k", 0)); err != nil {
		t.Fatal(err)
	}
	var part int32
	for p := range highWatermarks(e, TopicDLQ) {
		part = p
	}
	// Wait for the retention loop, not for a fixed time.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for e.cluster.PartitionInfo(TopicDLQ, part).LogStartOffset < 1 {
		select {
		case <-ctx.Done():
			t.Fatal("retention never removed the expired record")
		case <-tick.C:
		}
	}
}
