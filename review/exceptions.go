package review

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store"
)

// The exceptions register: an accepted risk over named findings with an
// owner, a rationale, compensating CCM controls, an expiry and a review
// cadence. Its findings' decisions are written through the same path as a
// person's (applyTx), as risk_accepted with the exception's id, so they
// stay keyed by the findings' identity; expiry returns the findings still
// under it to untriaged.

// ErrTooLong is an exception whose expiry lies beyond the configured
// maximum (or not in the future); the API answers it with 422.
var ErrTooLong = errors.New("expiry out of range")

// ExceptionActor is the actor of the changes the expiry check makes.
const ExceptionActor = "exceptions"

// ExceptionPolicy is the configured rules of the register.
type ExceptionPolicy struct {
	FourEyes      bool          // a second person approves before the exception applies
	MaxException  time.Duration // how far ahead an exception may expire
	ExpiryWarning time.Duration // how long before its expiry the exception-expiring event goes out
	RestartSLA    bool          // expiry restarts the findings' due dates from the expiry
}

// DefaultExceptionPolicy is the configuration's default: 365 days at most,
// warned 14 days ahead, SLA restarted, no second approver.
func DefaultExceptionPolicy() ExceptionPolicy {
	return ExceptionPolicy{MaxException: 365 * 24 * time.Hour, ExpiryWarning: 14 * 24 * time.Hour, RestartSLA: true}
}

// Period is a calendar period from an ISO 8601 duration: years, months,
// weeks and days (no time part).
type Period struct{ Years, Months, Days int }

var periodRE = regexp.MustCompile(`^P(?:(\d{1,4})Y)?(?:(\d{1,4})M)?(?:(\d{1,4})W)?(?:(\d{1,5})D)?$`)

