package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The exceptions register. An exception accepts the risk of named findings
// until it expires; package review owns the rules (who may create and
// approve, how far ahead it may expire) and writes the findings' decisions
// through ApplyReview with the exception's id.

// Exception states.
const (
	ExceptionPending = "pending" // waits for a second person's approval
	ExceptionActive  = "active"
	ExceptionExpired = "expired"
)

// Exception is one entry of the register.
type Exception struct {
	ID                   int64      `json:"id"`
	State                string     `json:"state"`
	Owner                string     `json:"owner"`
	Rationale            string     `json:"rationale"`
	CompensatingControls []string   `json:"compensating_controls"`
	Expires              time.Time  `json:"expires"`
	ReviewEvery          string     `json:"review_every,omitempty"`
	NextReview           *time.Time `json:"next_review,omitempty"`
	CreatedBy            string     `json:"created_by"`
	CreatedAt            time.Time  `json:"created_at"`
	ApprovedBy           string     `json:"approved_by,omitempty"`
	ApprovedAt           *time.Time `json:"approved_at,omitempty"`
	ExpiredAt            *time.Time `json:"expired_at,omitempty"`
	Findings             []int64    `json:"findings"`
}

// NewException is what InsertException stores.
type NewException struct {
	State                string // ExceptionPending or ExceptionActive
	Owner                string
	Rationale            string
	CompensatingControls []string
	Expires              time.Time
	ReviewEvery          string
	NextReview           *time.Time
	CreatedBy            string
	CreatedAt            time.Time
}

const exceptionColumns = `e.id, e.state, e.owner, e.rationale, e.compensating_controls, e.expires_at, e.review_every,
	e.next_review, e.created_by, e.created_at, coalesce(e.approved_by, ''), e.approved_at, e.expired_at,
	(SELECT coalesce(array_agg(x.finding_id ORDER BY x.finding_id), '{}') FROM exception_findings x WHERE x.exception_id = e.id)`

func scanException(row pgx.Row) (Exception, error) {
	var e Exception
	err := row.Scan(&e.ID, &e.State, &e.Owner, &e.Rationale, &e.CompensatingControls, &e.Expires, &e.ReviewEvery,
		&e.NextReview, &e.CreatedBy, &e.CreatedAt, &e.ApprovedBy, &e.ApprovedAt, &e.ExpiredAt, &e.Findings)
	return e, err
}

func collectExceptions(rows pgx.Rows, err error) ([]Exception, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Exception, error) { return scanException(r) })
}

