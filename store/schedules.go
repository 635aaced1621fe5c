package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
)

// ScheduleChannel is the NOTIFY channel on which schedule changes are
// announced, so that the leading scheduler reloads at once instead of at
// its next poll.
const ScheduleChannel = "starpipe_schedules"

// Schedule is a stored scan schedule. The store keeps the full definition
// as JSON (Spec) and copies the fields it queries on into columns; package
// scheduler converts to and from its typed spec, so that store does not
// import the scheduler (which imports store).
type Schedule struct {
	Name     string
	Kind     string // external, authenticated or code
	Enabled  bool
	Cadence  string
	Timezone string // IANA name; "" is stored as UTC
	Start    string // biweekly anchor date (YYYY-MM-DD), or ""
	Spec     json.RawMessage

	// Set by the store; UpsertSchedule ignores them.
	//
	// Version counts the schedule's changes: 1 when created, one more on
	// every update, revival or deletion. A scan request names the version
	// it was claimed under, and the worker runs the schedule only while it
	// is still that version.
	Version     int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	UpdatedBy   string
	ActiveSince time.Time // since when the schedule owes runs (see the migration)
	// LastFiredDue is the latest due time accounted for in the ledger; zero
	// when none is.
	LastFiredDue time.Time
	// LastStatus and LastDue describe the most recent ledger row; empty and
	// zero when the schedule has none.
	LastStatus finding.LedgerStatus
	LastDue    time.Time
}

// LedgerEntry is one row of the run ledger: one due time of a schedule.
// (api.LedgerEntry is its JSON shape.)
type LedgerEntry struct {
	ID       int64
	Schedule string
	Due      time.Time
	Status   finding.LedgerStatus
	CatchUp  bool
	// ScheduleVersion is the version of the schedule the due time was
	// claimed under (Schedule.Version); 0 for rows that were not claimed
	// to run (skipped, missed) and rows from before versions were kept.
	ScheduleVersion int64
	// RunID is the first run the due time produced (Runs[0] when it was
	// recorded with its runs), kept for readers of the single-run ledger.
	RunID string
	// Runs are every scan run the due time produced, in the order they
	// were created: for an external schedule with domains, the amass
	// discovery and then one nuclei run per target. Never nil.
	Runs       []LedgerRun
	ClaimedAt  time.Time
	StartedAt  time.Time // zero until the worker starts the scan
	FinishedAt time.Time // zero until the row ends
	Error      string
}

// LedgerRun is one scan run of a due time, with its scope and its status as
// the ingest pipeline keeps it (received, queued, processing, succeeded or
// failed): the ledger row says whether the scan ran, the run whether its
// output was stored. The json tags decode ListLedger's json_agg of the
// runs, not the API's answer (api.LedgerRun).
type LedgerRun struct {
	ID     string            `json:"id"`
	Scope  string            `json:"scope"`
	Tool   string            `json:"tool"`
	Status finding.RunStatus `json:"status"`
	Error  string            `json:"error"`
}

// upsertMode says what UpsertSchedule, CreateSchedule and UpdateSchedule
// accept.
type upsertMode int

const (
	modeUpsert upsertMode = iota
	modeCreate            // a live schedule of that name is ErrConflict
	modeUpdate            // a missing (or deleted) schedule is ErrNotFound
)

// UpsertSchedule creates or replaces a schedule and reports whether it was
// created (a deleted schedule of that name counts as created: it is
// revived). Replacing it with an identical definition changes nothing and
// logs nothing, so applying the same file twice is a no-op.
func (s *Store) UpsertSchedule(ctx context.Context, sc Schedule, actor string) (created bool, err error) {
	c, err := s.UpsertSchedules(ctx, []Schedule{sc}, actor)
	if err != nil {
		return false, err
	}
	return c[0], nil
}

