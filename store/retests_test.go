package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

const retestScope = "https://shop.example.com"

// nucleiFinding is a finding of a nuclei run of retestScope.
func nucleiFinding(fp, rule string) finding.Finding {
	return finding.Finding{
		Fingerprint: fp, Scope: retestScope, Kind: finding.KindExternal, Tool: "nuclei", RuleID: rule,
		Title: rule, Severity: finding.SeverityHigh,
		Location: finding.Location{Kind: finding.LocationURL, URI: retestScope + "/" + rule},
	}
}

// newNucleiRun inserts a processing nuclei run of retestScope under
// schedule web and stores fs as seen by it.
func newNucleiRun(t *testing.T, st *store.Store, fs ...finding.Finding) string {
	t.Helper()
	var id string
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status, schedule_id, stats)
		VALUES ('external', $1, 'nuclei', 'nuclei-jsonl', 'processing', 'web', '{"tools": ["nuclei"]}') RETURNING id::text`,
		retestScope).Scan(&id); err != nil {
		t.Fatalf("inserting run: %v", err)
	}
	if len(fs) > 0 {
		if err := st.InTx(t.Context(), func(tx *store.Tx) error {
			_, err := store.UpsertFindingsBatch(t.Context(), tx, id, fs, time.Now())
			return err
		}); err != nil {
			t.Fatalf("storing findings of run %s: %v", id, err)
		}
	}
	return id
}

func reconcile(t *testing.T, st *store.Store, run string) store.Reconciliation {
	t.Helper()
	var res store.Reconciliation
	if err := st.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		res, err = store.Reconcile(t.Context(), tx, run, store.DefaultSLA(), store.HoldPolicy{})
		return err
	}); err != nil {
		t.Fatalf("reconciling run %s: %v", run, err)
	}
	return res
}

func findingStatus(t *testing.T, st *store.Store, id int64) string {
	t.Helper()
	var s string
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT status FROM findings WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func findingID(t *testing.T, st *store.Store, fp string) int64 {
	t.Helper()
	var id int64
	if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT id FROM findings WHERE fingerprint = $1`, fp).Scan(&id); err != nil {
		t.Fatalf("finding %s: %v", fp, err)
	}
	return id
}

func requestRetest(t *testing.T, st *store.Store, id int64) (store.Retest, bool, error) {
	t.Helper()
	var rt store.Retest
	var created bool
	err := st.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		rt, created, err = store.RequestRetest(t.Context(), tx, id, "alice", time.Now())
		return err
	})
	return rt, created, err
}

