package review_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/scheduler/schedulertest"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// seed stores findings first seen at seen, with due dates from sla, and
// returns their ids by fingerprint.
func seed(t *testing.T, st *store.Store, seen time.Time, sla store.SLA, fs ...finding.Finding) map[string]int64 {
	t.Helper()
	var runID string
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status) VALUES ('code', 'repo', 'semgrep', 'sarif', 'processing')
		RETURNING id::text`).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	err := st.InTx(t.Context(), func(tx *store.Tx) error {
		res, err := store.UpsertFindings(t.Context(), tx, runID, fs, seen, &sla)
		for _, r := range res {
			ids[r.Fingerprint] = r.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func codeFinding(fp string, sev finding.Severity) finding.Finding {
	return finding.Finding{Fingerprint: fp, Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r-" + fp,
		Title: "title " + fp, Severity: sev, Location: finding.Location{Kind: finding.LocationFile, URI: fp + ".go"}}
}

// breachEvents returns the finding ids of the sla-breached events in the
// outbox, in order.
func breachEvents(t *testing.T, st *store.Store) []string {
	t.Helper()
	var out []string
	for _, p := range storetest.Strings(t, st, `SELECT convert_from(payload, 'UTF8') FROM outbox WHERE topic = $1 ORDER BY id`, bus.TopicFindingEvents) {
		env, err := bus.Decode([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if env.Type != bus.TypeSLABreached {
			continue
		}
		var ev review.SLABreachEvent
		if err := env.Unmarshal(&ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, strconv.FormatInt(ev.FindingID, 10))
	}
	return out
}

func TestSLABreachAnnouncedOnceOnAFakeClock(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	day := 24 * time.Hour
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sla := store.SLA{Critical: 7 * day, High: 30 * day, Medium: 90 * day, Low: 180 * day}
	ids := seed(t, st, t0, sla,
		codeFinding("crit", finding.SeverityCritical), // due t0+7d
		codeFinding("high", finding.SeverityHigh),     // due t0+30d
		codeFinding("fp", finding.SeverityCritical),   // due t0+7d, but a false positive
		codeFinding("info", finding.SeverityInfo),     // no SLA
	)
	svc := review.NewService(st, nil, nil)
	if _, err := svc.Review(t.Context(), review.Actor{Name: "admin", Role: store.RoleAdmin}, ids["fp"],
		review.Decision{State: store.ReviewFalsePositive, Justification: "code_not_reachable"}); err != nil {
		t.Fatal(err)
	}

	clock := schedulertest.NewFakeClock(t0.Add(7*day - time.Minute))
	every := time.Hour
	w := review.NewSLAWatcher(st, clock, every, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	}()

	// step moves the clock one interval and waits for the watcher to have
	// checked and gone back to waiting.
	now := clock.Now()
	clock.AwaitTimers(t, now.Add(every), 1)
	step := func() {
		t.Helper()
		now = now.Add(every)
		clock.Set(now)
		clock.AwaitTimers(t, now.Add(every), 1)
	}
	if got := breachEvents(t, st); len(got) != 0 {
		t.Fatalf("breaches before any due date: %v", got)
	}
	crit := strconv.FormatInt(ids["crit"], 10)
	step() // past crit's due date
	if got := breachEvents(t, st); !slices.Equal(got, []string{crit}) {
		t.Fatalf("after crit fell due: %v, want [%s]", got, crit)
	}
	for range 3 {
		step()
	}
	if got := breachEvents(t, st); !slices.Equal(got, []string{crit}) {
		t.Fatalf("announced again: %v", got)
	}
	// A second watcher (another replica) finds nothing new either.
	if n, err := review.NewSLAWatcher(st, clock, every, nil).Check(t.Context()); err != nil || n != 0 {
		t.Fatalf("second replica: %d, %v", n, err)
	}
	acts := storetest.Strings(t, st, `SELECT actor || ' ' || subject_id FROM activity_log WHERE action = 'finding.sla-breached'`)
	if !slices.Equal(acts, []string{"sla " + crit}) {
		t.Fatalf("activity: %v", acts)
	}

	// Moving to high's due date announces it, once.
	now = t0.Add(30 * day)
	clock.Set(now)
	clock.AwaitTimers(t, now.Add(every), 1)
	step()
	high := strconv.FormatInt(ids["high"], 10)
	if got := breachEvents(t, st); !slices.Equal(got, []string{crit, high}) {
		t.Fatalf("after high fell due: %v", got)
	}

	// A reopened finding has a new due date and may breach again.
	if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE findings SET sla_due = $2 WHERE id = $1`, ids["crit"], now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	step()
	if got := breachEvents(t, st); !slices.Equal(got, []string{crit, high, crit}) {
		t.Fatalf("after a new due date: %v", got)
	}
}

func TestSLAPolicyHistory(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	day := 24 * time.Hour
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(40 * day)
	p1 := store.SLA{Critical: 7 * day, High: 30 * day, Medium: 90 * day, Low: 180 * day}
	p2 := p1
	p2.Critical = 3 * day

	tests := []struct {
		name        string
		sla         store.SLA
		at          time.Time
		wantVersion int64
		wantCreated bool
	}{
		{"first", p1, t1, 1, true},
		{"unchanged restart", p1, t1.Add(day), 1, false},
		{"changed", p2, t2, 2, true},
		{"changed back", p1, t2.Add(day), 3, true},
	}
	for _, tc := range tests {
		p, created, err := st.RecordSLAPolicy(t.Context(), tc.sla, "config", tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p.Version != tc.wantVersion || created != tc.wantCreated || p.SLA != tc.sla {
			t.Fatalf("%s: version %d created %v sla %+v", tc.name, p.Version, created, p.SLA)
		}
	}
	// A past cycle reads the policy then in force.
	for _, c := range []struct {
		at   time.Time
		want time.Duration
	}{{t1.Add(10 * day), 7 * day}, {t2.Add(time.Hour), 3 * day}, {t2.Add(2 * day), 7 * day}} {
		p, err := st.SLAPolicyAt(t.Context(), c.at)
		if err != nil || p.SLA.Critical != c.want {
			t.Fatalf("policy at %s: critical %v, %v; want %v", c.at, p.SLA.Critical, err, c.want)
		}
	}
	if _, err := st.SLAPolicyAt(t.Context(), t1.Add(-time.Hour)); err == nil {
		t.Fatal("a policy before the first version")
	}
}
