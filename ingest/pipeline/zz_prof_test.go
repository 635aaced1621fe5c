package pipeline_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestZZProf(t *testing.T) {
	st, _ := storetest.New(t)
	ctx := t.Context()
	m, _ := mapping.Default(mapping.WithAllVersions())
	var fs []finding.Finding
	data := genSARIF("synthscan", seq(0, 10000))
	ingest.ParseReader(ctx, bytes.NewReader(data), ingest.FormatSARIF, parse.Options{File: "x", Kind: finding.KindCode, Scope: "s"},
		parse.Sink{Finding: func(f *finding.Finding) error { scoring.Apply(f, nil); m.Apply(f); fs = append(fs, *f); return nil }})
	t.Logf("controls per finding: %d", len(fs[0].Controls))
	runID := busNewID()
	st.InTx(ctx, func(tx pgx.Tx) error {
		sha, _ := st.PutArtifact(ctx, tx, bytes.NewReader(data), "sarif")
		return store.CreateRun(ctx, tx, store.NewRun{ID: runID, Kind: "code", Scope: "s", Tool: "sarif", Format: "sarif", ArtifactSHA: sha})
	})
	tm := map[string]time.Duration{}
	step := func(name string, start time.Time) { tm[name] += time.Since(start) }
	for i := 0; i < len(fs); i += 500 {
		batch := fs[i : i+500]
		err := st.InTx(ctx, func(tx pgx.Tx) error {
			s := time.Now()
			store.StageFindings(ctx, tx, batch, time.Now())
			step("stage", s)
			s = time.Now()
			rows, err := tx.Query(ctx, `
		WITH batch AS (
			SELECT DISTINCT ON (scope, fingerprint) *
			FROM findings_stage
			ORDER BY scope, fingerprint, seen_at DESC
		), prev AS (
			SELECT f.scope, f.fingerprint, f.status
			FROM findings f JOIN batch b USING (scope, fingerprint)
		), up AS (
			INSERT INTO findings AS f (
				scope, fingerprint, kind, tool, tool_version, rule_id, rule_name, title, message, description,
				location, location_uri, cwe, cve, tags, cvss_version, cvss_vector, cvss_base, cvss_temporal,
				cvss_environmental, severity, severity_source, suppressed, suppression_justification,
				first_seen, last_seen, last_run_id, data, status)
			SELECT
				scope, fingerprint, kind, tool, tool_version, rule_id, rule_name, title, message, description,
				location, location_uri, cwe, cve, tags, cvss_version, cvss_vector, cvss_base, cvss_temporal,
				cvss_environmental, severity, severity_source, suppressed, suppression_justification,
				seen_at, seen_at, $1::uuid, data, 'open'
			FROM batch
			ON CONFLICT (scope, fingerprint) DO UPDATE SET
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
				updated_at = now()
			RETURNING f.id, f.scope, f.fingerprint, f.status
		)
		SELECT up.id, up.scope, up.fingerprint, up.status, coalesce(prev.status, '')
		FROM up LEFT JOIN prev USING (scope, fingerprint)
		ORDER BY up.id`, runID)
			if err != nil {
				return err
			}
			var ids []int64
			for rows.Next() {
				var id int64
				var a, b, c string
				rows.Scan(&id, &a, &b, &c, new(string))
				ids = append(ids, id)
			}
			rows.Close()
			step("insert", s)
			s = time.Now()
			if _, err := tx.Exec(ctx, `
		INSERT INTO observations (run_id, finding_id, seen_at)
		SELECT $1::uuid, f.id, max(s.seen_at)
		FROM findings_stage s JOIN findings f USING (scope, fingerprint)
		GROUP BY f.id
		ON CONFLICT (run_id, finding_id) DO NOTHING`, runID); err != nil {
				return err
			}
			step("obs", s)
			s = time.Now()
			if _, err := tx.Exec(ctx, `
		INSERT INTO control_links (finding_id, ccm_version, control_id, rule_id, reason)
		SELECT DISTINCT ON (f.id, c->>'version', c->>'id', c->>'rule')
			f.id, c->>'version', c->>'id', c->>'rule', coalesce(c->>'reason', '')
		FROM findings_stage s
		JOIN findings f USING (scope, fingerprint)
		CROSS JOIN LATERAL jsonb_array_elements(coalesce(s.controls, '[]')) AS c
		ON CONFLICT (finding_id, ccm_version, control_id, rule_id) DO UPDATE SET reason = EXCLUDED.reason`); err != nil {
				return err
			}
			step("links", s)
			s = time.Now()
			store.SetSLA(ctx, tx, ids, store.DefaultSLA())
			step("sla", s)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Log(tm)
	_ = context.Background
}

func busNewID() string { return "0190a000-0000-7000-8000-000000000001" }
