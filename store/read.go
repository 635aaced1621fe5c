package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
)

// Read queries behind the API's runs, findings and controls routes. Lists
// page by keyset (never OFFSET): the cursor carries the sort key of the last
// row returned, so a page costs the same however deep it is, and rows
// inserted meanwhile never shift later pages (no duplicates, no gaps among
// the rows that existed when the listing started).

// Page sizes of the list queries.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// streamPageSize is the keyset page StreamFindings reads at a time: big
	// enough to amortise the query, small enough to bound memory.
	streamPageSize = 500
	// maxObservations caps the observations GetFinding returns (newest
	// first); a finding seen by a daily scan for years has thousands.
	maxObservations = 1000
)

// InvalidArgumentError reports a filter, limit or cursor the read queries
// reject. The API answers it with 400 naming Param.
type InvalidArgumentError struct {
	Param  string // query parameter or filter field: "status", "cursor", ...
	Value  string
	Reason string
}

func (e *InvalidArgumentError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("invalid %s %q: %s", e.Param, v, e.Reason)
}

// Run is a scan run with its progress (api.Run is its JSON shape).
type Run struct {
	ID             string
	ScheduleID     string
	Kind           string
	Scope          string
	Tool           string
	Format         string
	FileName       string            // as uploaded
	Status         finding.RunStatus // received, queued, processing, succeeded, failed, held, discarded
	Error          string
	ArtifactSHA256 string
	Counts         RunCounts
	Stats          json.RawMessage // parser statistics as the consumer recorded them (JSON), or nil
	CreatedAt      time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	CreatedBy      string
}

// RunCounts says how far a run's results got.
type RunCounts struct {
	BatchesExpected *int // nil until the run-finished message arrives
	BatchesStored   int
	FindingsSeen    int
	// Observed is the number of distinct findings the run saw, by severity
	// (every severity present). Only GetRun fills it: it costs a join.
	Observed map[string]int
}

// RunFilter selects runs for ListRuns. Empty fields do not filter.
type RunFilter struct {
	Scope      string
	Status     string
	ScheduleID string
	Limit      int    // 0 means DefaultPageSize
	Cursor     string // from the previous page's next
}

const runColumns = `r.id::text, coalesce(r.schedule_id, ''), r.kind, r.scope, r.tool, r.format, r.status,
	coalesce(r.error, ''), coalesce(r.artifact_sha256, ''), r.batches_expected, r.batches_stored,
	r.findings_seen, r.stats, r.created_at, r.started_at, r.finished_at, coalesce(r.created_by, ''),
	coalesce(r.file_name, '')`

func scanRun(row pgx.CollectableRow) (Run, error) {
	var r Run
	var stats []byte
	err := row.Scan(&r.ID, &r.ScheduleID, &r.Kind, &r.Scope, &r.Tool, &r.Format, &r.Status,
		&r.Error, &r.ArtifactSHA256, &r.Counts.BatchesExpected, &r.Counts.BatchesStored,
		&r.Counts.FindingsSeen, &stats, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.CreatedBy, &r.FileName)
	if len(stats) > 0 {
		r.Stats = json.RawMessage(stats)
	}
	return r, err
}

// GetRun returns a run with its counts, including the findings it observed
// by severity. An unknown or malformed id is ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id string) (Run, error) {
	if !isUUID(id) {
		return Run{}, fmt.Errorf("getting run %q: %w", id, ErrNotFound)
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+runColumns+` FROM scan_runs r WHERE r.id = $1::uuid`, id)
	r, err := pgx.CollectExactlyOneRow(rows, scanRun)
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("getting run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("getting run %s: %w", id, err)
	}
	r.Counts.Observed = zeroSeverities()
	rows, _ = s.pool.Query(ctx, `
		SELECT f.severity, count(*)
		FROM observations o JOIN findings f ON f.id = o.finding_id
		WHERE o.run_id = $1::uuid
		GROUP BY f.severity`, id)
	var sev string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&sev, &n}, func() error {
		r.Counts.Observed[sev] = n
		return nil
	})
	if err != nil {
		return Run{}, fmt.Errorf("counting observations of run %s: %w", id, err)
	}
	return r, nil
}