// UpsertSchedules upserts several schedules in one transaction: all of
// them are stored, or none is. created[i] reports whether scs[i] was new.
func (s *Store) UpsertSchedules(ctx context.Context, scs []Schedule, actor string) (created []bool, err error) {
	created = make([]bool, len(scs))
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		for i, sc := range scs {
			c, err := s.upsertSchedule(ctx, tx, sc, actor, modeUpsert)
			if err != nil {
				return err
			}
			created[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// CreateSchedule stores a new schedule; a live schedule of the same name
// is ErrConflict. A deleted one is revived.
func (s *Store) CreateSchedule(ctx context.Context, sc Schedule, actor string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := s.upsertSchedule(ctx, tx, sc, actor, modeCreate)
		return err
	})
}

// UpdateSchedule replaces an existing schedule; a missing or deleted one
// is ErrNotFound.
func (s *Store) UpdateSchedule(ctx context.Context, sc Schedule, actor string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := s.upsertSchedule(ctx, tx, sc, actor, modeUpdate)
		return err
	})
}

func (s *Store) upsertSchedule(ctx context.Context, tx pgx.Tx, sc Schedule, actor string, mode upsertMode) (bool, error) {
	if sc.Name == "" || actor == "" {
		return false, errors.New("storing schedule: name and actor are required")
	}
	if !json.Valid(sc.Spec) {
		return false, fmt.Errorf("storing schedule %q: spec is not valid JSON", sc.Name)
	}
	if sc.Timezone == "" {
		sc.Timezone = "UTC"
	}
	var (
		oldSpec                       json.RawMessage
		oldEnabled, deleted, sameSpec bool
		oldCadence, oldTZ, oldStart   string
	)
	err := tx.QueryRow(ctx, `
		SELECT spec, enabled, cadence, timezone, start, deleted_at IS NOT NULL, spec = $2::jsonb
		FROM schedules WHERE name = $1 FOR UPDATE`, sc.Name, string(sc.Spec)).
		Scan(&oldSpec, &oldEnabled, &oldCadence, &oldTZ, &oldStart, &deleted, &sameSpec)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("storing schedule %q: %w", sc.Name, err)
	}

	switch {
	case !exists && mode == modeUpdate, deleted && mode == modeUpdate:
		return false, fmt.Errorf("updating schedule %q: %w", sc.Name, ErrNotFound)
	case exists && !deleted && mode == modeCreate:
		return false, fmt.Errorf("creating schedule %q: %w", sc.Name, ErrConflict)
	case !exists:
		_, err := tx.Exec(ctx, `
			INSERT INTO schedules (name, spec, kind, enabled, cadence, timezone, start, updated_by)
			VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)`,
			sc.Name, string(sc.Spec), sc.Kind, sc.Enabled, sc.Cadence, sc.Timezone, sc.Start, actor)
		if isUniqueViolation(err) {
			// Another writer created it between our SELECT and INSERT.
			return false, fmt.Errorf("creating schedule %q: %w", sc.Name, ErrConflict)
		}
		if err != nil {
			return false, fmt.Errorf("creating schedule %q: %w", sc.Name, err)
		}
		return true, s.scheduleChanged(ctx, tx, sc.Name, actor, "schedule.created", nil, sc.Spec)
	case deleted:
		// Revival: due times while it was deleted were never owed.
		_, err := tx.Exec(ctx, `
			UPDATE schedules SET spec = $2::jsonb, kind = $3, enabled = $4, cadence = $5, timezone = $6,
			       start = $7, updated_by = $8, updated_at = now(), active_since = now(), deleted_at = NULL,
			       version = version + 1
			WHERE name = $1`,
			sc.Name, string(sc.Spec), sc.Kind, sc.Enabled, sc.Cadence, sc.Timezone, sc.Start, actor)
		if err != nil {
			return false, fmt.Errorf("re-creating schedule %q: %w", sc.Name, err)
		}
		return true, s.scheduleChanged(ctx, tx, sc.Name, actor, "schedule.created", nil, sc.Spec)
	case sameSpec && oldEnabled == sc.Enabled:
		return false, nil
	}

	// A new timing, or re-enabling, restarts what the schedule owes: due
	// times under the old cadence, or while it was off, were not owed under
	// the new definition and must not show up as missed.
	restart := sc.Cadence != oldCadence || sc.Timezone != oldTZ || sc.Start != oldStart || (sc.Enabled && !oldEnabled)
	_, err = tx.Exec(ctx, `
		UPDATE schedules SET spec = $2::jsonb, kind = $3, enabled = $4, cadence = $5, timezone = $6,
		       start = $7, updated_by = $8, updated_at = now(), version = version + 1,
		       active_since = CASE WHEN $9 THEN now() ELSE active_since END
		WHERE name = $1`,
		sc.Name, string(sc.Spec), sc.Kind, sc.Enabled, sc.Cadence, sc.Timezone, sc.Start, actor, restart)
	if err != nil {
		return false, fmt.Errorf("updating schedule %q: %w", sc.Name, err)
	}
	return false, s.scheduleChanged(ctx, tx, sc.Name, actor, "schedule.updated", oldSpec, sc.Spec)
}

