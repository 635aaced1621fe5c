package pipeline_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/corpus"
	"github.com/starpipe/starpipe/internal/daemon"
	"github.com/starpipe/starpipe/internal/testlog"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// The tests in this package run the pipeline against the real thing: a
// private PostgreSQL (storetest, or a pgcluster of their own where the
// server must be stopped) and the Kafka protocol through the embedded kfake
// broker. Nothing stands in for either.

func TestMain(m *testing.M) { storetest.Main(m) }

// harnessOpts tune newHarness.
type harnessOpts struct {
	// st and dbURL, when set, are the database instead of a fresh
	// storetest one (st is what the test reads through).
	st    *store.Store
	dbURL string
	// embedded configures the broker; Port and DataDir let a test restart
	// it in place.
	embedded bus.EmbeddedConfig
	// noBroker starts nothing Kafka-side: the test starts the broker.
	noBroker bool
	// batchSize is findings per message (default 50: small files still
	// span several batches).
	batchSize int
	// noConsumer starts a daemon with the relay role only: the test
	// starts ingest daemons itself (startIngest).
	noConsumer bool
	// wrap, when set, wraps the ingest consumer's handler.
	wrap     func(bus.Handler) bus.Handler
	logLevel slog.Level
}

// harness is one pipeline as `starpipe serve` builds it: a daemon
// (internal/daemon) with the relay and ingest roles on a database and the
// embedded broker, which the harness controls so that a test can restart
// it.
type harness struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	dbURL  string
	log    *slog.Logger
	o      harnessOpts
	ecfg   bus.EmbeddedConfig
	broker *bus.Embedded
	bcfg   bus.Config
	prod   *bus.Producer
	intake *pipeline.Intake
}

const group = daemon.GroupIngest

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, ctx: t.Context(), o: o}
	h.log = testLogger(t, o.logLevel)
	if o.st != nil {
		h.st, h.dbURL = o.st, o.dbURL
	} else {
		h.st, h.dbURL = storetest.New(t)
	}
	h.ecfg = o.embedded
	if h.ecfg.GroupMinSessionTimeout == 0 {
		h.ecfg.GroupMinSessionTimeout = 500 * time.Millisecond
	}
	if h.ecfg.Partitions == 0 {
		h.ecfg.Partitions = 2
	}
	if h.ecfg.Port == 0 {
		h.ecfg.Port = freePort(t)
	}
	if !o.noBroker {
		h.startBroker()
	}
	roles := []string{config.RoleRelay, config.RoleIngest}
	if o.noConsumer {
		roles = roles[:1]
	}
	d, _ := h.startDaemon(roles, o.wrap, nil)
	h.bcfg, h.prod, h.intake = d.BusConfig(), d.Producer(), d.Intake()
	return h
}

