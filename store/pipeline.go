package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
)

// NewRun is a scan run as intake records it.
type NewRun struct {
	ID          string
	Kind        string
	Scope       string
	Tool        string
	Format      string
	ScheduleID  string
	ArtifactSHA string
	CreatedBy   string
}

// CreateRun inserts a run in status received. Call it in the transaction
// that stores the artifact and enqueues the run, so all three commit
// together or not at all.
func CreateRun(ctx context.Context, t *Tx, r NewRun) error {
	tx := t.tx
	_, err := tx.Exec(ctx, `
		INSERT INTO scan_runs (id, schedule_id, kind, scope, tool, format, status, artifact_sha256, created_by)
		VALUES ($1::uuid, nullif($2, ''), $3, $4, $5, $6, 'received', $7, nullif($8, ''))`,
		r.ID, r.ScheduleID, r.Kind, r.Scope, r.Tool, r.Format, r.ArtifactSHA, r.CreatedBy)
	if err != nil {
		return fmt.Errorf("recording run %s: %w", r.ID, err)
	}
	return nil
}

// Enqueue adds a message to the outbox in tx and wakes the relay once the
// transaction commits (NOTIFY is transactional).
func Enqueue(ctx context.Context, tx *Tx, topic, key string, payload []byte, headers map[string]string) (int64, error) {
	var hdr []byte
	if len(headers) > 0 {
		var err error
		if hdr, err = json.Marshal(headers); err != nil {
			return 0, fmt.Errorf("encoding outbox headers: %w", err)
		}
	}
	var id int64
	err := tx.tx.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4)
			RETURNING id
		)
		SELECT id FROM ins, LATERAL (SELECT pg_notify($5, '')) n`,
		topic, key, payload, nullJSON(hdr), OutboxChannel).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueueing %s message: %w", topic, err)
	}
	return id, nil
}

// PendingOutbox counts rows still to be delivered (neither sent nor
// dead-lettered): the delivery backlog an operator watches when the
// brokers are away.
func (s *Store) PendingOutbox(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL`).Scan(&n)
	return n, err
}

// RunInput is what the parse stage needs to process a run.
type RunInput struct {
	ID          string
	Kind        string
	Scope       string
	Format      string
	Status      finding.RunStatus
	ArtifactSHA string
	ScheduleID  string
}

// GetRunInput loads a run for processing; an unknown id is ErrNotFound.
func (s *Store) GetRunInput(ctx context.Context, id string) (RunInput, error) {
	var r RunInput
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, kind, scope, format, status, coalesce(artifact_sha256, ''), coalesce(schedule_id, '')
		FROM scan_runs WHERE id = $1::uuid`, id).
		Scan(&r.ID, &r.Kind, &r.Scope, &r.Format, &r.Status, &r.ArtifactSHA, &r.ScheduleID)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("loading run %s: %w", id, err)
	}
	return r, nil
}

// StartRun moves a run to processing (only from received or queued, so a
// replayed message never rewinds a finished run) and reports whether it
// should be processed at all.
func (s *Store) StartRun(ctx context.Context, id, format string) (bool, error) {
	var status string
	err := s.pool.QueryRow(ctx, `
		UPDATE scan_runs SET
			status = CASE WHEN status IN ('received', 'queued') THEN 'processing' ELSE status END,
			started_at = coalesce(started_at, now()),
			format = $2
		WHERE id = $1::uuid
		RETURNING status`, id, format).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("starting run %s: %w", id, err)
	}
	return finding.RunStatus(status) == finding.RunProcessing, nil
}

// FailRun marks a run failed with the error, unless it already finished.
// A failed run reconciles nothing.
func (s *Store) FailRun(ctx context.Context, id, reason string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE scan_runs SET status = 'failed', error = $2, finished_at = now()
		WHERE id = $1::uuid AND status NOT IN ('succeeded', 'failed', 'held', 'discarded')`, id, reason)
	if err != nil {
		return fmt.Errorf("failing run %s: %w", id, err)
	}
	return nil
}

