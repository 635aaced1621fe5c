package review

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store"
)

// Manual findings (pentest results entered by a person), notes on any
// finding, and retests on demand. Each change is written with its
// activity-log row (and, for findings and retests, its
// starpipe.finding.events message) in one transaction.

// FindingsStore is what Findings needs of the database; *store.Store
// implements it.
type FindingsStore interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
	OwnsFinding(ctx context.Context, user string, id int64) (bool, error)
	SLAPolicyAt(ctx context.Context, t time.Time) (store.SLAPolicy, error)
	CommitArtifact(ctx context.Context, tx *store.Tx, st *store.StagedArtifact, format string) (bool, error)
	GetNote(ctx context.Context, findingID, noteID int64) (store.Note, error)
}

// Enricher scores and maps a finding in place, by the rules the pipeline
// uses (the daemon's NewEnricher without a run environment).
type Enricher func(f *finding.Finding)

// Findings makes people's changes to findings other than review decisions.
type Findings struct {
	st     FindingsStore
	enrich Enricher
	clock  Clock
	log    *slog.Logger
}

// NewFindings builds a Findings. clock nil is the wall clock; log nil
// discards; enrich nil scores without mapping.
func NewFindings(st FindingsStore, enrich Enricher, clock Clock, log *slog.Logger) *Findings {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if enrich == nil {
		enrich = func(f *finding.Finding) { scoring.Apply(f, nil) }
	}
	return &Findings{st: st, enrich: enrich, clock: clock, log: log.With("component", "review")}
}

// Manual is a finding entered by a person.
type Manual struct {
	Title       string
	Description string
	Scope       string
	Kind        string // default external
	Vector      string // a CVSS 3.x vector; when given it decides the severity
	CWE         []int
	Severity    string // used when there is no vector
	Evidence    []Evidence
}

// Evidence is a staged file to attach to a manual finding.
type Evidence struct {
	Staged      *store.StagedArtifact
	FileName    string
	ContentType string
}

// Limits of a manual finding's text.
const (
	maxTitle       = 500
	maxDescription = 20000
	maxScope       = 2048
)

// ManualFingerprint is the stable identity of a manual finding: its scope
// and its title (case and spacing ignored), so entering the same result
// again updates it rather than adding another.
func ManualFingerprint(scope, title string) string {
	return finding.Fingerprint("tool", store.ToolManual, "scope", scope, "title", strings.ToLower(strings.Join(strings.Fields(title), " ")))
}

// finding checks m and builds the finding it describes (not yet scored).
func (m Manual) finding() (finding.Finding, error) {
	m.Title, m.Scope = strings.TrimSpace(m.Title), strings.TrimSpace(m.Scope)
	m.Description, m.Vector = strings.TrimSpace(m.Description), strings.TrimSpace(m.Vector)
	var f finding.Finding
	textOK := func(field, v string, max int, required bool) error {
		switch {
		case required && v == "":
			return &DecisionError{field, "is required"}
		case len(v) > max:
			return &DecisionError{field, fmt.Sprintf("longer than %d bytes", max)}
		case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
			return &DecisionError{field, "is not valid UTF-8 text"}
		}
		return nil
	}
	if err := textOK("title", m.Title, maxTitle, true); err != nil {
		return f, err
	}
	if err := textOK("scope", m.Scope, maxScope, true); err != nil {
		return f, err
	}
	if err := textOK("description", m.Description, maxDescription, false); err != nil {
		return f, err
	}
	kind := finding.KindExternal
	if m.Kind != "" {
		k, err := finding.ParseScanKind(m.Kind)
		if err != nil {
			return f, &DecisionError{"kind", err.Error()}
		}
		kind = k
	}
	switch {
	case m.Vector != "":
		if _, err := scoring.Parse(m.Vector); err != nil {
			return f, &DecisionError{"cvss_vector", err.Error()}
		}
		if m.Severity != "" {
			return f, &DecisionError{"severity", "give a CVSS vector or a severity, not both: the vector decides"}
		}
	case m.Severity == "":
		return f, &DecisionError{"severity", "a finding without a CVSS vector needs a severity (info, low, medium, high, critical)"}
	default:
		if _, ok := finding.ParseSeverity(m.Severity); !ok {
			return f, &DecisionError{"severity", fmt.Sprintf("%q is not one of info, low, medium, high, critical", m.Severity)}
		}
	}
	cwe := make([]int, 0, len(m.CWE))
	for _, c := range m.CWE {
		if c <= 0 {
			return f, &DecisionError{"cwe", fmt.Sprintf("%d is not a CWE id", c)}
		}
		cwe = append(cwe, c)
	}
	f = finding.Finding{
		Fingerprint: ManualFingerprint(m.Scope, m.Title), FingerprintSource: "computed",
		Scope: m.Scope, Kind: kind, Tool: store.ToolManual, RuleID: store.ToolManual, Title: m.Title,
		Description: m.Description, CWE: normaliseCWE(cwe),
		Location: finding.Location{Kind: finding.LocationLogical, URI: m.Scope},
		Signals:  finding.Signals{Vector: m.Vector, Label: m.Severity},
	}
	return f, nil
}

