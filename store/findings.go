package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/starpipe/starpipe/finding"
)

// StageTable is the temporary table StageFindings fills.
const StageTable = "findings_stage"

// stageColumns are the columns of StageTable in COPY order. They mirror
// findings' own columns minus what the database decides (id, status,
// lifecycle timestamps), plus seen_at. The mapped controls travel inside
// data, where the control_links view reads them; mapping_key identifies
// them (see mappingKey).
var stageColumns = []string{
	"scope", "fingerprint", "kind", "tool", "tool_version", "rule_id", "rule_name",
	"title", "message", "description", "location", "location_uri", "cwe", "cve", "tags",
	"cvss_version", "cvss_vector", "cvss_base", "cvss_temporal", "cvss_environmental",
	"severity", "severity_source", "suppressed", "suppression_justification",
	"seen_at", "data", "mapping_key",
}

// StageFindings creates the temporary table findings_stage in tx (dropped
// at commit, emptied if it already exists in this transaction) and COPYs
// fs into it: the first half of a bulk upsert, whose second half is an
// INSERT INTO findings ... SELECT FROM findings_stage ON CONFLICT (scope,
// kind, fingerprint) DO UPDATE. COPY is used because it is an order of magnitude
// faster than row-by-row INSERTs for batches of thousands. seenAt is used
// for findings whose SeenAt is zero. It returns the number of rows staged.
func StageFindings(ctx context.Context, t *Tx, fs []finding.Finding, seenAt time.Time) (int64, error) {
	tx := t.tx
	_, err := tx.Exec(ctx, `
		CREATE TEMP TABLE IF NOT EXISTS findings_stage (
			scope text NOT NULL,
			fingerprint text NOT NULL,
			kind text NOT NULL,
			tool text NOT NULL,
			tool_version text,
			rule_id text NOT NULL,
			rule_name text,
			title text NOT NULL,
			message text,
			description text,
			location jsonb,
			location_uri text,
			cwe int[],
			cve text[],
			tags text[],
			cvss_version text,
			cvss_vector text,
			cvss_base numeric(3,1),
			cvss_temporal numeric(3,1),
			cvss_environmental numeric(3,1),
			severity text NOT NULL,
			severity_source text,
			suppressed bool NOT NULL,
			suppression_justification text,
			seen_at timestamptz NOT NULL,
			data jsonb NOT NULL,
			mapping_key bytea
		) ON COMMIT DROP;
		TRUNCATE findings_stage`)
	if err != nil {
		return 0, fmt.Errorf("creating findings staging table: %w", err)
	}
	rows := make([][]any, 0, len(fs))
	for i := range fs {
		row, err := stageRow(&fs[i], seenAt)
		if err != nil {
			return 0, fmt.Errorf("staging finding %s/%s: %w", fs[i].Scope, fs[i].Fingerprint, err)
		}
		rows = append(rows, row)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{StageTable}, stageColumns, pgx.CopyFromRows(rows))
	if err != nil {
		return 0, fmt.Errorf("copying %d findings into staging table: %w", len(fs), err)
	}
	return n, nil
}

func stageRow(f *finding.Finding, seenAt time.Time) ([]any, error) {
	loc, err := json.Marshal(f.Location)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	key, err := mappingKey(f)
	if err != nil {
		return nil, err
	}
	seen := f.SeenAt
	if seen.IsZero() {
		seen = seenAt
	}
	var cvssVersion, cvssVector any
	var base, temporal, env any
	if f.CVSS != nil {
		cvssVersion, cvssVector = f.CVSS.Version, f.CVSS.Vector
		base, temporal, env = f.CVSS.Base, f.CVSS.Temporal, f.CVSS.Environmental
	}
	cwe := make([]int32, len(f.CWE))
	for i, c := range f.CWE {
		cwe[i] = int32(c)
	}
	return []any{
		f.Scope, f.Fingerprint, string(f.Kind), f.Tool, nullString(f.ToolVersion), f.RuleID, nullString(f.RuleName),
		f.Title, nullString(f.Message), nullString(f.Description), json.RawMessage(loc), nullString(f.Location.URI),
		cwe, nonNil(f.CVE), nonNil(f.Tags),
		cvssVersion, cvssVector, base, temporal, env,
		f.Severity.String(), nullString(string(f.SeveritySource)), f.Suppressed, nullString(f.Justification),
		seen, json.RawMessage(data), key,
	}, nil
}

