package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Activity is one entry of the append-only activity log: who did what to
// which subject, with the subject's state before and after.
type Activity struct {
	At          time.Time // zero means the transaction's now()
	Actor       string    // token name, "system", "scheduler", ...
	Action      string    // e.g. "finding.resolved", "exception.created"
	SubjectType string    // e.g. "finding", "schedule", "token"
	SubjectID   string
	RunID       string // scan run uuid, empty for none
	Before      any    // marshalled to JSON; nil is SQL NULL
	After       any
}

// AppendActivity writes an entry and returns its id. Pass the transaction
// that makes the change so that the entry commits with it (nil uses the
// pool).
func (s *Store) AppendActivity(ctx context.Context, tx *Tx, a Activity) (int64, error) {
	return s.appendActivity(ctx, s.on(tx), a)
}

func (s *Store) appendActivity(ctx context.Context, q DBTX, a Activity) (int64, error) {
	if a.Actor == "" || a.Action == "" || a.SubjectType == "" {
		return 0, errors.New("appending activity: actor, action and subject type are required")
	}
	before, err := jsonOrNull(a.Before)
	if err != nil {
		return 0, fmt.Errorf("appending activity %s: encoding before: %w", a.Action, err)
	}
	after, err := jsonOrNull(a.After)
	if err != nil {
		return 0, fmt.Errorf("appending activity %s: encoding after: %w", a.Action, err)
	}
	var at *time.Time
	if !a.At.IsZero() {
		at = &a.At
	}
	var runID *string
	if a.RunID != "" {
		runID = &a.RunID
	}
	var id int64
	err = s.q(q).QueryRow(ctx, `
		INSERT INTO activity_log (at, actor, action, subject_type, subject_id, run_id, before, after)
		VALUES (coalesce($1, now()), $2, $3, $4, $5, $6::uuid, $7::jsonb, $8::jsonb)
		RETURNING id`,
		at, a.Actor, a.Action, a.SubjectType, a.SubjectID, runID, before, after).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("appending activity %s: %w", a.Action, err)
	}
	return id, nil
}

// jsonOrNull returns the JSON text of v, or nil (SQL NULL) for nil. Text
// rather than []byte so that pgx sends it as json input, not bytea.
func jsonOrNull(v any) (*string, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}