// scheduleChanged logs a change and wakes the scheduler once tx commits.
func (s *Store) scheduleChanged(ctx context.Context, tx pgx.Tx, name, actor, action string, before, after json.RawMessage) error {
	a := Activity{Actor: actor, Action: action, SubjectType: "schedule", SubjectID: name}
	// A nil json.RawMessage in an interface would marshal as "null", not
	// SQL NULL.
	if before != nil {
		a.Before = before
	}
	if after != nil {
		a.After = after
	}
	if _, err := s.appendActivity(ctx, tx, a); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ScheduleChannel, name); err != nil {
		return fmt.Errorf("notifying schedule change: %w", err)
	}
	return nil
}

// DeleteSchedule deletes a schedule. The row stays, marked deleted and
// disabled, because ledger rows refer to it and are evidence; runs already
// queued still complete. An unknown or already deleted name is ErrNotFound.
func (s *Store) DeleteSchedule(ctx context.Context, name, actor string) error {
	if actor == "" {
		return errors.New("deleting schedule: actor is required")
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var before json.RawMessage
		err := tx.QueryRow(ctx, `
			UPDATE schedules SET deleted_at = now(), enabled = false, updated_at = now(), updated_by = $2,
			       version = version + 1
			WHERE name = $1 AND deleted_at IS NULL
			RETURNING spec`, name, actor).Scan(&before)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("deleting schedule %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("deleting schedule %q: %w", name, err)
		}
		return s.scheduleChanged(ctx, tx, name, actor, "schedule.deleted", before, nil)
	})
}

const scheduleQuery = `
	SELECT s.name, s.kind, s.enabled, s.cadence, s.timezone, s.start, s.spec, s.version, s.created_at, s.updated_at,
	       s.updated_by, s.active_since, s.last_fired_due, l.status, l.due_at
	FROM schedules s
	LEFT JOIN LATERAL (
		SELECT status, due_at FROM schedule_ledger
		WHERE schedule = s.name ORDER BY due_at DESC, id DESC LIMIT 1
	) l ON true
	WHERE s.deleted_at IS NULL`

func scanSchedule(row pgx.CollectableRow) (Schedule, error) {
	var (
		sc         Schedule
		last       *time.Time
		lastStatus *string
		lastDue    *time.Time
	)
	err := row.Scan(&sc.Name, &sc.Kind, &sc.Enabled, &sc.Cadence, &sc.Timezone, &sc.Start, &sc.Spec, &sc.Version,
		&sc.CreatedAt, &sc.UpdatedAt, &sc.UpdatedBy, &sc.ActiveSince, &last, &lastStatus, &lastDue)
	if last != nil {
		sc.LastFiredDue = *last
	}
	if lastStatus != nil {
		sc.LastStatus = finding.LedgerStatus(*lastStatus)
	}
	if lastDue != nil {
		sc.LastDue = *lastDue
	}
	return sc, err
}

// GetSchedule returns a live schedule, or ErrNotFound.
func (s *Store) GetSchedule(ctx context.Context, name string) (Schedule, error) {
	rows, _ := s.pool.Query(ctx, scheduleQuery+` AND s.name = $1`, name)
	sc, err := pgx.CollectExactlyOneRow(rows, scanSchedule)
	if errors.Is(err, pgx.ErrNoRows) {
		return Schedule{}, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Schedule{}, fmt.Errorf("reading schedule %q: %w", name, err)
	}
	return sc, nil
}

