package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// withEnricher rebuilds the env's server with the default mapping rules as
// the manual findings' enricher.
func (e *reviewEnv) withEnricher() {
	e.t.Helper()
	m, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		e.t.Fatal(err)
	}
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = New(Options{Auth: storeAuthenticator{e.st}, Store: e.st, Catalogs: cats, Logger: slog.New(slog.NewTextHandler(e.t.Output(), nil)),
		Enrich: func(f *finding.Finding) { scoring.Apply(f, nil); m.Apply(f) }})
}

// postManualForm posts a manual finding as a multipart form with one
// evidence file.
func (e *reviewEnv) postManualForm(token string, fields map[string]any, fileName string, content []byte) (int, []byte) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	js, err := json.Marshal(fields)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := mw.WriteField("finding", string(js)); err != nil {
		e.t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("evidence", fileName)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := fw.Write(content); err != nil {
		e.t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		e.t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(e.t.Context(), http.MethodPost, "/v1/findings", &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func TestManualFinding(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	e.withEnricher()
	ctx := t.Context()
	fields := map[string]any{
		"title": "IDOR on /orders/{id}", "description": "Any customer can read any order.", "scope": "https://shop.example.com",
		"cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "cwe": []int{639},
	}
	shot := []byte("\x89PNG pretend screenshot")
	code, b := e.postManualForm(e.admin, fields, "orders.png", shot)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/findings: %d %s", code, b)
	}
	var created manualCreated
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	d := created.Finding
	sum := sha256.Sum256(shot)
	if !created.Created || d.Tool != store.ToolManual || d.Kind != "external" || d.Severity != "medium" || d.CVSS == nil ||
		d.Status != finding.StatusOpen || d.SLADue == nil {
		t.Fatalf("manual finding = %+v", d)
	}
	if len(d.EvidenceFiles) != 1 || d.EvidenceFiles[0].SHA256 != hex.EncodeToString(sum[:]) || d.EvidenceFiles[0].FileName != "orders.png" ||
		d.EvidenceFiles[0].AddedBy != "test-admin" {
		t.Fatalf("evidence files = %+v", d.EvidenceFiles)
	}
	if len(d.Controls) == 0 {
		t.Fatalf("manual finding mapped to no controls")
	}
	if _, content, err := storetest.ReadArtifact(t, e.st, d.EvidenceFiles[0].SHA256); err != nil || !bytes.Equal(content, shot) {
		t.Fatalf("evidence artifact = %q, %v", content, err)
	}
	id := strconv.FormatInt(created.ID, 10)
	acts := storetest.Strings(t, e.st, `SELECT action || ' by ' || actor FROM activity_log WHERE subject_type = 'finding' AND subject_id = $1 ORDER BY id`, id)
	if len(acts) != 1 || acts[0] != "finding.opened by test-admin" {
		t.Fatalf("activity = %v", acts)
	}
	if ev := storetest.Strings(t, e.st, `SELECT convert_from(payload, 'UTF8')::jsonb->>'type' FROM outbox WHERE key = $1`, id); len(ev) != 1 || ev[0] != "opened" {
		t.Fatalf("events = %v", ev)
	}

	// The same scope and title (spacing and case aside) is the same finding.
	again := map[string]any{"title": "idor on  /orders/{id}", "scope": "https://shop.example.com", "severity": "critical"}
	var up manualCreated
	e.must(e.admin, http.MethodPost, "/v1/findings", again, http.StatusOK, &up)
	if up.Created || up.ID != created.ID || up.Finding.Severity != "critical" {
		t.Fatalf("entered again: %+v", up)
	}

	for name, body := range map[string]map[string]any{
		"no severity":         {"title": "x", "scope": "s"},
		"vector and severity": {"title": "x", "scope": "s", "severity": "low", "cvss_vector": fields["cvss_vector"]},
		"bad vector":          {"title": "x", "scope": "s", "cvss_vector": "CVSS:3.1/AV:Q"},
		"no title":            {"scope": "s", "severity": "low"},
		"bad kind":            {"title": "x", "scope": "s", "severity": "low", "kind": "pentest"},
		"bad cwe":             {"title": "x", "scope": "s", "severity": "low", "cwe": []int{0}},
	} {
		if code, b := e.call(e.admin, http.MethodPost, "/v1/findings", body); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, code, b)
		}
	}
	auditor, err := e.st.CreateToken(ctx, "auditor", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := e.call(auditor, http.MethodPost, "/v1/findings", again); code != http.StatusForbidden {
		t.Fatalf("auditor entering a finding: %d", code)
	}

	// Scans of the same scope never resolve it: it is not theirs.
	if code, b := e.call(e.admin, http.MethodPost, "/v1/findings/"+id+"/retest", nil); code != http.StatusConflict {
		t.Fatalf("retest of a manual finding: %d %s, want 409", code, b)
	}
}

func TestNotes(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "role": "owner", "domains": []string{"ais"}})
	bob := e.user(map[string]any{"name": "bob", "role": "operator"})
	base := "/v1/findings/" + strconv.FormatInt(e.ids["ais"], 10) + "/notes"

	var n Note
	e.must(alice, http.MethodPost, base, map[string]string{"text": "reproduced on staging"}, http.StatusCreated, &n)
	if n.Version != 1 || n.CreatedBy != "alice" || len(n.History) != 1 {
		t.Fatalf("note = %+v", n)
	}
	if code, _ := e.call(alice, http.MethodPost, "/v1/findings/"+strconv.FormatInt(e.ids["tvm"], 10)+"/notes", map[string]string{"text": "x"}); code != http.StatusForbidden {
		t.Fatalf("owner noting a finding outside their controls: %d", code)
	}
	if code, _ := e.call(alice, http.MethodPost, base, map[string]string{"text": "  "}); code != http.StatusBadRequest {
		t.Fatalf("empty note: %d", code)
	}
	notePath := base + "/" + strconv.FormatInt(n.ID, 10)
	if code, _ := e.call(bob, http.MethodPatch, notePath, map[string]string{"text": "not mine"}); code != http.StatusForbidden {
		t.Fatalf("editing someone else's note: %d", code)
	}
	e.must(alice, http.MethodPatch, notePath, map[string]string{"text": "reproduced on staging and production"}, http.StatusOK, &n)
	e.must(e.admin, http.MethodPatch, notePath, map[string]string{"text": "reproduced on staging and production (v2.3)"}, http.StatusOK, &n)
	if code, _ := e.call(alice, http.MethodPatch, base+"/999999", map[string]string{"text": "x"}); code != http.StatusNotFound {
		t.Fatalf("editing an unknown note: %d", code)
	}

	var list struct{ Items []Note }
	e.must(bob, http.MethodGet, base, nil, http.StatusOK, &list)
	if len(list.Items) != 1 {
		t.Fatalf("notes = %+v", list.Items)
	}
	got := list.Items[0]
	if got.Version != 3 || got.UpdatedBy != "test-admin" || len(got.History) != 3 || got.History[0].Text != "reproduced on staging" ||
		got.History[1].EditedBy != "alice" {
		t.Fatalf("note with history = %+v", got)
	}
	acts := storetest.Strings(t, e.st, `SELECT action || ' by ' || actor FROM activity_log WHERE subject_id = $1 AND action LIKE 'finding.note%' ORDER BY id`,
		strconv.FormatInt(e.ids["ais"], 10))
	if len(acts) != 3 || acts[0] != "finding.note_added by alice" || acts[2] != "finding.note_edited by test-admin" {
		t.Fatalf("activity = %v", acts)
	}
}

