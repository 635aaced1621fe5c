package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retests: a person asks that the check which found a finding be run
// again; the result is paired with the finding. A retest is answered by
// the first run of the finding's scope, kind and tool that completes after
// the request (a run created before the request does not count), or by
// the run attached to it (AttachRetestRun): passed when that run did not
// see the finding (reconciliation resolved it, with that run as evidence),
// failed when it did (the finding stays open, the retest noted).
//
// A run attached to a retest is a targeted run (one template, one URL): it
// is evidence about the retested findings only, so reconciliation resolves
// nothing else of its scope.

// Retest results.
const (
	RetestPending = "pending"
	RetestPassed  = "passed"
	RetestFailed  = "failed"
)

// Retest is one retest of a finding.
type Retest struct {
	ID          int64      `json:"id"`
	FindingID   int64      `json:"finding_id"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	Schedule    string     `json:"schedule,omitempty"` // the schedule whose run found the finding last
	Rule        string     `json:"rule"`               // the check: nuclei template id, analyzer rule
	Target      string     `json:"target,omitempty"`   // the URL (nuclei) or repository (code)
	RunID       *string    `json:"run_id"`             // the run that answered (or will)
	Result      string     `json:"result"`             // pending, passed, failed
	DecidedAt   *time.Time `json:"decided_at"`
}

// FindingStateError is a request the finding's state refuses (retesting a
// resolved finding, or a manual one). The API answers it with 409.
type FindingStateError struct {
	ID     int64
	Reason string
}

func (e *FindingStateError) Error() string { return fmt.Sprintf("finding %d: %s", e.ID, e.Reason) }

const retestColumns = `id, finding_id, requested_by, requested_at, schedule_id, rule_id, target, run_id::text, result, decided_at`

func scanRetest(r pgx.CollectableRow) (Retest, error) {
	var x Retest
	err := r.Scan(&x.ID, &x.FindingID, &x.RequestedBy, &x.RequestedAt, &x.Schedule, &x.Rule, &x.Target, &x.RunID, &x.Result, &x.DecidedAt)
	return x, err
}

// RequestRetest records a pending retest of finding id by actor in t,
// derived from the finding: its rule, its target (the matched URL, or the
// repository for code findings) and the schedule of the run that last saw
// it. When a retest of it is already pending that one is returned with
// created false. A resolved or manual finding is a *FindingStateError; an
// unknown one ErrNotFound.
func RequestRetest(ctx context.Context, t *Tx, id int64, actor string, at time.Time) (rt Retest, created bool, err error) {
	var kind, tool, status, rule, uri, scope, schedule string
	err = t.tx.QueryRow(ctx, `
		SELECT f.kind, f.tool, f.status, f.rule_id, coalesce(f.location_uri, ''), f.scope, coalesce(r.schedule_id, '')
		FROM findings f LEFT JOIN scan_runs r ON r.id = f.last_run_id
		WHERE f.id = $1 FOR UPDATE OF f`, id).Scan(&kind, &tool, &status, &rule, &uri, &scope, &schedule)
	if errors.Is(err, pgx.ErrNoRows) {
		return rt, false, fmt.Errorf("finding %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return rt, false, fmt.Errorf("loading finding %d: %w", id, err)
	}
	switch {
	case tool == ToolManual:
		return rt, false, &FindingStateError{id, "a manual finding is retested by a person: record the result in a note"}
	case status == "resolved":
		return rt, false, &FindingStateError{id, "it is resolved; a later scan that sees it reopens it"}
	}
	rows, err := t.tx.Query(ctx, `SELECT `+retestColumns+` FROM retests WHERE finding_id = $1 AND result = 'pending'`, id)
	if err != nil {
		return rt, false, fmt.Errorf("loading retests of finding %d: %w", id, err)
	}
	pending, err := pgx.CollectRows(rows, scanRetest)
	if err != nil {
		return rt, false, fmt.Errorf("loading retests of finding %d: %w", id, err)
	}
	if len(pending) > 0 {
		return pending[0], false, nil
	}
	target := uri
	if kind == "code" {
		target = scope
	}
	rows, err = t.tx.Query(ctx, `
		INSERT INTO retests (finding_id, requested_by, requested_at, schedule_id, rule_id, target)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING `+retestColumns, id, actor, at, schedule, rule, target)
	if err != nil {
		return rt, false, fmt.Errorf("requesting a retest of finding %d: %w", id, err)
	}
	rt, err = pgx.CollectExactlyOneRow(rows, scanRetest)
	if err != nil {
		return rt, false, fmt.Errorf("requesting a retest of finding %d: %w", id, err)
	}
	return rt, true, nil
}

// AttachRetestRun names run runID (created in t, not yet finished) as the
// run that answers pending retest retestID: a targeted run, whose
// reconciliation resolves only the findings of the retests attached to it.
func AttachRetestRun(ctx context.Context, t *Tx, retestID int64, runID string) error {
	tag, err := t.tx.Exec(ctx, `UPDATE retests SET run_id = $2::uuid WHERE id = $1 AND result = 'pending'`, retestID, runID)
	if err != nil {
		return fmt.Errorf("attaching run %s to retest %d: %w", runID, retestID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("pending retest %d: %w", retestID, ErrNotFound)
	}
	return nil
}

// ListRetests returns the retests of finding id, newest first.
func (s *Store) ListRetests(ctx context.Context, id int64) ([]Retest, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+retestColumns+` FROM retests WHERE finding_id = $1 ORDER BY id DESC`, id)
	if err != nil {
		return nil, fmt.Errorf("listing retests of finding %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, scanRetest)
	if err != nil {
		return nil, fmt.Errorf("listing retests of finding %d: %w", id, err)
	}
	if out == nil {
		out = []Retest{}
	}
	return out, nil
}

// RetestPairing is a retest a run answered.
type RetestPairing struct {
	Retest
	Scope, Fingerprint, Tool, Title, Severity string
}

// isRetestRun reports whether a retest names runID as its run.
func isRetestRun(ctx context.Context, tx pgx.Tx, runID string) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM retests WHERE run_id = $1::uuid)`, runID).Scan(&ok); err != nil {
		return false, fmt.Errorf("checking retests of run %s: %w", runID, err)
	}
	return ok, nil
}

