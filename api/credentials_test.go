package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// credTestAuth authenticates with the store's tokens, as the daemon does.
type credTestAuth struct{ st *store.Store }

func (a credTestAuth) Authenticate(ctx context.Context, token string) (api.Principal, error) {
	p, err := a.st.Authenticate(ctx, token)
	if errors.Is(err, store.ErrUnauthenticated) {
		return api.Principal{}, api.ErrUnauthenticated
	}
	if err != nil {
		return api.Principal{}, err
	}
	return api.Principal{ID: p.ID, Name: p.Name, Role: p.Role}, nil
}

// lockedBuffer collects log output written from handler goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type credTestEnv struct {
	t      *testing.T
	srv    *api.Server
	st     *store.Store
	kr     *vault.Keyring
	logs   *lockedBuffer
	tokens map[string]string // role -> token
}

func newCredTestEnv(t *testing.T) *credTestEnv {
	t.Helper()
	st, _ := storetest.New(t)
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := vault.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := &credTestEnv{t: t, st: st, kr: kr, logs: logs, tokens: map[string]string{}}
	for _, role := range store.Roles() {
		tok, err := st.CreateToken(t.Context(), role+"-user", role)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = tok
	}
	e.srv = api.New(api.Options{Logger: log, Auth: credTestAuth{st}, Store: st, Keyring: kr})
	return e
}

// do sends a request as role ("" for no token) and returns status and body.
func (e *credTestEnv) do(role, method, path, body string) (int, string) {
	e.t.Helper()
	req := httptest.NewRequestWithContext(e.t.Context(), method, path, strings.NewReader(body))
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// leaks reports whether out holds secret in clear or in base64.
func leaks(out, secret string) bool {
	return strings.Contains(out, secret) || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(secret)))
}

func TestCredentialsWriteOnly(t *testing.T) {
	t.Parallel()
	e := newCredTestEnv(t)
	const secret = "tok-Sup3rSecret-000111"
	code, body := e.do("admin", "POST", "/v1/credentials", `{"targets":["https://app.example.com/"],"name":"api-token","kind":"bearer","secret":"`+secret+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST = %d %s", code, body)
	}
	var w struct{ ID, Name, Kind, KeyID string }
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(body), &raw)
	if len(w.ID) != 36 || w.Name != "api-token" || w.Kind != "bearer" || raw["key_id"] != e.kr.CurrentID() || len(raw) != 4 {
		t.Fatalf("POST answer = %s", body)
	}
	if leaks(body, secret) {
		t.Fatalf("POST answer holds the secret: %s", body)
	}

	const basicSecret = "b4sic pass\r\nword"
	if code, body := e.do("operator", "POST", "/v1/credentials",
		`{"targets":["https://app.example.com/"],"name":"portal","kind":"basic","username":"scanner","secret":"b4sic pass\r\nword"}`); code != http.StatusCreated {
		t.Fatalf("operator POST = %d %s", code, body)
	}

	code, list := e.do("auditor", "GET", "/v1/credentials", "")
	if code != http.StatusOK || !strings.Contains(list, `"api-token"`) || !strings.Contains(list, `"scanner"`) {
		t.Fatalf("GET = %d %s", code, list)
	}
	code, one := e.do("operator", "GET", "/v1/credentials/api-token", "")
	if code != http.StatusOK || !strings.Contains(one, w.ID) {
		t.Fatalf("GET one = %d %s", code, one)
	}
	rec, err := e.st.GetCredential(t.Context(), "api-token")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{list, one} {
		if leaks(out, secret) || leaks(out, basicSecret) || strings.Contains(out, rec.Sealed) ||
			strings.Contains(out, "v1:"+e.kr.CurrentID()) || strings.Contains(out, "sealed") {
			t.Fatalf("GET shows secret material: %s", out)
		}
	}

	// Replace through PUT keeps the id and changes the secret.
	const secret2 = "tok-Repl4ced-222333"
	code, body = e.do("operator", "PUT", "/v1/credentials/api-token", `{"targets":["https://app.example.com/"],"kind":"bearer","secret":"`+secret2+`"}`)
	if code != http.StatusOK || !strings.Contains(body, w.ID) || leaks(body, secret2) {
		t.Fatalf("PUT = %d %s", code, body)
	}
	c, err := credentials.LoadCredential(t.Context(), e.st, e.kr, "api-token")
	if err != nil || c.Secret.Reveal() != secret2 {
		t.Fatalf("after PUT: %v", err)
	}
	if code, body := e.do("admin", "PUT", "/v1/credentials/new-one", `{"targets":["https://app.example.com/"],"kind":"cookie","secret":"sid=zz99"}`); code != http.StatusCreated {
		t.Fatalf("PUT new = %d %s", code, body)
	}
	if code, body := e.do("admin", "POST", "/v1/credentials", `{"targets":["https://app.example.com/"],"name":"api-token","kind":"bearer","secret":"x-`+secret+`"}`); code != http.StatusConflict || leaks(body, secret) {
		t.Fatalf("POST duplicate = %d %s", code, body)
	}

	if code, body := e.do("operator", "DELETE", "/v1/credentials/portal", ""); code != http.StatusForbidden {
		t.Fatalf("operator DELETE = %d %s", code, body)
	}
	if code, body := e.do("admin", "DELETE", "/v1/credentials/portal", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	if code, _ := e.do("admin", "DELETE", "/v1/credentials/portal", ""); code != http.StatusNotFound {
		t.Fatalf("DELETE again = %d", code)
	}
	if code, _ := e.do("admin", "GET", "/v1/credentials/portal", ""); code != http.StatusNotFound {
		t.Fatalf("GET deleted = %d", code)
	}

	for _, s := range []string{secret, secret2, basicSecret, "b4sic pass"} {
		if leaks(e.logs.String(), s) {
			t.Fatalf("log holds a secret:\n%s", e.logs.String())
		}
	}
}