func normaliseCWE(in []int) []int {
	out := in[:0]
	seen := map[int]bool{}
	for _, c := range in {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ManualResult is what CreateManual did.
type ManualResult struct {
	ID      int64
	Created bool // false when the same scope and title updated a finding
	RunID   string
}

// CreateManual stores a manual finding, scored and mapped like a scanned
// one, with its evidence files, an activity row (finding.opened, or
// finding.updated when the same scope and title existed) and, for a new
// finding, an opened event. Admins, operators and owners may enter them;
// an owner may update an existing one only when it is theirs.
func (s *Findings) CreateManual(ctx context.Context, a Actor, m Manual) (ManualResult, error) {
	switch a.Role {
	case roleAdmin, store.RoleOperator, roleOwner:
	default:
		return ManualResult{}, fmt.Errorf("%w: role %s may not enter findings", ErrForbidden, a.Role)
	}
	f, err := m.finding()
	if err != nil {
		return ManualResult{}, err
	}
	s.enrich(&f)
	at := s.clock.Now().UTC().Truncate(time.Microsecond)
	// The policy in force now; before the daemon recorded one, the
	// defaults.
	pol, err := s.st.SLAPolicyAt(ctx, at)
	if errors.Is(err, store.ErrNotFound) {
		pol, err = store.SLAPolicy{SLA: store.DefaultSLA()}, nil
	}
	if err != nil {
		return ManualResult{}, err
	}
	var out ManualResult
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		files := make([]store.EvidenceFile, len(m.Evidence))
		for i, e := range m.Evidence {
			if _, err := s.st.CommitArtifact(ctx, tx, e.Staged, "evidence"); err != nil {
				return err
			}
			files[i] = store.EvidenceFile{SHA256: e.Staged.SHA256, FileName: e.FileName, ContentType: e.ContentType, Size: e.Staged.Size}
		}
		res, err := store.CreateManualFinding(ctx, tx, f, files, a.Name, at, pol.SLA)
		if err != nil {
			return err
		}
		out = ManualResult{ID: res.Finding.ID, Created: res.Finding.Inserted, RunID: res.RunID}
		if !out.Created && a.Role == roleOwner {
			// Checked in the transaction that would change it.
			owns, err := s.st.OwnsFinding(ctx, a.User, out.ID)
			if err != nil {
				return err
			}
			if !owns {
				return fmt.Errorf("%w: %s owns none of the controls finding %d is linked to", ErrForbidden, a.User, out.ID)
			}
		}
		action, typ := "finding.updated", ""
		var before any
		if out.Created {
			action, typ = "finding."+bus.TypeOpened, bus.TypeOpened
		} else {
			before = map[string]string{"status": string(res.Finding.PrevStatus)}
		}
		controls := make([]string, 0, len(f.Controls))
		for _, c := range f.Controls {
			controls = append(controls, c.Version+":"+c.Control)
		}
		shas := make([]string, len(files))
		for i, e := range files {
			shas[i] = e.SHA256
		}
		if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{
			At: at, Actor: a.Name, Action: action, SubjectType: "finding", SubjectID: strconv.FormatInt(out.ID, 10), RunID: res.RunID,
			Before: before, After: map[string]any{
				"status": string(res.Finding.Status), "tool": store.ToolManual, "title": f.Title, "scope": f.Scope,
				"severity": f.Severity.String(), "controls": controls, "evidence": shas,
			},
		}}); err != nil {
			return err
		}
		if typ == "" {
			return nil
		}
		v, err := bus.EncodeID(bus.NewID(), typ, at, ManualEvent{
			FindingID: out.ID, Scope: f.Scope, Fingerprint: f.Fingerprint, Tool: store.ToolManual, Rule: f.RuleID,
			Title: f.Title, Severity: f.Severity.String(), To: string(res.Finding.Status), RunID: res.RunID,
			Controls: controls, Actor: a.Name,
		})
		if err != nil {
			return err
		}
		return store.EnqueueBatch(ctx, tx, []store.OutboxMessage{{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(out.ID, 10), Payload: v}})
	})
	if err != nil {
		return ManualResult{}, fmt.Errorf("entering manual finding: %w", err)
	}
	s.log.Info("manual finding entered", "finding_id", out.ID, "created", out.Created, "actor", a.Name)
	return out, nil
}

