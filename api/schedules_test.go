package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

type schedEnv struct {
	t      *testing.T
	srv    *api.Server
	st     *store.Store
	tokens map[string]string
}

func newSchedEnv(t *testing.T) *schedEnv {
	t.Helper()
	st, _ := storetest.New(t)
	e := &schedEnv{t: t, st: st, tokens: map[string]string{}}
	for _, role := range store.Roles() {
		tok, err := st.CreateToken(t.Context(), role+"-user", role)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = tok
	}
	// The demo's bounds: loopback targets are allowed (dev's policy).
	e.srv = api.New(api.Options{Auth: credTestAuth{st}, Store: st, SchedulePolicy: spec.Options{
		Network: netpolicy.New(netpolicy.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}),
	}})
	return e
}

func (e *schedEnv) do(role, method, path, body string) (int, map[string]any) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(e.t.Context(), method, path, r)
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	var out map[string]any
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			e.t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, rec.Body.String(), err)
		}
	}
	return rec.Code, out
}

const webSchedule = `{"name":"web","kind":"external","targets":{"urls":["http://127.0.0.1:8081"]},
	"cadence":"daily@02:00","timezone":"Europe/Berlin","controls":["TVM-07"]}`

func TestSchedulesAPI(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	op := store.RoleOperator

	code, body := e.do(op, "POST", "/v1/schedules", webSchedule)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, body)
	}
	status := body["status"].(map[string]any)
	next, err := time.Parse(time.RFC3339, status["next_due"].(string))
	if err != nil || !next.After(time.Now()) || next.In(mustLoc(t, "Europe/Berlin")).Hour() != 2 {
		t.Fatalf("next_due %v (%v), want the next 02:00 in Berlin", status["next_due"], err)
	}
	if sc := body["schedule"].(map[string]any); sc["name"] != "web" || sc["enabled"] != true {
		t.Fatalf("schedule = %v", sc)
	}
	if code, body := e.do(op, "POST", "/v1/schedules", webSchedule); code != http.StatusConflict {
		t.Fatalf("POST again: %d %v, want 409", code, body)
	}

	// Bad schedules are refused with the field and the reason.
	for _, c := range []struct{ body, field, reason string }{
		{strings.Replace(webSchedule, "daily@02:00", "weekly@Fun 02:00", 1), "cadence", `unknown day "Fun"`},
		{strings.Replace(webSchedule, `"kind"`, `"knd"`, 1), "knd", "unknown field"},
		{strings.Replace(webSchedule, "Europe/Berlin", "Mars/Olympus", 1), "timezone", "unknown time zone"},
		{strings.Replace(webSchedule, `"external"`, `"authenticated"`, 1), "credential", "required"},
		{strings.Replace(webSchedule, `"controls":["TVM-07"]`, `"controls":"TVM-07"`, 1), "controls", "must be"},
	} {
		code, body := e.do(op, "POST", "/v1/schedules", c.body)
		if code != http.StatusUnprocessableEntity || body["error"] != "invalid_schedule" || body["field"] != c.field ||
			!strings.Contains(body["message"].(string), c.reason) {
			t.Errorf("POST %s: %d %v; want 422 on %s mentioning %q", c.body, code, body, c.field, c.reason)
		}
	}
	if code, _ := e.do(op, "POST", "/v1/schedules", `{"name":`); code != http.StatusBadRequest {
		t.Errorf("truncated JSON: %d, want 400", code)
	}

	// Reading: operators, owners and auditors; not ingest tokens.
	for _, role := range []string{store.RoleAuditor, store.RoleOwner, op} {
		code, body := e.do(role, "GET", "/v1/schedules", "")
		if code != http.StatusOK || len(body["schedules"].([]any)) != 1 {
			t.Fatalf("GET list as %s: %d %v", role, code, body)
		}
	}
	if code, _ := e.do(store.RoleIngest, "GET", "/v1/schedules", ""); code != http.StatusForbidden {
		t.Fatalf("GET as ingest: %d, want 403", code)
	}
	if code, _ := e.do(store.RoleAuditor, "POST", "/v1/schedules", webSchedule); code != http.StatusForbidden {
		t.Fatalf("POST as auditor: %d, want 403", code)
	}

	// Update: the name may be left to the URL, but not contradict it.
	upd := strings.Replace(strings.Replace(webSchedule, `"name":"web",`, "", 1), `"controls":["TVM-07"]`, `"enabled":false`, 1)
	code, body = e.do(op, "PUT", "/v1/schedules/web", upd)
	if code != http.StatusOK {
		t.Fatalf("PUT: %d %v", code, body)
	}
	if st := body["status"].(map[string]any); st["enabled"] != false || st["next_due"] != nil || st["updated_by"] != "operator-user" {
		t.Fatalf("after PUT status = %v", st)
	}
	if code, body := e.do(op, "PUT", "/v1/schedules/other", webSchedule); code != http.StatusUnprocessableEntity || body["field"] != "name" {
		t.Fatalf("PUT with another name: %d %v", code, body)
	}
	if code, _ := e.do(op, "PUT", "/v1/schedules/nope", strings.Replace(webSchedule, `"web"`, `"nope"`, 1)); code != http.StatusNotFound {
		t.Fatalf("PUT unknown: %d, want 404", code)
	}

	// The ledger, before and after the schedule is deleted.
	due := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := e.st.ClaimDue(t.Context(), store.ClaimRequest{Schedule: "web", Due: due, Now: due}); err != nil {
		t.Fatal(err)
	}
	code, body = e.do(store.RoleAuditor, "GET", "/v1/schedules/web/ledger", "")
	if code != http.StatusOK || len(body["entries"].([]any)) != 1 {
		t.Fatalf("ledger: %d %v", code, body)
	}
	if en := body["entries"].([]any)[0].(map[string]any); en["status"] != "pending" || en["due"] != due.Format(time.RFC3339) {
		t.Fatalf("ledger entry %v", en)
	}
	from := due.Add(time.Minute).Format(time.RFC3339)
	if code, body := e.do(store.RoleAuditor, "GET", "/v1/schedules/web/ledger?from="+from, ""); code != http.StatusOK || len(body["entries"].([]any)) != 0 {
		t.Fatalf("ledger from after the due time: %d %v", code, body)
	}
	if code, _ := e.do(store.RoleAuditor, "GET", "/v1/schedules/web/ledger?from=yesterday", ""); code != http.StatusBadRequest {
		t.Fatalf("bad from: %d", code)
	}

	if code, _ := e.do(store.RoleAuditor, "DELETE", "/v1/schedules/web", ""); code != http.StatusForbidden {
		t.Fatalf("DELETE as auditor: %d", code)
	}
	if code, _ := e.do(op, "DELETE", "/v1/schedules/web", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ := e.do(op, "GET", "/v1/schedules/web", ""); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", code)
	}
	if code, _ := e.do(op, "DELETE", "/v1/schedules/web", ""); code != http.StatusNotFound {
		t.Fatalf("DELETE again: %d", code)
	}
	if code, body := e.do(store.RoleAuditor, "GET", "/v1/schedules/web/ledger", ""); code != http.StatusOK || len(body["entries"].([]any)) != 1 {
		t.Fatalf("ledger of a deleted schedule: %d %v", code, body)
	}
	if code, _ := e.do(store.RoleAuditor, "GET", "/v1/schedules/never/ledger", ""); code != http.StatusNotFound {
		t.Fatalf("ledger of an unknown schedule: %d", code)
	}
	if code, body := e.do(op, "POST", "/v1/schedules", webSchedule); code != http.StatusCreated {
		t.Fatalf("re-creating a deleted schedule: %d %v", code, body)
	}
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestLedgerShowsEveryRun: the ledger row of a due time of an external
// schedule with domains lists the amass run and each nuclei run, with
// their scopes and their statuses as the pipeline moves them on.
func TestLedgerShowsEveryRun(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t)
	ctx := t.Context()
	const sched = `{"name":"estate","kind":"external","targets":{"domains":["example.test"],"urls":["http://127.0.0.1:8081"]},
		"cadence":"daily@02:00","controls":["TVM-07"]}`
	if code, body := e.do(store.RoleOperator, "POST", "/v1/schedules", sched); code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, body)
	}
	due := time.Now().UTC().Truncate(time.Hour)
	c, err := e.st.ClaimDue(ctx, store.ClaimRequest{Schedule: "estate", Due: due, Now: due})
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ scope, tool, status string }
	wants := []want{
		{"domains:example.test", "amass", "succeeded"},
		{"http://127.0.0.1:8081", "nuclei", "succeeded"},
		{"http://www.example.test", "nuclei", "failed"},
	}
	var ids []string
	for _, w := range wants {
		var id string
		if err := storetest.SQL(t, e.st).QueryRow(ctx, `
			INSERT INTO scan_runs (schedule_id, kind, scope, tool, format, status, error)
			VALUES ('estate', 'external', $1, $2, $2, 'processing', NULL) RETURNING id::text`, w.scope, w.tool).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := e.st.MarkLedger(ctx, c.LedgerID, finding.LedgerSucceeded, ids, ""); err != nil {
		t.Fatal(err)
	}
	// The pipeline finishes the runs after the scan ended: the ledger
	// reads their statuses as they are now.
	for i, w := range wants {
		if _, err := storetest.SQL(t, e.st).Exec(ctx, `UPDATE scan_runs SET status = $2, error = nullif($3, '') WHERE id = $1::uuid`,
			ids[i], w.status, map[bool]string{true: "bad output"}[w.status == "failed"]); err != nil {
			t.Fatal(err)
		}
	}

	code, body := e.do(store.RoleAuditor, "GET", "/v1/schedules/estate/ledger", "")
	if code != http.StatusOK {
		t.Fatalf("GET ledger: %d %v", code, body)
	}
	entries := body["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("entries %v, want one", entries)
	}
	entry := entries[0].(map[string]any)
	if entry["run_id"] != ids[0] || entry["status"] != "succeeded" {
		t.Fatalf("entry %v, want run_id %s (the first run), succeeded", entry, ids[0])
	}
	runs := entry["runs"].([]any)
	if len(runs) != len(wants) {
		t.Fatalf("runs %v, want %d", runs, len(wants))
	}
	for i, w := range wants {
		r := runs[i].(map[string]any)
		if r["id"] != ids[i] || r["scope"] != w.scope || r["tool"] != w.tool || r["status"] != w.status {
			t.Errorf("run %d = %v, want %s %+v", i, r, ids[i], w)
		}
	}
	if e := runs[2].(map[string]any)["error"]; e != "bad output" {
		t.Errorf("failed run's error %v", e)
	}
}
