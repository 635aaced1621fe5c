package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestObservationsKeepTheirMapping: each sighting keeps the links and the
// rules hash it was stored under, through rules changes back and forth,
// while the finding (and control_links) shows the latest; a sighting in a
// first scan (the COPY path) and in a rescan (the staged path) alike.
func TestObservationsKeepTheirMapping(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	rulesA, rulesB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	linkA := finding.ControlLink{Version: "4.0.13", Control: "TVM-07", Rule: "ident", Reason: "under A"}
	linkB := finding.ControlLink{Version: "4.0.13", Control: "AIS-07", Rule: "app", Reason: "under B"}
	ingest := func(rules string, links ...finding.ControlLink) string {
		t.Helper()
		var run string
		if err := storetest.SQL(t, s).QueryRow(ctx, `INSERT INTO scan_runs (kind, scope, tool, format) VALUES ('code', 'repo', 'semgrep', 'sarif') RETURNING id::text`).Scan(&run); err != nil {
			t.Fatal(err)
		}
		fs := []finding.Finding{{Fingerprint: "a", Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "r1",
			Title: "first", Severity: finding.SeverityHigh, Controls: links, MappingRules: rules}}
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := store.UpsertFindingsBatch(ctx, tx, run, fs, time.Now())
			return err
		})
		if err != nil {
			t.Fatalf("upsert: %v", err)
		}
		return run
	}
	runs := []string{ingest(rulesA, linkA), ingest(rulesB, linkB), ingest(rulesB, linkB), ingest(rulesA, linkA)}
	want := map[string]struct {
		rules string
		link  finding.ControlLink
	}{runs[0]: {rulesA, linkA}, runs[1]: {rulesB, linkB}, runs[2]: {rulesB, linkB}, runs[3]: {rulesA, linkA}}

	var id int64
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT id FROM findings`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	d, err := s.GetFinding(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Observations) != len(runs) {
		t.Fatalf("%d observations, want %d", len(d.Observations), len(runs))
	}
	for _, o := range d.Observations {
		w := want[o.RunID]
		if o.RulesHash != w.rules || len(o.Controls) != 1 || o.Controls[0].ID != w.link.Control || o.Controls[0].Reason != w.link.Reason {
			t.Errorf("run %s observed under %q %+v, want %q %+v", o.RunID, o.RulesHash, o.Controls, w.rules, w.link)
		}
	}
	if len(d.Controls) != 1 || d.Controls[0].ID != linkA.Control {
		t.Errorf("current links %+v, want only %s", d.Controls, linkA.Control)
	}
	// Two link sets were replaced (A by B, B by A); each is kept once.
	var kept int
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT count(*) FROM control_mappings`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept != 2 {
		t.Errorf("control_mappings holds %d sets, want 2", kept)
	}
}