// ListSchedules returns every live schedule (enabled or not) by name.
func (s *Store) ListSchedules(ctx context.Context) ([]Schedule, error) {
	rows, _ := s.pool.Query(ctx, scheduleQuery+` ORDER BY s.name`)
	scs, err := pgx.CollectRows(rows, scanSchedule)
	if err != nil {
		return nil, fmt.Errorf("listing schedules: %w", err)
	}
	return scs, nil
}

// ClaimRequest asks ClaimDue to account for one due time of a schedule.
type ClaimRequest struct {
	Schedule string
	Due      time.Time
	// CatchUp marks the one run that stands in for missed due times; Due
	// is then the latest missed due time, which has its own missed row.
	CatchUp bool
	// Now is the scheduler's clock, recorded as the row's claimed_at.
	Now time.Time
	// AbandonBefore, when set, fails the schedule's pending or running rows
	// claimed before it (no worker reported an end in time), so that a
	// lost scan request cannot block the schedule forever.
	AbandonBefore time.Time
	// Enqueue is called inside the claim's transaction when the run may
	// start (status pending), with the claim (its new ledger id and the
	// schedule version it was claimed under), to queue the scan request in
	// the outbox: the claim and the request commit together.
	Enqueue func(ctx context.Context, tx *Tx, c Claim) error
}

// Claim is what ClaimDue did.
type Claim struct {
	LedgerID int64
	// Claimed is false when the due time already had a row: another
	// scheduler instance claimed it, and this one must not fire it.
	Claimed bool
	// Status is the row's status: pending (fire), skipped (an earlier run
	// is still unfinished; Blocker is its ledger id), or, when not
	// Claimed, whatever the existing row holds.
	Status  finding.LedgerStatus
	Blocker int64
	// Version is the schedule's version when the claim was made, read
	// under the claim's lock: the version the scan request names. Zero
	// when not Claimed.
	Version int64
}

// ClaimDue is the exactly-once claim for one due time: it inserts the
// ledger row for (schedule, due, catch-up) unless one exists, as pending,
// or as skipped when an earlier run of the schedule is still pending or
// running, and advances the schedule's watermark. A deleted or unknown
// schedule is ErrNotFound.
func (s *Store) ClaimDue(ctx context.Context, req ClaimRequest) (Claim, error) {
	var c Claim
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		c = Claim{}
		// Locking the schedule row serialises claims of one schedule, so
		// that the overlap check below sees every earlier claim.
		var (
			deleted bool
			version int64
		)
		err := tx.QueryRow(ctx, `SELECT deleted_at IS NOT NULL, version FROM schedules WHERE name = $1 FOR UPDATE`, req.Schedule).Scan(&deleted, &version)
		if errors.Is(err, pgx.ErrNoRows) || deleted {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !req.AbandonBefore.IsZero() {
			_, err := tx.Exec(ctx, `
				UPDATE schedule_ledger SET status = 'failed', finished_at = $3,
				       error = 'abandoned: no worker reported the end of this run before ' || to_char($2 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
				WHERE schedule = $1 AND status IN ('pending', 'running') AND claimed_at < $2`,
				req.Schedule, req.AbandonBefore, req.Now)
			if err != nil {
				return fmt.Errorf("failing abandoned runs: %w", err)
			}
		}
		err = tx.QueryRow(ctx, `
			SELECT id FROM schedule_ledger
			WHERE schedule = $1 AND status IN ('pending', 'running')
			ORDER BY id LIMIT 1`, req.Schedule).Scan(&c.Blocker)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("checking for an unfinished run: %w", err)
		}
		c.Status = finding.LedgerPending
		errText := ""
		if c.Blocker != 0 {
			c.Status = finding.LedgerSkipped
			errText = "overlaps run " + strconv.FormatInt(c.Blocker, 10) + " of the ledger, which has not finished"
		}
		err = tx.QueryRow(ctx, `
			INSERT INTO schedule_ledger (schedule, due_at, status, catch_up, claimed_at, error, schedule_version)
			VALUES ($1, $2, $3, $4, $5, nullif($6, ''), CASE WHEN $3 = 'pending' THEN $7::bigint END)
			ON CONFLICT (schedule, due_at, catch_up) DO NOTHING
			RETURNING id`,
			req.Schedule, req.Due, c.Status, req.CatchUp, req.Now, errText, version).Scan(&c.LedgerID)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			c.Blocker = 0
			if err := tx.QueryRow(ctx, `
				SELECT id, status FROM schedule_ledger WHERE schedule = $1 AND due_at = $2 AND catch_up = $3`,
				req.Schedule, req.Due, req.CatchUp).Scan(&c.LedgerID, &c.Status); err != nil {
				return fmt.Errorf("reading the existing claim: %w", err)
			}
		case err != nil:
			return err
		default:
			c.Claimed = true
			if c.Status == finding.LedgerPending {
				c.Version = version
			}
		}
		if err := advanceWatermark(ctx, tx, req.Schedule, req.Due); err != nil {
			return err
		}
		if c.Claimed && c.Status == finding.LedgerPending && req.Enqueue != nil {
			return req.Enqueue(ctx, &Tx{tx: tx}, c)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Claim{}, fmt.Errorf("claiming %s at %s: schedule %w", req.Schedule, req.Due.UTC().Format(time.RFC3339), err)
		}
		return Claim{}, fmt.Errorf("claiming %s at %s: %w", req.Schedule, req.Due.UTC().Format(time.RFC3339), err)
	}
	return c, nil
}