// RunProgress is a run's state after a batch or its finish was recorded.
type RunProgress struct {
	Status          finding.RunStatus
	Kind            string
	Scope           string
	BatchesStored   int
	BatchesExpected *int
	Tools           []string
}

// Complete reports whether every expected batch is stored.
func (p RunProgress) Complete() bool {
	return p.BatchesExpected != nil && p.BatchesStored >= *p.BatchesExpected
}

// AddBatch counts a stored batch on its run and returns the progress. The
// row lock it takes serialises the last batch and run-finished, so exactly
// one of them sees the run complete.
func AddBatch(ctx context.Context, t *Tx, runID string, findings int) (RunProgress, error) {
	tx := t.tx
	return scanProgress(tx.QueryRow(ctx, `
		UPDATE scan_runs SET batches_stored = batches_stored + 1, findings_seen = findings_seen + $2
		WHERE id = $1::uuid
		RETURNING status, kind, scope, batches_stored, batches_expected, coalesce(stats->'tools', '[]')`, runID, findings), runID)
}

// FinishRun records run-finished: the number of batches to expect and the
// parse statistics.
func FinishRun(ctx context.Context, t *Tx, runID string, batches int, stats any) (RunProgress, error) {
	tx := t.tx
	b, err := json.Marshal(stats)
	if err != nil {
		return RunProgress{}, fmt.Errorf("encoding run stats: %w", err)
	}
	return scanProgress(tx.QueryRow(ctx, `
		UPDATE scan_runs SET batches_expected = $2, stats = $3,
			-- The tools the file named (SARIF says which) replace the
			-- format-level guess intake made.
			tool = coalesce((SELECT string_agg(t, ', ' ORDER BY t) FROM jsonb_array_elements_text($3::jsonb->'tools') t), tool)
		WHERE id = $1::uuid
		RETURNING status, kind, scope, batches_stored, batches_expected, coalesce(stats->'tools', '[]')`, runID, batches, b), runID)
}

func scanProgress(row pgx.Row, runID string) (RunProgress, error) {
	var p RunProgress
	var tools []byte
	err := row.Scan(&p.Status, &p.Kind, &p.Scope, &p.BatchesStored, &p.BatchesExpected, &tools)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("run %s: %w", runID, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("updating run %s: %w", runID, err)
	}
	if err := json.Unmarshal(tools, &p.Tools); err != nil {
		return p, fmt.Errorf("run %s tools: %w", runID, err)
	}
	return p, nil
}

// StatusChange is one finding whose status reconciliation changed.
type StatusChange struct {
	ID          int64
	Scope       string
	Fingerprint string
	Tool        string
	Rule        string
	Title       string
	Severity    string
	From, To    finding.Status // From is "" for a new finding
}

// SLA is how long a finding of each severity may stay open.
type SLA struct {
	Critical, High, Medium, Low, Info time.Duration
}

// DefaultSLA follows common vulnerability-management policy (DefectDojo's
// defaults for critical, high and medium): 7/30/90/180 days, none for info.
func DefaultSLA() SLA {
	day := 24 * time.Hour
	return SLA{Critical: 7 * day, High: 30 * day, Medium: 90 * day, Low: 180 * day}
}

func (s SLA) args() []any {
	secs := func(d time.Duration) *float64 {
		if d <= 0 {
			return nil
		}
		v := d.Seconds()
		return &v
	}
	return []any{secs(s.Critical), secs(s.High), secs(s.Medium), secs(s.Low), secs(s.Info)}
}

// due is the SLA due date of a finding of severity sev first seen at
// from, or nil when the severity has no SLA (as slaExpr computes it).
func (s SLA) due(sev string, from time.Time) any {
	var d time.Duration
	switch sev {
	case "critical":
		d = s.Critical
	case "high":
		d = s.High
	case "medium":
		d = s.Medium
	case "low":
		d = s.Low
	default:
		d = s.Info
	}
	if d <= 0 {
		return nil
	}
	return from.Add(d)
}

