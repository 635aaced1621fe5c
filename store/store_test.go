package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// tables are the first schema's tables (control_links became a view over
// findings in 00005; the up/down/up test checks it in both forms).
var tables = []string{"artifacts", "scan_runs", "findings", "observations",
	"run_batches", "outbox", "activity_log", "api_tokens", "ledger_runs", "control_mappings"}

func countTables(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)`, tables).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// relKind is pg_class.relkind of a public relation: "r" table, "v" view.
func relKind(t *testing.T, url, name string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var kind string
	if err := conn.QueryRow(t.Context(), `SELECT relkind::text FROM pg_class WHERE relname = $1 AND relnamespace = 'public'::regnamespace`, name).Scan(&kind); err != nil {
		t.Fatalf("relkind of %s: %v", name, err)
	}
	return kind
}

func TestMigrationsUpDownUp(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyDatabase(t)
	ctx := t.Context()
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if n := countTables(t, url); n != len(tables) {
		t.Fatalf("after up: %d of %d tables", n, len(tables))
	}
	st, err := store.MigrationStatus(ctx, url)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if len(st) == 0 || st[0].Name != "00001_init.sql" || !st[0].Applied {
		t.Fatalf("status = %+v", st)
	}
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate again (no-op): %v", err)
	}
	if kind := relKind(t, url, "control_links"); kind != "v" {
		t.Fatalf("control_links after up is relkind %q, want a view", kind)
	}
	if err := store.MigrateDown(ctx, url, 4); err != nil {
		t.Fatalf("MigrateDown to 4: %v", err)
	}
	if kind := relKind(t, url, "control_links"); kind != "r" {
		t.Fatalf("control_links after down to 4 is relkind %q, want a table", kind)
	}
	if err := store.MigrateDown(ctx, url, 0); err != nil {
		t.Fatalf("MigrateDown to 0: %v", err)
	}
	if n := countTables(t, url); n != 0 {
		t.Fatalf("after down: %d tables left", n)
	}
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatalf("Migrate after down: %v", err)
	}
	if n := countTables(t, url); n != len(tables) {
		t.Fatalf("after up again: %d of %d tables", n, len(tables))
	}
}

// TestMigrateConcurrently runs two migrators at once on an empty database:
// the advisory lock must serialise them.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyDatabase(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- store.Migrate(t.Context(), url) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if n := countTables(t, url); n != len(tables) {
		t.Fatalf("%d of %d tables", n, len(tables))
	}
}

func TestActivityLogAppendOnly(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	id, err := s.AppendActivity(ctx, nil, store.Activity{
		Actor: "alice", Action: "finding.accepted", SubjectType: "finding", SubjectID: "1",
		Before: map[string]string{"status": "open"}, After: map[string]string{"status": "accepted"},
	})
	if err != nil {
		t.Fatalf("AppendActivity: %v", err)
	}
	// Inside a caller's transaction too.
	err = s.InTx(ctx, func(tx *store.Tx) error {
		_, err := s.AppendActivity(ctx, tx, store.Activity{Actor: "system", Action: "x", SubjectType: "run",
			RunID: "6f1c8c1e-8a51-4f6e-9d6b-0c6f9f4f3a11", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
		return err
	})
	if err != nil {
		t.Fatalf("AppendActivity in tx: %v", err)
	}
	var after string
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT after->>'status' FROM activity_log WHERE id = $1`, id).Scan(&after); err != nil || after != "accepted" {
		t.Fatalf("read back: %q, %v", after, err)
	}
	for _, sql := range []string{
		`UPDATE activity_log SET actor = 'mallory'`,
		`DELETE FROM activity_log`,
		`TRUNCATE activity_log`,
	} {
		_, err := storetest.SQL(t, s).Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "activity_log is append-only") {
			t.Errorf("%s: got %v, want 'activity_log is append-only'", sql, err)
		}
	}
	var n int
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT count(*) FROM activity_log`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after attempts = %d, %v; want 2", n, err)
	}
}

func TestFindingsUniqueScopeKindFingerprint(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	insert := func(scope, kind string) error {
		_, err := storetest.SQL(t, s).Exec(ctx, `
			INSERT INTO findings (scope, fingerprint, kind, tool, rule_id, title, severity, first_seen, last_seen, data)
			VALUES ($1, 'fp1', $2, 'nuclei', 'r1', 't', 'high', now(), now(), '{}')`, scope, kind)
		return err
	}
	if err := insert("https://a", "external"); err != nil {
		t.Fatal(err)
	}
	if err := insert("https://b", "external"); err != nil {
		t.Fatalf("same fingerprint in another scope: %v", err)
	}
	if err := insert("https://a", "authenticated"); err != nil {
		t.Fatalf("same fingerprint and scope seen by another kind of scan: %v", err)
	}
	var pe *pgconn.PgError
	if err := insert("https://a", "external"); !errors.As(err, &pe) || pe.Code != "23505" {
		t.Fatalf("duplicate (scope, kind, fingerprint): got %v, want unique violation", err)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	tok, err := s.CreateToken(ctx, "ci", store.RoleIngest)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if !strings.HasPrefix(tok, "sp_") || len(tok) != 3+43 {
		t.Fatalf("token %q: want sp_ + 43 base64url characters", tok)
	}
	if ok, err := s.TokenExists(ctx, "ci"); err != nil || !ok {
		t.Fatalf("TokenExists(ci) = %v, %v", ok, err)
	}
	if ok, err := s.TokenExists(ctx, "nobody"); err != nil || ok {
		t.Fatalf("TokenExists(nobody) = %v, %v", ok, err)
	}
	if _, err := s.CreateToken(ctx, "ci", store.RoleAdmin); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: got %v, want ErrConflict", err)
	}
	if _, err := s.CreateToken(ctx, "x", "root"); err == nil {
		t.Fatal("invalid role accepted")
	}

	p, err := s.Authenticate(ctx, tok)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Name != "ci" || p.Role != store.RoleIngest || len(p.ID) != 36 {
		t.Fatalf("principal = %+v", p)
	}
	var used *time.Time
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT last_used_at FROM api_tokens WHERE name = 'ci'`).Scan(&used); err != nil || used == nil {
		t.Fatalf("last_used_at = %v, %v", used, err)
	}

	for _, bad := range []string{"", "sp_", tok + "x", strings.TrimPrefix(tok, "sp_"), "sp_" + strings.Repeat("A", 43)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, store.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q): got %v, want ErrUnauthenticated", bad, err)
		}
	}
	if err := s.RevokeToken(ctx, "ci", "test"); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, store.ErrUnauthenticated) {
		t.Fatalf("revoked token: got %v, want ErrUnauthenticated", err)
	}
	if err := s.RevokeToken(ctx, "nobody", "test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeToken(nobody): got %v, want ErrNotFound", err)
	}
}