func advanceWatermark(ctx context.Context, q DBTX, schedule string, due time.Time) error {
	_, err := q.Exec(ctx, `
		UPDATE schedules SET last_fired_due = greatest(last_fired_due, $2)
		WHERE name = $1`, schedule, due)
	if err != nil {
		return fmt.Errorf("advancing the watermark of %s: %w", schedule, err)
	}
	return nil
}

// RecordMissed records due times that passed without a leading scheduler
// as missed, at the scheduler's time now, and advances the watermark. Due
// times that already have a row keep it (another instance accounted for
// them). It returns the number of rows added.
func (s *Store) RecordMissed(ctx context.Context, schedule string, dues []time.Time, now time.Time) (int, error) {
	if len(dues) == 0 {
		return 0, nil
	}
	latest := dues[0]
	for _, d := range dues {
		if d.After(latest) {
			latest = d
		}
	}
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO schedule_ledger (schedule, due_at, status, claimed_at, error)
			SELECT $1, d, 'missed', $3, 'no scheduler was leading at the due time'
			FROM unnest($2::timestamptz[]) AS d
			ON CONFLICT (schedule, due_at, catch_up) DO NOTHING`, schedule, dues, now)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return advanceWatermark(ctx, tx, schedule, latest)
	})
	if err != nil {
		return 0, fmt.Errorf("recording %d missed due times of %s: %w", len(dues), schedule, err)
	}
	return int(n), nil
}

// MarkLedger records the progress of a scheduled run; the scan worker
// calls it. status is running (sets started_at), succeeded or failed (set
// finished_at); runIDs are scan runs the due time produced (each an
// existing scan_runs id), added to those already recorded; errText says
// why a run failed.
//
// The runs are recorded whatever the status does: they happened for this
// due time, even when the row already ended otherwise. Replays are
// harmless: marking a row with the status it has, or running once it has
// finished, changes nothing and returns nil; a run already recorded is not
// added twice. Changing a finished row to the other outcome is ErrConflict
// (for example a run that the scheduler gave up on as abandoned and that
// then succeeded); an unknown id is ErrNotFound.
func (s *Store) MarkLedger(ctx context.Context, id int64, status finding.LedgerStatus, runIDs []string, errText string) error {
	switch status {
	case finding.LedgerRunning, finding.LedgerSucceeded, finding.LedgerFailed:
	default:
		return fmt.Errorf("marking ledger row %d: status %q is not running, succeeded or failed", id, status)
	}
	for _, r := range runIDs {
		if !isUUID(r) {
			return fmt.Errorf("marking ledger row %d: run id %q is not a UUID", id, r)
		}
	}
	first := ""
	if len(runIDs) > 0 {
		first = runIDs[0]
	}
	var cur finding.LedgerStatus
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The lock orders concurrent marks of one row (a redelivery racing
		// the original) and tells an unknown id from a finished one.
		err := tx.QueryRow(ctx, `SELECT status FROM schedule_ledger WHERE id = $1 FOR UPDATE`, id).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if len(runIDs) > 0 {
			if _, err := tx.Exec(ctx, `
				INSERT INTO ledger_runs (run_id, ledger_id)
				SELECT r, $1 FROM unnest($2::uuid[]) AS r
				ON CONFLICT (run_id) DO NOTHING`, id, runIDs); err != nil {
				return fmt.Errorf("recording runs: %w", err)
			}
		}
		moving := cur == finding.LedgerPending || (cur == finding.LedgerRunning && status != finding.LedgerRunning)
		if !moving {
			if first == "" {
				return nil
			}
			// Ended already: only a first run id may still be missing.
			_, err := tx.Exec(ctx, `UPDATE schedule_ledger SET run_id = coalesce(run_id, nullif($2, '')::uuid) WHERE id = $1`, id, first)
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE schedule_ledger SET
			       status = $2,
			       run_id = coalesce(run_id, nullif($3, '')::uuid),
			       error = coalesce(nullif($4, ''), error),
			       started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
			       finished_at = CASE WHEN $2 <> 'running' THEN now() ELSE finished_at END
			WHERE id = $1`, id, status, first, errText)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("marking ledger row %d: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("marking ledger row %d %s: %w", id, status, err)
	case cur == finding.LedgerPending, cur == finding.LedgerRunning && status != finding.LedgerRunning:
		return nil // moved on
	case cur == status, status == finding.LedgerRunning:
		return nil
	default:
		return fmt.Errorf("marking ledger row %d %s: it is already %s: %w", id, status, cur, ErrConflict)
	}
}