// slaExpr computes a due date from a start time and the severity column,
// with the five SLA durations in seconds as parameters $n..$n+4.
func slaExpr(start string, n int) string {
	return fmt.Sprintf(`%[1]s + make_interval(secs => CASE severity
		WHEN 'critical' THEN $%[2]d::float8 WHEN 'high' THEN $%[3]d::float8 WHEN 'medium' THEN $%[4]d::float8
		WHEN 'low' THEN $%[5]d::float8 ELSE $%[6]d::float8 END)`, start, n, n+1, n+2, n+3, n+4)
}

// HoldPolicy says when reconciliation holds a run instead of resolving:
// when it would resolve at least Min findings and at least Fraction of the
// open findings of its scope, kind and tools (the findings it is evidence
// about). A zero Min never holds.
type HoldPolicy struct {
	Fraction float64
	Min      int
}

// DefaultHoldPolicy holds a run that would close half or more of its
// scope's open findings, five at least: an empty or truncated report of
// the same tool, or a stray upload, closes nothing without a person.
func DefaultHoldPolicy() HoldPolicy { return HoldPolicy{Fraction: 0.5, Min: 5} }

func (p HoldPolicy) holds(wouldResolve, open int) bool {
	return p.Min > 0 && wouldResolve >= p.Min && float64(wouldResolve) >= p.Fraction*float64(open)
}

// Reconciliation is what Reconcile did to a run.
type Reconciliation struct {
	// Changes are the findings whose status changed: reopened ones always,
	// resolved ones unless the run was held.
	Changes []StatusChange
	// Status is the run's new status: succeeded or held; empty when the
	// run was already finished and nothing changed.
	Status finding.RunStatus
	// WouldResolve and Open are the counts the hold decision used: the
	// findings the run did not see, and all open ones of its scope, kind
	// and tools, before the run.
	WouldResolve, Open int
	Scope, Kind        string
	// Retests are the pending retests the run answered (none when held).
	Retests []RetestPairing
}

// RunDecision is what ReleaseRun or DiscardRun did to a held run.
type RunDecision struct {
	Scope, Kind string
	// WouldResolve and Open are the counts recorded when the run was held.
	WouldResolve, Open int
	// Changes are the findings the release resolved (none for a discard).
	Changes []StatusChange
	// Retests are the pending retests the release answered.
	Retests []RetestPairing
}

// RunStateError says that a run is not in the status an operation needs
// (releasing a run that is not held). The API answers it with 409.
type RunStateError struct {
	RunID  string
	Status finding.RunStatus
	Want   finding.RunStatus
}

func (e *RunStateError) Error() string {
	return fmt.Sprintf("run %s is %s, not %s", e.RunID, e.Status, e.Want)
}

