package store_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// readFixture is a database seeded for the read queries.
type readFixture struct {
	s    *store.Store
	runs []string // in creation order
}

func newReadFixture(t *testing.T) *readFixture {
	t.Helper()
	s, _ := storetest.New(t)
	return &readFixture{s: s}
}

// run inserts a scan run created at the given time.
func (fx *readFixture) run(t *testing.T, scope, status string, created time.Time) string {
	t.Helper()
	var id string
	err := storetest.SQL(t, fx.s).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status, created_at, schedule_id, findings_seen)
		VALUES ('code', $1, 'semgrep', 'sarif', $2, $3, 'nightly', 0) RETURNING id::text`,
		scope, status, created).Scan(&id)
	if err != nil {
		t.Fatalf("inserting run: %v", err)
	}
	fx.runs = append(fx.runs, id)
	return id
}

// upsert stores fs as seen by run.
func (fx *readFixture) upsert(t *testing.T, run string, fs []finding.Finding) []store.UpsertResult {
	t.Helper()
	var res []store.UpsertResult
	err := fx.s.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		res, err = store.UpsertFindingsBatch(t.Context(), tx, run, fs, time.Now())
		return err
	})
	if err != nil {
		t.Fatalf("upserting %d findings: %v", len(fs), err)
	}
	return res
}

func link(version, id, rule string) finding.ControlLink {
	return finding.ControlLink{Version: version, Control: id, Rule: rule, Reason: "because " + rule}
}

// seedVaried stores n findings whose attributes cycle, so that every filter
// value selects a known subset: index i has severity i%5, scope i%2, kind
// code (even) or external (odd), and links to TVM-07 always plus AIS-07
// when i%3 == 0.
func seedVaried(i int) finding.Finding {
	f := finding.Finding{
		Fingerprint: fmt.Sprintf("fp-%04d", i),
		Scope:       []string{"repo-a", "repo-b"}[i%2],
		Kind:        []finding.ScanKind{finding.KindCode, finding.KindExternal}[i%2],
		Tool:        []string{"semgrep", "nuclei"}[i%2],
		RuleID:      fmt.Sprintf("rule-%d", i%4),
		Title:       fmt.Sprintf("finding %d", i),
		Severity:    finding.Severity(i % 5),
		CWE:         []int{79},
		Location:    finding.Location{Kind: finding.LocationFile, URI: fmt.Sprintf("src/f%d.go", i), StartLine: i + 1},
		Controls:    []finding.ControlLink{link("4.0.13", "TVM-07", "vulnerability-identification")},
	}
	if i%3 == 0 {
		f.Controls = append(f.Controls, link("4.0.13", "AIS-07", "code-weakness"))
	}
	return f
}

func ids(rows []store.FindingRow) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

func TestListFindingsPagination(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	ctx := t.Context()
	run := fx.run(t, "repo-a", "succeeded", time.Now())
	var fs []finding.Finding
	for i := range 23 {
		fs = append(fs, seedVaried(i))
	}
	fx.upsert(t, run, fs)

	var got []int64
	cursor := ""
	for page := 0; ; page++ {
		items, next, err := fx.s.ListFindings(ctx, store.FindingFilter{Limit: 5, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if next != "" && len(items) != 5 {
			t.Fatalf("page %d: %d items with a next cursor", page, len(items))
		}
		got = append(got, ids(items)...)
		if page == 1 {
			// A finding inserted mid-listing gets a higher id: it shows up
			// on a later page and shifts nothing.
			fx.upsert(t, run, []finding.Finding{seedVaried(100)})
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 24 {
		t.Fatalf("listed %d findings, want 24: %v", len(got), got)
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("ids not strictly increasing (duplicates or disorder): %v", got)
	}
	var total int
	if err := storetest.SQL(t, fx.s).QueryRow(ctx, `SELECT count(*) FROM findings`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != len(got) {
		t.Fatalf("listed %d of %d findings (gap)", len(got), total)
	}

	// An exactly full last page has no next cursor only if nothing follows.
	items, next, err := fx.s.ListFindings(ctx, store.FindingFilter{Limit: 24})
	if err != nil || len(items) != 24 || next != "" {
		t.Fatalf("limit 24 of 24: %d items, next %q, err %v", len(items), next, err)
	}
}

func TestListFindingsFilters(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	ctx := t.Context()
	run := fx.run(t, "repo-a", "succeeded", time.Now())
	var fs []finding.Finding
	for i := range 30 {
		fs = append(fs, seedVaried(i))
	}
	fs[0].CVSS = &finding.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Base: 9.8, Temporal: 9.8, Environmental: 9.8}
	fs[0].CVE = []string{"CVE-2024-0001"}
	fs[0].Controls = append(fs[0].Controls, link("4.1", "TVM-03", "vulnerability-identification"))
	res := fx.upsert(t, run, fs)
	idOf := map[string]int64{}
	for _, r := range res {
		idOf[r.Fingerprint] = r.ID
	}
	// fp-0001 resolved, fp-0002 accepted, fp-0003 reopened.
	if _, err := storetest.SQL(t, fx.s).Exec(ctx, `
		UPDATE findings SET status = CASE fingerprint
			WHEN 'fp-0001' THEN 'resolved' WHEN 'fp-0002' THEN 'accepted' ELSE 'reopened' END
		WHERE fingerprint IN ('fp-0001', 'fp-0002', 'fp-0003')`); err != nil {
		t.Fatal(err)
	}
	want := func(pred func(i int) bool) []int64 {
		var out []int64
		for i := range 30 {
			if pred(i) {
				out = append(out, idOf[fmt.Sprintf("fp-%04d", i)])
			}
		}
		slices.Sort(out)
		return out
	}
	active := func(i int) bool { return i != 1 && i != 2 }
	tests := []struct {
		name string
		f    store.FindingFilter
		want []int64
	}{
		{"no filter is every status", store.FindingFilter{}, want(func(int) bool { return true })},
		{"status open,reopened", store.FindingFilter{Status: []string{"open", "reopened"}}, want(active)},
		{"status resolved", store.FindingFilter{Status: []string{"resolved"}}, want(func(i int) bool { return i == 1 })},
		{"severity high,critical", store.FindingFilter{Severity: []string{"high", "critical"}}, want(func(i int) bool { return i%5 >= 3 })},
		{"scope", store.FindingFilter{Scope: "repo-b"}, want(func(i int) bool { return i%2 == 1 })},
		{"kind", store.FindingFilter{Kind: "code"}, want(func(i int) bool { return i%2 == 0 })},
		{"tool", store.FindingFilter{Tool: "nuclei"}, want(func(i int) bool { return i%2 == 1 })},
		{"control", store.FindingFilter{Control: "ais-07"}, want(func(i int) bool { return i%3 == 0 })},
		{"control in version", store.FindingFilter{Control: "TVM-03", CCMVersion: "4.1"}, want(func(i int) bool { return i == 0 })},
		{"control in other version", store.FindingFilter{Control: "TVM-03", CCMVersion: "4.0.13"}, nil},
		{"combined", store.FindingFilter{Scope: "repo-a", Control: "AIS-07", Severity: []string{"info", "high"}, Status: []string{"open"}},
			want(func(i int) bool { return i%2 == 0 && i%3 == 0 && (i%5 == 0 || i%5 == 3) && active(i) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, next, err := fx.s.ListFindings(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if next != "" {
				t.Fatalf("unexpected next cursor %q", next)
			}
			if got := ids(items); !slices.Equal(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}

	items, _, err := fx.s.ListFindings(ctx, store.FindingFilter{Scope: "repo-a", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := items[0]
	if r.Fingerprint != "fp-0000" || r.Rule != "rule-0" || r.Severity != "info" || r.Status != "open" ||
		r.CVSS == nil || r.CVSS.Base != 9.8 || r.CVSS.Vector == "" || !slices.Equal(r.CWE, []int{79}) ||
		!slices.Equal(r.CVE, []string{"CVE-2024-0001"}) || r.Location.URI != "src/f0.go" || r.Location.StartLine != 1 {
		t.Fatalf("row = %+v", r)
	}
	wantControls := []store.ControlRef{{Version: "4.0.13", ID: "AIS-07"}, {Version: "4.0.13", ID: "TVM-07"}, {Version: "4.1", ID: "TVM-03"}}
	if !slices.Equal(r.Controls, wantControls) {
		t.Fatalf("controls = %v, want %v", r.Controls, wantControls)
	}
	items, _, err = fx.s.ListFindings(ctx, store.FindingFilter{Scope: "repo-a", Limit: 1, CCMVersion: "4.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(items[0].Controls, wantControls[2:]) {
		t.Fatalf("controls restricted to 4.1 = %v", items[0].Controls)
	}
}

func TestListFindingsInvalidArguments(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	runsCursor := func() string {
		fx.run(t, "x", "queued", time.Now())
		fx.run(t, "x", "queued", time.Now())
		_, next, err := fx.s.ListRuns(t.Context(), store.RunFilter{Limit: 1})
		if err != nil || next == "" {
			t.Fatalf("runs cursor: %q, %v", next, err)
		}
		return next
	}()
	tests := []struct {
		f     store.FindingFilter
		param string
	}{
		{store.FindingFilter{Cursor: "not base64!"}, "cursor"},
		{store.FindingFilter{Cursor: "Zm9v"}, "cursor"}, // "foo"
		{store.FindingFilter{Cursor: runsCursor}, "cursor"},
		{store.FindingFilter{Limit: -1}, "limit"},
		{store.FindingFilter{Limit: store.MaxPageSize + 1}, "limit"},
		{store.FindingFilter{Status: []string{"open", "closed"}}, "status"},
		{store.FindingFilter{Severity: []string{"severe"}}, "severity"},
		{store.FindingFilter{Kind: "dast"}, "kind"},
	}
	for _, tc := range tests {
		_, _, err := fx.s.ListFindings(t.Context(), tc.f)
		var ia *store.InvalidArgumentError
		if !errors.As(err, &ia) || ia.Param != tc.param {
			t.Errorf("ListFindings(%+v) error = %v, want an InvalidArgumentError for %s", tc.f, err, tc.param)
		}
	}
	err := fx.s.StreamFindings(t.Context(), store.FindingFilter{Cursor: "%%"}, func(store.FindingRow) error { return nil })
	var ia *store.InvalidArgumentError
	if !errors.As(err, &ia) {
		t.Errorf("StreamFindings with a bad cursor: %v", err)
	}
}

func TestStreamFindings(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	run := fx.run(t, "repo-a", "succeeded", time.Now())
	// More than two stream pages, so that page boundaries are crossed.
	const n = 1001
	fs := make([]finding.Finding, n)
	for i := range fs {
		fs[i] = seedVaried(i)
	}
	fx.upsert(t, run, fs)
	var got []int64
	err := fx.s.StreamFindings(t.Context(), store.FindingFilter{}, func(r store.FindingRow) error {
		got = append(got, r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != n {
		t.Fatalf("streamed %d ids (want %d, increasing, unique)", len(got), n)
	}
	var high int
	err = fx.s.StreamFindings(t.Context(), store.FindingFilter{Severity: []string{"high"}}, func(r store.FindingRow) error {
		if r.Severity != "high" {
			return fmt.Errorf("streamed a %s finding", r.Severity)
		}
		high++
		return nil
	})
	if err != nil || high != (n+1)/5 {
		t.Fatalf("high findings streamed: %d (want %d), err %v", high, (n+1)/5, err)
	}
	stop := errors.New("stop")
	calls := 0
	err = fx.s.StreamFindings(t.Context(), store.FindingFilter{}, func(store.FindingRow) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("callback error: got %v after %d calls", err, calls)
	}
}

func TestGetFinding(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	run1 := fx.run(t, "repo-a", "succeeded", t0)
	run2 := fx.run(t, "repo-a", "succeeded", t0.Add(time.Minute))
	f := seedVaried(0)
	f.Message = "tainted input reaches exec"
	f.Evidence = []string{"exec(cmd)"}
	f.References = []string{"https://cwe.mitre.org/data/definitions/79.html"}
	f.SeenAt = t0
	res := fx.upsert(t, run1, []finding.Finding{f})
	f.SeenAt = t0.Add(time.Minute)
	fx.upsert(t, run2, []finding.Finding{f})

	d, err := fx.s.GetFinding(ctx, res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != res[0].ID || d.Message != f.Message || !slices.Equal(d.Evidence, f.Evidence) ||
		!slices.Equal(d.References, f.References) || d.LastRunID == nil || *d.LastRunID != run2 {
		t.Fatalf("detail = %+v", d)
	}
	if d.ObservationsTotal != 2 || len(d.Observations) != 2 || d.Observations[0].RunID != run2 ||
		d.Observations[1].RunID != run1 || !d.Observations[1].SeenAt.Equal(t0) {
		t.Fatalf("observations = %d %+v", d.ObservationsTotal, d.Observations)
	}
	wantLinks := []store.ControlLink{
		{Version: "4.0.13", ID: "AIS-07", Rule: "code-weakness", Reason: "because code-weakness"},
		{Version: "4.0.13", ID: "TVM-07", Rule: "vulnerability-identification", Reason: "because vulnerability-identification"},
	}
	if !slices.Equal(d.Controls, wantLinks) {
		t.Fatalf("links = %+v", d.Controls)
	}
	if _, err := fx.s.GetFinding(ctx, res[0].ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown finding: %v", err)
	}
}

func TestGetAndListRuns(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	// Runs 2 and 3 share a creation time: the id breaks the tie.
	created := []time.Time{t0, t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(2 * time.Second), t0.Add(3 * time.Second)}
	statuses := []string{"succeeded", "failed", "succeeded", "queued", "processing"}
	for i, c := range created {
		fx.run(t, []string{"repo-a", "repo-b"}[i%2], statuses[i], c)
	}
	fx.upsert(t, fx.runs[0], []finding.Finding{seedVaried(3), seedVaried(4), seedVaried(8)})
	if _, err := storetest.SQL(t, fx.s).Exec(ctx, `UPDATE scan_runs SET error = 'parse failed', batches_expected = 2 WHERE id = $1`, fx.runs[1]); err != nil {
		t.Fatal(err)
	}

	r, err := fx.s.GetRun(ctx, fx.runs[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != fx.runs[0] || r.Status != "succeeded" || r.ScheduleID != "nightly" || !r.CreatedAt.Equal(t0) ||
		r.Counts.Observed["high"] != 2 || r.Counts.Observed["critical"] != 1 || r.Counts.Observed["info"] != 0 || len(r.Counts.Observed) != 5 {
		t.Fatalf("run = %+v", r)
	}
	r, err = fx.s.GetRun(ctx, fx.runs[1])
	if err != nil || r.Error != "parse failed" || r.Counts.BatchesExpected == nil || *r.Counts.BatchesExpected != 2 {
		t.Fatalf("failed run = %+v, %v", r, err)
	}
	for _, id := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid", ""} {
		if _, err := fx.s.GetRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRun(%q) = %v, want ErrNotFound", id, err)
		}
	}

	// Newest first, across pages of two.
	var got []string
	cursor := ""
	for {
		runs, next, err := fx.s.ListRuns(ctx, store.RunFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 5 || got[0] != fx.runs[4] || got[4] != fx.runs[0] || !slices.Contains(got[1:3], fx.runs[2]) || !slices.Contains(got[1:3], fx.runs[3]) {
		t.Fatalf("runs newest first = %v (created %v)", got, fx.runs)
	}
	runs, _, err := fx.s.ListRuns(ctx, store.RunFilter{Scope: "repo-a", Status: "succeeded", ScheduleID: "nightly"})
	if err != nil || len(runs) != 2 || runs[0].ID != fx.runs[2] || runs[1].ID != fx.runs[0] {
		t.Fatalf("filtered runs = %+v, %v", runs, err)
	}
	var ia *store.InvalidArgumentError
	if _, _, err := fx.s.ListRuns(ctx, store.RunFilter{Status: "done"}); !errors.As(err, &ia) || ia.Param != "status" {
		t.Fatalf("bad status: %v", err)
	}
	if _, _, err := fx.s.ListRuns(ctx, store.RunFilter{Cursor: "cjEuMS54"}); !errors.As(err, &ia) || ia.Param != "cursor" {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestControlSummary(t *testing.T) {
	t.Parallel()
	fx := newReadFixture(t)
	ctx := t.Context()
	run := fx.run(t, "repo-a", "succeeded", time.Now())
	var fs []finding.Finding
	for i := range 10 {
		fs = append(fs, seedVaried(i))
	}
	// Two rules linking fp-0000 to TVM-07 must count it once.
	fs[0].Controls = append(fs[0].Controls, link("4.0.13", "TVM-07", "second-rule"), link("4.1", "TVM-03", "vulnerability-identification"))
	fx.upsert(t, run, fs)
	// fp-0004 (critical) resolved, fp-0009 (critical) false positive,
	// fp-0003 (high) reopened: still active.
	if _, err := storetest.SQL(t, fx.s).Exec(ctx, `
		UPDATE findings SET status = CASE fingerprint
			WHEN 'fp-0004' THEN 'resolved' WHEN 'fp-0009' THEN 'false_positive' ELSE 'reopened' END
		WHERE fingerprint IN ('fp-0003', 'fp-0004', 'fp-0009')`); err != nil {
		t.Fatal(err)
	}
	got, err := fx.s.ControlSummary(ctx, "4.0.13")
	if err != nil {
		t.Fatal(err)
	}
	// AIS-07: i in {0,3,6,9} -> severities info, high, low, critical(fp).
	// TVM-07: all ten; active: severities 0..4 twice minus the two criticals.
	want := []store.ControlCount{
		{Version: "4.0.13", ID: "AIS-07", Open: map[string]int{"info": 1, "low": 1, "medium": 0, "high": 1, "critical": 0}, Total: 3, Linked: 4},
		{Version: "4.0.13", ID: "TVM-07", Open: map[string]int{"info": 2, "low": 2, "medium": 2, "high": 2, "critical": 0}, Total: 8, Linked: 10},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("summary 4.0.13 =\n%+v\nwant\n%+v", got, want)
	}
	all, err := fx.s.ControlSummary(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[2].Version != "4.1" || all[2].ID != "TVM-03" || all[2].Total != 1 || all[2].Open["info"] != 1 {
		t.Fatalf("summary of every version = %+v", all)
	}
}