func TestCredentialsAuth(t *testing.T) {
	t.Parallel()
	e := newCredTestEnv(t)
	body := `{"targets":["https://app.example.com/"],"name":"x","kind":"bearer","secret":"tok-abc"}`
	tests := []struct {
		role, method, path, body string
		want                     int
	}{
		{"", "POST", "/v1/credentials", body, http.StatusUnauthorized},
		{"", "GET", "/v1/credentials", "", http.StatusUnauthorized},
		{"auditor", "POST", "/v1/credentials", body, http.StatusForbidden},
		{"owner", "POST", "/v1/credentials", body, http.StatusForbidden},
		{"ingest", "PUT", "/v1/credentials/x", body, http.StatusForbidden},
		{"owner", "GET", "/v1/credentials", "", http.StatusForbidden},
		{"ingest", "GET", "/v1/credentials", "", http.StatusForbidden},
		{"auditor", "DELETE", "/v1/credentials/x", "", http.StatusForbidden},
	}
	for _, tt := range tests {
		if code, out := e.do(tt.role, tt.method, tt.path, tt.body); code != tt.want {
			t.Errorf("%s %s as %q = %d %s, want %d", tt.method, tt.path, tt.role, code, out, tt.want)
		}
	}
	if n, err := e.st.ListCredentials(t.Context()); err != nil || len(n) != 0 {
		t.Fatalf("refused requests stored %d credentials (%v)", len(n), err)
	}
}

func TestCredentialsInvalid(t *testing.T) {
	t.Parallel()
	e := newCredTestEnv(t)
	tests := []struct {
		name, body string
		want       int
		field      string
		secret     string
	}{
		{"CRLF in header value", `{"targets":["https://app.example.com/"],"name":"gw","kind":"header","header_name":"X-Key","secret":"v4lue-abc\r\nHost: evil"}`, 422, "secret", "v4lue-abc"},
		{"LF in bearer", `{"targets":["https://app.example.com/"],"name":"t","kind":"bearer","secret":"tok-qq77\nX-Evil: 1"}`, 422, "secret", "tok-qq77"},
		{"bad kind", `{"targets":["https://app.example.com/"],"name":"t","kind":"oauth","secret":"tok-zz88"}`, 422, "kind", "tok-zz88"},
		{"bad name", `{"targets":["https://app.example.com/"],"name":"a/b","kind":"bearer","secret":"tok-yy66"}`, 422, "name", "tok-yy66"},
		{"placeholder", `{"targets":["https://app.example.com/"],"name":"t","kind":"bearer","secret":"[REDACTED]"}`, 422, "secret", ""},
		{"unknown field", `{"targets":["https://app.example.com/"],"name":"t","kind":"bearer","secret":"tok-ww55","password":"x"}`, 400, "", "tok-ww55"},
		{"not JSON", `{"targets":["https://app.example.com/"],"name":"t","secret":"tok-vv44"`, 400, "", "tok-vv44"},
		{"secret not a string", `{"targets":["https://app.example.com/"],"name":"t","kind":"bearer","secret":12345678}`, 400, "", "12345678"},
		{"two values", `{"targets":["https://app.example.com/"],"name":"t","kind":"bearer","secret":"tok-uu33"} {}`, 400, "", "tok-uu33"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := e.do("admin", "POST", "/v1/credentials", tt.body)
			if code != tt.want {
				t.Fatalf("POST = %d %s, want %d", code, out, tt.want)
			}
			if tt.field != "" {
				var eb struct{ Error, Field, Reason string }
				if err := json.Unmarshal([]byte(out), &eb); err != nil || eb.Field != tt.field || eb.Error != "invalid_credential" {
					t.Fatalf("answer %s: want field %q", out, tt.field)
				}
			}
			if tt.secret != "" && leaks(out, tt.secret) {
				t.Fatalf("answer echoes the secret: %s", out)
			}
		})
	}
	big := `{"targets":["https://app.example.com/"],"name":"big","kind":"bearer","secret":"` + strings.Repeat("A", 70<<10) + `"}`
	if code, out := e.do("admin", "POST", "/v1/credentials", big); code != http.StatusRequestEntityTooLarge || len(out) > 1024 {
		t.Fatalf("oversized POST = %d (%d bytes)", code, len(out))
	}
	if n, err := e.st.ListCredentials(t.Context()); err != nil || len(n) != 0 {
		t.Fatalf("invalid requests stored %d credentials (%v)", len(n), err)
	}
	for _, s := range []string{"v4lue-abc", "tok-qq77", "tok-zz88", "tok-ww55", "tok-vv44", "tok-uu33"} {
		if leaks(e.logs.String(), s) {
			t.Fatalf("log holds a secret:\n%s", e.logs.String())
		}
	}
}

// TestCredentialsNeedKeyring: without a keyring the routes do not exist, so
// no secret can be accepted that could not be encrypted.
func TestCredentialsNeedKeyring(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	tok, err := st.CreateToken(t.Context(), "root", store.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Auth: credTestAuth{st}, Store: st})
	req := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/credentials", strings.NewReader(`{"targets":["https://app.example.com/"],"name":"x","kind":"bearer","secret":"t"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("POST without keyring = %d %s", rec.Code, rec.Body)
	}
}