// Reconcile applies a complete, successful run to the findings of its scope:
// findings of the same scope, kind and tools that the run did not observe
// become resolved (the run is their retest evidence); observed findings
// that were resolved become reopened with a fresh SLA. Accepted and false
// positive findings are never changed by a scan. It marks the run
// succeeded; a run already finished (succeeded, failed, held, discarded)
// is left alone and nothing changes, so a replayed run-finished is
// harmless.
//
// When the resolutions reach hold (see HoldPolicy) the run is held
// instead: its reopenings apply (they are its own observations), nothing
// is resolved, and ReleaseRun or DiscardRun decide later.
//
// A succeeded run answers the pending retests it is evidence for (see
// RequestRetest): Reconciliation.Retests lists them. A run attached to a
// retest (AttachRetestRun) is a targeted run and resolves only the
// retested findings. Findings of tool "manual" are never resolved: no
// scanner reports that tool.
func Reconcile(ctx context.Context, t *Tx, runID string, sla SLA, hold HoldPolicy) (Reconciliation, error) {
	tx := t.tx
	var res Reconciliation
	r, err := lockRun(ctx, tx, runID)
	if err != nil {
		return res, err
	}
	if r.status.Finished() {
		return res, nil
	}
	res.Scope, res.Kind = r.scope, r.kind
	// Counted before the reopenings: the open findings the run found.
	err = tx.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.run_id = $1::uuid AND o.finding_id = x.id)),
		       count(*)
		FROM findings x
		WHERE x.scope = $2 AND x.kind = $3 AND x.tool = ANY($4) AND x.status IN ('open', 'reopened')
		  AND (NOT $5 OR x.id IN (SELECT finding_id FROM retests WHERE run_id = $1::uuid))`,
		runID, r.scope, r.kind, r.tools, r.retestOnly).Scan(&res.WouldResolve, &res.Open)
	if err != nil {
		return res, fmt.Errorf("counting findings run %s would resolve: %w", runID, err)
	}
	args := append([]any{runID}, sla.args()...)
	reopened, err := collectChanges(tx.Query(ctx, `
		UPDATE findings f SET status = 'reopened', resolved_at = NULL, resolved_by_run = NULL,
			sla_due = `+slaExpr("now()", 2)+`, updated_at = now()
		FROM observations o
		WHERE o.run_id = $1::uuid AND o.finding_id = f.id AND f.status = 'resolved'
		RETURNING f.id, f.scope, f.fingerprint, f.tool, f.rule_id, f.title, f.severity, 'resolved', f.status`, args...))
	if err != nil {
		return res, fmt.Errorf("reopening findings seen by run %s: %w", runID, err)
	}
	res.Changes = reopened
	if hold.holds(res.WouldResolve, res.Open) {
		if _, err := tx.Exec(ctx, `
			UPDATE scan_runs SET status = 'held', finished_at = now(), error = NULL,
				held_at = now(), hold_would_resolve = $2, hold_open = $3
			WHERE id = $1::uuid`, runID, res.WouldResolve, res.Open); err != nil {
			return res, fmt.Errorf("holding run %s: %w", runID, err)
		}
		res.Status = finding.RunHeld
		return res, nil
	}
	resolved, err := resolveUnseen(ctx, tx, runID, r, false)
	if err != nil {
		return res, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE scan_runs SET status = 'succeeded', finished_at = now(), error = NULL WHERE id = $1::uuid`, runID); err != nil {
		return res, fmt.Errorf("completing run %s: %w", runID, err)
	}
	res.Changes = append(res.Changes, resolved...)
	res.Status = finding.RunSucceeded
	if res.Retests, err = pairRetests(ctx, tx, runID, r); err != nil {
		return res, err
	}
	return res, nil
}

// ReleaseRun applies a held run's resolutions, as reconciliation would
// have when the run finished: findings of its scope, kind and tools that
// are open or reopened and that it did not observe become resolved by it.
// Findings that a run created after it observed are left alone: that run
// is newer evidence that they are there. The run becomes succeeded, with
// actor as the one who decided. A run that is not held is a
// *RunStateError; an unknown one ErrNotFound.
func ReleaseRun(ctx context.Context, t *Tx, runID, actor string) (RunDecision, error) {
	tx := t.tx
	r, err := lockHeldRun(ctx, tx, runID)
	if err != nil {
		return RunDecision{}, err
	}
	d := r.decision()
	if d.Changes, err = resolveUnseen(ctx, tx, runID, r, true); err != nil {
		return d, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE scan_runs SET status = 'succeeded', decided_by = $2, decided_at = now() WHERE id = $1::uuid`, runID, actor); err != nil {
		return d, fmt.Errorf("releasing run %s: %w", runID, err)
	}
	if d.Retests, err = pairRetests(ctx, tx, runID, r); err != nil {
		return d, err
	}
	return d, nil
}

// DiscardRun drops a held run's resolutions: it resolves nothing and
// becomes discarded, keeping its observations (the findings it saw were
// seen). A run that is not held is a *RunStateError; an unknown one
// ErrNotFound.
func DiscardRun(ctx context.Context, t *Tx, runID, actor string) (RunDecision, error) {
	tx := t.tx
	r, err := lockHeldRun(ctx, tx, runID)
	if err != nil {
		return RunDecision{}, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE scan_runs SET status = 'discarded', decided_by = $2, decided_at = now() WHERE id = $1::uuid`, runID, actor); err != nil {
		return RunDecision{}, fmt.Errorf("discarding run %s: %w", runID, err)
	}
	return r.decision(), nil
}

