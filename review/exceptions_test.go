package review_test

import (
	"context"
	"errors"
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

const day = 24 * time.Hour

// eventKeys returns the keys of the outbox's finding events of type typ, in
// order.
func eventKeys(t *testing.T, st *store.Store, typ string) []string {
	t.Helper()
	var out []string
	rows := storetest.Strings(t, st, `SELECT key || ' ' || convert_from(payload, 'UTF8') FROM outbox WHERE topic = $1 ORDER BY id`, bus.TopicFindingEvents)
	for _, r := range rows {
		key, payload, _ := cut(r)
		env, err := bus.Decode([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		if env.Type == typ {
			out = append(out, key)
		}
	}
	return out
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func newOwner(t *testing.T, st *store.Store, name string) {
	t.Helper()
	if _, err := st.CreateUser(t.Context(), nil, "test", store.NewUser{Name: name, Role: store.RoleOwner}, nil); err != nil {
		t.Fatal(err)
	}
}

func reviewOf(t *testing.T, st *store.Store, id int64) store.Review {
	t.Helper()
	r, err := st.GetReview(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var admin = review.Actor{Name: "root", Role: store.RoleAdmin}

// An exception accepts its findings' risk at once; its review falling due
// and its coming expiry are announced once each; its expiry returns the
// findings to untriaged with one exception-expired event each, an activity
// row, and the SLA restarted from the expiry, so the finding does not
// breach at once. All on a fake clock through the SLA watcher's loop.
func TestExceptionLifecycleOnAFakeClock(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sla := store.DefaultSLA()
	if _, _, err := st.RecordSLAPolicy(t.Context(), sla, "config", t0.Add(-day)); err != nil {
		t.Fatal(err)
	}
	ids := seed(t, st, t0, sla, codeFinding("crit", finding.SeverityCritical), codeFinding("high", finding.SeverityHigh))
	newOwner(t, st, "alice")
	clock := schedulertest.NewFakeClock(t0)
	policy := review.DefaultExceptionPolicy()

	e, err := review.NewExceptions(st, policy, clock, nil).Create(t.Context(), admin, review.ExceptionRequest{
		Findings: store.FindingFilter{IDs: []int64{ids["crit"]}}, Owner: "alice", Rationale: "vendor patch due in Q2",
		CompensatingControls: []string{"ais-07"}, Expires: t0.Add(60 * day), ReviewEvery: "P30D",
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.State != store.ExceptionActive || !slices.Equal(e.Findings, []int64{ids["crit"]}) || e.NextReview == nil || !e.NextReview.Equal(t0.Add(30*day)) {
		t.Fatalf("created: %+v", e)
	}
	if r := reviewOf(t, st, ids["crit"]); r.State != store.ReviewRiskAccepted || r.Exception != e.ID || r.Justification != "protected_by_mitigating_control" {
		t.Fatalf("crit after create: %+v", r)
	}
	if r := reviewOf(t, st, ids["high"]); r.State != store.ReviewUntriaged {
		t.Fatalf("high is not covered but is %s", r.State)
	}

	every := day
	w := review.NewSLAWatcher(st, clock, every, nil).WithExceptions(review.NewExceptionChecker(st, policy, clock, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	}()
	clock.AwaitTimers(t, t0.Add(every), 1)
	// to moves the clock and waits for the watcher to have checked.
	to := func(at time.Time) {
		t.Helper()
		clock.Set(at)
		clock.AwaitTimers(t, at.Add(every), 1)
	}
	key := "exception-" + strconv.FormatInt(e.ID, 10)
	crit := strconv.FormatInt(ids["crit"], 10)

	to(t0.Add(29 * day))
	if got := eventKeys(t, st, bus.TypeExceptionReviewDue); len(got) != 0 {
		t.Fatalf("review due early: %v", got)
	}
	// The critical finding's own due date (t0+7d) has passed, but it is an
	// accepted risk: no breach.
	if got := breachEvents(t, st); len(got) != 0 {
		t.Fatalf("breach under an exception: %v", got)
	}
	to(t0.Add(30 * day))
	to(t0.Add(31 * day))
	if got := eventKeys(t, st, bus.TypeExceptionReviewDue); !slices.Equal(got, []string{key}) {
		t.Fatalf("review-due events: %v, want one %s", got, key)
	}
	due, err := st.ListExceptions(t.Context(), store.ExceptionFilter{Due: true, Now: clock.Now(), Within: policy.ExpiryWarning})
	if err != nil || len(due) != 1 || due[0].ID != e.ID {
		t.Fatalf("due=review: %+v, %v", due, err)
	}

	to(t0.Add(45 * day)) // 15 days before expiry: no warning yet
	if got := eventKeys(t, st, bus.TypeExceptionExpiring); len(got) != 0 {
		t.Fatalf("expiring early: %v", got)
	}
	to(t0.Add(46 * day))
	to(t0.Add(47 * day))
	if got := eventKeys(t, st, bus.TypeExceptionExpiring); !slices.Equal(got, []string{key}) {
		t.Fatalf("expiring events: %v, want one %s", got, key)
	}
	if r := reviewOf(t, st, ids["crit"]); r.State != store.ReviewRiskAccepted {
		t.Fatalf("crit before expiry: %s", r.State)
	}

	to(t0.Add(60*day + time.Hour))
	to(t0.Add(61*day + time.Hour))
	to(t0.Add(62*day + time.Hour))
	if r := reviewOf(t, st, ids["crit"]); r.State != store.ReviewUntriaged || r.Exception != 0 {
		t.Fatalf("crit after expiry: %+v", r)
	}
	if got := eventKeys(t, st, bus.TypeExceptionExpired); !slices.Equal(got, []string{crit}) {
		t.Fatalf("exception-expired events: %v, want one for %s", got, crit)
	}
	acts := storetest.Strings(t, st, `SELECT actor || ' ' || subject_id FROM activity_log WHERE action = 'exception.expired'`)
	if !slices.Equal(acts, []string{review.ExceptionActor + " " + strconv.FormatInt(e.ID, 10)}) {
		t.Fatalf("activity: %v", acts)
	}
	got, err := st.GetException(t.Context(), e.ID)
	if err != nil || got.State != store.ExceptionExpired {
		t.Fatalf("after expiry: %+v, %v", got, err)
	}
	// The SLA restarted from the expiry: seven days for a critical.
	var slaDue time.Time
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT sla_due FROM findings WHERE id = $1`, ids["crit"]).Scan(&slaDue); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(67 * day); !slaDue.Equal(want) {
		t.Fatalf("sla_due %s, want %s", slaDue.UTC(), want)
	}
	high := strconv.FormatInt(ids["high"], 10)
	if got := breachEvents(t, st); !slices.Equal(got, []string{high}) {
		t.Fatalf("breaches right after expiry: %v, want only the uncovered %s", got, high)
	}
	to(t0.Add(68 * day))
	if got := breachEvents(t, st); !slices.Equal(got, []string{high, crit}) {
		t.Fatalf("breaches after the restarted due date: %v", got)
	}
	// Nothing is announced twice.
	if n, err := review.NewExceptionChecker(st, policy, clock, nil).Check(t.Context()); err != nil || n != (review.ExceptionCheck{}) {
		t.Fatalf("second replica: %+v, %v", n, err)
	}
	for _, typ := range []string{bus.TypeExceptionExpired, bus.TypeExceptionExpiring, bus.TypeExceptionReviewDue} {
		if got := eventKeys(t, st, typ); len(got) != 1 {
			t.Fatalf("%s: %v", typ, got)
		}
	}
}

// Without the SLA restart an expired exception's finding keeps its first
// due date.
func TestExceptionExpiryWithoutSLARestart(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sla := store.DefaultSLA()
	if _, _, err := st.RecordSLAPolicy(t.Context(), sla, "config", t0.Add(-day)); err != nil {
		t.Fatal(err)
	}
	ids := seed(t, st, t0, sla, codeFinding("crit", finding.SeverityCritical))
	newOwner(t, st, "alice")
	clock := schedulertest.NewFakeClock(t0)
	policy := review.DefaultExceptionPolicy()
	policy.RestartSLA = false
	if _, err := review.NewExceptions(st, policy, clock, nil).Create(t.Context(), admin, review.ExceptionRequest{
		Findings: store.FindingFilter{IDs: []int64{ids["crit"]}}, Owner: "alice", Rationale: "r", Expires: t0.Add(10 * day),
	}); err != nil {
		t.Fatal(err)
	}
	clock.Set(t0.Add(11 * day))
	res, err := review.NewExceptionChecker(st, policy, clock, nil).Check(t.Context())
	if err != nil || res.Expired != 1 {
		t.Fatalf("check: %+v, %v", res, err)
	}
	var slaDue time.Time
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT sla_due FROM findings WHERE id = $1`, ids["crit"]).Scan(&slaDue); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(7 * day); !slaDue.Equal(want) {
		t.Fatalf("sla_due %s, want %s (unchanged)", slaDue.UTC(), want)
	}
}

// Under four eyes an exception is pending, changes nothing, and its
// creator cannot approve it; another person's approval applies it.
func TestExceptionFourEyes(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ids := seed(t, st, t0, store.DefaultSLA(), codeFinding("a", finding.SeverityHigh))
	newOwner(t, st, "alice")
	clock := schedulertest.NewFakeClock(t0)
	policy := review.DefaultExceptionPolicy()
	policy.FourEyes = true
	x := review.NewExceptions(st, policy, clock, nil)
	e, err := x.Create(t.Context(), admin, review.ExceptionRequest{
		Findings: store.FindingFilter{IDs: []int64{ids["a"]}}, Owner: "alice", Rationale: "r", Expires: t0.Add(30 * day), ReviewEvery: "P2W",
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.State != store.ExceptionPending || e.NextReview != nil {
		t.Fatalf("created: %+v", e)
	}
	if r := reviewOf(t, st, ids["a"]); r.State != store.ReviewUntriaged {
		t.Fatalf("pending exception applied: %s", r.State)
	}
	if _, err := x.Approve(t.Context(), admin, e.ID); !errors.Is(err, review.ErrForbidden) {
		t.Fatalf("creator approving: %v, want ErrForbidden", err)
	}
	clock.Set(t0.Add(day))
	e, err = x.Approve(t.Context(), review.Actor{Name: "bob", Role: store.RoleAdmin}, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != store.ExceptionActive || e.ApprovedBy != "bob" || e.NextReview == nil || !e.NextReview.Equal(t0.Add(15*day)) {
		t.Fatalf("approved: %+v", e)
	}
	if r := reviewOf(t, st, ids["a"]); r.State != store.ReviewRiskAccepted || r.Exception != e.ID || r.DecidedBy != "bob" {
		t.Fatalf("after approval: %+v", r)
	}
	if _, err := x.Approve(t.Context(), review.Actor{Name: "carol", Role: store.RoleAdmin}, e.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("approving twice: %v, want ErrConflict", err)
	}
	acts := storetest.Strings(t, st, `SELECT actor || ' ' || action FROM activity_log WHERE subject_type = 'exception' ORDER BY id`)
	if !slices.Equal(acts, []string{"root exception.created", "bob exception.approved"}) {
		t.Fatalf("activity: %v", acts)
	}
}

func TestExceptionRules(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ids := seed(t, st, t0, store.DefaultSLA(), codeFinding("a", finding.SeverityHigh))
	newOwner(t, st, "alice")
	x := review.NewExceptions(st, review.DefaultExceptionPolicy(), schedulertest.NewFakeClock(t0), nil)
	ok := review.ExceptionRequest{Findings: store.FindingFilter{IDs: []int64{ids["a"]}}, Owner: "alice", Rationale: "r", Expires: t0.Add(365 * day)}
	var de *review.DecisionError
	var ue *store.UserError
	for _, tc := range []struct {
		name  string
		edit  func(*review.ExceptionRequest)
		check func(error) bool
	}{
		{"beyond max", func(r *review.ExceptionRequest) { r.Expires = t0.Add(366 * day) }, func(err error) bool { return errors.Is(err, review.ErrTooLong) }},
		{"in the past", func(r *review.ExceptionRequest) { r.Expires = t0.Add(-time.Hour) }, func(err error) bool { return errors.Is(err, review.ErrTooLong) }},
		{"no expiry", func(r *review.ExceptionRequest) { r.Expires = time.Time{} }, func(err error) bool { return errors.As(err, &de) && de.Field == "expires" }},
		{"bad period", func(r *review.ExceptionRequest) { r.ReviewEvery = "90 days" }, func(err error) bool { return errors.As(err, &de) && de.Field == "review_every" }},
		{"bad control", func(r *review.ExceptionRequest) { r.CompensatingControls = []string{"nope"} }, func(err error) bool {
			return errors.As(err, &de) && de.Field == "compensating_controls"
		}},
		{"unknown owner", func(r *review.ExceptionRequest) { r.Owner = "nobody" }, func(err error) bool { return errors.As(err, &ue) && ue.Field == "owner" }},
		{"owner out of scope", func(*review.ExceptionRequest) {}, nil},
	} {
		req := ok
		tc.edit(&req)
		a := admin
		if tc.check == nil {
			// alice owns no controls at all.
			a = review.Actor{Name: "alice", Role: store.RoleOwner, User: "alice"}
			tc.check = func(err error) bool { return errors.Is(err, review.ErrForbidden) }
		}
		if _, err := x.Create(t.Context(), a, req); !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := x.Create(t.Context(), admin, ok); err != nil {
		t.Fatalf("exactly the maximum: %v", err)
	}
}

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"P90D", t0.AddDate(0, 0, 90)},
		{"P2W", t0.AddDate(0, 0, 14)},
		{"P3M", t0.AddDate(0, 3, 0)},
		{"P1Y", t0.AddDate(1, 0, 0)},
		{"p1m15d", t0.AddDate(0, 1, 15)},
	} {
		p, err := review.ParsePeriod(tc.in)
		if err != nil || !p.After(t0).Equal(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.in, p.After(t0), err, tc.want)
		}
	}
	for _, bad := range []string{"", "P", "P0D", "PT1H", "90D", "P1.5D", "P-1D"} {
		if _, err := review.ParsePeriod(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
