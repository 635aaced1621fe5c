package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// call sends a request with tok ("" for none) to srv.
func call(t *testing.T, srv *Server, tok, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// TestTokensAPI: an admin creates a scoped token (answered once, not
// cacheable), lists tokens without secrets and revokes it; every change is
// in the activity log with the admin as actor; bad requests say which
// field is wrong.
func TestTokensAPI(t *testing.T) {
	t.Parallel()
	srv, st := newFullServer(t)
	admin, err := st.CreateToken(t.Context(), "root", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	rec := call(t, srv, admin, http.MethodPost, "/v1/tokens",
		`{"name":"ci-shop","role":"ingest","scopes":["https://*.example.com","https://*.example.com"],"kinds":["external"]}`)
	if rec.Code != http.StatusCreated || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("POST /v1/tokens = %d %s (Cache-Control %q)", rec.Code, rec.Body, rec.Header().Get("Cache-Control"))
	}
	var created tokenCreated
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Token, "sp_") || created.Role != RoleIngest ||
		!slices.Equal(created.Scopes, []string{"https://*.example.com"}) || !slices.Equal(created.Kinds, []string{"external"}) {
		t.Fatalf("created = %+v", created)
	}
	// The new token works and carries its limits.
	up := func(query string) *httptest.ResponseRecorder {
		return call(t, srv, created.Token, http.MethodPost, "/v1/runs?"+query, nucleiLine)
	}
	if rec := up("scope=https://shop.example.com&kind=external"); rec.Code != http.StatusAccepted {
		t.Fatalf("in-scope upload = %d %s", rec.Code, rec.Body)
	}
	if rec := up("scope=https://shop.other.com&kind=external"); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "matches none of the token's scopes") {
		t.Fatalf("out-of-scope upload = %d %s", rec.Code, rec.Body)
	}

	rec = call(t, srv, admin, http.MethodGet, "/v1/tokens", "")
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), created.Token) || strings.Contains(rec.Body.String(), "sp_") {
		t.Fatalf("GET /v1/tokens = %d %s", rec.Code, rec.Body)
	}
	var list struct{ Items []Token }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Items) != 2 || list.Items[0].Name != "ci-shop" || len(list.Items[0].Scopes) != 1 {
		t.Fatalf("token list = %+v, %v", list, err)
	}

	for _, tc := range []struct {
		body     string
		want     int
		contains string
	}{
		{`{"name":"ci-shop","role":"ingest"}`, http.StatusConflict, "already exists"},
		{`{"name":"x","role":"root"}`, http.StatusBadRequest, "invalid role"},
		{`{"name":"x","role":"ingest","kinds":["internal"]}`, http.StatusBadRequest, "invalid kinds"},
		{`{"name":"x","role":"ingest","scopes":[""]}`, http.StatusBadRequest, "invalid scopes"},
		{`{"name":"x","role":"ingest","scope":["a"]}`, http.StatusBadRequest, "unknown field"},
		{`{"name":"x",`, http.StatusBadRequest, "request body"},
		{`{"name":"` + strings.Repeat("a", maxTokenBody) + `"}`, http.StatusRequestEntityTooLarge, "larger than"},
	} {
		if rec := call(t, srv, admin, http.MethodPost, "/v1/tokens", tc.body); rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("POST %.60s = %d %s, want %d containing %q", tc.body, rec.Code, rec.Body, tc.want, tc.contains)
		}
	}

	if rec := call(t, srv, admin, http.MethodDelete, "/v1/tokens/ci-shop", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", rec.Code, rec.Body)
	}
	if rec := up("scope=https://shop.example.com&kind=external"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token upload = %d", rec.Code)
	}
	if rec := call(t, srv, admin, http.MethodDelete, "/v1/tokens/nobody", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("DELETE unknown = %d", rec.Code)
	}
	acts := storetest.Strings(t, st, `SELECT action || ' ' || subject_id || ' by ' || actor FROM activity_log WHERE subject_type = 'token' ORDER BY id`)
	if want := []string{"token.created root by system", "token.created ci-shop by root", "token.revoked ci-shop by root"}; !slices.Equal(acts, want) {
		t.Fatalf("activity %q, want %q", acts, want)
	}
}