// lockedRun is what reconciliation reads of the run it locked.
type lockedRun struct {
	scope, kind string
	status      finding.RunStatus
	tools       []string
	createdAt   time.Time
	// The counts recorded when the run was held.
	wouldResolve, open int
	// retestOnly: a retest's targeted run, evidence about the retested
	// findings only.
	retestOnly bool
}

func (r lockedRun) decision() RunDecision {
	return RunDecision{Scope: r.scope, Kind: r.kind, WouldResolve: r.wouldResolve, Open: r.open}
}

// lockRun locks a run's row for the rest of tx: run-finished, the last
// batch, a release and a discard of one run take turns.
func lockRun(ctx context.Context, tx pgx.Tx, runID string) (lockedRun, error) {
	var r lockedRun
	var toolsJSON []byte
	err := tx.QueryRow(ctx, `
		SELECT scope, kind, status, coalesce(stats->'tools', '[]'), created_at,
			coalesce(hold_would_resolve, 0), coalesce(hold_open, 0)
		FROM scan_runs WHERE id = $1::uuid FOR UPDATE`, runID).
		Scan(&r.scope, &r.kind, &r.status, &toolsJSON, &r.createdAt, &r.wouldResolve, &r.open)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("run %s: %w", runID, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("loading run %s: %w", runID, err)
	}
	if err := json.Unmarshal(toolsJSON, &r.tools); err != nil {
		return r, fmt.Errorf("run %s tools: %w", runID, err)
	}
	r.retestOnly, err = isRetestRun(ctx, tx, runID)
	return r, err
}

func lockHeldRun(ctx context.Context, tx pgx.Tx, runID string) (lockedRun, error) {
	if !isUUID(runID) {
		return lockedRun{}, fmt.Errorf("run %q: %w", runID, ErrNotFound)
	}
	r, err := lockRun(ctx, tx, runID)
	if err != nil {
		return r, err
	}
	if r.status != finding.RunHeld {
		return r, &RunStateError{RunID: runID, Status: r.status, Want: finding.RunHeld}
	}
	return r, nil
}

// resolveUnseen resolves the open findings of the run's scope, kind and
// tools that it did not observe; skipLater also spares those that a run
// created after it observed (a release, decided later).
func resolveUnseen(ctx context.Context, tx pgx.Tx, runID string, r lockedRun, skipLater bool) ([]StatusChange, error) {
	resolved, err := collectChanges(tx.Query(ctx, `
		UPDATE findings f SET status = 'resolved', resolved_at = now(), resolved_by_run = $1::uuid, updated_at = now()
		FROM (
			SELECT id, status AS prev FROM findings x
			WHERE x.scope = $2 AND x.kind = $3 AND x.tool = ANY($4) AND x.status IN ('open', 'reopened')
			  AND NOT EXISTS (SELECT 1 FROM observations o WHERE o.run_id = $1::uuid AND o.finding_id = x.id)
			  AND NOT ($5 AND EXISTS (
				SELECT 1 FROM observations o JOIN scan_runs later ON later.id = o.run_id
				WHERE o.finding_id = x.id AND later.created_at > $6))
			  AND (NOT $7 OR x.id IN (SELECT finding_id FROM retests WHERE run_id = $1::uuid))
			FOR UPDATE
		) p
		WHERE f.id = p.id
		RETURNING f.id, f.scope, f.fingerprint, f.tool, f.rule_id, f.title, f.severity, p.prev, f.status`,
		runID, r.scope, r.kind, r.tools, skipLater, r.createdAt, r.retestOnly))
	if err != nil {
		return nil, fmt.Errorf("resolving findings not seen by run %s: %w", runID, err)
	}
	return resolved, nil
}