// mappingKeyFormat versions the layout mappingKey hashes.
const mappingKeyFormat = "starpipe-control-links/1\n"

// mappingKey identifies a finding's control links together with the rules
// that made them: the SHA-256 of the rules hash and the links' JSON. It is
// stored with the finding and with each sighting (observations), and a
// finding's links are kept under it in control_mappings once an update
// replaces them, so that a sighting always reads the links it was given.
// A finding nothing mapped has no key.
func mappingKey(f *finding.Finding) ([]byte, error) {
	if f.MappingRules == "" && len(f.Controls) == 0 {
		return nil, nil
	}
	links := f.Controls
	if links == nil {
		links = []finding.ControlLink{}
	}
	b, err := json.Marshal(links)
	if err != nil {
		return nil, fmt.Errorf("encoding control links: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(mappingKeyFormat))
	h.Write([]byte(f.MappingRules))
	h.Write([]byte{'\n'})
	h.Write(b)
	return h.Sum(nil), nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}

// nonNil keeps empty lists as '{}' rather than NULL, so that queries such
// as 'CVE-...' = ANY(cve) need no NULL handling.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// UpsertResult says what UpsertFindingsBatch did to one finding.
type UpsertResult struct {
	ID          int64
	Scope       string
	Fingerprint string
	Inserted    bool           // first time seen
	PrevStatus  finding.Status // status before this batch; "" when inserted
	Status      finding.Status // status after
}

// UpsertFindingsBatch merges a batch into findings inside tx, on behalf of
// scan run runID (which must exist): a new (scope, kind, fingerprint) is inserted
// as open; a known one gets its descriptive columns, data, last_seen and
// last_run_id refreshed. Its status is left to Reconcile, which runs only
// for a complete, successful run: a failed run must reopen nothing. It
// records an observation per finding for the run; the mapped control links
// travel in the finding's data (the control_links view reads them there).
// Duplicates within the batch collapse to the last seen. Activity-log
// entries, outbox events and SLA dates are the caller's, decided from the
// results.
func UpsertFindingsBatch(ctx context.Context, t *Tx, runID string, fs []finding.Finding, seenAt time.Time) ([]UpsertResult, error) {
	return UpsertFindings(ctx, t, runID, fs, seenAt, nil)
}

// newFindingColumns are the findings columns UpsertFindings COPYs for a new
// finding: the staging columns up to suppression_justification, then the
// lifecycle columns the database would otherwise default.
var newFindingColumns = append(append([]string{}, stageColumns[:24]...),
	"first_seen", "last_seen", "last_run_id", "data", "status", "sla_due", "mapping_key")

// UpsertFindings is UpsertFindingsBatch that, given sla, also sets the SLA
// due date of the findings it inserts (SetSLA is then not needed).
//
// New findings, the bulk of a first scan, are written with COPY, as are
// their observations: one round trip each and no staging. Findings already known take the staged INSERT ... ON CONFLICT
// path. A concurrent transaction inserting the same (scope, kind, fingerprint)
// between the lookup and the COPY makes the COPY fail with a unique
// violation; the caller's retry then finds the row and updates it.
func UpsertFindings(ctx context.Context, t *Tx, runID string, fs []finding.Finding, seenAt time.Time, sla *SLA) ([]UpsertResult, error) {
	tx := t.tx
	if len(fs) == 0 {
		return nil, nil
	}
	type key struct{ scope, kind, fp string }
	type entry struct {
		f    *finding.Finding
		seen time.Time
		key  any // mapping_key, set when the row is built
	}
	seenOf := func(f *finding.Finding) time.Time {
		if f.SeenAt.IsZero() {
			return seenAt
		}
		return f.SeenAt
	}
	// Duplicates collapse to the last seen.
	byKey := make(map[key]int, len(fs))
	var batch []entry
	for i := range fs {
		f := &fs[i]
		k := key{f.Scope, string(f.Kind), f.Fingerprint}
		j, ok := byKey[k]
		if !ok {
			j = len(batch)
			byKey[k] = j
			batch = append(batch, entry{f: f, seen: seenOf(f)})
		} else if s := seenOf(f); !s.Before(batch[j].seen) {
			batch[j].f, batch[j].seen = f, s
		}
	}
	lookup := func(keys []key) (map[key][2]any, error) {
		scopes := make([]string, len(keys))
		kinds := make([]string, len(keys))
		fps := make([]string, len(keys))
		for i, k := range keys {
			scopes[i], kinds[i], fps[i] = k.scope, k.kind, k.fp
		}
		rows, err := tx.Query(ctx, `
			SELECT f.id, f.scope, f.kind, f.fingerprint, f.status
			FROM unnest($1::text[], $2::text[], $3::text[]) AS k(scope, kind, fingerprint)
			JOIN findings f ON f.scope = k.scope AND f.kind = k.kind AND f.fingerprint = k.fingerprint`, scopes, kinds, fps)
		if err != nil {
			return nil, err
		}
		out := make(map[key][2]any, len(keys))
		var id int64
		var scope, kind, fp, status string
		_, err = pgx.ForEachRow(rows, []any{&id, &scope, &kind, &fp, &status}, func() error {
			out[key{scope, kind, fp}] = [2]any{id, status}
			return nil
		})
		return out, err
	}
	keys := make([]key, len(batch))
	for i, e := range batch {
		keys[i] = key{e.f.Scope, string(e.f.Kind), e.f.Fingerprint}
	}
	known, err := lookup(keys)
	if err != nil {
		return nil, fmt.Errorf("looking up %d findings: %w", len(keys), err)
	}
	var res []UpsertResult
	var old []finding.Finding
	var fresh []entry
	for _, e := range batch {
		if _, ok := known[key{e.f.Scope, string(e.f.Kind), e.f.Fingerprint}]; ok {
			// Known findings go to the staged path.
			continue
		}
		fresh = append(fresh, e)
	}
	if len(fresh) < len(batch) {
		for i := range fs {
			if _, ok := known[key{fs[i].Scope, string(fs[i].Kind), fs[i].Fingerprint}]; ok {
				old = append(old, fs[i])
			}
		}
		r, err := upsertStaged(ctx, tx, runID, old, seenAt)
		if err != nil {
			return nil, err
		}
		res = append(res, r...)
	}
	if len(fresh) > 0 {
		var run pgtype.UUID
		if err := run.Scan(runID); err != nil {
			return nil, fmt.Errorf("run id %q: %w", runID, err)
		}
		rows := make([][]any, len(fresh))
		for i, e := range fresh {
			row, err := stageRow(e.f, seenAt)
			if err != nil {
				return nil, fmt.Errorf("encoding finding %s/%s: %w", e.f.Scope, e.f.Fingerprint, err)
			}
			var due any
			if sla != nil {
				due = sla.due(e.f.Severity.String(), e.seen)
			}
			rows[i] = append(row[:24:24], e.seen, e.seen, run, row[25], string(finding.StatusOpen), due, row[26])
			// The sighting is recorded under the key just written.
			fresh[i].key = row[26]
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"findings"}, newFindingColumns, pgx.CopyFromRows(rows)); err != nil {
			return nil, fmt.Errorf("inserting %d new findings: %w", len(rows), err)
		}
		freshKeys := make([]key, len(fresh))
		for i, e := range fresh {
			freshKeys[i] = key{e.f.Scope, string(e.f.Kind), e.f.Fingerprint}
		}
		ids, err := lookup(freshKeys)
		if err != nil || len(ids) != len(fresh) {
			return nil, fmt.Errorf("reading back %d new findings (found %d): %w", len(fresh), len(ids), err)
		}
		obs := make([][]any, len(fresh))
		for i, e := range fresh {
			k := freshKeys[i]
			id := ids[k][0].(int64)
			res = append(res, UpsertResult{ID: id, Scope: k.scope, Fingerprint: k.fp, Inserted: true, Status: finding.StatusOpen})
			obs[i] = []any{run, id, e.seen, e.key}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"observations"}, []string{"run_id", "finding_id", "seen_at", "mapping_key"}, pgx.CopyFromRows(obs)); err != nil {
			return nil, fmt.Errorf("recording observations of run %s: %w", runID, err)
		}
	}
	slices.SortFunc(res, func(a, b UpsertResult) int { return cmp.Compare(a.ID, b.ID) })
	return res, nil
}