// ListRuns returns runs newest first, one page at a time; next is the
// cursor of the following page, "" on the last.
func (s *Store) ListRuns(ctx context.Context, f RunFilter) ([]Run, string, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.Scope != "" {
		w.add("r.scope = " + w.arg(f.Scope))
	}
	if f.Status != "" {
		if _, err := finding.ParseRunStatus(f.Status); err != nil {
			return nil, "", &InvalidArgumentError{Param: "status", Value: f.Status, Reason: "allowed: received, queued, processing, succeeded, failed"}
		}
		w.add("r.status = " + w.arg(f.Status))
	}
	if f.ScheduleID != "" {
		w.add("r.schedule_id = " + w.arg(f.ScheduleID))
	}
	if f.Cursor != "" {
		at, id, err := decodeRunCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		w.add("(r.created_at, r.id) < (" + w.arg(at) + ", " + w.arg(id) + "::uuid)")
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+runColumns+` FROM scan_runs r`+w.sql()+`
		ORDER BY r.created_at DESC, r.id DESC LIMIT `+strconv.Itoa(limit+1), w.args...)
	runs, err := pgx.CollectRows(rows, scanRun)
	if err != nil {
		return nil, "", fmt.Errorf("listing runs: %w", err)
	}
	next := ""
	if len(runs) > limit {
		runs = runs[:limit]
		last := runs[limit-1]
		next = encodeCursor(fmt.Sprintf("r1.%d.%s", last.CreatedAt.UnixMicro(), last.ID))
	}
	return runs, next, nil
}

// FindingRow is a finding as lists show it (api.Finding is its JSON
// shape).
type FindingRow struct {
	ID             int64
	Scope          string
	Fingerprint    string
	Kind           string
	Tool           string
	Rule           string
	RuleName       string
	Title          string
	Severity       string
	SeveritySource string
	CVSS           *CVSS // nil when the finding has no CVSS vector
	Status         finding.Status
	Suppressed     bool
	Location       finding.Location
	CWE            []int
	CVE            []string
	FirstSeen      time.Time
	LastSeen       time.Time
	SLADue         *time.Time
	ResolvedAt     *time.Time
	ResolvedByRun  *string
	// Controls are the CCM controls the finding is linked to. Each carries
	// its version because CCM v4.1 reused v4.0.13 ids for other controls.
	Controls []ControlRef
	// Review is the people's view beside status (see ReviewStates), kept
	// under the finding's identity; Owners are the users who own one of
	// its controls.
	Review string
	Owners []string
}

// CVSS is a finding's CVSS vector and scores.
type CVSS struct {
	Version       string
	Vector        string
	Base          float64
	Temporal      float64
	Environmental float64
}

// ControlRef names a CCM control: ids are only unique within a version.
// The json tags decode findingColumns' jsonb_agg, not the API's answer
// (api.ControlRef).
type ControlRef struct {
	Version string `json:"version"`
	ID      string `json:"id"`
}

// FindingFilter selects findings. Empty fields do not filter; list fields
// match any of their values; filters combine with AND.
type FindingFilter struct {
	Scope      string
	Status     []string // no status means every status
	Severity   []string
	Control    string // CCM control id: findings with a link to it
	CCMVersion string // restricts Control, and the controls listed per row, to one CCM version
	Kind       string
	Tool       string
	IDs        []int64  // only these findings
	Review     []string // review states (no decision is untriaged)
	Owner      string   // findings this user owns
	// Sort is "" (by id) or SortSLA: oldest SLA due date first, findings
	// without one last, then by id.
	Sort   string
	Limit  int    // 0 means DefaultPageSize; StreamFindings ignores it
	Cursor string // from the previous page's next
}