func TestStageFindings(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	score := 9.8
	fs := []finding.Finding{
		{
			Fingerprint: "fp1", Scope: "https://example.com", Kind: finding.KindExternal, Tool: "nuclei",
			RuleID: "CVE-2024-0001", Title: "RCE", Location: finding.Location{Kind: finding.LocationURL, URI: "https://example.com/x"},
			CWE: []int{78}, CVE: []string{"CVE-2024-0001"}, Signals: finding.Signals{Score: &score},
			CVSS:     &finding.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Base: 9.8, Temporal: 9.8, Environmental: 9.8},
			Severity: finding.SeverityCritical, SeveritySource: finding.SourceVector,
			Controls: []finding.ControlLink{{Version: "4.0.13", Control: "TVM-07", Rule: "cve", Reason: "has a CVE"}},
		},
		{Fingerprint: "fp2", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r", Title: "t"},
	}
	err := s.InTx(ctx, func(tx *store.Tx) error {
		n, err := store.StageFindings(ctx, tx, fs, time.Now())
		if err != nil {
			return err
		}
		if n != 2 {
			t.Errorf("staged %d rows, want 2", n)
		}
		var sev string
		var base float64
		var cwe []int32
		var control string
		if err := store.PgxTx(tx).QueryRow(ctx, `SELECT severity, cvss_base, cwe, data->'controls'->0->>'id' FROM findings_stage WHERE fingerprint = 'fp1'`).
			Scan(&sev, &base, &cwe, &control); err != nil {
			return err
		}
		if sev != "critical" || base != 9.8 || len(cwe) != 1 || cwe[0] != 78 || control != "TVM-07" {
			t.Errorf("staged row: %s %v %v %s", sev, base, cwe, control)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("staging: %v", err)
	}
}

func TestUpsertFindingsBatch(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	newRun := func() string {
		var id string
		if err := storetest.SQL(t, s).QueryRow(ctx, `INSERT INTO scan_runs (kind, scope, tool, format) VALUES ('code', 'repo', 'semgrep', 'sarif') RETURNING id::text`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	link := finding.ControlLink{Version: "4.0.13", Control: "AIS-07", Rule: "code", Reason: "code weakness"}
	fs := []finding.Finding{
		{Fingerprint: "a", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r1", Title: "first", Severity: finding.SeverityHigh, Controls: []finding.ControlLink{link}},
		{Fingerprint: "b", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r2", Title: "second", Severity: finding.SeverityLow},
		{Fingerprint: "a", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r1", Title: "first", Severity: finding.SeverityHigh, Controls: []finding.ControlLink{link}},
	}
	upsert := func(run string, seq int) []store.UpsertResult {
		t.Helper()
		var res []store.UpsertResult
		err := s.InTx(ctx, func(tx *store.Tx) error {
			fresh, err := store.RecordBatch(ctx, tx, run, seq, len(fs))
			if err != nil || !fresh {
				return errors.Join(err, errors.New("batch not fresh"))
			}
			res, err = store.UpsertFindingsBatch(ctx, tx, run, fs, time.Now())
			return err
		})
		if err != nil {
			t.Fatalf("upsert: %v", err)
		}
		return res
	}
	run1 := newRun()
	res := upsert(run1, 0)
	if len(res) != 2 || !res[0].Inserted || !res[1].Inserted || res[0].Status != "open" {
		t.Fatalf("first upsert: %+v", res)
	}
	err := s.InTx(ctx, func(tx *store.Tx) error {
		fresh, err := store.RecordBatch(ctx, tx, run1, 0, len(fs))
		if err == nil && fresh {
			t.Error("replayed batch reported fresh")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.SQL(t, s).Exec(ctx, `UPDATE findings SET status = 'resolved', resolved_at = now() WHERE fingerprint = 'a'`); err != nil {
		t.Fatal(err)
	}
	run2 := newRun()
	res = upsert(run2, 0)
	byFP := map[string]store.UpsertResult{}
	for _, r := range res {
		byFP[r.Fingerprint] = r
	}
	// Reopening is reconciliation's job, after the run completes.
	if a := byFP["a"]; a.Inserted || a.PrevStatus != "resolved" || a.Status != "resolved" {
		t.Errorf("a after reappearing: %+v", a)
	}
	if b := byFP["b"]; b.Inserted || b.PrevStatus != "open" || b.Status != "open" {
		t.Errorf("b: %+v", b)
	}
	var obs, links int
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT (SELECT count(*) FROM observations), (SELECT count(*) FROM control_links)`).Scan(&obs, &links); err != nil {
		t.Fatal(err)
	}
	if obs != 4 || links != 1 {
		t.Errorf("observations = %d (want 4), control links = %d (want 1)", obs, links)
	}
}
