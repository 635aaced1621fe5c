package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/internal/testlog"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The relay's tests run it against the real PostgreSQL and the in-process
// Kafka-protocol broker. The topics have one partition, so that the log
// holds the relays' publishing order: a key whose messages were sent out
// of order, or sent twice, shows in it.

const (
	topic    = bus.TopicFindingEvents
	endKey   = "end"
	deadline = 60 * time.Second // for conditions polled; never a measure of speed
)

type env struct {
	t    *testing.T
	ctx  context.Context
	st   *store.Store
	log  *slog.Logger
	ecfg bus.EmbeddedConfig
	bcfg bus.Config
	prod *bus.Producer
	brk  *bus.Embedded
}

func newEnv(t *testing.T, dataDir string) *env {
	t.Helper()
	e := &env{t: t, ctx: t.Context(), log: testlog.New(t, slog.LevelError)}
	e.st, _ = storetest.New(t)
	e.ecfg = bus.EmbeddedConfig{Port: freePort(t), Partitions: 1, DataDir: dataDir, GroupMinSessionTimeout: 500 * time.Millisecond}
	e.startBroker()
	e.bcfg = bus.Config{
		Brokers:           []string{fmt.Sprintf("127.0.0.1:%d", e.ecfg.Port)},
		Partitions:        1,
		SessionTimeout:    2 * time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
	}.WithDefaults()
	e.prod = bus.NewProducer(e.bcfg, e.log)
	t.Cleanup(func() { e.prod.Close() })
	return e
}

// startBroker starts (or restarts on the same port and data directory)
// the broker.
func (e *env) startBroker() {
	e.t.Helper()
	var err error
	e.waitFor("the broker to start", func() bool {
		// The port of a broker just closed can take a moment to free up.
		e.brk, err = bus.StartEmbedded(e.ctx, e.ecfg, e.log)
		return err == nil
	})
	b := e.brk
	e.t.Cleanup(b.Close)
}