// InsertException stores e over the findings f selects (Limit, Cursor and
// Sort ignored), in tx, and returns it. An owner that is no enabled user is
// a UserError; a filter that selects nothing is an InvalidArgumentError.
func InsertException(ctx context.Context, t *Tx, e NewException, f FindingFilter) (Exception, error) {
	u, err := getUser(ctx, t.tx, e.Owner)
	if errors.Is(err, ErrNotFound) {
		return Exception{}, &UserError{"owner", fmt.Sprintf("%q is no user", e.Owner)}
	}
	if err != nil {
		return Exception{}, err
	}
	if u.DisabledAt != nil {
		return Exception{}, &UserError{"owner", fmt.Sprintf("%q is disabled", e.Owner)}
	}
	if e.CompensatingControls == nil {
		e.CompensatingControls = []string{}
	}
	var id int64
	err = t.tx.QueryRow(ctx, `
		INSERT INTO exceptions (state, owner, rationale, compensating_controls, expires_at, review_every, next_review, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		e.State, e.Owner, e.Rationale, e.CompensatingControls, e.Expires, e.ReviewEvery, e.NextReview, e.CreatedBy, e.CreatedAt).Scan(&id)
	if err != nil {
		return Exception{}, fmt.Errorf("storing an exception: %w", err)
	}
	f.Cursor, f.Sort, f.Limit = "", "", 0
	cond, args, err := findingQuery(f, cursorKey{})
	if err != nil {
		return Exception{}, err
	}
	args = append(args, id)
	tag, err := t.tx.Exec(ctx, fmt.Sprintf(`
		INSERT INTO exception_findings (exception_id, finding_id, scope, kind, fingerprint)
		SELECT $%d, f.id, f.scope, f.kind, f.fingerprint
		FROM findings f CROSS JOIN (SELECT $1::text) v %s`, len(args), cond), args...)
	if err != nil {
		return Exception{}, fmt.Errorf("storing the findings of exception %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return Exception{}, &InvalidArgumentError{Param: "findings", Reason: "select no finding"}
	}
	return GetExceptionTx(ctx, t, id)
}

// GetExceptionTx is GetException in tx, locking the row.
func GetExceptionTx(ctx context.Context, t *Tx, id int64) (Exception, error) {
	return getException(ctx, t.tx, id, " FOR UPDATE OF e")
}

// GetException returns exception id; an unknown one is ErrNotFound.
func (s *Store) GetException(ctx context.Context, id int64) (Exception, error) {
	return getException(ctx, s.pool, id, "")
}

func getException(ctx context.Context, q DBTX, id int64, lock string) (Exception, error) {
	e, err := scanException(q.QueryRow(ctx, `SELECT `+exceptionColumns+` FROM exceptions e WHERE e.id = $1`+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Exception{}, fmt.Errorf("exception %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Exception{}, fmt.Errorf("loading exception %d: %w", id, err)
	}
	return e, nil
}

// ExceptionFilter selects exceptions for ListExceptions.
type ExceptionFilter struct {
	// Due, when set, keeps the live exceptions whose review is due at Now
	// or that expire within Within of Now, expiring first.
	Due    bool
	Now    time.Time
	Within time.Duration
}

// ListExceptions lists the register, newest first (or, with Due, expiring
// first).
func (s *Store) ListExceptions(ctx context.Context, f ExceptionFilter) ([]Exception, error) {
	var out []Exception
	var err error
	if f.Due {
		out, err = collectExceptions(s.pool.Query(ctx, `SELECT `+exceptionColumns+` FROM exceptions e
			WHERE e.state <> 'expired' AND (e.next_review <= $1 OR e.expires_at <= $1 + make_interval(secs => $2::float8))
			ORDER BY e.expires_at, e.id`, f.Now, f.Within.Seconds()))
	} else {
		out, err = collectExceptions(s.pool.Query(ctx, `SELECT `+exceptionColumns+` FROM exceptions e ORDER BY e.id DESC`))
	}
	if err != nil {
		return nil, fmt.Errorf("listing exceptions: %w", err)
	}
	return out, nil
}

// ApproveException makes pending exception id active, approved by by at
// at, with its first review date, in tx. It returns ErrConflict when the
// exception is not pending.
func ApproveException(ctx context.Context, t *Tx, id int64, by string, at time.Time, nextReview *time.Time) error {
	tag, err := t.tx.Exec(ctx, `UPDATE exceptions SET state = 'active', approved_by = $2, approved_at = $3, next_review = $4
		WHERE id = $1 AND state = 'pending'`, id, by, at, nextReview)
	if err != nil {
		return fmt.Errorf("approving exception %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("exception %d is not pending: %w", id, ErrConflict)
	}
	return nil
}

// ExpiredException is an exception ExpireExceptions expired, with the
// state it had.
type ExpiredException struct {
	Exception
	Was string
}

// ExpireExceptions marks up to limit live exceptions whose expiry is at or
// before now as expired, in tx, and returns them, soonest expiry first.
// Each is returned once however many replicas call it.
func ExpireExceptions(ctx context.Context, t *Tx, now time.Time, limit int) ([]ExpiredException, error) {
	rows, _ := t.tx.Query(ctx, `
		WITH due AS (
			SELECT id, state FROM exceptions WHERE state <> 'expired' AND expires_at <= $1
			ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
		)
		UPDATE exceptions e SET state = 'expired', expired_at = $1 FROM due WHERE e.id = due.id
		RETURNING due.state, `+exceptionColumns, now, limit)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ExpiredException, error) {
		var x ExpiredException
		e := &x.Exception
		err := r.Scan(&x.Was, &e.ID, &e.State, &e.Owner, &e.Rationale, &e.CompensatingControls, &e.Expires, &e.ReviewEvery,
			&e.NextReview, &e.CreatedBy, &e.CreatedAt, &e.ApprovedBy, &e.ApprovedAt, &e.ExpiredAt, &e.Findings)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("expiring exceptions: %w", err)
	}
	return out, nil
}

// FindingsUnderException returns the ids of the findings whose decision is
// still the risk acceptance exception id made.
func FindingsUnderException(ctx context.Context, t *Tx, id int64) ([]int64, error) {
	rows, _ := t.tx.Query(ctx, `
		SELECT x.finding_id FROM exception_findings x
		JOIN finding_reviews r ON r.scope = x.scope AND r.kind = x.kind AND r.fingerprint = x.fingerprint
		WHERE x.exception_id = $1 AND r.exception_id = $1 AND r.state = 'risk_accepted'
		ORDER BY x.finding_id`, id)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("loading the findings under exception %d: %w", id, err)
	}
	return ids, nil
}

// RestartSLA sets the due date of the active findings ids afresh from
// from, under the SLA policy in force then (no policy: unchanged), in tx,
// and returns how many it moved.
func RestartSLA(ctx context.Context, t *Tx, ids []int64, from time.Time) (int64, error) {
	tag, err := t.tx.Exec(ctx, `
		UPDATE findings f SET sla_due = $2::timestamptz + CASE f.severity
			WHEN 'critical' THEN p.critical WHEN 'high' THEN p.high WHEN 'medium' THEN p.medium
			WHEN 'low' THEN p.low ELSE p.info END, updated_at = now()
		FROM (SELECT * FROM sla_policies WHERE effective_from <= $2 ORDER BY effective_from DESC, version DESC LIMIT 1) p
		WHERE f.id = ANY($1::bigint[]) AND f.status IN ('open', 'reopened')`, ids, from)
	if err != nil {
		return 0, fmt.Errorf("restarting the SLA of %d findings: %w", len(ids), err)
	}
	return tag.RowsAffected(), nil
}

// WarnExpiringExceptions records, in tx, up to limit active exceptions that
// expire after now and within within of it and were not yet warned about,
// and returns them: each once ever.
func WarnExpiringExceptions(ctx context.Context, t *Tx, now time.Time, within time.Duration, limit int) ([]Exception, error) {
	out, err := collectExceptions(t.tx.Query(ctx, `
		WITH due AS (
			SELECT id FROM exceptions
			WHERE state = 'active' AND expiry_warned_at IS NULL
			  AND expires_at > $1 AND expires_at <= $1 + make_interval(secs => $2::float8)
			ORDER BY expires_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
		)
		UPDATE exceptions e SET expiry_warned_at = $1 FROM due WHERE e.id = due.id
		RETURNING `+exceptionColumns, now, within.Seconds(), limit))
	if err != nil {
		return nil, fmt.Errorf("warning of expiring exceptions: %w", err)
	}
	return out, nil
}

// WarnReviewDueExceptions records, in tx, up to limit active exceptions
// whose review date has come (once per review date) and returns them.
func WarnReviewDueExceptions(ctx context.Context, t *Tx, now time.Time, limit int) ([]Exception, error) {
	out, err := collectExceptions(t.tx.Query(ctx, `
		WITH due AS (
			SELECT id FROM exceptions
			WHERE state = 'active' AND next_review <= $1 AND expires_at > $1
			  AND review_warned_for IS DISTINCT FROM next_review
			ORDER BY next_review, id LIMIT $2 FOR UPDATE SKIP LOCKED
		)
		UPDATE exceptions e SET review_warned_for = e.next_review FROM due WHERE e.id = due.id
		RETURNING `+exceptionColumns, now, limit))
	if err != nil {
		return nil, fmt.Errorf("announcing exception reviews due: %w", err)
	}
	return out, nil
}

// FindingSLADue returns finding id's due date (nil for none), in tx.
func FindingSLADue(ctx context.Context, t *Tx, id int64) (*time.Time, error) {
	var due *time.Time
	if err := t.tx.QueryRow(ctx, `SELECT sla_due FROM findings WHERE id = $1`, id).Scan(&due); err != nil {
		return nil, fmt.Errorf("loading the due date of finding %d: %w", id, err)
	}
	return due, nil
}