// RunningFor reports whether a schedule has a run that is pending or
// running, i.e. whether firing it now would overlap.
func (s *Store) RunningFor(ctx context.Context, schedule string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM schedule_ledger WHERE schedule = $1 AND status IN ('pending', 'running'))`,
		schedule).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking for unfinished runs of %s: %w", schedule, err)
	}
	return ok, nil
}

// ListLedger returns the ledger rows of a schedule (every schedule when
// schedule is empty, deleted ones included) whose due time is in
// [from, to); a zero bound is open. Rows come in due-time order, a
// catch-up run after the missed row it stands in for.
func (s *Store) ListLedger(ctx context.Context, schedule string, from, to time.Time) ([]LedgerEntry, error) {
	var fromArg, toArg *time.Time
	if !from.IsZero() {
		fromArg = &from
	}
	if !to.IsZero() {
		toArg = &to
	}
	rows, _ := s.pool.Query(ctx, ledgerQuery+`
		WHERE ($1 = '' OR schedule = $1)
		  AND ($2::timestamptz IS NULL OR due_at >= $2)
		  AND ($3::timestamptz IS NULL OR due_at < $3)
		ORDER BY due_at, schedule, catch_up, id`, schedule, fromArg, toArg)
	out, err := pgx.CollectRows(rows, scanLedgerEntry)
	if err != nil {
		return nil, fmt.Errorf("listing the ledger: %w", err)
	}
	return out, nil
}

// GetLedgerEntry returns one ledger row by id, or ErrNotFound.
func (s *Store) GetLedgerEntry(ctx context.Context, id int64) (LedgerEntry, error) {
	rows, _ := s.pool.Query(ctx, ledgerQuery+` WHERE id = $1`, id)
	e, err := pgx.CollectExactlyOneRow(rows, scanLedgerEntry)
	if errors.Is(err, pgx.ErrNoRows) {
		return LedgerEntry{}, fmt.Errorf("ledger row %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return LedgerEntry{}, fmt.Errorf("reading ledger row %d: %w", id, err)
	}
	return e, nil
}

// ledgerQuery reads ledger rows with their runs, as one JSON array per
// row: a ledger page costs one round trip however many runs its rows hold.
const ledgerQuery = `
	SELECT id, schedule, due_at, status, catch_up, coalesce(schedule_version, 0), coalesce(run_id::text, ''),
	       claimed_at, started_at, finished_at, coalesce(error, ''),
	       coalesce((
	           SELECT json_agg(json_build_object('id', r.id, 'scope', r.scope, 'tool', r.tool,
	                                             'status', r.status, 'error', coalesce(r.error, ''))
	                           ORDER BY r.created_at, r.id)
	           FROM ledger_runs lr JOIN scan_runs r ON r.id = lr.run_id
	           WHERE lr.ledger_id = l.id), '[]')
	FROM schedule_ledger l`

func scanLedgerEntry(row pgx.CollectableRow) (LedgerEntry, error) {
	var (
		e                 LedgerEntry
		started, finished *time.Time
		runs              []byte
	)
	err := row.Scan(&e.ID, &e.Schedule, &e.Due, &e.Status, &e.CatchUp, &e.ScheduleVersion, &e.RunID, &e.ClaimedAt,
		&started, &finished, &e.Error, &runs)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(runs, &e.Runs); err != nil {
		return e, fmt.Errorf("ledger row %d runs: %w", e.ID, err)
	}
	if e.Runs == nil {
		e.Runs = []LedgerRun{}
	}
	if started != nil {
		e.StartedAt = *started
	}
	if finished != nil {
		e.FinishedAt = *finished
	}
	return e, nil
}

// LeaderSession is a dedicated connection holding a session-level
// advisory lock: while it lives, its owner is the only leading scheduler.
// PostgreSQL releases the lock when the session ends, however it ends, so
// a crashed leader cannot keep the others waiting. It is not safe for
// concurrent use: one goroutine owns it.
type LeaderSession struct {
	conn *pgx.Conn
}

// TryLead opens a dedicated connection and tries to take the advisory lock
// key without waiting. ok is false when another session holds it. The
// session also listens on ScheduleChannel.
func (s *Store) TryLead(ctx context.Context, key int64) (sess *LeaderSession, ok bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	// Outside the pool: the pool may close idle connections, and losing
	// this one would drop the lock.
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("connecting for the scheduler lock: %w", err)
	}
	fail := func(err error) (*LeaderSession, bool, error) {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	// Server-side keepalives make PostgreSQL notice a vanished leader host
	// within about a minute and release its lock, instead of after the
	// operating system's default of two hours.
	if _, err := conn.Exec(ctx, `SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3`); err != nil {
		return fail(fmt.Errorf("setting keepalives on the scheduler lock session: %w", err))
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		return fail(fmt.Errorf("trying the scheduler lock: %w", err))
	}
	if !ok {
		return fail(nil)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+ScheduleChannel); err != nil {
		return fail(fmt.Errorf("listening for schedule changes: %w", err))
	}
	return &LeaderSession{conn: conn}, true, nil
}

// Wait blocks for up to d until a schedule change is announced (changed
// true) or d passes, then checks that the session is still alive. An error
// means the session, and with it the lock, is lost (or ctx is done); the
// caller must stop leading and Close it.
func (l *LeaderSession) Wait(ctx context.Context, d time.Duration) (changed bool, err error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	_, err = l.conn.WaitForNotification(wctx)
	cancel()
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case !errors.Is(err, context.DeadlineExceeded):
		return false, fmt.Errorf("scheduler lock session: %w", err)
	}
	// A silent wait proves nothing about the connection: a round trip does.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.conn.Ping(pctx); err != nil {
		return false, fmt.Errorf("scheduler lock session: %w", err)
	}
	return false, nil
}

// Close ends the session, which releases the lock.
func (l *LeaderSession) Close(ctx context.Context) error {
	return l.conn.Close(ctx)
}