// startDaemon builds and runs a daemon with roles on the harness's
// database and broker; the returned function stops it (as SIGTERM does)
// and returns Run's result. The test's end stops it too.
func (h *harness) startDaemon(roles []string, wrap func(bus.Handler) bus.Handler, tune func(*config.Config), extra ...daemon.Option) (*daemon.Daemon, func() error) {
	h.t.Helper()
	cfg := config.Default()
	cfg.Roles = roles
	cfg.StateDir = h.t.TempDir()
	cfg.Database.URL = h.dbURL
	cfg.Database.MaxConns = 8
	cfg.Kafka.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", h.ecfg.Port)}
	cfg.Kafka.Partitions = h.ecfg.Partitions
	cfg.Ingest.BatchSize = cmp.Or(h.o.batchSize, 50)
	cfg.Ingest.Concurrency = 4
	// In-flight messages get half of what is left after the delay.
	cfg.ShutdownTimeout, cfg.ShutdownDelay = 20*time.Second, 0
	if tune != nil {
		tune(&cfg)
	}
	opts := []daemon.Option{
		daemon.WithLogger(h.log),
		daemon.WithBusConfig(func(c *bus.Config) {
			c.SessionTimeout = 2 * time.Second
			c.HeartbeatInterval = 200 * time.Millisecond
		}),
		daemon.WithRunOptions(func(_ string, ro *bus.RunOptions) {
			ro.InitialBackoff, ro.MaxBackoff = 50*time.Millisecond, time.Second
		}),
		daemon.WithRelayOptions(relay.WithPollInterval(200 * time.Millisecond)),
	}
	if wrap != nil {
		opts = append(opts, daemon.WithIngestHandler(wrap))
	}
	opts = append(opts, extra...)
	d, err := daemon.New(h.ctx, cfg, opts...)
	if err != nil {
		h.t.Fatalf("building the daemon: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(h.ctx))
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		if runErr = d.Run(ctx); runErr != nil && ctx.Err() == nil {
			// A part failed and took the daemon down, as it would a
			// process; the test then fails waiting for its condition.
			h.log.Error("daemon stopped", "err", runErr)
		}
	}()
	var once sync.Once
	stop := func() error {
		once.Do(func() {
			cancel()
			<-done
		})
		return runErr
	}
	h.t.Cleanup(func() {
		if err := stop(); err != nil {
			h.t.Errorf("daemon %v: %v", roles, err)
		}
	})
	return d, stop
}

// startIngest starts a daemon with the ingest role only, its handler
// wrapped by wrap (nil for none).
func (h *harness) startIngest(wrap func(bus.Handler) bus.Handler) func() error {
	_, stop := h.startDaemon([]string{config.RoleIngest}, wrap, nil)
	return stop
}

// startBroker starts (or restarts, with the same port and data directory)
// the embedded broker.
func (h *harness) startBroker() {
	h.t.Helper()
	var err error
	// The port of a broker just closed can take a moment to free up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.broker, err = bus.StartEmbedded(h.ctx, h.ecfg, h.log)
		if err == nil || time.Now().After(deadline) {
			break
		}
		if !pollWait(h.ctx, 100*time.Millisecond) {
			break
		}
	}
	if err != nil {
		h.t.Fatalf("starting embedded broker: %v", err)
	}
	b := h.broker
	h.t.Cleanup(b.Close)
}

// submit uploads data for scope and returns the run id.
func (h *harness) submit(scope string, data []byte) string {
	h.t.Helper()
	id, err := h.intake.Submit(h.ctx, bytes.NewReader(data), pipeline.Request{Scope: scope, FileName: scope + ".sarif"})
	if err != nil {
		h.t.Fatalf("submit %s: %v", scope, err)
	}
	return id
}