// ManualEvent is the opened event of a manual finding: the pipeline's
// finding event with the person who entered it.
type ManualEvent struct {
	FindingID   int64    `json:"finding_id"`
	Scope       string   `json:"scope"`
	Fingerprint string   `json:"fingerprint"`
	Tool        string   `json:"tool"`
	Rule        string   `json:"rule"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	To          string   `json:"to"`
	RunID       string   `json:"run_id,omitempty"`
	Controls    []string `json:"controls,omitempty"`
	Actor       string   `json:"actor"`
}

// maxNote bounds a note's text (the column allows as much).
const maxNote = 10000

func noteText(text string) (string, error) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return "", &DecisionError{"text", "is required"}
	case len(text) > maxNote:
		return "", &DecisionError{"text", fmt.Sprintf("longer than %d bytes", maxNote)}
	case !utf8.ValidString(text) || strings.ContainsRune(text, 0):
		return "", &DecisionError{"text", "is not valid UTF-8 text"}
	}
	return text, nil
}

// mayChange checks that the actor may change finding id: admins and
// operators may; an owner only a finding linked to a control they own.
func (s *Findings) mayChange(ctx context.Context, a Actor, id int64, what string) error {
	switch a.Role {
	case roleAdmin, store.RoleOperator:
		return nil
	case roleOwner:
		if a.User == "" {
			return fmt.Errorf("%w: an owner token that belongs to no user owns no controls", ErrForbidden)
		}
		owns, err := s.st.OwnsFinding(ctx, a.User, id)
		if err != nil {
			return err
		}
		if !owns {
			return fmt.Errorf("%w: %s owns none of the controls finding %d is linked to", ErrForbidden, a.User, id)
		}
		return nil
	}
	return fmt.Errorf("%w: role %s may not %s", ErrForbidden, a.Role, what)
}

// AddNote writes a note on finding id with its activity row.
func (s *Findings) AddNote(ctx context.Context, a Actor, id int64, text string) (store.Note, error) {
	text, err := noteText(text)
	if err != nil {
		return store.Note{}, err
	}
	if err := s.mayChange(ctx, a, id, "write notes"); err != nil {
		return store.Note{}, err
	}
	at := s.clock.Now().UTC().Truncate(time.Microsecond)
	var n store.Note
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if n, err = store.AddNote(ctx, tx, id, text, a.Name, at); err != nil {
			return err
		}
		return store.AppendActivityBatch(ctx, tx, []store.Activity{{
			At: at, Actor: a.Name, Action: "finding.note_added", SubjectType: "finding", SubjectID: strconv.FormatInt(id, 10),
			After: map[string]any{"note": n.ID, "version": n.Version, "text": n.Text},
		}})
	})
	if err != nil {
		return store.Note{}, fmt.Errorf("adding a note to finding %d: %w", id, err)
	}
	return n, nil
}

// EditNote replaces a note's text, keeping its earlier versions, with an
// activity row holding the text before and after. Only the note's author
// and admins may edit it.
func (s *Findings) EditNote(ctx context.Context, a Actor, id, noteID int64, text string) (store.Note, error) {
	text, err := noteText(text)
	if err != nil {
		return store.Note{}, err
	}
	cur, err := s.st.GetNote(ctx, id, noteID)
	if err != nil {
		return store.Note{}, err
	}
	if a.Role != roleAdmin && cur.CreatedBy != a.Name {
		return store.Note{}, fmt.Errorf("%w: only %s (who wrote note %d) or an admin may edit it", ErrForbidden, cur.CreatedBy, noteID)
	}
	at := s.clock.Now().UTC().Truncate(time.Microsecond)
	var after store.Note
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		before, aft, err := store.EditNote(ctx, tx, id, noteID, text, a.Name, at)
		if err != nil {
			return err
		}
		after = aft
		if before.Text == aft.Text {
			return nil
		}
		return store.AppendActivityBatch(ctx, tx, []store.Activity{{
			At: at, Actor: a.Name, Action: "finding.note_edited", SubjectType: "finding", SubjectID: strconv.FormatInt(id, 10),
			Before: map[string]any{"note": noteID, "version": before.Version, "text": before.Text},
			After:  map[string]any{"note": noteID, "version": aft.Version, "text": aft.Text},
		}})
	})
	if err != nil {
		return store.Note{}, fmt.Errorf("editing note %d of finding %d: %w", noteID, id, err)
	}
	return after, nil
}

// RequestRetest asks for a retest of finding id (admins, operators, and
// owners of the finding): a pending retest of the check that found it,
// with an activity row and a retest-requested event. A retest already
// pending is returned as it is (created false) and nothing is written.
func (s *Findings) RequestRetest(ctx context.Context, a Actor, id int64) (store.Retest, bool, error) {
	if err := s.mayChange(ctx, a, id, "request retests"); err != nil {
		return store.Retest{}, false, err
	}
	at := s.clock.Now().UTC().Truncate(time.Microsecond)
	var rt store.Retest
	var created bool
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		rt, created, err = store.RequestRetest(ctx, tx, id, a.Name, at)
		if err != nil || !created {
			return err
		}
		if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{
			At: at, Actor: a.Name, Action: "finding.retest_requested", SubjectType: "finding", SubjectID: strconv.FormatInt(id, 10),
			After: map[string]any{"retest": rt.ID, "result": rt.Result, "rule": rt.Rule, "target": rt.Target, "schedule": rt.Schedule},
		}}); err != nil {
			return err
		}
		v, err := bus.EncodeID(bus.NewID(), bus.TypeRetestRequested, at, map[string]any{
			"retest_id": rt.ID, "finding_id": id, "rule": rt.Rule, "target": rt.Target, "schedule": rt.Schedule,
			"result": rt.Result, "requested_by": a.Name,
		})
		if err != nil {
			return err
		}
		return store.EnqueueBatch(ctx, tx, []store.OutboxMessage{{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(id, 10), Payload: v}})
	})
	if err != nil {
		return store.Retest{}, false, fmt.Errorf("requesting a retest of finding %d: %w", id, err)
	}
	if created {
		s.log.Info("retest requested", "finding_id", id, "retest_id", rt.ID, "actor", a.Name)
	}
	return rt, created, nil
}
