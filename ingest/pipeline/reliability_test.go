package pipeline_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starpipe/starpipe/activity"
	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/pgcluster"
	"github.com/starpipe/starpipe/store/storetest"
)

const runTimeout = 30 * time.Second

// TestLifecycleEvents walks one scope through open, resolve and reopen and
// checks that every status change has exactly one activity row (actor
// system, the run's id) and one finding event, which the relay delivers.
// It doubles as the identical re-ingest and the missing-two rescan.
func TestLifecycleEvents(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope, n = "git.example.com/acme/lifecycle", 120
	full := genSARIF("synthscan", seq(0, n))

	run1 := h.submit(scope, full)
	h.waitRunStatus(run1, "succeeded", runTimeout)
	want1 := tally{Findings: n, Observations: n, Batches: 3, BatchesStored: 3, Opened: n, Events: n}
	got1 := h.tally(run1, scope)
	want1.Links = got1.Links // checked below
	if got1 != want1 {
		t.Fatalf("first run: got %+v, want %+v", got1, want1)
	}
	if got1.Links < n {
		t.Fatalf("first run: %d control links for %d findings: mapping did not run", got1.Links, n)
	}
	if c := h.countFindings(scope, "open"); c != n {
		t.Fatalf("%d open findings, want %d", c, n)
	}
	// Scored and mapped: every finding has a severity from the tool's
	// security-severity and an SLA.
	if c := h.count(`SELECT count(*) FROM findings WHERE scope = $1 AND (severity_source IS NULL OR severity_source = 'default' OR sla_due IS NULL)`, scope); c != 0 {
		t.Fatalf("%d findings unscored or without an SLA", c)
	}

	// An identical re-ingest observes everything and changes nothing.
	run2 := h.submit(scope, full)
	h.waitRunStatus(run2, "succeeded", runTimeout)
	got2 := h.tally(run2, scope)
	if want := (tally{Findings: n, Observations: n, Links: got1.Links, Batches: 3, BatchesStored: 3}); got2 != want {
		t.Fatalf("identical re-ingest: got %+v, want %+v", got2, want)
	}

	// A rescan missing two findings resolves exactly those two.
	missing := []int{7, 93}
	var ids []int
	for i := range n {
		if !slices.Contains(missing, i) {
			ids = append(ids, i)
		}
	}
	run3 := h.submit(scope, genSARIF("synthscan", ids))
	h.waitRunStatus(run3, "succeeded", runTimeout)
	got3 := h.tally(run3, scope)
	if want := (tally{Findings: n, Observations: n - 2, Links: got1.Links, Batches: 3, BatchesStored: 3, Resolved: 2, Events: 2}); got3 != want {
		t.Fatalf("rescan missing two: got %+v, want %+v", got3, want)
	}
	resolvedMsgs := h.resolvedMessages(scope)
	if want := []string{"Synthetic finding 7: untrusted data flows into a sensitive sink.", "Synthetic finding 93: untrusted data flows into a sensitive sink."}; !slices.Equal(resolvedMsgs, want) {
		t.Fatalf("resolved findings %q, want %q", resolvedMsgs, want)
	}
	if c := h.count(`SELECT count(*) FROM findings WHERE scope = $1 AND status = 'resolved' AND resolved_by_run = $2::uuid`, scope, run3); c != 2 {
		t.Fatalf("%d findings resolved by the rescan, want 2", c)
	}

	// Seen again: exactly those two reopen.
	run4 := h.submit(scope, full)
	h.waitRunStatus(run4, "succeeded", runTimeout)
	got4 := h.tally(run4, scope)
	if want := (tally{Findings: n, Observations: n, Links: got1.Links, Batches: 3, BatchesStored: 3, Reopened: 2, Events: 2}); got4 != want {
		t.Fatalf("rescan with the two back: got %+v, want %+v", got4, want)
	}
	if c := h.countFindings(scope, "reopened"); c != 2 {
		t.Fatalf("%d reopened findings, want 2", c)
	}
	if c := h.countFindings(scope, "open"); c != n-2 {
		t.Fatalf("%d open findings, want %d", c, n-2)
	}

	// Every activity row of a status change is the system's, names its run
	// and its finding, and pairs with one outbox event of the same type.
	if c := h.count(`SELECT count(*) FROM activity_log WHERE action LIKE 'finding.%' AND (actor <> 'system' OR run_id IS NULL OR subject_type <> 'finding')`); c != 0 {
		t.Fatalf("%d status-change activity rows not by system or without a run", c)
	}
	if c := h.count(`
		SELECT count(*) FROM activity_log a
		WHERE a.action LIKE 'finding.%' AND (
			SELECT count(*) FROM outbox o
			WHERE o.topic = 'starpipe.finding.events' AND o.key = a.subject_id
			  AND 'finding.' || (convert_from(o.payload, 'UTF8')::jsonb->>'type') = a.action
			  AND convert_from(o.payload, 'UTF8')::jsonb->'payload'->>'run_id' = a.run_id::text
		) <> 1`); c != 0 {
		t.Fatalf("%d status-change activity rows without exactly one matching outbox event", c)
	}
	// Batches stored concurrently still leave one unbroken hash chain.
	if _, err := activity.VerifyTable(h.ctx, h.st); err != nil {
		t.Fatalf("activity chain after the runs: %v", err)
	}

	// The relay delivers every event exactly as recorded.
	total := n + 2 + 2
	h.waitFor("outbox drained", runTimeout, func() bool { return h.count(`SELECT count(*) FROM outbox WHERE sent_at IS NULL`) == 0 })
	msgs := h.readTopic(bus.TopicFindingEvents, total, runTimeout)
	types := map[string]int{}
	for _, m := range msgs {
		env, err := bus.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		var ev pipeline.FindingEvent
		if err := env.Unmarshal(&ev); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != fmt.Sprint(ev.FindingID) || ev.Scope != scope || ev.RunID == "" {
			t.Fatalf("event %s: key %q, %+v", env.Type, m.Key, ev)
		}
		types[env.Type]++
	}
	if want := map[string]int{bus.TypeOpened: n, bus.TypeResolved: 2, bus.TypeReopened: 2}; !maps.Equal(types, want) {
		t.Fatalf("events on %s: %v, want %v", bus.TopicFindingEvents, types, want)
	}
}