// waitRunStatus polls the run until it has status want, and fails the test
// at the deadline or as soon as the run ends in another status.
func (h *harness) waitRunStatus(runID, want string, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var status, errText string
	for {
		err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT status, coalesce(error, '') FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&status, &errText)
		if err == nil {
			if status == want {
				return
			}
			if status == "succeeded" || status == "failed" {
				h.t.Fatalf("run %s ended %s (error %q), want %s", runID, status, errText, want)
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("run %s still %q (error %q, last query error %v) after %s, want %s", runID, status, errText, err, timeout, want)
		}
		if !pollWait(h.ctx, 20*time.Millisecond) {
			h.t.Fatalf("waiting for run %s: %v", runID, h.ctx.Err())
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		if !pollWait(h.ctx, 20*time.Millisecond) {
			h.t.Fatalf("waiting for %s: %v", what, h.ctx.Err())
		}
	}
}

// count runs a SELECT count(*) ... query.
func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// countFindings counts the findings of scope with status ("" for any).
func (h *harness) countFindings(scope, status string) int {
	h.t.Helper()
	return h.count(`SELECT count(*) FROM findings WHERE scope = $1 AND ($2 = '' OR status = $2)`, scope, status)
}

// tally is every row count a run leaves behind, for exact comparisons.
type tally struct {
	Findings, Observations, Links, Batches, BatchesStored int
	Opened, Resolved, Reopened                            int // activity rows
	Events                                                int // outbox rows on finding.events for the run
}

func (h *harness) tally(runID, scope string) tally {
	h.t.Helper()
	var t tally
	t.Findings = h.countFindings(scope, "")
	t.Observations = h.count(`SELECT count(*) FROM observations WHERE run_id = $1::uuid`, runID)
	t.Links = h.count(`SELECT count(*) FROM control_links l JOIN findings f ON f.id = l.finding_id WHERE f.scope = $1`, scope)
	t.Batches = h.count(`SELECT count(*) FROM run_batches WHERE run_id = $1::uuid`, runID)
	t.BatchesStored = h.count(`SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, runID)
	act := func(action string) int {
		return h.count(`SELECT count(*) FROM activity_log WHERE run_id = $1::uuid AND action = $2`, runID, action)
	}
	t.Opened, t.Resolved, t.Reopened = act("finding.opened"), act("finding.resolved"), act("finding.reopened")
	t.Events = h.count(`SELECT count(*) FROM outbox WHERE topic = $1 AND convert_from(payload, 'UTF8')::jsonb->'payload'->>'run_id' = $2`,
		bus.TopicFindingEvents, runID)
	return t
}

// runError returns a run's error text.
func (h *harness) runError(runID string) string {
	h.t.Helper()
	var s string
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT coalesce(error, '') FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// readTopic reads topic from the start with a fresh group until want
// messages arrived (failing at the deadline) and returns them. It then
// reads on briefly so that a surplus shows.
func (h *harness) readTopic(topic string, want int, timeout time.Duration) []bus.Message {
	h.t.Helper()
	c := bus.NewConsumer(h.bcfg, "reader-"+bus.NewID(), topic, h.log)
	defer c.Close()
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	var out []bus.Message
	for len(out) < want {
		m, err := c.Fetch(ctx)
		if err != nil {
			h.t.Fatalf("reading %s: got %d of %d messages: %v", topic, len(out), want, err)
		}
		out = append(out, m)
	}
	// Anything beyond want would be a duplicate: give it a moment to show.
	extra, cancel2 := context.WithTimeout(h.ctx, time.Second)
	defer cancel2()
	for {
		m, err := c.Fetch(extra)
		if err != nil {
			break
		}
		out = append(out, m)
	}
	return out
}

// genSARIF writes a SARIF log from tool with one result per id; the same id
// always yields the same finding (fingerprint), different ids different
// ones.
func genSARIF(tool string, ids []int) []byte {
	var b bytes.Buffer
	b.Grow(len(ids)*420 + 8192)
	fmt.Fprintf(&b, `{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{"tool":{"driver":{"name":%q,"version":"1.4.2","informationUri":"https://example.com/synth","rules":[`, tool)
	sev := []string{"9.8", "7.5", "5.3", "3.1", "8.1"}
	cwe := []int{79, 89, 22, 798, 327, 502, 611, 918}
	for r := range numRules {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"SYN%03d","name":"SyntheticRule%d","shortDescription":{"text":"Synthetic rule %d"},"fullDescription":{"text":"A synthetic rule used to exercise the ingest pipeline end to end."},"help":{"text":"Fix it."},"properties":{"security-severity":%q,"tags":["security","external/cwe/cwe-%d"],"precision":"high"}}`,
			r, r, r, sev[r%len(sev)], cwe[r%len(cwe)])
	}
	b.WriteString(`]}},"results":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		r := id % numRules
		fmt.Fprintf(&b, `{"ruleId":"SYN%03d","ruleIndex":%d,"level":"warning","message":{"text":"Synthetic finding %d: untrusted data flows into a sensitive sink."},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"src/pkg%d/file%d.go","uriBaseId":"%%SRCROOT%%"},"region":{"startLine":%d,"startColumn":5,"endColumn":42,"snippet":{"text":"sink(userInput%d)"}}}}],"partialFingerprints":{"primaryLocationLineHash":"%016x:1"}}`,
			r, r, id, id%97, id, id%5000+1, id, uint64(id)*0x9e3779b97f4a7c15)
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

const numRules = 20

// seq returns [from, to).
func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// corpusFile reads a file of the shared scanner corpus (see
// internal/corpus).
func corpusFile(t testing.TB, rel string) []byte {
	t.Helper()
	return corpus.Read(t, rel)
}

// freePort picks a port on 127.0.0.1 that is free right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pollWait waits d unless ctx ends first; it reports whether ctx is alive.
func pollWait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// testLogger sends records at level and above (errors when level is zero)
// to the test log.
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	if level == 0 {
		level = slog.LevelError
	}
	return testlog.New(t, level)
}

// isTerminal reports a run status that will not change again.
func isTerminal(s string) bool { return s == "succeeded" || s == "failed" }

var errCrash = errors.New("simulated crash")
