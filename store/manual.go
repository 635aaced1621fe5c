package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
)

// Manual findings (a pentest's results entered by a person) and notes on
// any finding.
//
// A manual finding is stored like a scanned one, under a run of its own
// (tool "manual", format "manual", created by the person, finished at
// once), so that it has a first sighting, an observation and its control
// links like any other. Reconciliation resolves only findings of the tools
// a run reported, and no scanner reports "manual": a manual finding is
// never resolved by a scan.

// ToolManual is the tool of findings entered by a person.
const ToolManual = "manual"

// EvidenceFile is a file attached to a finding, stored as an artifact.
type EvidenceFile struct {
	SHA256      string    `json:"sha256"`
	FileName    string    `json:"file_name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	AddedBy     string    `json:"added_by"`
	AddedAt     time.Time `json:"added_at"`
}

// ManualResult is what CreateManualFinding did.
type ManualResult struct {
	Finding UpsertResult
	RunID   string
}

// CreateManualFinding stores f (already scored and mapped, tool
// ToolManual) under a new finished run created by actor, with its
// evidence files (artifacts already committed in t), in t. The same scope
// and fingerprint entered again updates the finding (Inserted false). The
// caller writes the activity row and the event.
func CreateManualFinding(ctx context.Context, t *Tx, f finding.Finding, evidence []EvidenceFile, actor string, at time.Time, sla SLA) (ManualResult, error) {
	if f.Tool != ToolManual {
		return ManualResult{}, fmt.Errorf("manual finding with tool %q", f.Tool)
	}
	runID := uuid.NewString()
	// No artifact: what the person entered is in the finding and its
	// evidence files.
	if _, err := t.tx.Exec(ctx, `
		INSERT INTO scan_runs (id, kind, scope, tool, format, status, created_by, created_at)
		VALUES ($1::uuid, $2, $3, $4, $4, 'processing', $5, $6)`,
		runID, string(f.Kind), f.Scope, ToolManual, actor, at); err != nil {
		return ManualResult{}, fmt.Errorf("recording manual run %s: %w", runID, err)
	}
	res, err := UpsertFindings(ctx, t, runID, []finding.Finding{f}, at, &sla)
	if err != nil {
		return ManualResult{}, err
	}
	if len(res) != 1 {
		return ManualResult{}, fmt.Errorf("storing manual finding: %d rows written", len(res))
	}
	if _, err := t.tx.Exec(ctx, `
		UPDATE scan_runs SET status = 'succeeded', started_at = $2, finished_at = $2,
			batches_expected = 1, batches_stored = 1, findings_seen = 1,
			stats = '{"findings": 1, "tools": []}'
		WHERE id = $1::uuid`, runID, at); err != nil {
		return ManualResult{}, fmt.Errorf("finishing manual run %s: %w", runID, err)
	}
	for _, e := range evidence {
		if _, err := t.tx.Exec(ctx, `
			INSERT INTO finding_evidence (finding_id, artifact_sha256, file_name, content_type, size, added_by, added_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (finding_id, artifact_sha256) DO NOTHING`,
			res[0].ID, e.SHA256, e.FileName, e.ContentType, e.Size, actor, at); err != nil {
			return ManualResult{}, fmt.Errorf("attaching evidence %s to finding %d: %w", e.SHA256, res[0].ID, err)
		}
	}
	return ManualResult{Finding: res[0], RunID: runID}, nil
}

// ListEvidence returns the files attached to finding id, oldest first.
func (s *Store) ListEvidence(ctx context.Context, id int64) ([]EvidenceFile, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT artifact_sha256, file_name, content_type, size, added_by, added_at
		FROM finding_evidence WHERE finding_id = $1 ORDER BY added_at, artifact_sha256`, id)
	if err != nil {
		return nil, fmt.Errorf("listing evidence of finding %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EvidenceFile, error) {
		var e EvidenceFile
		err := r.Scan(&e.SHA256, &e.FileName, &e.ContentType, &e.Size, &e.AddedBy, &e.AddedAt)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing evidence of finding %d: %w", id, err)
	}
	return out, nil
}

// Note is a note on a finding with its edit history.
type Note struct {
	ID        int64         `json:"id"`
	FindingID int64         `json:"finding_id"`
	Text      string        `json:"text"`
	Version   int           `json:"version"`
	CreatedBy string        `json:"created_by"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedBy string        `json:"updated_by"`
	UpdatedAt time.Time     `json:"updated_at"`
	History   []NoteVersion `json:"history"` // every version, oldest first, the current one last
}

// NoteVersion is one version of a note's text.
type NoteVersion struct {
	Version  int       `json:"version"`
	Text     string    `json:"text"`
	EditedBy string    `json:"edited_by"`
	EditedAt time.Time `json:"edited_at"`
}

// AddNote writes a note on finding findingID in t; an unknown finding is
// ErrNotFound.
func AddNote(ctx context.Context, t *Tx, findingID int64, text, actor string, at time.Time) (Note, error) {
	n := Note{FindingID: findingID, Text: text, Version: 1, CreatedBy: actor, CreatedAt: at, UpdatedBy: actor, UpdatedAt: at}
	err := t.tx.QueryRow(ctx, `
		INSERT INTO finding_notes (finding_id, text, created_by, created_at, updated_by, updated_at)
		SELECT id, $2, $3, $4, $3, $4 FROM findings WHERE id = $1
		RETURNING id`, findingID, text, actor, at).Scan(&n.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Note{}, fmt.Errorf("finding %d: %w", findingID, ErrNotFound)
	}
	if err != nil {
		return Note{}, fmt.Errorf("adding a note to finding %d: %w", findingID, err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO finding_note_versions (note_id, version, text, edited_by, edited_at) VALUES ($1, 1, $2, $3, $4)`,
		n.ID, text, actor, at); err != nil {
		return Note{}, fmt.Errorf("adding a note to finding %d: %w", findingID, err)
	}
	n.History = []NoteVersion{{Version: 1, Text: text, EditedBy: actor, EditedAt: at}}
	return n, nil
}