func collectChanges(rows pgx.Rows, err error) ([]StatusChange, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (StatusChange, error) {
		var c StatusChange
		err := r.Scan(&c.ID, &c.Scope, &c.Fingerprint, &c.Tool, &c.Rule, &c.Title, &c.Severity, &c.From, &c.To)
		return c, err
	})
}

// SetRunDetails records the uploaded file's name and the environmental
// CVSS context its findings are scored under.
func SetRunDetails(ctx context.Context, t *Tx, runID, name, environment string) error {
	tx := t.tx
	if _, err := tx.Exec(ctx, `UPDATE scan_runs SET file_name = nullif($2, ''), environment = nullif($3, '') WHERE id = $1::uuid`,
		runID, name, environment); err != nil {
		return fmt.Errorf("recording file name of run %s: %w", runID, err)
	}
	return nil
}

// RunEnvironment returns the environmental CVSS context (a vector
// fragment) the run's findings are scored under, or "" when it has none or
// the run is unknown.
func (s *Store) RunEnvironment(ctx context.Context, runID string) (string, error) {
	var frag string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(environment, '') FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&frag)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("loading environment of run %s: %w", runID, err)
	}
	return frag, nil
}

// RunStatus returns a run's status in tx; an unknown run is ErrNotFound.
func RunStatus(ctx context.Context, t *Tx, runID string) (finding.RunStatus, error) {
	var status string
	err := t.tx.QueryRow(ctx, `SELECT status FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("run %s: %w", runID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("loading run %s: %w", runID, err)
	}
	return finding.RunStatus(status), nil
}

// RunFileName returns the uploaded file's name, or "" when unknown.
func (s *Store) RunFileName(ctx context.Context, runID string) (string, error) {
	var name string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(file_name, '') FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&name)
	if err != nil {
		return "", fmt.Errorf("loading run %s: %w", runID, err)
	}
	return name, nil
}

// AppendActivityBatch writes many activity rows with one COPY.
func AppendActivityBatch(ctx context.Context, t *Tx, acts []Activity) error {
	tx := t.tx
	if len(acts) == 0 {
		return nil
	}
	rows := make([][]any, len(acts))
	for i, a := range acts {
		before, err := jsonOrNull(a.Before)
		if err != nil {
			return fmt.Errorf("activity %s: %w", a.Action, err)
		}
		after, err := jsonOrNull(a.After)
		if err != nil {
			return fmt.Errorf("activity %s: %w", a.Action, err)
		}
		at := a.At
		if at.IsZero() {
			at = time.Now()
		}
		var run any
		if a.RunID != "" {
			run = a.RunID
		}
		rows[i] = []any{at, a.Actor, a.Action, a.SubjectType, a.SubjectID, run, before, after}
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"activity_log"},
		[]string{"at", "actor", "action", "subject_type", "subject_id", "run_id", "before", "after"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("appending %d activity rows: %w", len(acts), err)
	}
	return nil
}

// EnqueueBatch adds many outbox rows with one COPY and wakes the relay.
func EnqueueBatch(ctx context.Context, t *Tx, msgs []OutboxMessage) error {
	tx := t.tx
	if len(msgs) == 0 {
		return nil
	}
	rows := make([][]any, len(msgs))
	for i, m := range msgs {
		var hdr any
		if len(m.Headers) > 0 {
			b, err := json.Marshal(m.Headers)
			if err != nil {
				return fmt.Errorf("encoding outbox headers: %w", err)
			}
			hdr = string(b)
		}
		rows[i] = []any{m.Topic, m.Key, m.Payload, hdr}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"outbox"}, []string{"topic", "key", "payload", "headers"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("enqueueing %d messages: %w", len(msgs), err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, OutboxChannel); err != nil {
		return fmt.Errorf("waking the outbox relay: %w", err)
	}
	return nil
}