// TestManualFindingNotResolvedByScan: a complete nuclei run of the same
// scope and kind that does not see a manual finding resolves the scanned
// findings it missed and leaves the manual one open.
func TestManualFindingNotResolvedByScan(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	run1 := newNucleiRun(t, st, nucleiFinding("fp-a", "tpl-a"))
	reconcile(t, st, run1)

	sha, err := st.PutArtifact(ctx, nil, strings.NewReader("screenshot"), "evidence")
	if err != nil {
		t.Fatal(err)
	}
	manual := finding.Finding{Fingerprint: "fp-manual", Scope: retestScope, Kind: finding.KindExternal, Tool: store.ToolManual,
		RuleID: store.ToolManual, Title: "IDOR on /orders", Severity: finding.SeverityCritical}
	var res store.ManualResult
	if err := st.InTx(ctx, func(tx *store.Tx) error {
		res, err = store.CreateManualFinding(ctx, tx, manual, []store.EvidenceFile{{SHA256: sha, FileName: "shot.png", ContentType: "image/png", Size: 10}},
			"pentester", time.Now(), store.DefaultSLA())
		return err
	}); err != nil {
		t.Fatalf("CreateManualFinding: %v", err)
	}
	if !res.Finding.Inserted || res.RunID == "" {
		t.Fatalf("manual result = %+v, want inserted with a run", res)
	}
	var runStatus, runTool string
	if err := storetest.SQL(t, st).QueryRow(ctx, `SELECT status, tool FROM scan_runs WHERE id = $1::uuid`, res.RunID).Scan(&runStatus, &runTool); err != nil {
		t.Fatal(err)
	}
	if runStatus != "succeeded" || runTool != store.ToolManual {
		t.Fatalf("manual run is %s by %s, want succeeded by manual", runStatus, runTool)
	}

	run2 := newNucleiRun(t, st) // sees nothing
	rec := reconcile(t, st, run2)
	if len(rec.Changes) != 1 || rec.Changes[0].Fingerprint != "fp-a" {
		t.Fatalf("reconciliation changed %+v, want only fp-a resolved", rec.Changes)
	}
	if got := findingStatus(t, st, res.Finding.ID); got != "open" {
		t.Fatalf("manual finding is %s after a nuclei run that did not see it, want open", got)
	}
	ev, err := st.ListEvidence(ctx, res.Finding.ID)
	if err != nil || len(ev) != 1 || ev[0].SHA256 != sha || ev[0].AddedBy != "pentester" {
		t.Fatalf("evidence = %+v, %v", ev, err)
	}

	// Entered again: the same finding, updated.
	if err := st.InTx(ctx, func(tx *store.Tx) error {
		res, err = store.CreateManualFinding(ctx, tx, manual, nil, "pentester", time.Now(), store.DefaultSLA())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res.Finding.Inserted {
		t.Fatalf("the same manual finding entered twice was inserted twice")
	}
}

// TestRetestPairing: a run created after the request answers it, passed
// (the run resolved the finding) or failed (it saw it again); a run
// created before the request does not.
func TestRetestPairing(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	run1 := newNucleiRun(t, st, nucleiFinding("fp-a", "tpl-a"), nucleiFinding("fp-b", "tpl-b"), nucleiFinding("fp-c", "tpl-c"))
	reconcile(t, st, run1)
	a, b, c := findingID(t, st, "fp-a"), findingID(t, st, "fp-b"), findingID(t, st, "fp-c")

	// A run created before C's retest was asked for.
	early := newNucleiRun(t, st, nucleiFinding("fp-a", "tpl-a"), nucleiFinding("fp-b", "tpl-b"), nucleiFinding("fp-c", "tpl-c"))

	rtA, created, err := requestRetest(t, st, a)
	if err != nil || !created {
		t.Fatalf("retest of a: %+v, %v, %v", rtA, created, err)
	}
	if rtA.Result != store.RetestPending || rtA.Schedule != "web" || rtA.Rule != "tpl-a" || rtA.Target != retestScope+"/tpl-a" || rtA.RunID != nil {
		t.Fatalf("retest of a = %+v, want pending under web for tpl-a on its URL", rtA)
	}
	again, created, err := requestRetest(t, st, a)
	if err != nil || created || again.ID != rtA.ID {
		t.Fatalf("second retest of a = %+v created %v, %v; want the pending one", again, created, err)
	}
	if _, _, err := requestRetest(t, st, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := requestRetest(t, st, c); err != nil {
		t.Fatal(err)
	}

	if rec := reconcile(t, st, early); len(rec.Retests) != 0 {
		t.Fatalf("a run created before the requests answered %+v", rec.Retests)
	}

	run2 := newNucleiRun(t, st, nucleiFinding("fp-b", "tpl-b"), nucleiFinding("fp-c", "tpl-c"))
	rec := reconcile(t, st, run2)
	results := map[int64]string{}
	for _, p := range rec.Retests {
		if p.RunID == nil || *p.RunID != run2 {
			t.Fatalf("retest %d paired with run %v, want %s", p.ID, p.RunID, run2)
		}
		results[p.FindingID] = p.Result
	}
	if len(results) != 3 || results[a] != store.RetestPassed || results[b] != store.RetestFailed || results[c] != store.RetestFailed {
		t.Fatalf("retest results = %v, want a passed, b and c failed", results)
	}
	if s := findingStatus(t, st, a); s != "resolved" {
		t.Fatalf("a is %s after its retest passed", s)
	}
	if s := findingStatus(t, st, b); s != "open" {
		t.Fatalf("b is %s after its retest failed", s)
	}
	var resolvedBy string
	if err := storetest.SQL(t, st).QueryRow(ctx, `SELECT resolved_by_run::text FROM findings WHERE id = $1`, a).Scan(&resolvedBy); err != nil || resolvedBy != run2 {
		t.Fatalf("a resolved by %q (%v), want the retest's run %s", resolvedBy, err, run2)
	}
	hist, err := st.ListRetests(ctx, a)
	if err != nil || len(hist) != 1 || hist[0].Result != store.RetestPassed || hist[0].DecidedAt == nil {
		t.Fatalf("history of a = %+v, %v", hist, err)
	}
	d, err := st.GetFinding(ctx, b)
	if err != nil || len(d.Retests) != 1 || d.Retests[0].Result != store.RetestFailed {
		t.Fatalf("detail of b retests = %+v, %v", d.Retests, err)
	}

	// A resolved finding is not retested.
	var fse *store.FindingStateError
	if _, _, err := requestRetest(t, st, a); !errors.As(err, &fse) {
		t.Fatalf("retest of a resolved finding: %v, want a FindingStateError", err)
	}
	if _, _, err := requestRetest(t, st, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retest of an unknown finding: %v, want ErrNotFound", err)
	}
}

// TestRetestRunResolvesOnlyRetested: a run attached to a retest is a
// targeted run: not seeing the other findings of its scope does not
// resolve them.
func TestRetestRunResolvesOnlyRetested(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	reconcile(t, st, newNucleiRun(t, st, nucleiFinding("fp-a", "tpl-a"), nucleiFinding("fp-b", "tpl-b")))
	a, b := findingID(t, st, "fp-a"), findingID(t, st, "fp-b")
	rt, _, err := requestRetest(t, st, a)
	if err != nil {
		t.Fatal(err)
	}
	run := newNucleiRun(t, st)
	if err := st.InTx(ctx, func(tx *store.Tx) error { return store.AttachRetestRun(ctx, tx, rt.ID, run) }); err != nil {
		t.Fatal(err)
	}
	rec := reconcile(t, st, run)
	if len(rec.Changes) != 1 || rec.Changes[0].ID != a {
		t.Fatalf("targeted run changed %+v, want only a resolved", rec.Changes)
	}
	if len(rec.Retests) != 1 || rec.Retests[0].Result != store.RetestPassed {
		t.Fatalf("targeted run answered %+v, want a passed", rec.Retests)
	}
	if s := findingStatus(t, st, b); s != "open" {
		t.Fatalf("b is %s after a targeted retest of a, want open", s)
	}
}

// TestNotesKeepHistory: an edit keeps every earlier version.
func TestNotesKeepHistory(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	reconcile(t, st, newNucleiRun(t, st, nucleiFinding("fp-a", "tpl-a")))
	a := findingID(t, st, "fp-a")
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var n store.Note
	err := st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if n, err = store.AddNote(ctx, tx, a, "first", "alice", at); err != nil {
			return err
		}
		if _, _, err = store.EditNote(ctx, tx, a, n.ID, "second", "bob", at.Add(time.Hour)); err != nil {
			return err
		}
		_, n, err = store.EditNote(ctx, tx, a, n.ID, "third", "alice", at.Add(2*time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	notes, err := st.ListNotes(ctx, a)
	if err != nil || len(notes) != 1 {
		t.Fatalf("notes = %+v, %v", notes, err)
	}
	got := notes[0]
	if got.Text != "third" || got.Version != 3 || got.CreatedBy != "alice" || got.UpdatedBy != "alice" || len(got.History) != 3 ||
		got.History[0].Text != "first" || got.History[1].Text != "second" || got.History[1].EditedBy != "bob" {
		t.Fatalf("note = %+v", got)
	}
	if err := st.InTx(ctx, func(tx *store.Tx) error {
		_, _, err := store.EditNote(ctx, tx, a+1, n.ID, "x", "alice", at)
		return err
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("editing a note under another finding: %v, want ErrNotFound", err)
	}
	if _, err := st.ListNotes(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("notes of an unknown finding: %v", err)
	}
}