// EditNote replaces the text of note noteID of finding findingID in t,
// keeping the previous versions, and returns the note before and after.
// An unknown note (or one of another finding) is ErrNotFound. Who may edit
// is the caller's rule.
func EditNote(ctx context.Context, t *Tx, findingID, noteID int64, text, actor string, at time.Time) (before, after Note, err error) {
	before, err = loadNote(ctx, t.tx, findingID, noteID, true)
	if err != nil {
		return before, after, err
	}
	after = before
	after.Text, after.Version, after.UpdatedBy, after.UpdatedAt = text, before.Version+1, actor, at
	if _, err := t.tx.Exec(ctx, `UPDATE finding_notes SET text = $2, version = $3, updated_by = $4, updated_at = $5 WHERE id = $1`,
		noteID, text, after.Version, actor, at); err != nil {
		return before, after, fmt.Errorf("editing note %d: %w", noteID, err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO finding_note_versions (note_id, version, text, edited_by, edited_at) VALUES ($1, $2, $3, $4, $5)`,
		noteID, after.Version, text, actor, at); err != nil {
		return before, after, fmt.Errorf("editing note %d: %w", noteID, err)
	}
	after.History = append(append([]NoteVersion(nil), before.History...), NoteVersion{Version: after.Version, Text: text, EditedBy: actor, EditedAt: at})
	return before, after, nil
}

// GetNote returns note noteID of finding findingID with its history.
func (s *Store) GetNote(ctx context.Context, findingID, noteID int64) (Note, error) {
	return loadNote(ctx, s.pool, findingID, noteID, false)
}

func loadNote(ctx context.Context, q DBTX, findingID, noteID int64, lock bool) (Note, error) {
	var n Note
	sql := `SELECT id, finding_id, text, version, created_by, created_at, updated_by, updated_at
		FROM finding_notes WHERE id = $1 AND finding_id = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, sql, noteID, findingID).Scan(&n.ID, &n.FindingID, &n.Text, &n.Version, &n.CreatedBy, &n.CreatedAt, &n.UpdatedBy, &n.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return n, fmt.Errorf("note %d of finding %d: %w", noteID, findingID, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("loading note %d: %w", noteID, err)
	}
	hist, err := noteHistory(ctx, q, []int64{noteID})
	n.History = hist[noteID]
	return n, err
}

func noteHistory(ctx context.Context, q DBTX, ids []int64) (map[int64][]NoteVersion, error) {
	rows, err := q.Query(ctx, `
		SELECT note_id, version, text, edited_by, edited_at FROM finding_note_versions
		WHERE note_id = ANY($1) ORDER BY note_id, version`, ids)
	if err != nil {
		return nil, fmt.Errorf("loading note history: %w", err)
	}
	out := map[int64][]NoteVersion{}
	var id int64
	var v NoteVersion
	_, err = pgx.ForEachRow(rows, []any{&id, &v.Version, &v.Text, &v.EditedBy, &v.EditedAt}, func() error {
		out[id] = append(out[id], v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading note history: %w", err)
	}
	return out, nil
}

// ListNotes returns the notes on finding id, oldest first, each with its
// history. An unknown finding is ErrNotFound.
func (s *Store) ListNotes(ctx context.Context, id int64) ([]Note, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM findings WHERE id = $1)`, id).Scan(&exists); err != nil {
		return nil, fmt.Errorf("listing notes of finding %d: %w", id, err)
	}
	if !exists {
		return nil, fmt.Errorf("finding %d: %w", id, ErrNotFound)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT id, finding_id, text, version, created_by, created_at, updated_by, updated_at
		FROM finding_notes WHERE finding_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("listing notes of finding %d: %w", id, err)
	}
	notes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Note, error) {
		var n Note
		err := r.Scan(&n.ID, &n.FindingID, &n.Text, &n.Version, &n.CreatedBy, &n.CreatedAt, &n.UpdatedBy, &n.UpdatedAt)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing notes of finding %d: %w", id, err)
	}
	ids := make([]int64, len(notes))
	for i, n := range notes {
		ids[i] = n.ID
	}
	hist, err := noteHistory(ctx, s.pool, ids)
	if err != nil {
		return nil, err
	}
	for i := range notes {
		notes[i].History = hist[notes[i].ID]
	}
	if notes == nil {
		notes = []Note{}
	}
	return notes, nil
}
