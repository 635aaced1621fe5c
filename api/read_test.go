package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// readEnv is a server over a seeded database, with a token per role.
type readEnv struct {
	t      *testing.T
	st     *store.Store
	srv    *Server
	tokens map[string]string // role -> token
	runs   []string          // run ids in creation order
	ids    map[string]int64  // fingerprint -> finding id
}

// seed fingerprints: f0..f5 (see newReadEnv).
const formulaTitle = `=HYPERLINK("http://evil.example","click")`

func newReadEnv(t *testing.T) *readEnv {
	t.Helper()
	st, _ := storetest.New(t)
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	e := &readEnv{t: t, st: st, tokens: map[string]string{}, ids: map[string]int64{}}
	e.srv = New(Options{Auth: storeAuthenticator{st}, Store: st, Catalogs: cats})
	for _, role := range store.Roles() {
		tok, err := st.CreateToken(t.Context(), "test-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = tok
	}

	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	code := func(fp string, sev finding.Severity, cwe int) finding.Finding {
		return finding.Finding{Fingerprint: fp, Scope: "repo", Kind: finding.KindCode, Tool: "semgrep",
			RuleID: "rule-" + fp, Title: "title " + fp, Severity: sev, CWE: []int{cwe},
			Location: finding.Location{Kind: finding.LocationFile, URI: "src/" + fp + ".go", StartLine: 7}}
	}
	ext := func(fp string, sev finding.Severity, cwe int) finding.Finding {
		return finding.Finding{Fingerprint: fp, Scope: "https://app.example", Kind: finding.KindExternal, Tool: "nuclei",
			RuleID: "tmpl-" + fp, Title: "title " + fp, Severity: sev, CWE: []int{cwe},
			Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example/" + fp}}
	}
	f0 := code("f0", finding.SeverityHigh, 79)
	f0.Title = formulaTitle
	f0.RuleID = "-cmd|' /C calc'!A0"
	f0.CVSS = &finding.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", Base: 6.1, Temporal: 6.1, Environmental: 6.1}
	codeFindings := []finding.Finding{f0, code("f1", finding.SeverityCritical, 89), code("f2", finding.SeverityLow, 200), code("f5", finding.SeverityInfo, 16)}
	extFindings := []finding.Finding{ext("f3", finding.SeverityMedium, 16), ext("f4", finding.SeverityCritical, 22)}

	e.run("code", "repo", "succeeded", t0, codeFindings, mapper)
	e.run("external", "https://app.example", "queued", t0.Add(time.Minute), extFindings, mapper)
	e.run("code", "repo", "processing", t0.Add(2*time.Minute), []finding.Finding{f0}, mapper)
	if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE findings SET status = 'resolved', resolved_at = now(), resolved_by_run = $1 WHERE fingerprint = 'f4'`, e.runs[1]); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *readEnv) run(kind, scope, status string, created time.Time, fs []finding.Finding, m *mapping.Mapper) {
	t := e.t
	t.Helper()
	var id string
	if err := storetest.SQL(t, e.st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status, created_at)
		VALUES ($1, $2, 'tool', 'sarif', $3, $4) RETURNING id::text`, kind, scope, status, created).Scan(&id); err != nil {
		t.Fatal(err)
	}
	e.runs = append(e.runs, id)
	for i := range fs {
		m.Apply(&fs[i])
	}
	err := e.st.InTx(t.Context(), func(tx *store.Tx) error {
		res, err := store.UpsertFindingsBatch(t.Context(), tx, id, fs, created)
		for _, r := range res {
			e.ids[r.Fingerprint] = r.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// do sends a request as role ("" sends no token) and returns the recorder.
func (e *readEnv) do(role, method, target string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequestWithContext(e.t.Context(), method, target, nil)
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// getJSON asks as an auditor, checks the status and decodes the body.
func (e *readEnv) getJSON(target string, want int, v any) {
	e.t.Helper()
	rec := e.do(RoleAuditor, http.MethodGet, target)
	if rec.Code != want {
		e.t.Fatalf("GET %s: status %d, want %d: %s", target, rec.Code, want, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("GET %s: Content-Type %q", target, ct)
	}
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			e.t.Fatalf("GET %s: decoding %s: %v", target, rec.Body, err)
		}
	}
}

type findingList struct {
	Items []Finding `json:"items"`
	Next  *string   `json:"next"`
}

func (e *readEnv) fingerprints(target string) []string {
	e.t.Helper()
	var l findingList
	e.getJSON(target, http.StatusOK, &l)
	var out []string
	for _, it := range l.Items {
		out = append(out, it.Fingerprint)
	}
	return out
}

func TestReadRoutesAuth(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	runPath := "/v1/runs/" + e.runs[0]
	findingPath := "/v1/findings/" + strconv.FormatInt(e.ids["f0"], 10)
	paths := []string{"/v1/runs", runPath, "/v1/findings", findingPath, "/v1/controls", "/v1/openapi.yaml"}
	for _, p := range paths {
		if rec := e.do("", http.MethodGet, p); rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without token: %d %s", p, rec.Code, rec.Body)
		}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, p, nil)
		req.Header.Set("Authorization", "Bearer sp_not-a-real-token")
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s with an unknown token: %d", p, rec.Code)
		}
		for _, role := range []string{RoleAdmin, RoleOperator, RoleOwner, RoleAuditor} {
			if rec := e.do(role, http.MethodGet, p); rec.Code != http.StatusOK {
				t.Errorf("GET %s as %s: %d %s", p, role, rec.Code, rec.Body)
			}
		}
		// Ingest tokens (CI) may only poll runs and read the API document.
		want := http.StatusForbidden
		if p == runPath || p == "/v1/openapi.yaml" {
			want = http.StatusOK
		}
		rec = e.do(RoleIngest, http.MethodGet, p)
		if rec.Code != want {
			t.Errorf("GET %s as ingest: %d, want %d", p, rec.Code, want)
		}
		if want == http.StatusForbidden && !strings.Contains(rec.Body.String(), `"error":"forbidden"`) {
			t.Errorf("GET %s as ingest: body %s", p, rec.Body)
		}
	}
}

func TestListFindingsAPI(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"f0", "f1", "f2", "f5", "f3", "f4"}},
		{"?status=open", []string{"f0", "f1", "f2", "f5", "f3"}},
		{"?status=resolved,accepted", []string{"f4"}},
		{"?status=resolved&status=open&severity=critical", []string{"f1", "f4"}},
		{"?severity=high,critical", []string{"f0", "f1", "f4"}},
		{"?severity=HIGH", []string{"f0"}},
		{"?scope=https://app.example", []string{"f3", "f4"}},
		{"?kind=code&tool=semgrep", []string{"f0", "f1", "f2", "f5"}},
		{"?tool=nuclei&severity=medium", []string{"f3"}},
		{"?control=tvm-07", []string{"f0", "f1", "f2", "f5", "f3", "f4"}},
		{"?control=TVM-03&version=4.1", []string{"f0", "f1", "f2", "f5", "f3", "f4"}},
		{"?control=AIS-07&version=4.0.13&severity=high", []string{"f0"}},
		{"?scope=nothing", nil},
	}
	for _, tc := range tests {
		got := e.fingerprints("/v1/findings" + tc.query)
		// Ids follow insertion: f0, f1, f2, f5 (run 1), then f3, f4 (run 2).
		if !slices.Equal(got, tc.want) {
			t.Errorf("GET /v1/findings%s = %v, want %v", tc.query, got, tc.want)
		}
	}

	// Every page but the last is full and carries next; following next
	// visits every finding once.
	var seen []int64
	target := "/v1/findings?limit=4"
	for pages := 0; ; pages++ {
		var l findingList
		e.getJSON(target, http.StatusOK, &l)
		for _, it := range l.Items {
			seen = append(seen, it.ID)
		}
		if l.Next == nil {
			if pages != 1 || len(l.Items) != 2 {
				t.Fatalf("last page: %d pages before, %d items", pages, len(l.Items))
			}
			break
		}
		target = "/v1/findings?limit=4&cursor=" + *l.Next
	}
	if len(seen) != 6 || !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != 6 {
		t.Fatalf("paged ids = %v", seen)
	}

	var l findingList
	e.getJSON("/v1/findings?severity=high&version=4.0.13", http.StatusOK, &l)
	if len(l.Items) != 1 {
		t.Fatalf("high findings: %+v", l.Items)
	}
	f0 := l.Items[0]
	if f0.Title != formulaTitle || f0.CVSS == nil || f0.CVSS.Base != 6.1 || f0.Status != "open" ||
		!slices.Contains(f0.Controls, ControlRef{Version: "4.0.13", ID: "TVM-07"}) ||
		slices.ContainsFunc(f0.Controls, func(c ControlRef) bool { return c.Version != "4.0.13" }) {
		t.Fatalf("f0 = %+v", f0)
	}
	// The JSON shape: snake_case keys, lists never null.
	rec := e.do(RoleAuditor, http.MethodGet, "/v1/findings?severity=info")
	var raw struct {
		Items []map[string]any `json:"items"`
		Next  any              `json:"next"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw.Items) != 1 || raw.Next != nil {
		t.Fatalf("raw list %s: %v", rec.Body, err)
	}
	for _, k := range []string{"id", "scope", "fingerprint", "kind", "tool", "rule", "title", "severity", "cvss",
		"status", "suppressed", "location", "cwe", "cve", "first_seen", "last_seen", "sla_due", "resolved_at",
		"resolved_by_run", "controls"} {
		if _, ok := raw.Items[0][k]; !ok {
			t.Errorf("finding JSON lacks %q: %v", k, raw.Items[0])
		}
	}
	if raw.Items[0]["cve"] == nil {
		t.Errorf("cve is null rather than []")
	}
}

func TestListFindingsAPIBadParameters(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	tests := []struct{ query, param string }{
		{"status=closed", "status"},
		{"status=open,", ""}, // a trailing comma is harmless
		{"severity=severe", "severity"},
		{"kind=dast", "kind"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"cursor=%21%21", "cursor"},
		{"cursor=Zm9v", "cursor"},
		{"version=9.9", "version"},
		{"control=XYZ-99", "control"},
		{"control=TVM-10&version=4.0.13", ""},
		{"control=TVM-11&version=4.0.13", "control"},
		{"severities=high", "severities"},
		{"scope=a&scope=b", "scope"},
	}
	for _, tc := range tests {
		rec := e.do(RoleAuditor, http.MethodGet, "/v1/findings?"+tc.query)
		if tc.param == "" {
			if rec.Code != http.StatusOK {
				t.Errorf("?%s: %d %s", tc.query, rec.Code, rec.Body)
			}
			continue
		}
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusBadRequest ||
			body.Error != "invalid_parameter" || !strings.Contains(body.Message, tc.param) {
			t.Errorf("?%s: %d %s (want 400 naming %s)", tc.query, rec.Code, rec.Body, tc.param)
		}
	}
	for _, q := range []string{"status=done", "limit=-1", "cursor=xyz", "page=2"} {
		if rec := e.do(RoleAuditor, http.MethodGet, "/v1/runs?"+q); rec.Code != http.StatusBadRequest {
			t.Errorf("/v1/runs?%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	for _, q := range []string{"version=5", "all=maybe", "severity=high"} {
		if rec := e.do(RoleAuditor, http.MethodGet, "/v1/controls?"+q); rec.Code != http.StatusBadRequest {
			t.Errorf("/v1/controls?%s: %d %s", q, rec.Code, rec.Body)
		}
	}
}

func TestFindingsCSV(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	rec := e.do(RoleOwner, http.MethodGet, "/v1/findings?scope=repo&limit=1", "Accept", "text/csv")
	if rec.Code != http.StatusOK {
		t.Fatalf("CSV: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q", ct)
	}
	if cd := rec.Header().Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="starpipe-findings-`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Fatalf("Content-Disposition %q", cd)
	}
	records, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(records[0], csvColumns) {
		t.Fatalf("header = %v", records[0])
	}
	// limit is ignored: the export holds every finding of the scope.
	if len(records) != 5 {
		t.Fatalf("%d records, want header + 4", len(records))
	}
	col := func(rec []string, name string) string { return rec[slices.Index(csvColumns, name)] }
	f0 := records[1]
	if col(f0, "title") != "'"+formulaTitle || col(f0, "rule") != "'-cmd|' /C calc'!A0" {
		t.Fatalf("formula cells not neutralised: title %q, rule %q", col(f0, "title"), col(f0, "rule"))
	}
	if col(f0, "id") != strconv.FormatInt(e.ids["f0"], 10) || col(f0, "cvss_base") != "6.1" || col(f0, "cwe") != "CWE-79" ||
		col(f0, "location") != "src/f0.go:7" || !strings.Contains(col(f0, "controls"), "4.0.13/TVM-07") || col(f0, "status") != "open" {
		t.Fatalf("f0 record = %v", f0)
	}

	// No match: still a header row.
	rec = e.do(RoleOwner, http.MethodGet, "/v1/findings?scope=none", "Accept", "text/csv")
	if records, err := csv.NewReader(rec.Body).ReadAll(); err != nil || len(records) != 1 {
		t.Fatalf("empty export: %v %v", records, err)
	}
	// A bad filter is still a JSON 400, not a CSV.
	rec = e.do(RoleOwner, http.MethodGet, "/v1/findings?severity=bad", "Accept", "text/csv")
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("bad CSV filter: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func TestWantsCSV(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"":                                     false,
		"*/*":                                  false,
		"application/json":                     false,
		"text/csv":                             true,
		"text/csv; charset=utf-8":              true,
		"application/json, text/csv":           false,
		"text/csv, application/json":           true,
		"application/json;q=0.5, text/csv":     true,
		"text/csv;q=0, application/json":       false,
		"text/csv;q=0.9, application/json;q=1": false,
	} {
		if got := wantsCSV(accept); got != want {
			t.Errorf("wantsCSV(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestCSVSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"=1+2": "'=1+2", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx",
		"": "", "plain": "plain", "a=b": "a=b",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGetFindingAPI(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	var d struct {
		ID                int64         `json:"id"`
		Fingerprint       string        `json:"fingerprint"`
		Observations      []Observation `json:"observations"`
		ObservationsTotal int           `json:"observations_total"`
		Controls          []ControlLink `json:"controls"`
	}
	e.getJSON("/v1/findings/"+strconv.FormatInt(e.ids["f0"], 10), http.StatusOK, &d)
	if d.Fingerprint != "f0" || d.ObservationsTotal != 2 || len(d.Observations) != 2 ||
		d.Observations[0].RunID != e.runs[2] || d.Observations[1].RunID != e.runs[0] {
		t.Fatalf("detail = %+v (runs %v)", d, e.runs)
	}
	i := slices.IndexFunc(d.Controls, func(c ControlLink) bool { return c.Version == "4.0.13" && c.ID == "TVM-07" })
	if i < 0 || d.Controls[i].Rule != "vulnerability-identification" || !strings.Contains(d.Controls[i].Reason, "semgrep") {
		t.Fatalf("control links = %+v", d.Controls)
	}
	var body errorBody
	for _, id := range []string{"999999", "0", "abc", "-1"} {
		e.getJSON("/v1/findings/"+id, http.StatusNotFound, &body)
		if body.Error != "not_found" {
			t.Errorf("finding %s: %+v", id, body)
		}
	}
}

func TestRunsAPI(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	var r Run
	e.getJSON("/v1/runs/"+e.runs[0], http.StatusOK, &r)
	if r.ID != e.runs[0] || r.Status != "succeeded" || r.Kind != "code" || r.Scope != "repo" ||
		r.Counts.Observed["critical"] != 1 || r.Counts.Observed["high"] != 1 || r.Counts.Observed["medium"] != 0 {
		t.Fatalf("run = %+v", r)
	}
	var body errorBody
	for _, id := range []string{"00000000-0000-0000-0000-000000000000", "nope"} {
		e.getJSON("/v1/runs/"+id, http.StatusNotFound, &body)
		if body.Error != "not_found" {
			t.Errorf("run %s: %+v", id, body)
		}
	}

	var l struct {
		Items []Run   `json:"items"`
		Next  *string `json:"next"`
	}
	e.getJSON("/v1/runs?limit=2", http.StatusOK, &l)
	if len(l.Items) != 2 || l.Items[0].ID != e.runs[2] || l.Items[1].ID != e.runs[1] || l.Next == nil {
		t.Fatalf("first page = %+v", l)
	}
	e.getJSON("/v1/runs?limit=2&cursor="+*l.Next, http.StatusOK, &l)
	if len(l.Items) != 1 || l.Items[0].ID != e.runs[0] || l.Next != nil {
		t.Fatalf("second page = %+v", l)
	}
	e.getJSON("/v1/runs?scope=repo&status=processing", http.StatusOK, &l)
	if len(l.Items) != 1 || l.Items[0].ID != e.runs[2] {
		t.Fatalf("filtered = %+v", l)
	}
}

func TestControlsAPI(t *testing.T) {
	t.Parallel()
	e := newReadEnv(t)
	var resp struct {
		Version string         `json:"version"`
		Items   []ControlCount `json:"items"`
	}
	e.getJSON("/v1/controls", http.StatusOK, &resp)
	if resp.Version != "4.0.13" || len(resp.Items) == 0 {
		t.Fatalf("controls = %+v", resp)
	}
	i := slices.IndexFunc(resp.Items, func(c ControlCount) bool { return c.ID == "TVM-07" })
	if i < 0 {
		t.Fatalf("no TVM-07 in %+v", resp.Items)
	}
	tvm := resp.Items[i]
	// Every finding is linked to TVM-07; f4 (critical) is resolved.
	want := map[string]int{"info": 1, "low": 1, "medium": 1, "high": 1, "critical": 1}
	if tvm.Title == "" || tvm.Domain != "TVM" || tvm.DomainName == "" || tvm.Total != 5 || tvm.Linked != 6 || !maps.Equal(tvm.Open, want) {
		t.Fatalf("TVM-07 = %+v", tvm)
	}
	for _, c := range resp.Items {
		if c.Version != "4.0.13" || c.Linked == 0 {
			t.Errorf("unexpected item %+v", c)
		}
	}

	e.getJSON("/v1/controls?version=v4.1.0", http.StatusOK, &resp)
	if resp.Version != "4.1" || !slices.ContainsFunc(resp.Items, func(c ControlCount) bool { return c.ID == "TVM-03" && c.Total == 5 }) {
		t.Fatalf("4.1 controls = %+v", resp)
	}
	e.getJSON("/v1/controls?all=true", http.StatusOK, &resp)
	cats, _ := mapping.DefaultCatalogs()
	cat, _ := cats.Get("4.0.13")
	if len(resp.Items) != cat.Len() {
		t.Fatalf("all=true: %d items, catalogue has %d", len(resp.Items), cat.Len())
	}
	for _, c := range resp.Items {
		if c.Linked == 0 && (c.Total != 0 || len(c.Open) != 5) {
			t.Fatalf("unlinked control %+v", c)
		}
	}
}

// specIntake stands in for the upload pipeline so that POST /v1/runs is
// registered; the route test never submits anything.
type specIntake struct{}

func (specIntake) Submit(context.Context, io.Reader, pipeline.Request) (string, error) {
	return "", nil
}

// TestOpenAPIDocumentsEveryRoute keeps openapi.yaml and the mux in step:
// every documented operation is routed, and every route found on the mux is
// documented. ServeMux cannot list its patterns, so routes are found by
// asking the mux about each documented path and each path in candidatePaths
// under every method; add a feature's paths there when adding its routes.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	key, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := vault.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	// Every dependency is set so that every route group registers.
	srv := New(Options{Auth: storeAuthenticator{st}, Store: st, Catalogs: cats, Intake: specIntake{}, Keyring: keyring,
		HeldRuns: pipeline.NewHeldRuns(st, nil)})

	tok, err := st.CreateToken(t.Context(), "spec-reader", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/openapi.yaml", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/yaml" || !bytes.Equal(rec.Body.Bytes(), openAPISpec) {
		t.Fatalf("GET /v1/openapi.yaml: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}

	var doc struct {
		OpenAPI    string                    `yaml:"openapi"`
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			SecuritySchemes map[string]map[string]any `yaml:"securitySchemes"`
			Schemas         map[string]map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(openAPISpec))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("parsing openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Fatalf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	if doc.Components.SecuritySchemes["bearerAuth"]["scheme"] != "bearer" {
		t.Fatalf("bearerAuth scheme = %v", doc.Components.SecuritySchemes)
	}
	errProps, _ := doc.Components.Schemas["Error"]["properties"].(map[string]any)
	if _, ok := errProps["error"]; !ok {
		t.Fatalf("Error schema = %v", doc.Components.Schemas["Error"])
	}
	if _, ok := errProps["message"]; !ok {
		t.Fatalf("Error schema = %v", doc.Components.Schemas["Error"])
	}
	if len(bytes.TrimSpace(openAPISpec)) == 0 || !refsResolve(t, openAPISpec) {
		t.Fatal("openapi.yaml has dangling $refs")
	}

	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if slices.Contains(methods, strings.ToUpper(m)) {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	for _, want := range []string{"GET /v1/runs", "POST /v1/runs", "GET /v1/runs/{id}", "POST /v1/runs/{id}/release",
		"POST /v1/runs/{id}/discard", "GET /v1/tokens", "POST /v1/tokens", "DELETE /v1/tokens/{name}", "GET /v1/findings",
		"GET /v1/findings/{id}", "GET /v1/controls", "GET /v1/openapi.yaml"} {
		if !documented[want] {
			t.Errorf("openapi.yaml does not document %s", want)
		}
	}
	routed := func(method, path string) string {
		// {x} segments become a concrete value the mux matches as a wildcard.
		concrete := strings.NewReplacer("{id}", "1", "{name}", "x").Replace(path)
		_, pattern := srv.mux.Handler(httptest.NewRequest(method, concrete, nil))
		return pattern
	}
	for op := range documented {
		method, path, _ := strings.Cut(op, " ")
		if got := routed(method, path); got != op {
			t.Errorf("openapi.yaml documents %s, but the mux routes it to %q", op, got)
		}
	}
	// Every pattern registered through Handle must be documented.
	for _, p := range srv.routes {
		if !documented[p] {
			t.Errorf("route %s is not documented in openapi.yaml", p)
		}
	}
	candidates := slices.Clone(candidatePaths)
	for path := range doc.Paths {
		candidates = append(candidates, path)
	}
	for _, path := range candidates {
		for _, m := range methods {
			p := routed(m, path)
			if p == "" || p == "/v1/" || documented[p] {
				continue
			}
			if strings.HasPrefix(p, m+" /v1/") {
				t.Errorf("route %s is not documented in openapi.yaml", p)
			}
		}
	}
}

// candidatePaths are /v1 paths that features of the design have or may
// have, probed for undocumented routes.
var candidatePaths = []string{
	"/v1/runs", "/v1/runs/{id}", "/v1/runs/{id}/release", "/v1/runs/{id}/discard", "/v1/runs/{id}/artifact", "/v1/runs/{id}/findings",
	"/v1/findings", "/v1/findings/{id}", "/v1/findings/{id}/status", "/v1/findings/{id}/owner",
	"/v1/findings/{id}/exception", "/v1/findings/{id}/exceptions", "/v1/findings/{id}/activity",
	"/v1/controls", "/v1/controls/{id}", "/v1/schedules", "/v1/schedules/{name}", "/v1/schedules/{name}/ledger",
	"/v1/schedules/{name}/runs", "/v1/credentials", "/v1/credentials/{name}", "/v1/tokens", "/v1/tokens/{name}",
	"/v1/activity", "/v1/exceptions", "/v1/exceptions/{id}", "/v1/reports", "/v1/reports/{id}", "/v1/cycles",
	"/v1/cycles/{id}", "/v1/evidence", "/v1/openapi.yaml", "/v1/openapi.json",
}

// refsResolve checks that every local $ref names an existing component.
func refsResolve(t *testing.T, spec []byte) bool {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(spec, &root); err != nil {
		t.Fatal(err)
	}
	var all map[string]any
	if err := yaml.Unmarshal(spec, &all); err != nil {
		t.Fatal(err)
	}
	ok := true
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "$ref" {
					ref := n.Content[i+1].Value
					var cur any = all
					for _, seg := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
						m, isMap := cur.(map[string]any)
						if !isMap {
							cur = nil
							break
						}
						cur = m[seg]
					}
					if !strings.HasPrefix(ref, "#/") || cur == nil {
						t.Errorf("dangling $ref %q (line %d)", ref, n.Content[i+1].Line)
						ok = false
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	return ok
}