// SortSLA orders findings by SLA due date, oldest first: an owner's queue.
const SortSLA = "sla"

// findingScan is the flat shape of findingColumns, for RowToStructByName.
type findingScan struct {
	ID                int64            `db:"id"`
	Scope             string           `db:"scope"`
	Fingerprint       string           `db:"fingerprint"`
	Kind              string           `db:"kind"`
	Tool              string           `db:"tool"`
	Rule              string           `db:"rule_id"`
	RuleName          *string          `db:"rule_name"`
	Title             string           `db:"title"`
	Severity          string           `db:"severity"`
	SeveritySource    *string          `db:"severity_source"`
	CVSSVersion       *string          `db:"cvss_version"`
	CVSSVector        *string          `db:"cvss_vector"`
	CVSSBase          *float64         `db:"cvss_base"`
	CVSSTemporal      *float64         `db:"cvss_temporal"`
	CVSSEnvironmental *float64         `db:"cvss_environmental"`
	Status            string           `db:"status"`
	Suppressed        bool             `db:"suppressed"`
	Location          finding.Location `db:"location"`
	CWE               []int            `db:"cwe"`
	CVE               []string         `db:"cve"`
	FirstSeen         time.Time        `db:"first_seen"`
	LastSeen          time.Time        `db:"last_seen"`
	SLADue            *time.Time       `db:"sla_due"`
	ResolvedAt        *time.Time       `db:"resolved_at"`
	ResolvedByRun     *string          `db:"resolved_by_run"`
	Controls          []ControlRef     `db:"controls"`
	Review            string           `db:"review"`
	Owners            []string         `db:"owners"`
}

func (f *findingScan) row() FindingRow {
	r := FindingRow{
		ID: f.ID, Scope: f.Scope, Fingerprint: f.Fingerprint, Kind: f.Kind, Tool: f.Tool,
		Rule: f.Rule, RuleName: deref(f.RuleName), Title: f.Title, Severity: f.Severity,
		SeveritySource: deref(f.SeveritySource), Status: finding.Status(f.Status), Suppressed: f.Suppressed,
		Location: f.Location, CWE: f.CWE, CVE: f.CVE, FirstSeen: f.FirstSeen, LastSeen: f.LastSeen,
		SLADue: f.SLADue, ResolvedAt: f.ResolvedAt, ResolvedByRun: f.ResolvedByRun, Controls: f.Controls,
		Review: f.Review, Owners: f.Owners,
	}
	if r.Owners == nil {
		r.Owners = []string{}
	}
	if f.CVSSVector != nil {
		r.CVSS = &CVSS{Version: deref(f.CVSSVersion), Vector: *f.CVSSVector,
			Base: derefF(f.CVSSBase), Temporal: derefF(f.CVSSTemporal), Environmental: derefF(f.CVSSEnvironmental)}
	}
	// Empty lists rather than null, so that clients need no null checks.
	if r.CWE == nil {
		r.CWE = []int{}
	}
	if r.CVE == nil {
		r.CVE = []string{}
	}
	if r.Controls == nil {
		r.Controls = []ControlRef{}
	}
	return r
}

// findingColumns selects findingScan. $1 is the CCM version the controls
// list is restricted to (” for every version).
const findingColumns = `f.id, f.scope, f.fingerprint, f.kind, f.tool, f.rule_id, f.rule_name, f.title,
	f.severity, f.severity_source, f.cvss_version, f.cvss_vector, f.cvss_base::float8 AS cvss_base,
	f.cvss_temporal::float8 AS cvss_temporal, f.cvss_environmental::float8 AS cvss_environmental,
	f.status, f.suppressed, coalesce(f.location, '{}') AS location, f.cwe, f.cve, f.first_seen,
	f.last_seen, f.sla_due, f.resolved_at, f.resolved_by_run::text AS resolved_by_run,
	coalesce((
		SELECT jsonb_agg(jsonb_build_object('version', c.ccm_version, 'id', c.control_id)
			ORDER BY c.ccm_version, c.control_id)
		FROM (SELECT DISTINCT ccm_version, control_id FROM control_links
			WHERE finding_id = f.id AND ($1::text = '' OR ccm_version = $1)) c
	), '[]') AS controls,
	coalesce((SELECT r.state FROM finding_reviews r
		WHERE r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint), 'untriaged') AS review,
	(SELECT array_agg(fo.owner ORDER BY fo.owner) FROM finding_owners fo WHERE fo.finding_id = f.id) AS owners`

