package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// newPolicyEnv serves schedules and credentials under a production-like
// admin configuration: one analyser (gosec), a word-list directory, and
// the default network policy (public addresses only).
func newPolicyEnv(t *testing.T) *schedEnv {
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
	lists := t.TempDir()
	if err := os.WriteFile(filepath.Join(lists, "top.txt"), []byte("www\napi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &schedEnv{t: t, st: st, tokens: map[string]string{}}
	for _, role := range store.Roles() {
		tok, err := st.CreateToken(t.Context(), role+"-user", role)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = tok
	}
	e.srv = api.New(api.Options{Auth: credTestAuth{st}, Store: st, Keyring: kr,
		SchedulePolicy: spec.Options{Analyzers: []string{"gosec"}, WordlistDir: lists}})
	return e
}

// TestHostileSchedules sends, with an operator token, schedules that would
// run a program, read a host file, reach cloud metadata, loopback or
// private networks, or send a credential where it does not belong: each is
// refused with 422 naming the field. The allowed forms are accepted.
func TestHostileSchedules(t *testing.T) {
	t.Parallel()
	e := newPolicyEnv(t)
	op := store.RoleOperator
	for _, c := range []string{
		`{"name":"app-api","kind":"bearer","secret":"tok-policy-1","targets":["https://app.example.com/api"]}`,
		`{"name":"legacy","kind":"bearer","secret":"tok-policy-2","targets":["http://legacy.example.com/"],"allow_http":true}`,
	} {
		if code, body := e.do(op, "POST", "/v1/credentials", c); code != http.StatusCreated {
			t.Fatalf("POST credential: %d %v", code, body)
		}
	}
	// A credential stored before targets existed.
	if _, _, err := e.st.PutCredential(t.Context(), store.CredentialRecord{ID: "00000000-0000-4000-8000-000000000001",
		Name: "old", Kind: "bearer", KeyID: "0123456789abcdef", Sealed: "v1:0123456789abcdef:AA:BB"}, "migration"); err != nil {
		t.Fatal(err)
	}

	ext := func(extra string) string {
		return `{"name":"h","kind":"external","cadence":"daily@02:00",` + extra + `}`
	}
	auth := func(cred string, urls ...string) string {
		return `{"name":"h","kind":"authenticated","cadence":"daily@02:00","credential":"` + cred +
			`","targets":{"urls":["` + strings.Join(urls, `","`) + `"]}}`
	}
	codeSched := func(code string) string {
		return `{"name":"h","kind":"code","cadence":"daily@02:00","targets":{"repositories":["https://git.example.com/r.git"]},"code":` + code + `}`
	}
	tests := []struct {
		name, body, field, reason string
	}{
		{"command", codeSched(`{"command":["sh","-c","cat /etc/shadow"]}`), "code.command", "cannot carry a command"},
		{"command beside an analyser", codeSched(`{"analyzer":"gosec","command":["sh"]}`), "code.command", "cannot carry a command"},
		{"unknown analyser", codeSched(`{"analyzer":"sh"}`), "code.analyzer", `no analyser named "sh"`},
		{"word-list path", ext(`"targets":{"domains":["example.com"]},"amass":{"wordlist_file":"/etc/passwd"}`), "amass.wordlist_file", "cannot read files from the host"},
		{"word-list name with a path", ext(`"targets":{"domains":["example.com"]},"amass":{"wordlist_name":"../../etc/passwd"}`), "amass.wordlist_name", "without a path"},
		{"metadata address", ext(`"targets":{"urls":["http://169.254.169.254/latest/meta-data/"]}`), "targets.urls[0]", "169.254.169.254 is link-local"},
		{"metadata IPv6", ext(`"targets":{"urls":["[fd00:ec2::254]:80"]}`), "targets.urls[0]", "unique local"},
		{"loopback", ext(`"targets":{"urls":["http://127.0.0.1:8080"]}`), "targets.urls[0]", "loopback"},
		{"private", ext(`"targets":{"urls":["https://10.1.2.3/"]}`), "targets.urls[0]", "private (RFC 1918)"},
		{"private repository", strings.Replace(codeSched(`{"analyzer":"gosec"}`), "https://git.example.com", "https://192.168.1.5", 1), "targets.repositories[0]", "private"},
		{"resolver in metadata range", ext(`"targets":{"domains":["example.com"]},"amass":{"resolvers":["169.254.169.254"]}`), "amass.resolvers[0]", "link-local"},
		{"credential aimed elsewhere", auth("app-api", "https://attacker.example.net/api"), "targets.urls[0]", `credential "app-api" may not be sent to https://attacker.example.net/api`},
		{"credential outside its path", auth("app-api", "https://app.example.com/apix"), "targets.urls[0]", "not under the credential's targets"},
		{"http without allow_http", auth("app-api", "http://app.example.com/api"), "targets.urls[0]", "allow_http"},
		{"credential without targets", auth("old", "https://app.example.com/api"), "credential", "has no targets"},
		{"unknown credential", auth("nope", "https://app.example.com/api"), "credential", `no credential named "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(op, "POST", "/v1/schedules", tt.body)
			msg, _ := body["message"].(string)
			if code != http.StatusUnprocessableEntity || body["field"] != tt.field || !strings.Contains(msg, tt.reason) {
				t.Fatalf("POST: %d %v\nwant 422, field %q, message ~ %q", code, body, tt.field, tt.reason)
			}
			if !strings.Contains(msg, tt.field) {
				t.Errorf("message %q does not name the field %s", msg, tt.field)
			}
			if code, body := e.do(op, "PUT", "/v1/schedules/h", tt.body); code != http.StatusUnprocessableEntity || body["field"] != tt.field {
				t.Errorf("PUT: %d %v, want 422 naming %s", code, body, tt.field)
			}
		})
	}
	if scs, err := e.st.ListSchedules(t.Context()); err != nil || len(scs) != 0 {
		t.Fatalf("schedules stored after refusals: %v, %v", scs, err)
	}

	allowed := []struct{ name, body string }{
		{"analyser by name", strings.Replace(codeSched(`{"analyzer":"gosec","timeout":"5m"}`), `"h"`, `"code-ok"`, 1)},
		{"credential under its prefix", strings.Replace(auth("app-api", "https://app.example.com/api/v2"), `"h"`, `"auth-ok"`, 1)},
		{"plain http with allow_http", strings.Replace(auth("legacy", "http://legacy.example.com/portal"), `"h"`, `"legacy-ok"`, 1)},
		{"word list by name", strings.Replace(ext(`"targets":{"domains":["example.com"]},"amass":{"wordlist_name":"top.txt","resolvers":["9.9.9.9"]}`), `"h"`, `"wl-ok"`, 1)},
		{"inline word list", strings.Replace(ext(`"targets":{"domains":["example.org"],"urls":["https://93.184.215.14/"]},"amass":{"wordlist":["www"]}`), `"h"`, `"inline-ok"`, 1)},
	}
	for _, a := range allowed {
		if code, body := e.do(op, "POST", "/v1/schedules", a.body); code != http.StatusCreated {
			t.Errorf("%s: POST %d %v, want 201", a.name, code, body)
		}
	}
}

// TestCredentialTargetsRequired: the credentials API refuses a credential
// without targets, or with a plain http target and no allow_http, naming
// the field; and shows the targets it stored.
func TestCredentialTargetsRequired(t *testing.T) {
	t.Parallel()
	e := newPolicyEnv(t)
	op := store.RoleOperator
	for _, tt := range []struct{ body, field string }{
		{`{"name":"a","kind":"bearer","secret":"tok-t-1"}`, "targets"},
		{`{"name":"a","kind":"bearer","secret":"tok-t-2","targets":["http://app.example.com/"]}`, "targets[0]"},
		{`{"name":"a","kind":"bearer","secret":"tok-t-3","targets":["app.example.com"]}`, "targets[0]"},
	} {
		code, body := e.do(op, "POST", "/v1/credentials", tt.body)
		if code != http.StatusUnprocessableEntity || body["field"] != tt.field {
			t.Errorf("POST %s: %d %v, want 422 naming %s", tt.body, code, body, tt.field)
		}
	}
	if code, body := e.do(op, "POST", "/v1/credentials", `{"name":"a","kind":"bearer","secret":"tok-t-4","targets":["https://app.example.com/"]}`); code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, body)
	}
	code, body := e.do(op, "GET", "/v1/credentials/a", "")
	if ts, _ := body["targets"].([]any); code != http.StatusOK || len(ts) != 1 || ts[0] != "https://app.example.com/" {
		t.Fatalf("GET: %d %v", code, body)
	}
}