// ParsePeriod reads an ISO 8601 duration of years, months, weeks and days
// ("P90D", "P2W", "P3M", "P1Y6M"); it must be positive.
func ParsePeriod(s string) (Period, error) {
	m := periodRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil || s == "P" {
		return Period{}, fmt.Errorf("%q is not an ISO 8601 duration of years, months, weeks and days such as P90D", s)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	p := Period{Years: n(1), Months: n(2), Days: n(3)*7 + n(4)}
	if p == (Period{}) {
		return Period{}, fmt.Errorf("%q is not a positive duration", s)
	}
	return p, nil
}

// After is t plus the period, by the calendar.
func (p Period) After(t time.Time) time.Time { return t.AddDate(p.Years, p.Months, p.Days) }

// ccmIDRE is a CCM control id such as AIS-07 or TVM-03.
var ccmIDRE = regexp.MustCompile(`^[A-Z]{2,4}-\d{2}$`)

// ExceptionRequest is a new exception.
type ExceptionRequest struct {
	Findings             store.FindingFilter // by ids or by filter
	Owner                string              // the user answerable for the accepted risk
	Rationale            string
	CompensatingControls []string // CCM control ids
	Expires              time.Time
	ReviewEvery          string // ISO 8601 duration; "" for no periodic review
}

// ExceptionStore is what the register needs of the database; *store.Store
// implements it.
type ExceptionStore interface {
	Store
	GetException(ctx context.Context, id int64) (store.Exception, error)
}

// Exceptions runs the register.
type Exceptions struct {
	st     ExceptionStore
	clock  Clock
	log    *slog.Logger
	policy ExceptionPolicy
}

// NewExceptions builds the register's service. clock nil is the wall
// clock; log nil discards.
func NewExceptions(st ExceptionStore, p ExceptionPolicy, clock Clock, log *slog.Logger) *Exceptions {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exceptions{st: st, clock: clock, log: log.With("component", "exceptions"), policy: p}
}

// mayCover checks that an owner owns every finding f selects (admins may
// cover any); it returns how many f selects.
func (x *Exceptions) mayCover(ctx context.Context, a Actor, f store.FindingFilter) (int, error) {
	all, err := x.st.CountFindings(ctx, f)
	if err != nil {
		return 0, err
	}
	if a.Role == roleOwner {
		own := f
		own.Owner = a.User
		n, err := x.st.CountFindings(ctx, own)
		if err != nil {
			return 0, err
		}
		if n != all {
			return 0, fmt.Errorf("%w: %d of the %d findings are linked to no control %s owns", ErrForbidden, all-n, all, a.User)
		}
	}
	return all, nil
}

// exceptionDecision is what an exception decides for its findings.
func exceptionDecision(e store.Exception) Decision {
	d := Decision{State: store.ReviewRiskAccepted, Exception: e.ID,
		Comment: truncate(fmt.Sprintf("exception %d: %s", e.ID, e.Rationale), maxComment)}
	if len(e.CompensatingControls) > 0 {
		d.Justification = "protected_by_mitigating_control"
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}

// Create records an exception. Admins may cover any findings, owners only
// findings of their controls (ErrForbidden otherwise). Under four eyes it
// is pending until another person approves it; otherwise its findings are
// risk_accepted at once.
func (x *Exceptions) Create(ctx context.Context, a Actor, req ExceptionRequest) (store.Exception, error) {
	if err := mayDecide(a); err != nil {
		return store.Exception{}, err
	}
	now := x.clock.Now().UTC().Truncate(time.Microsecond)
	ne := store.NewException{State: store.ExceptionActive, Owner: strings.TrimSpace(req.Owner),
		Rationale: strings.TrimSpace(req.Rationale), Expires: req.Expires.UTC(), CreatedBy: a.Name, CreatedAt: now}
	switch {
	case ne.Owner == "":
		return store.Exception{}, &DecisionError{"owner", "required: the user answerable for the accepted risk"}
	case ne.Rationale == "":
		return store.Exception{}, &DecisionError{"rationale", "required"}
	case len(ne.Rationale) > maxComment-64:
		return store.Exception{}, &DecisionError{"rationale", fmt.Sprintf("longer than %d bytes", maxComment-64)}
	case strings.ContainsRune(ne.Rationale, 0):
		return store.Exception{}, &DecisionError{"rationale", "contains a NUL byte"}
	case req.Expires.IsZero():
		return store.Exception{}, &DecisionError{"expires", "required"}
	case !ne.Expires.After(now):
		return store.Exception{}, fmt.Errorf("%w: expires %s is not in the future", ErrTooLong, ne.Expires.Format(time.RFC3339))
	case ne.Expires.After(now.Add(x.policy.MaxException)):
		return store.Exception{}, fmt.Errorf("%w: expires %s is more than review.max_exception (%d days) ahead",
			ErrTooLong, ne.Expires.Format(time.RFC3339), int(x.policy.MaxException/(24*time.Hour)))
	}
	for _, c := range req.CompensatingControls {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !ccmIDRE.MatchString(c) {
			return store.Exception{}, &DecisionError{"compensating_controls", fmt.Sprintf("%q is not a CCM control id such as AIS-07", c)}
		}
		ne.CompensatingControls = append(ne.CompensatingControls, c)
	}
	if req.ReviewEvery != "" {
		p, err := ParsePeriod(req.ReviewEvery)
		if err != nil {
			return store.Exception{}, &DecisionError{"review_every", err.Error()}
		}
		ne.ReviewEvery = strings.ToUpper(strings.TrimSpace(req.ReviewEvery))
		next := p.After(now)
		ne.NextReview = &next
	}
	if x.policy.FourEyes {
		ne.State, ne.NextReview = store.ExceptionPending, nil
	}
	f := req.Findings
	f.Cursor, f.Limit, f.Sort = "", 0, ""
	n, err := x.mayCover(ctx, a, f)
	if err != nil {
		return store.Exception{}, err
	}
	if n > MaxBulk {
		return store.Exception{}, fmt.Errorf("%w: the exception selects %d findings, at most %d", ErrTooMany, n, MaxBulk)
	}
	var out store.Exception
	var changes []store.ReviewChange
	err = x.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if out, err = store.InsertException(ctx, tx, ne, f); err != nil {
			return err
		}
		if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{At: now, Actor: a.Name, Action: "exception.created",
			SubjectType: "exception", SubjectID: strconv.FormatInt(out.ID, 10), After: out}}); err != nil {
			return err
		}
		if out.State != store.ExceptionActive || len(out.Findings) == 0 { // (InsertException refuses an empty selection)
			return nil
		}
		changes, err = applyTx(ctx, tx, a, store.FindingFilter{IDs: out.Findings}, exceptionDecision(out), now)
		return err
	})
	if err != nil {
		return store.Exception{}, fmt.Errorf("creating an exception: %w", err)
	}
	x.log.Info("exception created", "exception_id", out.ID, "actor", a.Name, "state", out.State, "findings", len(out.Findings))
	logChanges(x.log, a, changes)
	return out, nil
}

