package daemon

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/schedulertest"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// The SLA watcher runs with the scheduler role on the daemon's clock; its
// sla-breached event reaches Kafka through the outbox once, however many
// checks follow.
func TestSLABreachReachesKafkaOnce(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clock := schedulertest.NewFakeClock(t0)

	// A critical finding first seen eight days before the clock: past the
	// default seven days.
	var runID string
	if err := storetest.SQL(t, e.st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status) VALUES ('code', 'repo', 'semgrep', 'sarif', 'processing')
		RETURNING id::text`).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	var id int64
	err := e.st.InTx(t.Context(), func(tx *store.Tx) error {
		sla := SLAPolicy(config.Default())
		res, err := store.UpsertFindings(t.Context(), tx, runID, []finding.Finding{{
			Fingerprint: "late", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r", Title: "late",
			Severity: finding.SeverityCritical, Location: finding.Location{Kind: finding.LocationFile, URI: "a.go"},
		}}, t0.Add(-8*24*time.Hour), &sla)
		if err == nil {
			id = res[0].ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	cfg := e.config(config.RoleRelay, config.RoleScheduler)
	cfg.Scheduler.Enabled = false // no schedules: only the SLA watcher uses the clock
	cfg.SLA.CheckEvery = time.Hour
	start(t, cfg, WithSchedulerOptions(func(o *scheduler.Options) { o.Clock = clock }))

	bcfg, err := BusConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := collectEvents[review.SLABreachEvent](t, bcfg, bus.TypeSLABreached)
	waitFor(t, "the sla-breached event", func() bool { return len(events()) >= 1 })
	// Three more checks announce nothing new.
	now := t0
	for range 3 {
		clock.AwaitTimers(t, now.Add(time.Hour), 1)
		now = now.Add(time.Hour)
		clock.Set(now)
	}
	clock.AwaitTimers(t, now.Add(time.Hour), 1)
	waitFor(t, "the outbox to drain", func() bool {
		n, err := e.st.PendingOutbox(t.Context())
		return err == nil && n == 0
	})
	breaches := events()
	if len(breaches) != 1 || breaches[0].FindingID != id || breaches[0].Severity != "critical" ||
		!breaches[0].SLADue.Equal(t0.Add(-24*time.Hour)) || !breaches[0].BreachedAt.Equal(t0) {
		t.Fatalf("breaches: %+v (finding %d)", breaches, id)
	}
	if got := storetest.Strings(t, e.st, `SELECT version::text FROM sla_policies`); len(got) != 1 {
		t.Fatalf("SLA policy versions: %v", got)
	}
}

// The SLA watcher part runs the exceptions register's expiry on the
// daemon's clock: an expired exception's finding returns to untriaged and
// its exception-expired event, carrying the restarted due date, reaches
// Kafka once.
func TestExceptionExpiryReachesKafkaOnce(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clock := schedulertest.NewFakeClock(t0)
	var runID string
	if err := storetest.SQL(t, e.st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status) VALUES ('code', 'repo', 'semgrep', 'sarif', 'processing')
		RETURNING id::text`).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	var id int64
	err := e.st.InTx(t.Context(), func(tx *store.Tx) error {
		sla := SLAPolicy(config.Default())
		res, err := store.UpsertFindings(t.Context(), tx, runID, []finding.Finding{{
			Fingerprint: "accepted", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r", Title: "accepted",
			Severity: finding.SeverityMedium, Location: finding.Location{Kind: finding.LocationFile, URI: "a.go"},
		}}, t0.Add(-time.Hour), &sla)
		if err == nil {
			id = res[0].ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateUser(t.Context(), nil, "test", store.NewUser{Name: "alice", Role: store.RoleOwner}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(config.RoleRelay, config.RoleScheduler)
	cfg.Scheduler.Enabled = false
	cfg.SLA.CheckEvery = time.Hour
	if _, err := review.NewExceptions(e.st, ExceptionPolicy(cfg), clock, nil).Create(t.Context(),
		review.Actor{Name: "root", Role: store.RoleAdmin}, review.ExceptionRequest{
			Findings: store.FindingFilter{IDs: []int64{id}}, Owner: "alice", Rationale: "r", Expires: t0.Add(90 * time.Minute),
		}); err != nil {
		t.Fatal(err)
	}
	start(t, cfg, WithSchedulerOptions(func(o *scheduler.Options) { o.Clock = clock }))

	bcfg, err := BusConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := collectEvents[review.ExceptionEvent](t, bcfg, bus.TypeExceptionExpired)
	now := t0
	for range 4 {
		clock.AwaitTimers(t, now.Add(time.Hour), 1)
		now = now.Add(time.Hour)
		clock.Set(now)
	}
	clock.AwaitTimers(t, now.Add(time.Hour), 1)
	waitFor(t, "the exception-expired event", func() bool { return len(events()) >= 1 })
	waitFor(t, "the outbox to drain", func() bool {
		n, err := e.st.PendingOutbox(t.Context())
		return err == nil && n == 0
	})
	expired := events()
	wantDue := t0.Add(90*time.Minute + 90*24*time.Hour)
	if len(expired) != 1 || expired[0].FindingID != id || expired[0].SLADue == nil || !expired[0].SLADue.Equal(wantDue) {
		t.Fatalf("exception-expired events: %+v, want one for finding %d due %s", expired, id, wantDue)
	}
	r, err := e.st.GetReview(t.Context(), id)
	if err != nil || r.State != store.ReviewUntriaged {
		t.Fatalf("after expiry: %+v, %v", r, err)
	}
}

// collectEvents consumes starpipe.finding.events from the start until the
// test ends and returns a snapshot of the events of type typ seen so far.
func collectEvents[T any](t *testing.T, bcfg bus.Config, typ string) func() []T {
	t.Helper()
	var mu sync.Mutex
	var seen []T
	ctx, cancel := context.WithCancel(t.Context())
	consumed := make(chan error, 1)
	go func() {
		consumed <- bus.NewConsumer(bcfg, "test-events", bus.TopicFindingEvents, nil).Run(ctx, func(_ context.Context, m bus.Message) error {
			env, err := bus.Decode(m.Value)
			if err != nil || env.Type != typ {
				return err
			}
			var ev T
			if err := env.Unmarshal(&ev); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
			return nil
		}, bus.RunOptions{})
	}()
	t.Cleanup(func() {
		cancel()
		<-consumed
	})
	return func() []T {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