// findingQuery builds the WHERE clause of f; after, when set, keeps the
// rows that sort after it.
func findingQuery(f FindingFilter, after cursorKey) (string, []any, error) {
	w := where{args: []any{f.CCMVersion}} // $1, used by findingColumns
	if f.Scope != "" {
		w.add("f.scope = " + w.arg(f.Scope))
	}
	if len(f.Status) > 0 {
		for _, st := range f.Status {
			if _, err := finding.ParseStatus(st); err != nil {
				return "", nil, &InvalidArgumentError{Param: "status", Value: st, Reason: "allowed: open, resolved, reopened, accepted, false_positive"}
			}
		}
		w.add("f.status = ANY(" + w.arg(f.Status) + "::text[])")
	}
	if len(f.Severity) > 0 {
		for _, sv := range f.Severity {
			if !validSeverity(sv) {
				return "", nil, &InvalidArgumentError{Param: "severity", Value: sv, Reason: "allowed: " + strings.Join(severityNames(), ", ")}
			}
		}
		w.add("f.severity = ANY(" + w.arg(f.Severity) + "::text[])")
	}
	if f.Kind != "" {
		if _, err := finding.ParseScanKind(f.Kind); err != nil {
			return "", nil, &InvalidArgumentError{Param: "kind", Value: f.Kind, Reason: "allowed: external, authenticated, code"}
		}
		w.add("f.kind = " + w.arg(f.Kind))
	}
	if f.Tool != "" {
		w.add("f.tool = " + w.arg(f.Tool))
	}
	if f.Control != "" {
		// Control ids are stored upper case ("TVM-07", "I&S-03").
		w.add(`EXISTS (SELECT 1 FROM control_links cl WHERE cl.finding_id = f.id
			AND cl.control_id = ` + w.arg(strings.ToUpper(strings.TrimSpace(f.Control))) + `
			AND ($1::text = '' OR cl.ccm_version = $1))`)
	}
	if f.Sort != "" && f.Sort != SortSLA {
		return "", nil, &InvalidArgumentError{Param: "sort", Value: f.Sort, Reason: "allowed: id, " + SortSLA}
	}
	if len(f.IDs) > 0 {
		w.add("f.id = ANY(" + w.arg(f.IDs) + "::bigint[])")
	}
	if len(f.Review) > 0 {
		for _, st := range f.Review {
			if !ValidReviewState(st) {
				return "", nil, &InvalidArgumentError{Param: "review", Value: st, Reason: "allowed: " + strings.Join(ReviewStates(), ", ")}
			}
		}
		w.add(`coalesce((SELECT r.state FROM finding_reviews r
			WHERE r.scope = f.scope AND r.kind = f.kind AND r.fingerprint = f.fingerprint), 'untriaged') = ANY(` + w.arg(f.Review) + "::text[])")
	}
	if f.Owner != "" {
		w.add("EXISTS (SELECT 1 FROM finding_owners fo WHERE fo.finding_id = f.id AND fo.owner = " + w.arg(f.Owner) + ")")
	}
	switch {
	case after.id <= 0:
	case f.Sort != SortSLA:
		w.add("f.id > " + w.arg(after.id))
	case after.due == nil:
		w.add("(f.sla_due IS NULL AND f.id > " + w.arg(after.id) + ")")
	default:
		d, id := w.arg(*after.due), w.arg(after.id)
		w.add("(f.sla_due > " + d + " OR (f.sla_due = " + d + " AND f.id > " + id + ") OR f.sla_due IS NULL)")
	}
	return w.sql(), w.args, nil
}