// pairRetests answers the pending retests run runID is evidence for: those
// attached to it, and those of findings of its scope, kind and tools
// requested before it was created. Call it after the run's resolutions.
func pairRetests(ctx context.Context, tx pgx.Tx, runID string, r lockedRun) ([]RetestPairing, error) {
	rows, err := tx.Query(ctx, `
		UPDATE retests rt SET
			result = CASE WHEN EXISTS (SELECT 1 FROM observations o WHERE o.run_id = $1::uuid AND o.finding_id = rt.finding_id)
				THEN 'failed' ELSE 'passed' END,
			run_id = $1::uuid, decided_at = now()
		FROM findings f
		WHERE rt.finding_id = f.id AND rt.result = 'pending'
		  AND (rt.run_id = $1::uuid
		       OR (rt.run_id IS NULL AND f.scope = $2 AND f.kind = $3 AND f.tool = ANY($4) AND rt.requested_at <= $5))
		RETURNING rt.id, rt.finding_id, rt.requested_by, rt.requested_at, rt.schedule_id, rt.rule_id, rt.target,
			rt.run_id::text, rt.result, rt.decided_at, f.scope, f.fingerprint, f.tool, f.title, f.severity`,
		runID, r.scope, r.kind, r.tools, r.createdAt)
	if err != nil {
		return nil, fmt.Errorf("pairing retests with run %s: %w", runID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RetestPairing, error) {
		var p RetestPairing
		err := row.Scan(&p.ID, &p.FindingID, &p.RequestedBy, &p.RequestedAt, &p.Schedule, &p.Rule, &p.Target,
			&p.RunID, &p.Result, &p.DecidedAt, &p.Scope, &p.Fingerprint, &p.Tool, &p.Title, &p.Severity)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("pairing retests with run %s: %w", runID, err)
	}
	return out, nil
}