// Approve makes a pending exception active and its findings risk_accepted.
// The creator may not approve their own exception, and an owner only one
// whose findings are all theirs (ErrForbidden); an exception not pending is
// store.ErrConflict.
func (x *Exceptions) Approve(ctx context.Context, a Actor, id int64) (store.Exception, error) {
	if err := mayDecide(a); err != nil {
		return store.Exception{}, err
	}
	e, err := x.st.GetException(ctx, id)
	if err != nil {
		return store.Exception{}, err
	}
	if e.CreatedBy == a.Name {
		return store.Exception{}, fmt.Errorf("%w: %s created exception %d; another person approves it", ErrForbidden, a.Name, id)
	}
	if len(e.Findings) == 0 {
		// An empty id list would select every finding.
		return store.Exception{}, fmt.Errorf("exception %d covers no finding any more: %w", id, store.ErrConflict)
	}
	if _, err := x.mayCover(ctx, a, store.FindingFilter{IDs: e.Findings}); err != nil {
		return store.Exception{}, err
	}
	now := x.clock.Now().UTC().Truncate(time.Microsecond)
	var changes []store.ReviewChange
	err = x.st.InTx(ctx, func(tx *store.Tx) error {
		before, err := store.GetExceptionTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if before.State != store.ExceptionPending {
			return fmt.Errorf("exception %d is %s, not pending: %w", id, before.State, store.ErrConflict)
		}
		if !before.Expires.After(now) {
			return fmt.Errorf("%w: exception %d expired at %s", ErrTooLong, id, before.Expires.Format(time.RFC3339))
		}
		var next *time.Time
		if before.ReviewEvery != "" {
			p, err := ParsePeriod(before.ReviewEvery)
			if err != nil {
				return err
			}
			t := p.After(now)
			next = &t
		}
		if err := store.ApproveException(ctx, tx, id, a.Name, now, next); err != nil {
			return err
		}
		if e, err = store.GetExceptionTx(ctx, tx, id); err != nil {
			return err
		}
		if len(e.Findings) == 0 {
			return fmt.Errorf("exception %d covers no finding any more: %w", id, store.ErrConflict)
		}
		if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{At: now, Actor: a.Name, Action: "exception.approved",
			SubjectType: "exception", SubjectID: strconv.FormatInt(id, 10),
			Before: map[string]string{"state": before.State}, After: map[string]any{"state": e.State, "approved_by": a.Name}}}); err != nil {
			return err
		}
		changes, err = applyTx(ctx, tx, a, store.FindingFilter{IDs: e.Findings}, exceptionDecision(e), now)
		return err
	})
	if err != nil {
		return store.Exception{}, fmt.Errorf("approving exception %d: %w", id, err)
	}
	x.log.Info("exception approved", "exception_id", id, "actor", a.Name)
	logChanges(x.log, a, changes)
	return e, nil
}

// ExceptionEvent is published on starpipe.finding.events: type
// exception-expired once per finding the expiry returned to untriaged
// (keyed by the finding id), and exception-expiring and
// exception-review-due once per exception (keyed by "exception-ID", with
// Findings listing its findings).
type ExceptionEvent struct {
	ExceptionID int64      `json:"exception_id"`
	FindingID   int64      `json:"finding_id,omitempty"`
	Findings    []int64    `json:"findings,omitempty"`
	Owner       string     `json:"owner"`
	Rationale   string     `json:"rationale"`
	Expires     time.Time  `json:"expires"`
	NextReview  *time.Time `json:"next_review,omitempty"`
	SLADue      *time.Time `json:"sla_due,omitempty"` // the restarted due date (exception-expired)
}

// exceptionBatch bounds the warnings one transaction records.
const exceptionBatch = 100

// ExceptionChecker expires exceptions and announces the ones about to
// expire or due for review; the SLA watcher runs it on every tick.
type ExceptionChecker struct {
	st     SLAStore
	clock  Clock
	policy ExceptionPolicy
	log    *slog.Logger
}

// NewExceptionChecker builds the check. clock nil is the wall clock.
func NewExceptionChecker(st SLAStore, p ExceptionPolicy, clock Clock, log *slog.Logger) *ExceptionChecker {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ExceptionChecker{st: st, clock: clock, policy: p, log: log.With("component", "exceptions")}
}

// ExceptionCheck counts what one check did.
type ExceptionCheck struct {
	Expired, Expiring, ReviewDue int
}

