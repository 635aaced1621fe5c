package scheduler_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/cadence"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// t0 is where the tests' schedules start owing runs; due times are
// t0's days at 02:00 UTC.
var t0 = time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.AddDate(0, 0, n).Add(2 * time.Hour) }

const retry = 10 * time.Second

func addDaily(t *testing.T, st *store.Store, name string) {
	t.Helper()
	sp := spec.Schedule{
		Name:    name,
		Kind:    finding.KindExternal,
		Targets: spec.Targets{URLs: []string{"https://shop.example.com"}},
		Cadence: "daily@02:00",
	}
	if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{sp}, "test", spec.Options{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Pretend the schedule was created at t0, whatever the real date.
	if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE schedules SET active_since = $2 WHERE name = $1`, name, t0); err != nil {
		t.Fatal(err)
	}
}

func setWatermark(t *testing.T, st *store.Store, name string, due time.Time) {
	t.Helper()
	if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE schedules SET last_fired_due = $2 WHERE name = $1`, name, due); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, st *store.Store, clk *fakeClock, lockKey int64, mod ...func(*scheduler.Options)) *scheduler.Scheduler {
	t.Helper()
	opt := scheduler.Options{
		Store:        st,
		Clock:        clk,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		LockKey:      lockKey,
		StandbyRetry: retry,
		// Reloads come from NOTIFY; a long poll keeps the wall clock from
		// adding wake-ups the test does not expect.
		PollInterval: time.Hour,
	}
	for _, m := range mod {
		m(&opt)
	}
	s, err := scheduler.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

type row struct {
	due     time.Time
	status  finding.LedgerStatus
	catchUp bool
}

func ledger(t *testing.T, st *store.Store, name string) []store.LedgerEntry {
	t.Helper()
	es, err := st.ListLedger(t.Context(), name, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func wantLedger(t *testing.T, st *store.Store, name string, want ...row) []store.LedgerEntry {
	t.Helper()
	es := ledger(t, st, name)
	var got []row
	for _, e := range es {
		got = append(got, row{e.Due.UTC(), e.Status, e.CatchUp})
	}
	if len(got) != len(want) {
		t.Fatalf("ledger of %s:\n got  %v\n want %v", name, got, want)
	}
	for i := range want {
		if !got[i].due.Equal(want[i].due) || got[i].status != want[i].status || got[i].catchUp != want[i].catchUp {
			t.Fatalf("ledger of %s, row %d:\n got  %v\n want %v", name, i, got, want)
		}
	}
	return es
}

// requests returns the scan requests in the outbox, in order.
func requests(t *testing.T, st *store.Store) []scheduler.ScanRequest {
	t.Helper()
	rows, err := storetest.SQL(t, st).Query(t.Context(), `SELECT topic, key, payload, coalesce(headers->>'ledger_id', '') FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []scheduler.ScanRequest
	for rows.Next() {
		var topic, key, ledgerHeader string
		var payload []byte
		if err := rows.Scan(&topic, &key, &payload, &ledgerHeader); err != nil {
			t.Fatal(err)
		}
		if topic != bus.TopicScanRequests {
			t.Fatalf("outbox topic %q, want %s", topic, bus.TopicScanRequests)
		}
		req, err := scheduler.DecodeScanRequest(payload)
		if err != nil {
			t.Fatalf("outbox payload: %v", err)
		}
		if key != req.Schedule {
			t.Fatalf("outbox key %q, want the schedule name %q", key, req.Schedule)
		}
		if ledgerHeader != strconv.FormatInt(req.LedgerID, 10) {
			t.Fatalf("outbox ledger_id header %q, want %d", ledgerHeader, req.LedgerID)
		}
		// The request names the schedule; its definition stays in the
		// database.
		if strings.Contains(string(payload), "cadence") || strings.Contains(string(payload), "targets") {
			t.Fatalf("scan request carries the schedule's definition: %s", payload)
		}
		out = append(out, req)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func complete(t *testing.T, st *store.Store, id int64) {
	t.Helper()
	if err := st.MarkLedger(t.Context(), id, finding.LedgerRunning, nil, ""); err != nil {
		t.Fatalf("marking running: %v", err)
	}
	if err := st.MarkLedger(t.Context(), id, finding.LedgerSucceeded, nil, ""); err != nil {
		t.Fatalf("marking succeeded: %v", err)
	}
}

// TestTwoLeadersFireOnce runs two schedulers that both lead (different
// lock keys, as in a network partition noticed late): the unique ledger
// claim alone must make every due time fire once.
func TestTwoLeadersFireOnce(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	addDaily(t, st, "web")
	// One clock each, moved together, so that each scheduler's waiting is
	// seen on its own clock.
	ca, cb := newFakeClock(t0.Add(time.Hour)), newFakeClock(t0.Add(time.Hour))
	a := start(t, st, ca, 101)
	b := start(t, st, cb, 102)
	ca.AwaitTimers(t, day(0), 1)
	cb.AwaitTimers(t, day(0), 1)
	if !a.Leading() || !b.Leading() {
		t.Fatal("both schedulers should lead under different lock keys")
	}
	for i := range 3 {
		ca.Set(day(i))
		cb.Set(day(i))
		ca.AwaitTimers(t, day(i+1), 1)
		cb.AwaitTimers(t, day(i+1), 1)
		es := ledger(t, st, "web")
		if len(es) != i+1 || es[i].Status != finding.LedgerPending || !es[i].Due.Equal(day(i)) {
			t.Fatalf("after due time %d: ledger %+v", i, es)
		}
		complete(t, st, es[i].ID)
	}
	reqs := requests(t, st)
	if len(reqs) != 3 {
		t.Fatalf("%d scan requests, want 3: %+v", len(reqs), reqs)
	}
	for i, r := range reqs {
		if r.Schedule != "web" || !r.Due.Equal(day(i)) || r.CatchUp || r.Version != 1 || r.LedgerID != ledger(t, st, "web")[i].ID {
			t.Errorf("request %d = %+v", i, r)
		}
	}
}

// TestStandbyFiresNothingThenTakesOver runs two schedulers on the same
// lock: only the leader fires, and the standby takes over when the leader
// stops, without firing again what the leader fired.
func TestStandbyFiresNothingThenTakesOver(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	addDaily(t, st, "web")
	now := t0.Add(time.Hour)
	ca, cb := newFakeClock(now), newFakeClock(now)
	set := func(tm time.Time) { ca.Set(tm); cb.Set(tm) }
	a := start(t, st, ca, 0)
	ca.AwaitTimers(t, day(0), 1)
	b := start(t, st, cb, 0)
	cb.AwaitTimers(t, now.Add(retry), 1)
	if !a.Leading() || b.Leading() {
		t.Fatalf("leading: a=%v b=%v, want only a", a.Leading(), b.Leading())
	}

	set(day(0))
	ca.AwaitTimers(t, day(1), 1)            // a fired and waits for the next
	cb.AwaitTimers(t, day(0).Add(retry), 1) // b tried the lock again and waits
	es := wantLedger(t, st, "web", row{day(0), finding.LedgerPending, false})
	complete(t, st, es[0].ID)

	a.Stop()
	if a.Leading() {
		t.Fatal("a still leading after Stop")
	}
	set(day(0).Add(retry))
	cb.AwaitTimers(t, day(1), 1) // b leads now and waits for the next due time
	if !b.Leading() {
		t.Fatal("b did not take over")
	}
	wantLedger(t, st, "web", row{day(0), finding.LedgerSucceeded, false})

	set(day(1))
	cb.AwaitTimers(t, day(2), 1)
	wantLedger(t, st, "web", row{day(0), finding.LedgerSucceeded, false}, row{day(1), finding.LedgerPending, false})
	if n := len(requests(t, st)); n != 2 {
		t.Fatalf("%d scan requests, want 2", n)
	}
}

// TestMissedRecordedAndCaughtUpOnce restarts the scheduler after an
// outage of three due times: all three are recorded missed and one
// catch-up run fires, once, even across another restart.
func TestMissedRecordedAndCaughtUpOnce(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	addDaily(t, st, "web")
	setWatermark(t, st, "web", day(0)) // day 0 ran before the outage
	clk := newFakeClock(day(3).Add(10 * time.Hour))

	a := start(t, st, clk, 0)
	clk.AwaitTimers(t, day(4), 1)
	want := []row{
		{day(1), finding.LedgerMissed, false},
		{day(2), finding.LedgerMissed, false},
		{day(3), finding.LedgerMissed, false},
		{day(3), finding.LedgerPending, true},
	}
	es := wantLedger(t, st, "web", want...)
	reqs := requests(t, st)
	if len(reqs) != 1 || !reqs[0].CatchUp || !reqs[0].Due.Equal(day(3)) || reqs[0].LedgerID != es[3].ID {
		t.Fatalf("scan requests %+v, want one catch-up for %s as ledger row %d", reqs, day(3), es[3].ID)
	}

	// Another restart at the same time owes nothing more. Each instance
	// gets its own clock so that a stopped one's timers do not count.
	a.Stop()
	clk = newFakeClock(clk.Now())
	a2 := start(t, st, clk, 0)
	clk.AwaitTimers(t, day(4), 1)
	if !a2.Leading() {
		t.Fatal("restarted scheduler does not lead")
	}
	wantLedger(t, st, "web", want...)
	if n := len(requests(t, st)); n != 1 {
		t.Fatalf("%d scan requests after restart, want still 1", n)
	}
	complete(t, st, es[3].ID)
	a2.Stop()

	// A replica that starts within the grace period after a due time fires
	// it as an ordinary run: taking over is not missing.
	clk = newFakeClock(day(4).Add(3 * time.Minute))
	start(t, st, clk, 0)
	clk.AwaitTimers(t, day(5), 1)
	want[3].status = finding.LedgerSucceeded
	want = append(want, row{day(4), finding.LedgerPending, false})
	wantLedger(t, st, "web", want...)
}

// TestOverlapSkipped fires a schedule whose previous run is unfinished:
// the due time is recorded skipped; after the run ends the next one fires;
// a run never reported finished is given up as abandoned.
func TestOverlapSkipped(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	addDaily(t, st, "web")
	clk := newFakeClock(t0.Add(time.Hour))
	start(t, st, clk, 0, func(o *scheduler.Options) { o.AbandonAfter = 36 * time.Hour })
	clk.AwaitTimers(t, day(0), 1)

	step := func(i int) {
		t.Helper()
		clk.Set(day(i))
		clk.AwaitTimers(t, day(i+1), 1)
	}
	step(0)
	step(1) // day 0 still pending
	es := wantLedger(t, st, "web",
		row{day(0), finding.LedgerPending, false},
		row{day(1), finding.LedgerSkipped, false})
	if !strings.Contains(es[1].Error, "overlaps run") {
		t.Errorf("skipped row error %q, want it to name the overlap", es[1].Error)
	}
	if err := st.MarkLedger(t.Context(), es[0].ID, finding.LedgerRunning, nil, ""); err != nil {
		t.Fatal(err)
	}
	if running, err := st.RunningFor(t.Context(), "web"); err != nil || !running {
		t.Fatalf("RunningFor = %v, %v; want true", running, err)
	}
	if err := st.MarkLedger(t.Context(), es[0].ID, finding.LedgerFailed, nil, "nuclei exited 2"); err != nil {
		t.Fatal(err)
	}

	step(2) // day 0 finished: fires
	step(3) // day 2 still pending: skipped
	step(4) // day 2 claimed 48h ago, past AbandonAfter: failed; day 4 fires
	es = wantLedger(t, st, "web",
		row{day(0), finding.LedgerFailed, false},
		row{day(1), finding.LedgerSkipped, false},
		row{day(2), finding.LedgerFailed, false},
		row{day(3), finding.LedgerSkipped, false},
		row{day(4), finding.LedgerPending, false})
	if es[0].Error != "nuclei exited 2" || es[0].StartedAt.IsZero() || es[0].FinishedAt.IsZero() {
		t.Errorf("completed row = %+v", es[0])
	}
	if !strings.Contains(es[2].Error, "abandoned") {
		t.Errorf("abandoned row error %q", es[2].Error)
	}
	if n := len(requests(t, st)); n != 3 {
		t.Fatalf("%d scan requests, want 3 (skipped due times queue none)", n)
	}
}

// TestReloadOnChange adds a schedule while the leader waits: the NOTIFY
// from the store makes it wait for the new, earlier due time. The store
// stamps new schedules with the database's time, so this test's clock
// starts at the real time.
func TestReloadOnChange(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	every := func(name, d string) (spec.Schedule, cadence.Cadence) {
		sp := spec.Schedule{
			Name:    name,
			Kind:    finding.KindExternal,
			Targets: spec.Targets{URLs: []string{"https://shop.example.com"}},
			Cadence: "@every " + d,
		}
		c, err := sp.CadenceOf()
		if err != nil {
			t.Fatal(err)
		}
		return sp, c
	}
	web, every2h := every("web", "2h")
	early, every1h := every("early", "1h")
	if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{web}, "test", spec.Options{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clk := newFakeClock(now)
	start(t, st, clk, 0)
	clk.AwaitTimers(t, every2h.Next(now), 1)

	if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{early}, "test", spec.Options{}); err != nil {
		t.Fatal(err)
	}
	clk.AwaitTimers(t, every1h.Next(now), 1)

	// Disabling it stops it from firing.
	off := false
	early.Enabled = &off
	if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{early}, "test", spec.Options{}); err != nil {
		t.Fatal(err)
	}
	clk.AwaitTimers(t, every2h.Next(now), 2) // the first wait plus the one after this reload
	clk.Set(every2h.Next(now))
	clk.AwaitTimers(t, every2h.Next(every2h.Next(now)), 1)
	if es := ledger(t, st, "early"); len(es) != 0 {
		t.Fatalf("disabled schedule fired: %+v", es)
	}
	if es := ledger(t, st, "web"); len(es) != 1 || es[0].Status != finding.LedgerPending {
		t.Fatalf("web ledger %+v, want one pending run", es)
	}
}

func TestNewNeedsStore(t *testing.T) {
	if _, err := scheduler.New(scheduler.Options{}); err == nil {
		t.Fatal("New without a store succeeded")
	}
	// Stop without Start is allowed.
	s2, err := scheduler.New(scheduler.Options{Store: nilStore{}})
	if err != nil {
		t.Fatal(err)
	}
	s2.Stop()
}

// nilStore satisfies scheduler.Store for tests that never start.
type nilStore struct{}

func (nilStore) ListSchedules(context.Context) ([]store.Schedule, error) { return nil, nil }
func (nilStore) ClaimDue(context.Context, store.ClaimRequest) (store.Claim, error) {
	return store.Claim{}, nil
}
func (nilStore) RecordMissed(context.Context, string, []time.Time, time.Time) (int, error) {
	return 0, nil
}
func (nilStore) TryLead(context.Context, int64) (*store.LeaderSession, bool, error) {
	return nil, false, nil
}
