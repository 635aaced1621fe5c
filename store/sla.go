package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The SLA policy's history and the breaches already announced. Due dates
// are set when a finding is first stored (UpsertFindings, from first seen)
// and when a scan reopens it (Reconcile); the policy in force then decides
// them, so a later policy change never moves a due date already set.

// SLAPolicy is one version of the SLA policy.
type SLAPolicy struct {
	Version       int64     `json:"version"`
	SLA           SLA       `json:"-"`
	EffectiveFrom time.Time `json:"effective_from"`
	RecordedBy    string    `json:"recorded_by"`
}

func durOrNil(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}

func nilDur(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return *d
}

// RecordSLAPolicy makes sla the policy in force from at, as a new version,
// unless it is already the latest version; it returns the version in force
// and whether it is new. Replicas starting together record it once (they
// take turns under an advisory lock).
func (s *Store) RecordSLAPolicy(ctx context.Context, sla SLA, actor string, at time.Time) (SLAPolicy, bool, error) {
	var p SLAPolicy
	var created bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('starpipe.sla_policy'))`); err != nil {
			return err
		}
		latest, err := scanSLAPolicy(tx.QueryRow(ctx, `SELECT `+slaPolicyColumns+` FROM sla_policies ORDER BY version DESC LIMIT 1`))
		if err == nil && latest.SLA == sla {
			p = latest
			return nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		p, err = scanSLAPolicy(tx.QueryRow(ctx, `
			INSERT INTO sla_policies (critical, high, medium, low, info, effective_from, recorded_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING `+slaPolicyColumns,
			durOrNil(sla.Critical), durOrNil(sla.High), durOrNil(sla.Medium), durOrNil(sla.Low), durOrNil(sla.Info), at, actor))
		if err != nil {
			return err
		}
		created = true
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "sla_policy.recorded", SubjectType: "sla_policy",
			SubjectID: fmt.Sprint(p.Version), After: slaDays(sla)})
		return err
	})
	if err != nil {
		return SLAPolicy{}, false, fmt.Errorf("recording the SLA policy: %w", err)
	}
	return p, created, nil
}

// slaDays is the policy as the activity log shows it.
func slaDays(s SLA) map[string]any {
	m := map[string]any{}
	for sev, d := range map[string]time.Duration{"critical": s.Critical, "high": s.High, "medium": s.Medium, "low": s.Low, "info": s.Info} {
		if d > 0 {
			m[sev] = d.String()
		} else {
			m[sev] = nil
		}
	}
	return m
}

const slaPolicyColumns = `version, critical, high, medium, low, info, effective_from, recorded_by`

func scanSLAPolicy(row pgx.Row) (SLAPolicy, error) {
	var p SLAPolicy
	var c, h, m, l, i *time.Duration
	if err := row.Scan(&p.Version, &c, &h, &m, &l, &i, &p.EffectiveFrom, &p.RecordedBy); err != nil {
		return p, err
	}
	p.SLA = SLA{Critical: nilDur(c), High: nilDur(h), Medium: nilDur(m), Low: nilDur(l), Info: nilDur(i)}
	return p, nil
}

// SLAPolicyAt returns the policy in force at t: the latest version
// effective at or before it. Before the first version it is ErrNotFound.
func (s *Store) SLAPolicyAt(ctx context.Context, t time.Time) (SLAPolicy, error) {
	p, err := scanSLAPolicy(s.pool.QueryRow(ctx, `SELECT `+slaPolicyColumns+` FROM sla_policies
		WHERE effective_from <= $1 ORDER BY effective_from DESC, version DESC LIMIT 1`, t))
	if errors.Is(err, pgx.ErrNoRows) {
		return SLAPolicy{}, fmt.Errorf("SLA policy at %s: %w", t.UTC().Format(time.RFC3339), ErrNotFound)
	}
	if err != nil {
		return SLAPolicy{}, fmt.Errorf("loading the SLA policy at %s: %w", t.UTC().Format(time.RFC3339), err)
	}
	return p, nil
}

// SLAPolicies lists every version, oldest first.
func (s *Store) SLAPolicies(ctx context.Context) ([]SLAPolicy, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+slaPolicyColumns+` FROM sla_policies ORDER BY version`)
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SLAPolicy, error) { return scanSLAPolicy(r) })
	if err != nil {
		return nil, fmt.Errorf("listing SLA policies: %w", err)
	}
	return ps, nil
}

// SLABreach is a finding found past its SLA due date.
type SLABreach struct {
	ID          int64
	Scope       string
	Kind        string
	Fingerprint string
	Tool        string
	Rule        string
	Title       string
	Severity    string
	Status      string
	Review      string
	SLADue      time.Time
	BreachedAt  time.Time
}

// RecordSLABreaches records, in tx, up to limit findings past their due
// date at now that no earlier call recorded for that due date, oldest due
// date first, and returns them: each (finding, due date) is returned once
// ever, however many replicas call it. Only active findings (open,
// reopened) count, and not those reviewed as false positive, not
// applicable or accepted risk.
func RecordSLABreaches(ctx context.Context, t *Tx, now time.Time, limit int) ([]SLABreach, error) {
	rows, err := t.tx.Query(ctx, `
		WITH due AS (
			SELECT f.id, f.sla_due, f.severity FROM findings f
			WHERE f.sla_due <= $1 AND f.status IN ('open', 'reopened')
			  AND NOT EXISTS (SELECT 1 FROM sla_breaches b WHERE b.finding_id = f.id AND b.sla_due = f.sla_due)
			  AND NOT EXISTS (SELECT 1 FROM finding_reviews r
				WHERE r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint
				  AND r.state IN ('false_positive', 'not_applicable', 'risk_accepted'))
			ORDER BY f.sla_due, f.id
			LIMIT $2
		), ins AS (
			INSERT INTO sla_breaches (finding_id, sla_due, severity, breached_at)
			SELECT id, sla_due, severity, $1 FROM due
			ON CONFLICT DO NOTHING
			RETURNING finding_id, sla_due, breached_at
		)
		SELECT f.id, f.scope, f.kind, f.fingerprint, f.tool, f.rule_id, f.title, f.severity, f.status,
			coalesce((SELECT r.state FROM finding_reviews r
				WHERE r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint), 'untriaged'),
			ins.sla_due, ins.breached_at
		FROM ins JOIN findings f ON f.id = ins.finding_id
		ORDER BY ins.sla_due, f.id`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("recording SLA breaches: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SLABreach, error) {
		var b SLABreach
		err := r.Scan(&b.ID, &b.Scope, &b.Kind, &b.Fingerprint, &b.Tool, &b.Rule, &b.Title, &b.Severity, &b.Status,
			&b.Review, &b.SLADue, &b.BreachedAt)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("recording SLA breaches: %w", err)
	}
	return out, nil
}