func TestRetest(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "role": "owner", "domains": []string{"ais"}})
	path := func(fp string) string { return "/v1/findings/" + strconv.FormatInt(e.ids[fp], 10) + "/retest" }

	var rv retestView
	e.must(alice, http.MethodPost, path("ais"), nil, http.StatusAccepted, &rv)
	if !rv.Created || rv.Retest.Result != store.RetestPending || rv.Retest.Rule != "rule-ais" || rv.Retest.Target != "repo" || rv.Retest.RequestedBy != "alice" {
		t.Fatalf("retest = %+v", rv)
	}
	e.must(alice, http.MethodPost, path("ais"), nil, http.StatusOK, &rv)
	if rv.Created {
		t.Fatalf("a second request made a second retest")
	}
	if code, _ := e.call(alice, http.MethodPost, path("tvm"), nil); code != http.StatusForbidden {
		t.Fatalf("owner retesting a finding outside their controls: %d", code)
	}
	if code, _ := e.call(alice, http.MethodPost, "/v1/findings/999999/retest", nil); code != http.StatusNotFound {
		t.Fatalf("retest of an unknown finding: %d", code)
	}
	e.must(e.admin, http.MethodPost, path("tvm"), nil, http.StatusAccepted, &rv)

	// The next run of the scope sees tvm and other but not ais.
	run := e.scan(time.Now(), "tvm", "other")
	var ais, tvm FindingDetail
	e.must(alice, http.MethodGet, "/v1/findings/"+strconv.FormatInt(e.ids["ais"], 10), nil, http.StatusOK, &ais)
	e.must(alice, http.MethodGet, "/v1/findings/"+strconv.FormatInt(e.ids["tvm"], 10), nil, http.StatusOK, &tvm)
	if ais.Status != finding.StatusResolved || len(ais.Retests) != 1 || ais.Retests[0].Result != store.RetestPassed ||
		ais.Retests[0].RunID == nil || *ais.Retests[0].RunID != run || ais.ResolvedByRun == nil || *ais.ResolvedByRun != run {
		t.Fatalf("ais after its retest: status %s, retests %+v", ais.Status, ais.Retests)
	}
	if tvm.Status != finding.StatusOpen || len(tvm.Retests) != 1 || tvm.Retests[0].Result != store.RetestFailed {
		t.Fatalf("tvm after its retest: status %s, retests %+v", tvm.Status, tvm.Retests)
	}
	acts := storetest.Strings(t, e.st, `SELECT action || ' by ' || actor FROM activity_log WHERE action = 'finding.retest_requested' ORDER BY id`)
	if len(acts) != 2 || acts[0] != "finding.retest_requested by alice" {
		t.Fatalf("activity = %v", acts)
	}
	if code, _ := e.call(alice, http.MethodPost, path("ais"), nil); code != http.StatusConflict {
		t.Fatalf("retest of a resolved finding: %d", code)
	}
}