// ListFindings returns one page of the findings f selects, in id order;
// next is the cursor of the following page, "" on the last.
func (s *Store) ListFindings(ctx context.Context, f FindingFilter) ([]FindingRow, string, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeFindingCursor(f.Cursor, f.Sort)
	if err != nil {
		return nil, "", err
	}
	items, err := s.findingPage(ctx, f, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = findingCursor(f.Sort, &items[limit-1])
	}
	return items, next, nil
}

func (s *Store) findingPage(ctx context.Context, f FindingFilter, after cursorKey, limit int) ([]FindingRow, error) {
	cond, args, err := findingQuery(f, after)
	if err != nil {
		return nil, err
	}
	order := "f.id"
	if f.Sort == SortSLA {
		order = "f.sla_due NULLS LAST, f.id"
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+findingColumns+` FROM findings f`+cond+`
		ORDER BY `+order+` LIMIT `+strconv.Itoa(limit), args...)
	scanned, err := pgx.CollectRows(rows, pgx.RowToStructByName[findingScan])
	if err != nil {
		return nil, fmt.Errorf("listing findings: %w", err)
	}
	items := make([]FindingRow, len(scanned))
	for i := range scanned {
		items[i] = scanned[i].row()
	}
	return items, nil
}

// StreamFindings calls fn for every finding f selects, in id order,
// starting after f.Cursor when set. It reads keyset pages rather than
// holding one query open, so that a slow consumer (a CSV download) neither
// holds a pooled connection nor makes memory grow. It is not a snapshot:
// findings inserted while it runs may be included. An error from fn stops
// the iteration and is returned as is.
func (s *Store) StreamFindings(ctx context.Context, f FindingFilter, fn func(FindingRow) error) error {
	after, err := decodeFindingCursor(f.Cursor, f.Sort)
	if err != nil {
		return err
	}
	for {
		items, err := s.findingPage(ctx, f, after, streamPageSize)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if len(items) < streamPageSize {
			return nil
		}
		last := items[len(items)-1]
		after = cursorKey{id: last.ID, due: last.SLADue}
	}
}

// FindingDetail is one finding with its evidence trail (api.FindingDetail
// is its JSON shape).
type FindingDetail struct {
	FindingRow
	ToolVersion              string
	Message                  string
	Description              string
	Tags                     []string
	References               []string
	Evidence                 []string
	SuppressionJustification string
	LastRunID                *string
	UpdatedAt                time.Time
	ObservationsTotal        int
	Observations             []Observation  // newest first, at most 1000
	Controls                 []ControlLink  // shadows FindingRow.Controls: the links with their reasons
	Retests                  []Retest       // newest first
	EvidenceFiles            []EvidenceFile // files a person attached, oldest first
}

// Observation is one run that saw the finding: the retest evidence, with
// the control links that sighting was given and the hash of the mapping
// rules that gave them (mapping.Mapper.RulesHash), as they were then: a
// later rules change does not alter them. RulesHash is empty and Controls
// nil for sightings recorded before links were kept per sighting.
type Observation struct {
	RunID     string        `db:"run_id"`
	SeenAt    time.Time     `db:"seen_at"`
	RulesHash string        `db:"rules_hash"`
	Controls  []ControlLink `db:"controls"`
}

// ControlLink is a finding's link to a CCM control, with the mapping rule
// that made it and why. The json tags decode observation_mappings.controls
// (jsonb written as []finding.ControlLink), not the API's answer
// (api.ControlLink).
type ControlLink struct {
	Version string `json:"version" db:"version"`
	ID      string `json:"id" db:"id"`
	Rule    string `json:"rule" db:"rule"`
	Reason  string `json:"reason" db:"reason"`
}

