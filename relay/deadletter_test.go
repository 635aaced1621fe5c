package relay_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// The tests here give the relay rows it cannot publish. Such a row must be
// dead-lettered (marked failed, counted, its run failed, a copy in the
// DLQ) and must not hold back the rows behind it, those of its own key
// included; a failure that is not the row's must only delay it.

// row is an outbox row to enqueue: key, seq, and optionally a payload of
// its own (default "key/seq") and a run it queues.
type row struct {
	key, seq string
	payload  []byte
	runID    string
}

func (e *env) enqueueRows(rows ...row) {
	e.t.Helper()
	err := e.st.InTx(e.ctx, func(tx *store.Tx) error {
		for _, r := range rows {
			p := r.payload
			if p == nil {
				p = []byte(r.key + "/" + r.seq)
			}
			hdr := map[string]string{"seq": r.seq}
			if r.runID != "" {
				hdr[relay.HeaderRunID] = r.runID
			}
			if _, err := store.Enqueue(e.ctx, tx, topic, r.key, p, hdr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// newRun records a run in status received, as an upload does, and
// returns its id.
func (e *env) newRun() string {
	e.t.Helper()
	id := bus.NewID()
	err := e.st.InTx(e.ctx, func(tx *store.Tx) error {
		sha, err := e.st.PutArtifact(e.ctx, tx, strings.NewReader("{}"), "sarif")
		if err != nil {
			return err
		}
		return store.CreateRun(e.ctx, tx, store.NewRun{ID: id, Kind: "code", Scope: "s", Tool: "t", Format: "sarif", ArtifactSHA: sha})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// checkSeqs checks that msgs hold, per key, exactly the seq headers want
// gives, in that order.
func checkSeqs(t *testing.T, msgs []bus.Message, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, m := range msgs {
		k := string(m.Key)
		got[k] = append(got[k], m.Headers["seq"])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered per key %v, want %v", got, want)
	}
}

// dead returns the dead-lettered rows' seq headers and errors.
func (e *env) dead() map[string]string {
	e.t.Helper()
	rows, err := storetest.SQL(e.t, e.st).Query(e.ctx, `
		SELECT headers->>'seq', coalesce(last_error, '') FROM outbox WHERE failed_at IS NOT NULL AND sent_at IS NULL`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var seq, reason string
		if err := rows.Scan(&seq, &reason); err != nil {
			e.t.Fatal(err)
		}
		out[seq] = reason
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// readDLQ returns the first n messages of the DLQ.
func (e *env) readDLQ(n int) []bus.Message {
	e.t.Helper()
	c := bus.NewConsumer(e.bcfg, "dlq-"+bus.NewID(), bus.TopicDLQ, e.log)
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, deadline)
	defer cancel()
	var out []bus.Message
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			e.t.Fatalf("reading the DLQ after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// newLimitedEnv is newEnv on a broker whose message.max.bytes is limit,
// so that the broker, not the client, refuses a larger message.
func newLimitedEnv(t *testing.T, limit int) *env {
	t.Helper()
	e := newEnv(t, "")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1), kfake.GroupMinSessionTimeout(500*time.Millisecond),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(limit)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e.bcfg.Brokers = cluster.ListenAddrs()
	e.bcfg.Compression = "none" // the payloads are random: the sizes are what the broker sees
	if err := bus.EnsureTopics(e.ctx, e.bcfg); err != nil {
		t.Fatal(err)
	}
	e.prod = bus.NewProducer(e.bcfg, e.log)
	t.Cleanup(func() { e.prod.Close() })
	return e
}

// TestUnpublishableRowDeadLettered queues a row the broker will never
// take among rows of its own key and another, refused by the client's
// limit before sending or by the broker's on receipt: the row is
// dead-lettered (failed in the outbox with the reason, counted, its run
// failed with the reason, a copy without its payload in the DLQ) and
// every other row is delivered, each key's in order.
func TestUnpublishableRowDeadLettered(t *testing.T) {
	cases := []struct {
		name   string
		env    func(t *testing.T) *env
		size   int
		reason string
	}{
		{"over the client's limit", func(t *testing.T) *env { return newEnv(t, "") }, bus.DefaultMaxMessageBytes + 1, "over the 900000-byte limit"},
		{"refused by the broker", func(t *testing.T) *env { return newLimitedEnv(t, 20_000) }, 50_000, "message size too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.env(t)
			big := make([]byte, c.size)
			rand.Read(big)
			runID := e.newRun()
			// Batches of 3 split the rows over passes: the rows after the
			// dead one come in a later claim, behind a row that is no
			// longer pending.
			e.enqueueRows(row{key: "a", seq: "0"}, row{key: "b", seq: "0"}, row{key: "a", seq: "1", payload: big, runID: runID},
				row{key: "a", seq: "2"}, row{key: "b", seq: "1"}, row{key: "a", seq: "3"}, row{key: "b", seq: "2"})
			reg := prometheus.NewRegistry()
			e.run(e.prod, relay.WithBatchSize(3), relay.WithPollInterval(50*time.Millisecond), relay.WithMetrics(reg))

			checkSeqs(t, e.delivered(), map[string][]string{"a": {"0", "2", "3"}, "b": {"0", "1", "2"}})
			dead := e.dead()
			if len(dead) != 1 || !strings.Contains(strings.ToLower(dead["1"]), c.reason) {
				t.Fatalf("dead-lettered rows %v, want a/1 with %q", dead, c.reason)
			}
			if n := counterValue(t, reg, "starpipe_outbox_dead_lettered_total"); n != 1 {
				t.Fatalf("starpipe_outbox_dead_lettered_total = %v, want 1", n)
			}
			run, err := e.st.GetRun(e.ctx, runID)
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != "failed" || !strings.Contains(run.Error, "could not be delivered to Kafka") || !strings.Contains(strings.ToLower(run.Error), c.reason) {
				t.Fatalf("run of the dead row: status %s, error %q", run.Status, run.Error)
			}
			m := e.readDLQ(1)[0]
			if string(m.Key) != "a" || m.Value != nil || m.Headers[bus.HeaderValueDropped] != "true" ||
				m.Headers[bus.HeaderOriginalTopic] != topic || m.Headers["seq"] != "1" || m.Headers[relay.HeaderOutboxID] == "" ||
				m.Headers[relay.HeaderRunID] != runID || !strings.Contains(strings.ToLower(m.Headers[bus.HeaderError]), c.reason) {
				t.Fatalf("DLQ copy: key %q, %d bytes, headers %v", m.Key, len(m.Value), m.Headers)
			}
		})
	}
}

// refuser stands between the relay and the producer: while budget lasts,
// a call to the test topic that holds the marked row fails as a broker
// would fail a record batch, every message of it with code (nothing is
// sent).
type refuser struct {
	relay.Publisher
	mark   string // the payload of the row refused
	code   kafka.Error
	mu     sync.Mutex
	budget int // calls still to refuse; negative: every call
	alone  int // calls refused that held the marked row alone
}

func (r *refuser) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	r.mu.Lock()
	refuse := r.budget != 0 && topic == relayTopic &&
		slices.ContainsFunc(msgs, func(m bus.Message) bool { return string(m.Value) == r.mark })
	if refuse {
		r.budget--
		if len(msgs) == 1 {
			r.alone++
		}
	}
	r.mu.Unlock()
	if !refuse {
		return r.Publisher.Publish(ctx, topic, msgs...)
	}
	errs := make([]error, len(msgs))
	for i := range errs {
		errs[i] = r.code
	}
	return &bus.PublishError{Topic: topic, Errs: errs}
}

func (r *refuser) refusedAlone() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alone
}

const relayTopic = topic

// TestRefusedRows: a row the broker refuses with a code that may pass is
// dead-lettered only after relay.max_attempts refusals, and delivered in
// its place when the refusals stop before that; a temporary broker
// error (a leader election) is never held against the row, however often
// it comes. Either way the other rows flow, in order.
func TestRefusedRows(t *testing.T) {
	const maxAttempts = 3
	cases := []struct {
		name    string
		code    kafka.Error
		budget  int
		wantA   []string
		deadErr string
	}{
		{"refused every time", kafka.PolicyViolation, -1, []string{"0", "2"}, "refused 3 times"},
		{"refused less than max attempts", kafka.PolicyViolation, maxAttempts - 1, []string{"0", "1", "2"}, ""},
		// Each failure ends the pass and the relay backs off: a few more
		// than max attempts keep the test short.
		{"temporary code, often", kafka.NotLeaderForPartition, maxAttempts + 1, []string{"0", "1", "2"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.enqueueRows(row{key: "a", seq: "0"}, row{key: "a", seq: "1"}, row{key: "b", seq: "0"}, row{key: "a", seq: "2"}, row{key: "b", seq: "1"})
			pub := &refuser{Publisher: e.prod, mark: "a/1", code: c.code, budget: c.budget}
			reg := prometheus.NewRegistry()
			e.run(pub, relay.WithMaxAttempts(maxAttempts), relay.WithPollInterval(20*time.Millisecond), relay.WithMetrics(reg))

			checkSeqs(t, e.delivered(), map[string][]string{"a": c.wantA, "b": {"0", "1"}})
			dead := e.dead()
			wantDead := 0.0
			if c.deadErr != "" {
				wantDead = 1
				if len(dead) != 1 || !strings.Contains(dead["1"], c.deadErr) || !strings.Contains(dead["1"], "Policy Violation") {
					t.Fatalf("dead-lettered rows %v, want a/1 with %q", dead, c.deadErr)
				}
				// A refusal of a whole batch blamed nobody: only the calls
				// that held the row alone counted.
				if n := pub.refusedAlone(); n != maxAttempts {
					t.Errorf("refused alone %d times, want %d", n, maxAttempts)
				}
			} else if len(dead) != 0 {
				t.Fatalf("dead-lettered rows %v, want none", dead)
			}
			if n := counterValue(t, reg, "starpipe_outbox_dead_lettered_total"); n != wantDead {
				t.Fatalf("starpipe_outbox_dead_lettered_total = %v, want %v", n, wantDead)
			}
		})
	}
}

// TestDLQUnavailable: a row refused for good while the DLQ cannot be
// written to is not dead-lettered (it would leave no trace in Kafka): it
// stays pending, holding its key, and is dead-lettered once the DLQ takes
// its copy.
func TestDLQUnavailable(t *testing.T) {
	e := newEnv(t, "")
	big := make([]byte, bus.DefaultMaxMessageBytes+1)
	e.enqueueRows(row{key: "a", seq: "0", payload: big}, row{key: "a", seq: "1"}, row{key: "b", seq: "0"})
	pub := &dlqGate{Publisher: e.prod, open: make(chan struct{})}
	e.run(pub, relay.WithPollInterval(20*time.Millisecond))
	e.waitFor("a DLQ attempt", func() bool { return pub.attempts() >= 2 })
	if d := e.dead(); len(d) != 0 {
		t.Fatalf("dead-lettered without a DLQ copy: %v", d)
	}
	if n := e.pending(); n != 2 {
		t.Fatalf("%d rows pending, want the big row and the row behind it", n)
	}
	close(pub.open)
	checkSeqs(t, e.delivered(), map[string][]string{"a": {"1"}, "b": {"0"}})
	if d := e.dead(); len(d) != 1 {
		t.Fatalf("dead-lettered rows %v, want the big one", d)
	}
}

// dlqGate fails every publish to the DLQ until open is closed.
type dlqGate struct {
	relay.Publisher
	open chan struct{}
	mu   sync.Mutex
	n    int
}

func (g *dlqGate) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	if topic == bus.TopicDLQ {
		select {
		case <-g.open:
		default:
			g.mu.Lock()
			g.n++
			g.mu.Unlock()
			return errors.New("dlq unavailable")
		}
	}
	return g.Publisher.Publish(ctx, topic, msgs...)
}

func (g *dlqGate) attempts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// TestDeadScanRequestFailsLedgerRow: a scan request that is dead-lettered
// fails the ledger row it was queued for, saying why, instead of leaving
// it pending until the scheduler gives it up as abandoned.
func TestDeadScanRequestFailsLedgerRow(t *testing.T) {
	e := newEnv(t, "")
	spec := []byte(`{"name":"web","kind":"external","cadence":"daily@02:00","targets":{"urls":["http://a:1"]}}`)
	if _, err := e.st.UpsertSchedule(e.ctx, store.Schedule{Name: "web", Kind: "external", Enabled: true, Cadence: "daily@02:00", Spec: spec}, "test"); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	c, err := e.st.ClaimDue(e.ctx, store.ClaimRequest{Schedule: "web", Due: due, Now: due,
		Enqueue: func(ctx context.Context, tx *store.Tx, c store.Claim) error {
			_, err := store.Enqueue(ctx, tx, bus.TopicScanRequests, "web", make([]byte, bus.DefaultMaxMessageBytes+1),
				map[string]string{store.HeaderLedgerID: strconv.FormatInt(c.LedgerID, 10)})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	e.run(e.prod, relay.WithPollInterval(50*time.Millisecond))
	e.waitFor("the request to be dead-lettered", func() bool { return e.pending() == 0 })
	l, err := e.st.GetLedgerEntry(e.ctx, c.LedgerID)
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != finding.LedgerFailed || !strings.Contains(l.Error, "could not be delivered to Kafka") {
		t.Fatalf("ledger row %+v, want failed as undeliverable", l)
	}
}
