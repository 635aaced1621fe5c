package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Review decisions: the people's view of a finding beside the scanner's
// status. A decision is stored under the finding's identity (scope, kind,
// fingerprint), so rescans and re-ingests, which keep the identity, never
// undo it; reconciliation changes status only.

// Review states.
const (
	ReviewUntriaged     = "untriaged"
	ReviewConfirmed     = "confirmed"
	ReviewFalsePositive = "false_positive"
	ReviewRiskAccepted  = "risk_accepted"
	ReviewNotApplicable = "not_applicable"
)

// ReviewStates lists every review state.
func ReviewStates() []string {
	return []string{ReviewUntriaged, ReviewConfirmed, ReviewFalsePositive, ReviewRiskAccepted, ReviewNotApplicable}
}

// ValidReviewState reports whether s is a review state.
func ValidReviewState(s string) bool { return slices.Contains(ReviewStates(), s) }

// Review is a finding's review decision.
type Review struct {
	State         string     `json:"state"`
	Justification string     `json:"justification,omitempty"`
	Comment       string     `json:"comment,omitempty"`
	DecidedBy     string     `json:"decided_by,omitempty"`
	DecidedAt     *time.Time `json:"decided_at,omitempty"`
	// Exception is the exceptions-register entry a risk_accepted decision
	// was made under (0 for none).
	Exception int64 `json:"exception,omitempty"`
}

// ReviewChange is one finding whose review ApplyReview changed.
type ReviewChange struct {
	ID          int64
	Scope       string
	Kind        string
	Fingerprint string
	Tool        string
	Rule        string
	Title       string
	Severity    string
	Status      string
	Before      Review // State is untriaged when there was no decision
	After       Review
}

// ApplyReview records decision d, by actor at at, for every finding f
// selects (f.Limit and f.Cursor are ignored), in tx. Findings whose
// decision is already exactly d are left alone; the changed ones are
// returned, by id, with their decision before and after, for the caller's
// activity rows and events. d is not validated beyond its state: the review
// package owns the rules.
func ApplyReview(ctx context.Context, t *Tx, f FindingFilter, d Review, actor string, at time.Time) ([]ReviewChange, error) {
	if !ValidReviewState(d.State) {
		return nil, &InvalidArgumentError{Param: "state", Value: d.State, Reason: "allowed: " + strings.Join(ReviewStates(), ", ")}
	}
	f.Cursor, f.Sort = "", ""
	cond, args, err := findingQuery(f, cursorKey{})
	if err != nil {
		return nil, err
	}
	n := len(args)
	p := func(i int) string { return fmt.Sprintf("$%d", n+i) }
	args = append(args, d.State, d.Justification, d.Comment, actor, at, nullID(d.Exception))
	rows, err := t.tx.Query(ctx, `
		WITH sel AS (
			SELECT f.id, f.scope, f.kind, f.fingerprint, f.tool, f.rule_id, f.title, f.severity, f.status,
				coalesce(r.state, 'untriaged') AS state, coalesce(r.justification, '') AS justification,
				coalesce(r.comment, '') AS comment, coalesce(r.decided_by, '') AS decided_by, r.decided_at,
				coalesce(r.exception_id, 0) AS exception_id
			FROM findings f
			CROSS JOIN (SELECT $1::text) v -- types $1 (the CCM version) when no condition uses it
			LEFT JOIN finding_reviews r ON r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint
			`+cond+`
		), changed AS (
			SELECT * FROM sel
			WHERE (state, justification, comment, exception_id) IS DISTINCT FROM
				(`+p(1)+`::text, `+p(2)+`::text, `+p(3)+`::text, coalesce(`+p(6)+`::bigint, 0))
		), up AS (
			INSERT INTO finding_reviews AS r (scope, kind, fingerprint, state, justification, comment, decided_by, decided_at, triaged_at, exception_id)
			SELECT scope, kind, fingerprint, `+p(1)+`, `+p(2)+`, `+p(3)+`, `+p(4)+`, `+p(5)+`,
				CASE WHEN `+p(1)+` <> 'untriaged' THEN `+p(5)+`::timestamptz END, `+p(6)+`::bigint
			FROM changed
			ON CONFLICT (scope, kind, fingerprint) DO UPDATE SET
				state = EXCLUDED.state, justification = EXCLUDED.justification, comment = EXCLUDED.comment,
				decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, exception_id = EXCLUDED.exception_id,
				triaged_at = coalesce(r.triaged_at, EXCLUDED.triaged_at)
			RETURNING 1
		)
		SELECT id, scope, kind, fingerprint, tool, rule_id, title, severity, status,
			state, justification, comment, decided_by, decided_at, exception_id, (SELECT count(*) FROM up)
		FROM changed ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("recording review decisions: %w", err)
	}
	var out []ReviewChange
	var c ReviewChange
	var written int
	_, err = pgx.ForEachRow(rows, []any{&c.ID, &c.Scope, &c.Kind, &c.Fingerprint, &c.Tool, &c.Rule, &c.Title, &c.Severity, &c.Status,
		&c.Before.State, &c.Before.Justification, &c.Before.Comment, &c.Before.DecidedBy, &c.Before.DecidedAt, &c.Before.Exception, &written}, func() error {
		ch := c
		at := at
		ch.After = Review{State: d.State, Justification: d.Justification, Comment: d.Comment, DecidedBy: actor, DecidedAt: &at, Exception: d.Exception}
		out = append(out, ch)
		c = ReviewChange{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording review decisions: %w", err)
	}
	return out, nil
}

// CountFindings counts the findings f selects (Limit and Cursor ignored).
func (s *Store) CountFindings(ctx context.Context, f FindingFilter) (int, error) {
	return countFindings(ctx, s.pool, f)
}

// GetReview returns the decision on finding id (untriaged when none). An
// unknown finding is ErrNotFound.
func (s *Store) GetReview(ctx context.Context, id int64) (Review, error) {
	var r Review
	err := s.pool.QueryRow(ctx, `
		SELECT coalesce(r.state, 'untriaged'), coalesce(r.justification, ''), coalesce(r.comment, ''),
			coalesce(r.decided_by, ''), r.decided_at, coalesce(r.exception_id, 0)
		FROM findings f
		LEFT JOIN finding_reviews r ON r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint
		WHERE f.id = $1`, id).Scan(&r.State, &r.Justification, &r.Comment, &r.DecidedBy, &r.DecidedAt, &r.Exception)
	if errors.Is(err, pgx.ErrNoRows) {
		return Review{}, fmt.Errorf("finding %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Review{}, fmt.Errorf("loading review of finding %d: %w", id, err)
	}
	return r, nil
}

// CountFindingsTx is CountFindings in tx.
func CountFindingsTx(ctx context.Context, t *Tx, f FindingFilter) (int, error) {
	return countFindings(ctx, t.tx, f)
}

func countFindings(ctx context.Context, q DBTX, f FindingFilter) (int, error) {
	f.Cursor, f.Sort = "", ""
	cond, args, err := findingQuery(f, cursorKey{})
	if err != nil {
		return 0, err
	}
	var n int
	// $1 (the CCM version) is typed even when no condition uses it.
	if err := q.QueryRow(ctx, `SELECT count(*) FROM findings f CROSS JOIN (SELECT $1::text) v`+cond, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting findings: %w", err)
	}
	return n, nil
}

// nullID is id, or NULL for 0.
func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}