type findingDetailScan struct {
	findingScan
	ToolVersion   *string   `db:"tool_version"`
	Message       *string   `db:"message"`
	Description   *string   `db:"description"`
	Tags          []string  `db:"tags"`
	References    []string  `db:"refs"`
	Evidence      []string  `db:"evidence"`
	Justification *string   `db:"suppression_justification"`
	LastRunID     *string   `db:"last_run_id"`
	UpdatedAt     time.Time `db:"updated_at"`
}

// GetFinding returns a finding with its observations and control links.
// An unknown id is ErrNotFound.
func (s *Store) GetFinding(ctx context.Context, id int64) (FindingDetail, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+findingColumns+`, f.tool_version, f.message, f.description,
			f.tags, f.suppression_justification, f.last_run_id::text AS last_run_id, f.updated_at,
			coalesce(f.data->'references', '[]') AS refs, coalesce(f.data->'evidence', '[]') AS evidence
		FROM findings f WHERE f.id = $2`, "", id)
	sc, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[findingDetailScan])
	if errors.Is(err, pgx.ErrNoRows) {
		return FindingDetail{}, fmt.Errorf("getting finding %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return FindingDetail{}, fmt.Errorf("getting finding %d: %w", id, err)
	}
	d := FindingDetail{
		FindingRow: sc.row(), ToolVersion: deref(sc.ToolVersion), Message: deref(sc.Message),
		Description: deref(sc.Description), Tags: nonNil(sc.Tags), References: nonNil(sc.References),
		Evidence: nonNil(sc.Evidence), SuppressionJustification: deref(sc.Justification),
		LastRunID: sc.LastRunID, UpdatedAt: sc.UpdatedAt,
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM observations WHERE finding_id = $1`, id).Scan(&d.ObservationsTotal); err != nil {
		return FindingDetail{}, fmt.Errorf("counting observations of finding %d: %w", id, err)
	}
	rows, _ = s.pool.Query(ctx, `
		SELECT run_id::text AS run_id, seen_at, coalesce(rules_hash, '') AS rules_hash, controls
		FROM observation_mappings WHERE finding_id = $1
		ORDER BY seen_at DESC, run_id LIMIT `+strconv.Itoa(maxObservations), id)
	if d.Observations, err = pgx.CollectRows(rows, pgx.RowToStructByName[Observation]); err != nil {
		return FindingDetail{}, fmt.Errorf("listing observations of finding %d: %w", id, err)
	}
	rows, _ = s.pool.Query(ctx, `
		SELECT ccm_version AS version, control_id AS id, rule_id AS rule, reason
		FROM control_links WHERE finding_id = $1
		ORDER BY ccm_version, control_id, rule_id`, id)
	if d.Controls, err = pgx.CollectRows(rows, pgx.RowToStructByName[ControlLink]); err != nil {
		return FindingDetail{}, fmt.Errorf("listing control links of finding %d: %w", id, err)
	}
	if d.Retests, err = s.ListRetests(ctx, id); err != nil {
		return FindingDetail{}, err
	}
	if d.EvidenceFiles, err = s.ListEvidence(ctx, id); err != nil {
		return FindingDetail{}, err
	}
	return d, nil
}

// ControlCount is how many findings are linked to one CCM control.
type ControlCount struct {
	Version string
	ID      string
	// Open counts active findings (open or reopened) by severity; every
	// severity is present.
	Open   map[string]int
	Total  int // active findings: the sum of Open
	Linked int // findings linked in any status
}

// ControlSummary counts, per control that any finding is linked to, the
// active findings by severity. ccmVersion "" means every version. Controls
// come sorted by version and id.
func (s *Store) ControlSummary(ctx context.Context, ccmVersion string) ([]ControlCount, error) {
	// count(DISTINCT) because several rules may link a finding to the same
	// control.
	rows, _ := s.pool.Query(ctx, `
		SELECT cl.ccm_version, cl.control_id, f.severity,
			count(DISTINCT f.id) FILTER (WHERE f.status IN ('open', 'reopened')),
			count(DISTINCT f.id)
		FROM control_links cl JOIN findings f ON f.id = cl.finding_id
		WHERE $1::text = '' OR cl.ccm_version = $1
		GROUP BY 1, 2, 3
		ORDER BY 1, 2`, ccmVersion)
	var out []ControlCount
	var version, id, sev string
	var active, linked int
	_, err := pgx.ForEachRow(rows, []any{&version, &id, &sev, &active, &linked}, func() error {
		if n := len(out); n == 0 || out[n-1].Version != version || out[n-1].ID != id {
			out = append(out, ControlCount{Version: version, ID: id, Open: zeroSeverities()})
		}
		c := &out[len(out)-1]
		c.Open[sev] += active
		c.Total += active
		c.Linked += linked
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting findings per control: %w", err)
	}
	return out, nil
}

// where accumulates AND-ed conditions and their positional arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, &InvalidArgumentError{Param: "limit", Value: strconv.Itoa(n), Reason: fmt.Sprintf("must be 1 to %d", MaxPageSize)}
	}
	return n, nil
}

// Cursors are opaque to clients: base64url of a versioned, typed key, so
// that a runs cursor is rejected by findings and the key can change later.

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// cursorKey is the sort key of the last finding of a page: its id, and its
// SLA due date when sorted by SLA.
type cursorKey struct {
	id  int64
	due *time.Time
}

func findingCursor(sort string, last *FindingRow) string {
	if sort != SortSLA {
		return encodeCursor("f1." + strconv.FormatInt(last.ID, 10))
	}
	due := "-"
	if last.SLADue != nil {
		due = strconv.FormatInt(last.SLADue.UnixMicro(), 10)
	}
	return encodeCursor("s1." + due + "." + strconv.FormatInt(last.ID, 10))
}

func badCursor(c string) error {
	return &InvalidArgumentError{Param: "cursor", Value: c, Reason: "not a cursor this listing returned"}
}

func decodeFindingCursor(c, sort string) (cursorKey, error) {
	if c == "" {
		return cursorKey{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return cursorKey{}, badCursor(c)
	}
	var k cursorKey
	rest, ok := strings.CutPrefix(string(b), "f1.")
	if sort == SortSLA {
		// The order is part of the cursor: a cursor of one order resumes
		// nothing in another.
		var due string
		if rest, ok = strings.CutPrefix(string(b), "s1."); ok {
			due, rest, ok = strings.Cut(rest, ".")
		}
		if ok && due != "-" {
			us, err := strconv.ParseInt(due, 10, 64)
			if err != nil {
				return cursorKey{}, badCursor(c)
			}
			t := time.UnixMicro(us).UTC()
			k.due = &t
		}
	}
	if !ok {
		return cursorKey{}, badCursor(c)
	}
	if k.id, err = strconv.ParseInt(rest, 10, 64); err != nil || k.id <= 0 {
		return cursorKey{}, badCursor(c)
	}
	return k, nil
}

func decodeRunCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", badCursor(c)
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 || parts[0] != "r1" || !isUUID(parts[2]) {
		return time.Time{}, "", badCursor(c)
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}, "", badCursor(c)
	}
	return time.UnixMicro(us).UTC(), parts[2], nil
}

// isUUID checks the textual form PostgreSQL prints, so that a malformed id
// is a not-found rather than a query error.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

func severityNames() []string {
	out := make([]string, 0, 5)
	for _, s := range finding.Severities() {
		out = append(out, s.String())
	}
	return out
}

func validSeverity(s string) bool { return slices.Contains(severityNames(), s) }

func zeroSeverities() map[string]int {
	m := make(map[string]int, 5)
	for _, s := range severityNames() {
		m[s] = 0
	}
	return m
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefF(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