// run starts a relay over pub and returns a function that stops it and
// waits for it.
func (e *env) run(pub relay.Publisher, opts ...relay.Option) (stop func()) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	r := relay.New(e.st, pub, e.log, opts...)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("relay: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// enqueue commits rows in one transaction: key i's payload is "key/seq".
func (e *env) enqueue(rows ...[2]string) {
	e.t.Helper()
	err := e.st.InTx(e.ctx, func(tx *store.Tx) error {
		for _, r := range rows {
			if _, err := store.Enqueue(e.ctx, tx, topic, r[0], []byte(r[0]+"/"+r[1]), map[string]string{"seq": r[1]}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pending() int {
	e.t.Helper()
	n, err := e.st.PendingOutbox(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %s: %v", what, e.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// delivered sends an end marker through the outbox once everything before
// it is sent, and returns what the topic holds before the marker.
func (e *env) delivered() []bus.Message {
	e.t.Helper()
	e.waitFor("the outbox to drain", func() bool { return e.pending() == 0 })
	e.enqueue([2]string{endKey, "0"})
	e.waitFor("the end marker to be sent", func() bool { return e.pending() == 0 })
	c := bus.NewConsumer(e.bcfg, "reader-"+bus.NewID(), topic, e.log)
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, deadline)
	defer cancel()
	var out []bus.Message
	for {
		m, err := c.Fetch(ctx)
		if err != nil {
			e.t.Fatalf("reading %s after %d messages: %v", topic, len(out), err)
		}
		if string(m.Key) == endKey {
			return out
		}
		out = append(out, m)
	}
}

// checkExactlyInOrder checks that msgs hold, per key, seq 0..n-1 once each
// and in that order.
func checkExactlyInOrder(t *testing.T, msgs []bus.Message, perKey map[string]int) {
	t.Helper()
	next := map[string]int{}
	for i, m := range msgs {
		k := string(m.Key)
		want := fmt.Sprintf("%s/%d", k, next[k])
		if string(m.Value) != want || m.Headers["seq"] != strconv.Itoa(next[k]) {
			t.Fatalf("message %d of the log is %q (seq header %q), want %q: sent out of order or twice", i, m.Value, m.Headers["seq"], want)
		}
		next[k]++
	}
	for k, n := range perKey {
		if next[k] != n {
			t.Fatalf("key %s: %d messages delivered, want %d", k, next[k], n)
		}
	}
	if len(next) != len(perKey) {
		t.Fatalf("keys delivered %v, want %v", next, perKey)
	}
}

// interleaved returns rows for keys, n each, round-robin.
func interleaved(keys []string, from, n int) [][2]string {
	var rows [][2]string
	for i := from; i < from+n; i++ {
		for _, k := range keys {
			rows = append(rows, [2]string{k, strconv.Itoa(i)})
		}
	}
	return rows
}

func TestDeliversInOrderPerKey(t *testing.T) {
	e := newEnv(t, "")
	keys := []string{"a", "b", "c"}
	// Several transactions, some before the relay starts, some after.
	e.enqueue(interleaved(keys, 0, 10)...)
	e.run(e.prod, relay.WithBatchSize(7), relay.WithPollInterval(50*time.Millisecond))
	e.enqueue(interleaved(keys, 10, 10)...)
	for i := 20; i < 25; i++ {
		e.enqueue(interleaved(keys, i, 1)...)
	}
	checkExactlyInOrder(t, e.delivered(), map[string]int{"a": 25, "b": 25, "c": 25})
}

// TestRunQueuedOnDelivery: a row that carries a run id moves its run from
// received to queued when it is delivered, not before.
func TestRunQueuedOnDelivery(t *testing.T) {
	e := newEnv(t, "")
	runID := bus.NewID()
	err := e.st.InTx(e.ctx, func(tx *store.Tx) error {
		sha, err := e.st.PutArtifact(e.ctx, tx, strings.NewReader("{}"), "sarif")
		if err != nil {
			return err
		}
		if err := store.CreateRun(e.ctx, tx, store.NewRun{ID: runID, Kind: "code", Scope: "s", Tool: "t", Format: "sarif", ArtifactSHA: sha}); err != nil {
			return err
		}
		_, err = store.Enqueue(e.ctx, tx, bus.TopicScanResults, runID, []byte("x"), map[string]string{relay.HeaderRunID: runID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	status := func() string {
		in, err := e.st.GetRunInput(e.ctx, runID)
		if err != nil {
			t.Fatal(err)
		}
		return string(in.Status)
	}
	if s := status(); s != "received" {
		t.Fatalf("before delivery: %s, want received", s)
	}
	e.run(e.prod, relay.WithPollInterval(50*time.Millisecond))
	e.waitFor("the run to be queued", func() bool { return status() == "queued" })
}

// TestBrokerOutage: with the broker gone the rows stay in the outbox with
// the error recorded, however many attempts fail (an outage is not the
// rows' fault: none is dead-lettered); once it is back they are all
// delivered, in order.
func TestBrokerOutage(t *testing.T) {
	e := newEnv(t, t.TempDir())
	keys := []string{"a", "b"}
	e.run(e.prod, relay.WithBatchSize(5), relay.WithPollInterval(50*time.Millisecond), relay.WithMaxAttempts(1))
	e.enqueue(interleaved(keys, 0, 5)...)
	e.waitFor("the first rows to be sent", func() bool { return e.pending() == 0 })

	e.brk.Close()
	e.enqueue(interleaved(keys, 5, 10)...)
	db := storetest.SQL(t, e.st)
	e.waitFor("failed deliveries to be recorded", func() bool {
		var failed int
		if err := db.QueryRow(e.ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL AND last_error IS NOT NULL AND attempts >= 2`).Scan(&failed); err != nil {
			t.Fatal(err)
		}
		return failed > 0
	})
	if n := e.pending(); n != 20 {
		t.Fatalf("%d rows pending with the broker down, want 20", n)
	}

	e.startBroker()
	checkExactlyInOrder(t, e.delivered(), map[string]int{"a": 15, "b": 15})
	if d := e.dead(); len(d) != 0 {
		t.Fatalf("dead-lettered during the outage: %v", d)
	}
}

// gate holds the first Publish until released, to keep a relay's claim
// open while another relay works.
type gate struct {
	relay.Publisher
	once     sync.Once
	entered  chan struct{}
	released chan struct{}
}

func (g *gate) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	g.once.Do(func() {
		close(g.entered)
		select {
		case <-g.released:
		case <-ctx.Done():
		}
	})
	return g.Publisher.Publish(ctx, topic, msgs...)
}

// counter records which keys a relay published.
type counter struct {
	relay.Publisher
	mu   sync.Mutex
	keys map[string]int
	sent chan struct{} // closed on the first publish
	once sync.Once
}

func (c *counter) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	if err := c.Publisher.Publish(ctx, topic, msgs...); err != nil {
		return err
	}
	c.mu.Lock()
	for _, m := range msgs {
		c.keys[string(m.Key)]++
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.sent) })
	return nil
}

// TestReplicasShareWork runs two relays on one outbox. The first is held
// inside its first publish, its claim open, while the second works: the
// second must deliver rows the first did not claim, and must not send a
// row of a key whose earlier row the first still holds. In the end every
// row is sent exactly once and each key's rows are in order.
func TestReplicasShareWork(t *testing.T) {
	e := newEnv(t, "")
	// The first batch (5 rows) is key a only; later rows mix all keys.
	e.enqueue(interleaved([]string{"a"}, 0, 5)...)
	e.enqueue(interleaved([]string{"a", "b", "c", "d"}, 5, 20)...)
	// b, c and d start at seq 5; give them 0..4 after a's first five.
	e.enqueue(interleaved([]string{"b", "c", "d"}, 25, 5)...)

	g := &gate{Publisher: e.prod, entered: make(chan struct{}), released: make(chan struct{})}
	e.run(g, relay.WithBatchSize(5), relay.WithPollInterval(20*time.Millisecond))
	select {
	case <-g.entered:
	case <-time.After(deadline):
		t.Fatal("the first relay never published")
	}
	second := &counter{Publisher: e.prod, keys: map[string]int{}, sent: make(chan struct{})}
	e.run(second, relay.WithBatchSize(5), relay.WithPollInterval(20*time.Millisecond))
	select {
	case <-second.sent:
	case <-time.After(deadline):
		t.Fatal("the second relay sent nothing while the first held its claim")
	}
	close(g.released)

	msgs := e.delivered()
	// Renumber: keys b, c, d were enqueued as 5..24 then 25..29; check
	// their order by that sequence.
	next := map[string]int{}
	for i, m := range msgs {
		k := string(m.Key)
		seq, _ := strconv.Atoi(m.Headers["seq"])
		if k != "a" && next[k] == 0 {
			next[k] = 5
		}
		if seq != next[k] {
			t.Fatalf("message %d: key %s seq %d, want %d: out of order or twice", i, k, seq, next[k])
		}
		next[k]++
	}
	if want := map[string]int{"a": 25, "b": 30, "c": 30, "d": 30}; fmt.Sprint(next) != fmt.Sprint(want) {
		t.Fatalf("next seq per key %v, want %v", next, want)
	}
	var attempts []int
	db := storetest.SQL(t, e.st)
	rows, err := db.Query(e.ctx, `SELECT attempts FROM outbox WHERE key <> $1`, endKey)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		attempts = append(attempts, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, n := range attempts {
		if n != 1 {
			t.Fatalf("outbox row %d was attempted %d times, want once", i, n)
		}
	}
	second.mu.Lock()
	defer second.mu.Unlock()
	if second.keys["a"] > 20 || len(second.keys) == 0 {
		t.Fatalf("second relay sent %v", second.keys)
	}
}

// TestNotifyWakesRelay: with polling practically off, a committed row is
// delivered because its NOTIFY wakes the relay.
func TestNotifyWakesRelay(t *testing.T) {
	e := newEnv(t, "")
	e.run(e.prod, relay.WithPollInterval(24*time.Hour))
	db := storetest.SQL(t, e.st)
	e.waitFor("the relay to listen", func() bool {
		var n int
		if err := db.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = $1 AND state = 'idle'`,
			"LISTEN "+store.OutboxChannel).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	// The first drain ran before anything was queued, so from here only a
	// notification can wake the relay within the test's lifetime.
	e.enqueue([2]string{"a", "0"}, [2]string{"a", "1"})
	checkExactlyInOrder(t, e.delivered(), map[string]int{"a": 2})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