// resolvedMessages lists the messages of the resolved findings of scope.
func (h *harness) resolvedMessages(scope string) []string {
	h.t.Helper()
	return storetest.Strings(h.t, h.st, `SELECT message FROM findings WHERE scope = $1 AND status = 'resolved' ORDER BY message`, scope)
}

// TestCrashBetweenDBCommitAndOffsetCommit stops an ingest daemon after a
// message's transaction committed but before its offset did, at each kind
// of message, then starts a fresh ingest daemon in the group: the message
// is delivered again and nothing is stored twice.
func TestCrashBetweenDBCommitAndOffsetCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(env bus.Envelope) bool
	}{
		{"run-received", func(env bus.Envelope) bool { return env.Type == bus.TypeRunReceived }},
		{"findings-batch-2", func(env bus.Envelope) bool { return env.Type == bus.TypeFindings && strings.HasSuffix(env.ID, "/2") }},
		{"run-finished", func(env bus.Envelope) bool { return env.Type == bus.TypeRunFinished }},
	} {
		t.Run("after="+tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{noConsumer: true})
			const scope, n = "git.example.com/acme/crash", 130

			// The crashing daemon: its handler stores the message (the
			// database commits), then fails it from then on without
			// touching the database, so the offset is never committed;
			// the daemon is then stopped, as a process dies.
			var mu sync.Mutex
			var crashed *bus.Message
			crashedCh := make(chan struct{})
			stopFirst := h.startIngest(func(next bus.Handler) bus.Handler {
				return func(ctx context.Context, msg bus.Message) error {
					mu.Lock()
					c := crashed
					mu.Unlock()
					if c != nil && c.Partition == msg.Partition && c.Offset == msg.Offset {
						return errCrash
					}
					if err := next(ctx, msg); err != nil {
						return err
					}
					env, err := bus.Decode(msg.Value)
					if err == nil && tc.crash(env) && c == nil {
						mu.Lock()
						crashed = &msg
						mu.Unlock()
						close(crashedCh)
						return errCrash
					}
					return nil
				}
			})
			run := h.submit(scope, genSARIF("synthscan", seq(0, n)))
			select {
			case <-crashedCh:
			case <-time.After(runTimeout):
				t.Fatalf("no %s message reached the handler", tc.name)
			}
			if err := stopFirst(); err != nil {
				t.Fatalf("stopping the crashed daemon: %v", err)
			}
			before := h.tally(run, scope)

			// A fresh daemon in the same group gets the message again.
			redelivered := false
			h.startIngest(func(next bus.Handler) bus.Handler {
				return func(ctx context.Context, msg bus.Message) error {
					mu.Lock()
					if msg.Partition == crashed.Partition && msg.Offset == crashed.Offset {
						redelivered = true
					}
					mu.Unlock()
					return next(ctx, msg)
				}
			})
			h.waitFor(fmt.Sprintf("the uncommitted message (partition %d offset %d) to be delivered again", crashed.Partition, crashed.Offset),
				runTimeout, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return redelivered
				})
			h.waitRunStatus(run, "succeeded", runTimeout)

			got := h.tally(run, scope)
			want := tally{Findings: n, Observations: n, Links: got.Links, Batches: 3, BatchesStored: 3, Opened: n, Events: n}
			if got != want {
				t.Fatalf("after the crash at %s (counts then %+v): got %+v, want %+v", tc.name, before, got, want)
			}
			if tc.name == "run-finished" && before != got {
				t.Fatalf("the replayed run-finished changed counts: before %+v, after %+v", before, got)
			}
		})
	}
}