// upsertStaged is the bulk upsert through the staging table, for findings
// that may already exist.
func upsertStaged(ctx context.Context, tx pgx.Tx, runID string, fs []finding.Finding, seenAt time.Time) ([]UpsertResult, error) {
	if _, err := StageFindings(ctx, &Tx{tx: tx}, fs, seenAt); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `
		WITH batch AS (
			SELECT DISTINCT ON (scope, kind, fingerprint) *
			FROM findings_stage
			ORDER BY scope, kind, fingerprint, seen_at DESC
		), prev AS (
			SELECT f.scope, f.kind, f.fingerprint, f.status
			FROM findings f JOIN batch b USING (scope, kind, fingerprint)
		), up AS (
			INSERT INTO findings AS f (
				scope, fingerprint, kind, tool, tool_version, rule_id, rule_name, title, message, description,
				location, location_uri, cwe, cve, tags, cvss_version, cvss_vector, cvss_base, cvss_temporal,
				cvss_environmental, severity, severity_source, suppressed, suppression_justification,
				first_seen, last_seen, last_run_id, data, status, mapping_key)
			SELECT
				scope, fingerprint, kind, tool, tool_version, rule_id, rule_name, title, message, description,
				location, location_uri, cwe, cve, tags, cvss_version, cvss_vector, cvss_base, cvss_temporal,
				cvss_environmental, severity, severity_source, suppressed, suppression_justification,
				seen_at, seen_at, $1::uuid, data, 'open', mapping_key
			FROM batch
			ON CONFLICT (scope, kind, fingerprint) DO UPDATE SET
				kind = EXCLUDED.kind, tool = EXCLUDED.tool, tool_version = EXCLUDED.tool_version,
				rule_id = EXCLUDED.rule_id, rule_name = EXCLUDED.rule_name, title = EXCLUDED.title,
				message = EXCLUDED.message, description = EXCLUDED.description,
				location = EXCLUDED.location, location_uri = EXCLUDED.location_uri,
				cwe = EXCLUDED.cwe, cve = EXCLUDED.cve, tags = EXCLUDED.tags,
				cvss_version = EXCLUDED.cvss_version, cvss_vector = EXCLUDED.cvss_vector,
				cvss_base = EXCLUDED.cvss_base, cvss_temporal = EXCLUDED.cvss_temporal,
				cvss_environmental = EXCLUDED.cvss_environmental,
				severity = EXCLUDED.severity, severity_source = EXCLUDED.severity_source,
				suppressed = EXCLUDED.suppressed, suppression_justification = EXCLUDED.suppression_justification,
				last_seen = greatest(f.last_seen, EXCLUDED.last_seen),
				last_run_id = EXCLUDED.last_run_id,
				data = EXCLUDED.data,
				-- A new key makes the findings_keep_mapping trigger keep
				-- the links it replaces, which earlier sightings refer to.
				mapping_key = EXCLUDED.mapping_key,
				updated_at = now()
			RETURNING f.id, f.scope, f.kind, f.fingerprint, f.status
		)
		SELECT up.id, up.scope, up.fingerprint, up.status, coalesce(prev.status, '')
		FROM up LEFT JOIN prev USING (scope, kind, fingerprint)
		ORDER BY up.id`, runID)
	if err != nil {
		return nil, fmt.Errorf("upserting %d findings: %w", len(fs), err)
	}
	res, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UpsertResult, error) {
		var u UpsertResult
		err := r.Scan(&u.ID, &u.Scope, &u.Fingerprint, &u.Status, &u.PrevStatus)
		u.Inserted = u.PrevStatus == ""
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("upserting %d findings: %w", len(fs), err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO observations (run_id, finding_id, seen_at, mapping_key)
		SELECT $1::uuid, f.id, max(s.seen_at), f.mapping_key
		FROM findings_stage s JOIN findings f USING (scope, kind, fingerprint)
		GROUP BY f.id
		ON CONFLICT (run_id, finding_id) DO NOTHING`, runID); err != nil {
		return nil, fmt.Errorf("recording observations of run %s: %w", runID, err)
	}
	return res, nil
}

// RecordBatch writes the idempotency receipt of findings batch seq of a
// run and reports whether it is new. Call it first in the transaction that
// stores the batch: false means a replay whose effect is already committed,
// so the caller should roll back and just commit the offset.
func RecordBatch(ctx context.Context, t *Tx, runID string, seq, findings int) (bool, error) {
	tx := t.tx
	tag, err := tx.Exec(ctx, `
		INSERT INTO run_batches (run_id, seq, findings) VALUES ($1::uuid, $2, $3)
		ON CONFLICT (run_id, seq) DO NOTHING`, runID, seq, findings)
	if err != nil {
		return false, fmt.Errorf("recording batch %d of run %s: %w", seq, runID, err)
	}
	return tag.RowsAffected() == 1, nil
}