// TestUploadLimits: a token limited to scopes and kinds uploads within
// them and gets 403 naming the limit outside them.
func TestUploadLimits(t *testing.T) {
	t.Parallel()
	srv, st := newFullServer(t)
	tok, err := st.IssueToken(t.Context(), store.TokenSpec{Name: "ci", Role: RoleIngest,
		Scopes: []string{"git.example.com/acme/**", "https://shop.example.com"}, Kinds: []string{"external", "code"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	onlyScopes, err := st.IssueToken(t.Context(), store.TokenSpec{Name: "ci-any-kind", Role: RoleIngest,
		Scopes: []string{"https://shop.example.com"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tok, query string
		want             int
		contains         string
	}{
		{"exact scope", tok, "scope=https://shop.example.com&kind=external", http.StatusAccepted, ""},
		{"scope with spaces", tok, "scope=%20https://shop.example.com%20&kind=external", http.StatusAccepted, ""},
		{"glob scope", tok, "scope=git.example.com/acme/web/api&kind=code&format=nuclei", http.StatusAccepted, ""},
		{"other scope", tok, "scope=https://evil.example.com&kind=external", http.StatusForbidden, `may not upload scope \"https://evil.example.com\"`},
		{"prefix is not enough", tok, "scope=https://shop.example.com.evil.net&kind=external", http.StatusForbidden, "matches none"},
		{"other kind", tok, "scope=https://shop.example.com&kind=authenticated", http.StatusForbidden, `may not upload kind \"authenticated\"`},
		{"kind required", tok, "scope=https://shop.example.com", http.StatusForbidden, "name the upload's kind"},
		{"no scope is intake's 400", tok, "kind=external", http.StatusBadRequest, "scope is required"},
		{"scopes only, any kind", onlyScopes, "scope=https://shop.example.com", http.StatusAccepted, ""},
		{"scopes only, other scope", onlyScopes, "scope=https://shop.example.org", http.StatusForbidden, "matches none"},
	} {
		rec := call(t, srv, tc.tok, http.MethodPost, "/v1/runs?"+tc.query, nucleiLine)
		if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, rec.Code, rec.Body, tc.want, tc.contains)
		}
	}
	// Nothing was stored for a refused upload.
	if n := storetest.Strings(t, st, `SELECT scope FROM scan_runs WHERE scope LIKE '%evil%'`); len(n) != 0 {
		t.Fatalf("refused uploads stored runs: %q", n)
	}
}

// TestHeldRunsAPI: release and discard answer 200 for a held run, 409 for
// a run that is not held, 404 for an unknown one, and 403 to a token
// limited to other scopes; the release resolves what the run did not see,
// with the caller in the activity log.
func TestHeldRunsAPI(t *testing.T) {
	t.Parallel()
	srv, st := newFullServer(t)
	ctx := t.Context()
	op, err := st.CreateToken(ctx, "ops", RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := st.IssueToken(ctx, store.TokenSpec{Name: "ops-elsewhere", Role: RoleOperator, Scopes: []string{"other/**"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	run := func(status string) string {
		var id string
		if err := storetest.SQL(t, st).QueryRow(ctx, `
			INSERT INTO scan_runs (kind, scope, tool, format, status, stats, hold_would_resolve, hold_open)
			VALUES ('code', 'repo', 'semgrep', 'sarif', $1, '{"tools":["semgrep"]}', 3, 3) RETURNING id::text`, status).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	seeded := run("succeeded")
	fs := make([]finding.Finding, 3)
	for i := range fs {
		fs[i] = finding.Finding{Fingerprint: "fp" + string(rune('a'+i)), Scope: "repo", Kind: finding.KindCode, Tool: "semgrep",
			RuleID: "r", Title: "t", Severity: finding.SeverityHigh, Location: finding.Location{Kind: finding.LocationFile, URI: "a.go"}}
	}
	if err := st.InTx(ctx, func(tx *store.Tx) error {
		_, err := store.UpsertFindingsBatch(ctx, tx, seeded, fs, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	heldA, heldB := run("held"), run("held")

	if rec := call(t, srv, elsewhere, http.MethodPost, "/v1/runs/"+heldA+"/release", ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "may not decide") {
		t.Fatalf("release by a token of other scopes = %d %s", rec.Code, rec.Body)
	}
	rec := call(t, srv, op, http.MethodPost, "/v1/runs/"+heldA+"/release", "")
	var d runDecision
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Status != "succeeded" || d.Resolved != 3 || d.DecidedBy != "ops" {
		t.Fatalf("release = %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, srv, op, http.MethodPost, "/v1/runs/"+heldA+"/release", ""); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "is succeeded, not held") {
		t.Fatalf("second release = %d %s", rec.Code, rec.Body)
	}
	rec = call(t, srv, op, http.MethodPost, "/v1/runs/"+heldB+"/discard", "")
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Status != "discarded" || d.Resolved != 0 {
		t.Fatalf("discard = %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, srv, op, http.MethodPost, "/v1/runs/"+seeded+"/discard", ""); rec.Code != http.StatusConflict {
		t.Fatalf("discard of a succeeded run = %d %s", rec.Code, rec.Body)
	}
	for _, id := range []string{"7c1e5f0c-1b1a-4c7e-9a52-0d4c1f1d2e3a", "nope"} {
		if rec := call(t, srv, op, http.MethodPost, "/v1/runs/"+id+"/release", ""); rec.Code != http.StatusNotFound {
			t.Fatalf("release of %s = %d %s", id, rec.Code, rec.Body)
		}
	}
	acts := storetest.Strings(t, st, `SELECT action || ' by ' || actor FROM activity_log WHERE action LIKE 'run.%' OR action = 'finding.resolved' ORDER BY id`)
	want := []string{"finding.resolved by ops", "finding.resolved by ops", "finding.resolved by ops", "run.released by ops", "run.discarded by ops"}
	if !slices.Equal(acts, want) {
		t.Fatalf("activity %q, want %q", acts, want)
	}
}

// TestReadyzDetails: /readyz tells what is not ready only to a caller with
// a valid token.
func TestReadyzDetails(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ready := errors.New("database: dial tcp 10.1.2.3:5432: connection refused")
	srv := New(Options{Auth: storeAuthenticator{st}, Ready: func(context.Context) error { return ready }})
	tok, err := st.CreateToken(t.Context(), "probe", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := st.CreateToken(t.Context(), "gone", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(t.Context(), "gone", "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tok string
		details   bool
	}{
		{"no token", "", false},
		{"made-up token", "sp_" + strings.Repeat("x", 43), false},
		{"revoked token", revoked, false},
		{"valid token", tok, true},
	} {
		rec := call(t, srv, tc.tok, http.MethodGet, "/readyz", "")
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || strings.Contains(body, "10.1.2.3") != tc.details || strings.Contains(body, "database") != tc.details {
			t.Errorf("%s: %d %s (want details: %v)", tc.name, rec.Code, body, tc.details)
		}
		if !tc.details && strings.TrimSpace(body) != `{"status":"not ready"}` {
			t.Errorf("%s: body %s, want the generic one", tc.name, body)
		}
	}
	ready = nil
	if rec := call(t, srv, "", http.MethodGet, "/readyz", ""); rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"ready"`)) {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
}