// TestCorruptFile fails a run whose file is cut short, with an error that
// names the file and the place, and writes none of its findings.
func TestCorruptFile(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope = "git.example.com/acme/corrupt"
	data := genSARIF("synthscan", seq(0, 200))
	cut := data[:len(data)*2/3] // the first third of the results are complete
	run := h.submit(scope, cut)
	h.waitRunStatus(run, "failed", runTimeout)
	msg := h.runError(run)
	if !strings.Contains(msg, scope+".sarif") || !strings.Contains(msg, "byte") {
		t.Fatalf("run error %q does not name the file and the place", msg)
	}
	if got := h.tally(run, scope); got != (tally{}) {
		t.Fatalf("a failed run left rows behind: %+v", got)
	}
	if c := h.count(`SELECT count(*) FROM outbox WHERE topic <> 'starpipe.scan.results'`); c != 0 {
		t.Fatalf("%d events queued for a failed run", c)
	}
	// The consumer goes on: a good file right after succeeds.
	ok := h.submit(scope, genSARIF("synthscan", seq(0, 10)))
	h.waitRunStatus(ok, "succeeded", runTimeout)
	if c := h.countFindings(scope, "open"); c != 10 {
		t.Fatalf("%d open findings, want 10", c)
	}
}

// TestPoisonMessage sends a findings message nobody can read: it goes to
// the DLQ with its error, its run fails with that error, and the consumer
// moves on to the next run.
func TestPoisonMessage(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope = "git.example.com/acme/poison"
	// A run that is being processed, as far as the database knows.
	runID := bus.NewID()
	err := h.st.InTx(h.ctx, func(tx *store.Tx) error {
		sha, err := h.st.PutArtifact(h.ctx, tx, strings.NewReader(`{"version":"2.1.0","runs":[]}`), "sarif")
		if err != nil {
			return err
		}
		return store.CreateRun(h.ctx, tx, store.NewRun{ID: runID, Kind: "code", Scope: scope, Tool: "sarif", Format: "sarif", ArtifactSHA: sha})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.st.StartRun(h.ctx, runID, "sarif"); err != nil || !ok {
		t.Fatalf("starting run: %v %v", ok, err)
	}
	garbage := []byte(`{"v":1,"type":"findings","id":"x/1","at":"2026-01-01T00:00:00Z","payload":{"run_id":"` + runID + `","seq":"one","findings":{}}}`)
	if err := h.prod.Publish(h.ctx, bus.TopicScanResults, bus.Message{Key: []byte(runID), Value: garbage, Headers: map[string]string{"origin": "test"}}); err != nil {
		t.Fatal(err)
	}
	h.waitRunStatus(runID, "failed", runTimeout)
	if e := h.runError(runID); !strings.Contains(e, "unprocessable message") || !strings.Contains(e, "decode findings batch") {
		t.Fatalf("run error %q does not say why", e)
	}

	dlq := h.readTopic(bus.TopicDLQ, 1, runTimeout)
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ messages, want 1", len(dlq))
	}
	d := dlq[0]
	if string(d.Key) != runID || string(d.Value) != string(garbage) {
		t.Fatalf("DLQ message key %q value %q", d.Key, d.Value)
	}
	if e := d.Headers[bus.HeaderError]; !strings.Contains(e, "decode findings batch") {
		t.Fatalf("DLQ error header %q", e)
	}
	if d.Headers[bus.HeaderOriginalTopic] != bus.TopicScanResults || d.Headers["origin"] != "test" {
		t.Fatalf("DLQ headers %v", d.Headers)
	}

	ok := h.submit(scope, genSARIF("synthscan", seq(0, 20)))
	h.waitRunStatus(ok, "succeeded", runTimeout)
	if c := h.countFindings(scope, "open"); c != 20 {
		t.Fatalf("%d open findings after the good run, want 20", c)
	}
}

// TestConcurrentUploads submits 20 files for 20 scopes at once.
func TestConcurrentUploads(t *testing.T) {
	h := newHarness(t, harnessOpts{batchSize: 25})
	const uploads = 20
	runs := make([]string, uploads)
	errs := make([]error, uploads)
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() {
			scope := fmt.Sprintf("host-%02d.example.com", i)
			runs[i], errs[i] = h.intake.Submit(h.ctx, strings.NewReader(string(genSARIF("synthscan", seq(0, 30+i)))), pipeline.Request{Scope: scope})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	total := 0
	for i, run := range runs {
		scope := fmt.Sprintf("host-%02d.example.com", i)
		h.waitRunStatus(run, "succeeded", runTimeout)
		n := 30 + i
		total += n
		got := h.tally(run, scope)
		batches := (n + 24) / 25
		if want := (tally{Findings: n, Observations: n, Links: got.Links, Batches: batches, BatchesStored: batches, Opened: n, Events: n}); got != want {
			t.Fatalf("scope %s: got %+v, want %+v", scope, got, want)
		}
	}
	if c := h.count(`SELECT count(*) FROM findings`); c != total {
		t.Fatalf("%d findings in all, want %d", c, total)
	}
	if c := h.count(`SELECT count(*) FROM outbox WHERE topic = $1`, bus.TopicFindingEvents); c != total {
		t.Fatalf("%d finding events in all, want %d", c, total)
	}
	// Twenty runs' batches appended their activity rows concurrently: one
	// unbroken chain holding every one of them.
	res, err := activity.VerifyTable(h.ctx, h.st)
	if err != nil {
		t.Fatalf("activity chain: %v", err)
	}
	if c := h.count(`SELECT count(*) FROM activity_log`); int64(c) != res.Count {
		t.Fatalf("chain of %d rows, table of %d", res.Count, c)
	}
}

// TestCorpusFile runs a real CodeQL log through the pipeline twice.
func TestCorpusFile(t *testing.T) {
	h := newHarness(t, harnessOpts{batchSize: 200})
	data := corpusFile(t, "sarif/codeql/codeql-go.sarif.json")
	const scope = "github.com/example/go-project"
	run := h.submit(scope, data)
	h.waitRunStatus(run, "succeeded", runTimeout)
	var stats map[string]any
	if err := storetest.SQL(t, h.st).QueryRow(h.ctx, `SELECT stats FROM scan_runs WHERE id = $1::uuid`, run).Scan(&stats); err != nil {
		t.Fatal(err)
	}
	parsed := int(stats["findings"].(float64))
	got := h.tally(run, scope)
	if parsed == 0 || got.Findings == 0 || got.Opened != got.Findings || got.Events != got.Findings || got.Observations != got.Findings || got.Links == 0 {
		t.Fatalf("corpus run: stats %v, counts %+v", stats, got)
	}
	again := h.submit(scope, data)
	h.waitRunStatus(again, "succeeded", runTimeout)
	got2 := h.tally(again, scope)
	if got2.Opened+got2.Resolved+got2.Reopened+got2.Events != 0 || got2.Findings != got.Findings || got2.Observations != got.Observations {
		t.Fatalf("identical corpus re-ingest: first %+v, second %+v", got, got2)
	}
}

// TestPostgresRestartMidIngest stops PostgreSQL while a large run is being
// stored and starts it again: the consumer retries with backoff and the run
// completes with exact counts.
func TestPostgresRestartMidIngest(t *testing.T) {
	ctx := t.Context()
	// A server of its own: storetest's is shared by every test.
	// As root the server runs as pgcluster.DefaultUser, which must reach
	// its directory: open the test's own temporary directories to search.
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := func(port int) *pgcluster.Cluster {
		c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(dir, "state"), ServerDir: filepath.Join(dir, "server"), Port: port, DisableFsync: true})
		if err != nil {
			t.Fatalf("starting PostgreSQL: %v", err)
		}
		return c
	}
	var mu sync.Mutex
	cluster := start(0)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if err := cluster.Stop(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	if err := store.Migrate(ctx, cluster.URL()); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, cluster.URL(), store.WithMaxConns(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	storetest.Attach(t, st, cluster.URL())

	var failures atomic.Int32
	h := newHarness(t, harnessOpts{st: st, dbURL: cluster.URL(), batchSize: 100, wrap: func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, msg bus.Message) error {
			err := next(ctx, msg)
			if err != nil && !bus.IsPoison(err) {
				failures.Add(1)
			}
			return err
		}
	}})
	const scope, n = "git.example.com/acme/pg-restart", 8000
	run := h.submit(scope, genSARIF("synthscan", seq(0, n)))
	h.waitFor("the run to be part-way stored", runTimeout, func() bool {
		return h.count(`SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, run) >= 3
	})
	port := cluster.Port()
	mu.Lock()
	if err := cluster.Stop(ctx); err != nil {
		mu.Unlock()
		t.Fatalf("stopping PostgreSQL mid-ingest: %v", err)
	}
	mu.Unlock()
	// Down long enough for the consumer to fail and back off twice.
	h.waitFor("the consumer to fail against the stopped server", runTimeout, func() bool { return failures.Load() >= 2 })
	mu.Lock()
	cluster = start(port)
	mu.Unlock()

	h.waitRunStatus(run, "succeeded", 60*time.Second)
	got := h.tally(run, scope)
	if want := (tally{Findings: n, Observations: n, Links: got.Links, Batches: n / 100, BatchesStored: n / 100, Opened: n, Events: n}); got != want {
		t.Fatalf("after the restart: got %+v, want %+v", got, want)
	}
	t.Logf("%d handler attempts failed while PostgreSQL was down", failures.Load())
}

// TestBrokerDownDuringUpload takes the broker away: an upload is still
// accepted (the run and its outbox row commit), and once a broker is back
// on the same port and data directory the run is delivered and stored.
func TestBrokerDownDuringUpload(t *testing.T) {
	h := newHarness(t, harnessOpts{embedded: bus.EmbeddedConfig{DataDir: t.TempDir()}})
	const scope = "git.example.com/acme/broker-down"
	run1 := h.submit(scope, genSARIF("synthscan", seq(0, 40)))
	h.waitRunStatus(run1, "succeeded", runTimeout)
	before1 := h.tally(run1, scope)

	h.broker.Close()
	run2 := h.submit(scope, genSARIF("synthscan", seq(0, 60)))
	// The producer tries a few times, with back-off and dial timeouts,
	// before the relay records a failure: on a loaded machine that takes
	// longer than a run, so the guard is wider.
	h.waitFor("the relay to fail delivering the run", 3*runTimeout, func() bool {
		return h.count(`SELECT count(*) FROM outbox WHERE sent_at IS NULL AND last_error IS NOT NULL AND headers->>'run_id' = $1`, run2) == 1
	})
	var status string
	if err := storetest.SQL(t, h.st).QueryRow(h.ctx, `SELECT status FROM scan_runs WHERE id = $1::uuid`, run2).Scan(&status); err != nil || status != "received" {
		t.Fatalf("run status with the broker down: %q, %v; want received", status, err)
	}

	h.startBroker()
	h.waitRunStatus(run2, "succeeded", 60*time.Second)
	got := h.tally(run2, scope)
	if want := (tally{Findings: 60, Observations: 60, Links: got.Links, Batches: 2, BatchesStored: 2, Opened: 20, Events: 20}); got != want {
		t.Fatalf("run delivered after the outage: got %+v, want %+v", got, want)
	}
	if after1 := h.tally(run1, scope); after1.Batches != before1.Batches || after1.Opened != before1.Opened || after1.Observations != before1.Observations {
		t.Fatalf("the first run changed across the broker restart: %+v, then %+v", before1, after1)
	}
}
