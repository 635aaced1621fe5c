package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func sched(name, cadence string, enabled bool, urls ...string) store.Schedule {
	spec, _ := json.Marshal(map[string]any{
		"name": name, "kind": "external", "cadence": cadence, "enabled": enabled,
		"targets": map[string]any{"urls": urls},
	})
	return store.Schedule{Name: name, Kind: "external", Enabled: enabled, Cadence: cadence, Spec: spec}
}

func activityCount(t *testing.T, s *store.Store, name string) int {
	t.Helper()
	var n int
	if err := storetest.SQL(t, s).QueryRow(t.Context(),
		`SELECT count(*) FROM activity_log WHERE subject_type = 'schedule' AND subject_id = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestScheduleLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()

	created, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true, "http://127.0.0.1:8081"), "alice")
	if err != nil || !created {
		t.Fatalf("UpsertSchedule (new) = %v, %v", created, err)
	}
	got, err := s.GetSchedule(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.Timezone != "UTC" || !got.Enabled || got.UpdatedBy != "alice" || got.LastStatus != "" || !got.LastFiredDue.IsZero() {
		t.Fatalf("stored = %+v", got)
	}
	since := got.ActiveSince

	// The same definition again changes and logs nothing.
	if created, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true, "http://127.0.0.1:8081"), "bob"); err != nil || created {
		t.Fatalf("UpsertSchedule (same) = %v, %v", created, err)
	}
	if n := activityCount(t, s, "web"); n != 1 {
		t.Fatalf("%d activity rows after a no-op upsert, want 1", n)
	}

	// A change of targets keeps what the schedule owes...
	if err := s.UpdateSchedule(ctx, sched("web", "daily@02:00", true, "http://127.0.0.1:8082"), "bob"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSchedule(ctx, "web")
	if !got.ActiveSince.Equal(since) || got.UpdatedBy != "bob" {
		t.Fatalf("after a target change: %+v", got)
	}
	var before, after string
	if err := storetest.SQL(t, s).QueryRow(ctx, `
		SELECT before->'targets'->>'urls', after->'targets'->>'urls' FROM activity_log
		WHERE subject_id = 'web' AND action = 'schedule.updated'`).Scan(&before, &after); err != nil {
		t.Fatal(err)
	}
	if before != `["http://127.0.0.1:8081"]` || after != `["http://127.0.0.1:8082"]` {
		t.Fatalf("activity before %s after %s", before, after)
	}
	// ...a change of cadence restarts it.
	if err := s.UpdateSchedule(ctx, sched("web", "daily@03:00", true, "http://127.0.0.1:8082"), "bob"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSchedule(ctx, "web")
	if !got.ActiveSince.After(since) {
		t.Fatalf("active_since %v not advanced past %v by a cadence change", got.ActiveSince, since)
	}

	if err := s.CreateSchedule(ctx, sched("web", "daily@02:00", true, "http://x:1"), "bob"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateSchedule on a live name: %v, want ErrConflict", err)
	}
	if err := s.UpdateSchedule(ctx, sched("nope", "daily@02:00", true, "http://x:1"), "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateSchedule of an unknown name: %v, want ErrNotFound", err)
	}

	// Delete keeps the row (and its ledger) but hides it.
	due := time.Date(2030, 1, 1, 3, 0, 0, 0, time.UTC)
	if _, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due, Now: due}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSchedule(ctx, "web", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSchedule(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSchedule after delete: %v", err)
	}
	if l, _ := s.ListSchedules(ctx); len(l) != 0 {
		t.Fatalf("ListSchedules after delete: %+v", l)
	}
	if es, _ := s.ListLedger(ctx, "web", time.Time{}, time.Time{}); len(es) != 1 {
		t.Fatalf("ledger after delete: %+v", es)
	}
	if err := s.DeleteSchedule(ctx, "web", "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due.Add(time.Hour), Now: due}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim on a deleted schedule: %v", err)
	}
	if err := s.UpdateSchedule(ctx, sched("web", "daily@02:00", true, "http://x:1"), "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateSchedule of a deleted schedule: %v, want ErrNotFound", err)
	}
	// Creating it again revives it, with its history.
	if err := s.CreateSchedule(ctx, sched("web", "daily@02:00", true, "http://x:1"), "dave"); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetSchedule(ctx, "web")
	if err != nil || got.LastStatus != finding.LedgerPending || !got.LastDue.Equal(due) {
		t.Fatalf("revived = %+v, %v", got, err)
	}
	var actions []string
	rows, _ := storetest.SQL(t, s).Query(ctx, `SELECT action FROM activity_log WHERE subject_id = 'web' ORDER BY id`)
	for rows.Next() {
		var a string
		_ = rows.Scan(&a)
		actions = append(actions, a)
	}
	if fmt.Sprint(actions) != "[schedule.created schedule.updated schedule.updated schedule.deleted schedule.created]" {
		t.Fatalf("activity = %v", actions)
	}

	// Disable and re-enable: re-enabling restarts what is owed.
	got, _ = s.GetSchedule(ctx, "web")
	since = got.ActiveSince
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", false, "http://x:1"), "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true, "http://x:1"), "dave"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSchedule(ctx, "web")
	if !got.ActiveSince.After(since) {
		t.Fatal("re-enabling did not advance active_since")
	}
}

func TestUpsertSchedulesAllOrNothing(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	bad := sched("b", "daily@02:00", true)
	bad.Kind = "nonsense" // refused by the check constraint
	if _, err := s.UpsertSchedules(t.Context(), []store.Schedule{sched("a", "daily@02:00", true), bad}, "alice"); err == nil {
		t.Fatal("invalid kind accepted")
	}
	if l, _ := s.ListSchedules(t.Context()); len(l) != 0 {
		t.Fatalf("partial apply: %+v", l)
	}
}

// TestClaimDueExactlyOnce races claimers of one due time: one wins, and
// only its scan request is queued.
func TestClaimDueExactlyOnce(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true), "alice"); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	const n = 6
	claims := make([]store.Claim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			claims[i], errs[i] = s.ClaimDue(ctx, store.ClaimRequest{
				Schedule: "web", Due: due, Now: due,
				Enqueue: func(ctx context.Context, q *store.Tx, c store.Claim) error {
					_, err := store.Enqueue(ctx, q, "starpipe.scan.requests", "web", fmt.Appendf(nil, `{"ledger_id":%d}`, c.LedgerID), nil)
					return err
				},
			})
		})
	}
	wg.Wait()
	won := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if claims[i].Claimed {
			won++
		}
		if claims[i].Status != finding.LedgerPending || claims[i].LedgerID != claims[0].LedgerID {
			t.Fatalf("claim %d = %+v, want the pending row %d", i, claims[i], claims[0].LedgerID)
		}
	}
	if won != 1 {
		t.Fatalf("%d claims won, want 1", won)
	}
	var outbox int
	_ = storetest.SQL(t, s).QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox)
	if outbox != 1 {
		t.Fatalf("%d outbox rows, want 1", outbox)
	}
	got, _ := s.GetSchedule(ctx, "web")
	if !got.LastFiredDue.Equal(due) {
		t.Fatalf("watermark %v, want %v", got.LastFiredDue, due)
	}
}

func TestClaimDueRollsBackWithEnqueue(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true), "alice"); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	boom := errors.New("boom")
	_, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due, Now: due,
		Enqueue: func(context.Context, *store.Tx, store.Claim) error { return boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("ClaimDue = %v, want boom", err)
	}
	if es, _ := s.ListLedger(ctx, "web", time.Time{}, time.Time{}); len(es) != 0 {
		t.Fatalf("ledger after a failed enqueue: %+v", es)
	}
	if got, _ := s.GetSchedule(ctx, "web"); !got.LastFiredDue.IsZero() {
		t.Fatalf("watermark advanced by a rolled-back claim: %v", got.LastFiredDue)
	}
}

func TestRecordMissedAndLedger(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true), "alice"); err != nil {
		t.Fatal(err)
	}
	d := func(i int) time.Time { return time.Date(2030, 1, 1+i, 2, 0, 0, 0, time.UTC) }
	if _, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: d(1), Now: d(1)}); err != nil {
		t.Fatal(err)
	}
	n, err := s.RecordMissed(ctx, "web", []time.Time{d(0), d(1), d(2)}, d(3))
	if err != nil || n != 2 {
		t.Fatalf("RecordMissed = %d, %v; want 2 (day 1 is taken)", n, err)
	}
	catch, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: d(2), CatchUp: true, Now: d(3)})
	if err != nil || !catch.Claimed || catch.Status != finding.LedgerSkipped || catch.Blocker == 0 {
		t.Fatalf("catch-up while day 1 pending = %+v, %v; want skipped", catch, err)
	}
	es, err := s.ListLedger(ctx, "web", d(1), d(3))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%d %s %v", e.Due.Day(), e.Status, e.CatchUp))
	}
	if fmt.Sprint(got) != "[2 pending false 3 missed false 3 skipped true]" {
		t.Fatalf("ledger [d1, d3) = %v", got)
	}
	if got, _ := s.GetSchedule(ctx, "web"); !got.LastFiredDue.Equal(d(2)) || got.LastStatus != finding.LedgerSkipped {
		t.Fatalf("schedule = %+v", got)
	}
	if all, _ := s.ListLedger(ctx, "", time.Time{}, time.Time{}); len(all) != 4 {
		t.Fatalf("whole ledger: %d rows, want 4", len(all))
	}
}

func TestMarkLedger(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true), "alice"); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	c, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due, Now: due})
	if err != nil {
		t.Fatal(err)
	}
	newRun := func(scope, tool string) string {
		t.Helper()
		var id string
		if err := storetest.SQL(t, s).QueryRow(ctx, `INSERT INTO scan_runs (schedule_id, kind, scope, tool, format) VALUES ('web', 'external', $1, $2, $2) RETURNING id::text`, scope, tool).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	amass, nuc1, nuc2 := newRun("domains:example.com", "amass"), newRun("http://a.example.com", "nuclei"), newRun("https://a.example.com", "nuclei")
	steps := []struct {
		status finding.LedgerStatus
		runs   []string
		want   error
	}{
		{finding.LedgerRunning, nil, nil},
		{finding.LedgerRunning, nil, nil}, // replay
		{finding.LedgerSucceeded, []string{amass, nuc1}, nil},
		{finding.LedgerSucceeded, []string{amass, nuc1, nuc2}, nil}, // replay with a run more
		{finding.LedgerRunning, nil, nil},                           // late replay of the start
		{finding.LedgerFailed, nil, store.ErrConflict},
	}
	for i, st := range steps {
		if err := s.MarkLedger(ctx, c.LedgerID, st.status, st.runs, ""); !errors.Is(err, st.want) {
			t.Fatalf("step %d %s: %v, want %v", i, st.status, err, st.want)
		}
	}
	es, _ := s.ListLedger(ctx, "web", time.Time{}, time.Time{})
	if len(es) != 1 || es[0].Status != finding.LedgerSucceeded || es[0].RunID != amass || es[0].StartedAt.IsZero() || es[0].FinishedAt.IsZero() {
		t.Fatalf("ledger = %+v", es)
	}
	want := []store.LedgerRun{
		{ID: amass, Scope: "domains:example.com", Tool: "amass", Status: "received"},
		{ID: nuc1, Scope: "http://a.example.com", Tool: "nuclei", Status: "received"},
		{ID: nuc2, Scope: "https://a.example.com", Tool: "nuclei", Status: "received"},
	}
	if !slices.Equal(es[0].Runs, want) {
		t.Fatalf("runs = %+v\nwant %+v", es[0].Runs, want)
	}
	if running, _ := s.RunningFor(ctx, "web"); running {
		t.Fatal("RunningFor after success")
	}
	if err := s.MarkLedger(ctx, 9999, finding.LedgerFailed, nil, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := s.MarkLedger(ctx, c.LedgerID, finding.LedgerMissed, nil, ""); err == nil {
		t.Fatal("status missed accepted from a worker")
	}
	if err := s.MarkLedger(ctx, c.LedgerID, finding.LedgerFailed, []string{"not-a-uuid"}, ""); err == nil {
		t.Fatal("bad run id accepted")
	}
	if err := s.MarkLedger(ctx, c.LedgerID, finding.LedgerSucceeded, []string{"6f1c8c1e-8a51-4f6e-9d6b-0c6f9f4f3a11"}, ""); err == nil {
		t.Fatal("a run that does not exist accepted")
	}
}

func TestTryLeadIsExclusive(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	a, ok, err := s.TryLead(ctx, 42)
	if err != nil || !ok {
		t.Fatalf("first TryLead = %v, %v", ok, err)
	}
	if _, ok, err := s.TryLead(ctx, 42); err != nil || ok {
		t.Fatalf("second TryLead = %v, %v; want refused", ok, err)
	}
	// A schedule change reaches the leader.
	if _, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true), "alice"); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.Wait(ctx, 10*time.Second); err != nil || !changed {
		t.Fatalf("Wait = %v, %v; want a change", changed, err)
	}
	if changed, err := a.Wait(ctx, time.Millisecond); err != nil || changed {
		t.Fatalf("idle Wait = %v, %v; want a quiet, live session", changed, err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, ok, err := s.TryLead(ctx, 42)
	if err != nil || !ok {
		t.Fatalf("TryLead after the leader closed = %v, %v", ok, err)
	}
	_ = b.Close(ctx)
}

// TestScheduleVersion: every change of a schedule, and only a change,
// counts a version; a claim records the version it was made under, on the
// ledger row and in the Claim, and only for a run that will be fired.
func TestScheduleVersion(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	version := func() int64 {
		t.Helper()
		got, err := s.GetSchedule(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		return got.Version
	}
	steps := []struct {
		name   string
		change func() error
		want   int64
	}{
		{"create", func() error { return s.CreateSchedule(ctx, sched("web", "daily@02:00", true, "http://a:1"), "alice") }, 1},
		{"same definition", func() error {
			_, err := s.UpsertSchedule(ctx, sched("web", "daily@02:00", true, "http://a:1"), "bob")
			return err
		}, 1},
		{"new target", func() error { return s.UpdateSchedule(ctx, sched("web", "daily@02:00", true, "http://b:1"), "bob") }, 2},
		{"disable", func() error { return s.UpdateSchedule(ctx, sched("web", "daily@02:00", false, "http://b:1"), "bob") }, 3},
		{"enable", func() error { return s.UpdateSchedule(ctx, sched("web", "daily@02:00", true, "http://b:1"), "bob") }, 4},
	}
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if v := version(); v != st.want {
			t.Fatalf("after %s: version %d, want %d", st.name, v, st.want)
		}
	}

	due := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	var enqueued store.Claim
	c, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due, Now: due,
		Enqueue: func(_ context.Context, _ *store.Tx, c store.Claim) error { enqueued = c; return nil }})
	if err != nil || !c.Claimed || c.Version != 4 || enqueued != c {
		t.Fatalf("claim = %+v (enqueued with %+v), %v; want claimed under version 4", c, enqueued, err)
	}
	// The next due time overlaps the pending run: skipped, no version.
	skipped, err := s.ClaimDue(ctx, store.ClaimRequest{Schedule: "web", Due: due.Add(24 * time.Hour), Now: due.Add(24 * time.Hour)})
	if err != nil || skipped.Status != finding.LedgerSkipped || skipped.Version != 0 {
		t.Fatalf("overlapping claim = %+v, %v; want skipped without a version", skipped, err)
	}
	e, err := s.GetLedgerEntry(ctx, c.LedgerID)
	if err != nil || e.ScheduleVersion != 4 || e.Schedule != "web" || !e.Due.Equal(due) || e.Status != finding.LedgerPending {
		t.Fatalf("ledger row = %+v, %v; want pending under version 4", e, err)
	}
	if e, err := s.GetLedgerEntry(ctx, skipped.LedgerID); err != nil || e.ScheduleVersion != 0 {
		t.Fatalf("skipped ledger row = %+v, %v", e, err)
	}
	if _, err := s.GetLedgerEntry(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown ledger row: %v, want ErrNotFound", err)
	}

	// Deleting and reviving are changes too.
	if err := s.DeleteSchedule(ctx, "web", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSchedule(ctx, sched("web", "daily@02:00", true, "http://b:1"), "dave"); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 6 {
		t.Fatalf("after delete and revival: version %d, want 6", v)
	}
}