// Check expires the exceptions past their expiry at the clock's now
// (one transaction each), then announces those expiring within the
// warning and those whose review has come, each once.
func (c *ExceptionChecker) Check(ctx context.Context) (ExceptionCheck, error) {
	now := c.clock.Now().UTC().Truncate(time.Microsecond)
	var res ExceptionCheck
	for {
		var n int
		err := c.st.InTx(ctx, func(tx *store.Tx) error {
			es, err := store.ExpireExceptions(ctx, tx, now, 1)
			if err != nil || len(es) == 0 {
				return err
			}
			n = 1
			return c.expire(ctx, tx, now, es[0])
		})
		if err != nil {
			return res, fmt.Errorf("expiring exceptions: %w", err)
		}
		if n == 0 {
			break
		}
		res.Expired++
	}
	for _, w := range []struct {
		typ   string
		count *int
		find  func(tx *store.Tx) ([]store.Exception, error)
	}{
		{bus.TypeExceptionExpiring, &res.Expiring, func(tx *store.Tx) ([]store.Exception, error) {
			return store.WarnExpiringExceptions(ctx, tx, now, c.policy.ExpiryWarning, exceptionBatch)
		}},
		{bus.TypeExceptionReviewDue, &res.ReviewDue, func(tx *store.Tx) ([]store.Exception, error) {
			return store.WarnReviewDueExceptions(ctx, tx, now, exceptionBatch)
		}},
	} {
		for {
			var n int
			err := c.st.InTx(ctx, func(tx *store.Tx) error {
				es, err := w.find(tx)
				if err != nil {
					return err
				}
				n = len(es)
				msgs := make([]store.OutboxMessage, len(es))
				for i, e := range es {
					v, err := bus.EncodeID(bus.NewID(), w.typ, now, ExceptionEvent{ExceptionID: e.ID, Findings: e.Findings, Owner: e.Owner,
						Rationale: e.Rationale, Expires: e.Expires.UTC(), NextReview: e.NextReview})
					if err != nil {
						return err
					}
					msgs[i] = store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: "exception-" + strconv.FormatInt(e.ID, 10), Payload: v}
				}
				return store.EnqueueBatch(ctx, tx, msgs)
			})
			if err != nil {
				return res, fmt.Errorf("announcing %s: %w", w.typ, err)
			}
			*w.count += n
			if n < exceptionBatch {
				break
			}
		}
	}
	if res != (ExceptionCheck{}) {
		c.log.Info("exceptions checked", "expired", res.Expired, "expiring", res.Expiring, "review_due", res.ReviewDue)
	}
	return res, nil
}

// expire returns the findings still under e to untriaged (restarting their
// SLA from the expiry when configured) with the exception-expired events
// and the activity rows, in tx.
func (c *ExceptionChecker) expire(ctx context.Context, tx *store.Tx, now time.Time, e store.ExpiredException) error {
	ids, err := store.FindingsUnderException(ctx, tx, e.ID)
	if err != nil {
		return err
	}
	var changes []store.ReviewChange
	if len(ids) > 0 {
		d := Decision{State: store.ReviewUntriaged, Comment: fmt.Sprintf("exception %d expired", e.ID)}
		if changes, err = applyTx(ctx, tx, Actor{Name: ExceptionActor}, store.FindingFilter{IDs: ids}, d, now); err != nil {
			return err
		}
		if c.policy.RestartSLA {
			if _, err := store.RestartSLA(ctx, tx, ids, e.Expires); err != nil {
				return err
			}
		}
	}
	if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{At: now, Actor: ExceptionActor, Action: "exception.expired",
		SubjectType: "exception", SubjectID: strconv.FormatInt(e.ID, 10),
		Before: map[string]any{"state": e.Was}, After: map[string]any{"state": e.State, "returned_to_untriaged": ids, "sla_restarted": c.policy.RestartSLA}}}); err != nil {
		return err
	}
	msgs := make([]store.OutboxMessage, 0, len(changes))
	for _, ch := range changes {
		ev := ExceptionEvent{ExceptionID: e.ID, FindingID: ch.ID, Owner: e.Owner, Rationale: e.Rationale, Expires: e.Expires.UTC()}
		if c.policy.RestartSLA {
			if p, err := store.FindingSLADue(ctx, tx, ch.ID); err == nil {
				ev.SLADue = p
			}
		}
		v, err := bus.EncodeID(bus.NewID(), bus.TypeExceptionExpired, now, ev)
		if err != nil {
			return err
		}
		msgs = append(msgs, store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(ch.ID, 10), Payload: v})
	}
	logChanges(c.log, Actor{Name: ExceptionActor}, changes)
	return store.EnqueueBatch(ctx, tx, msgs)
}
