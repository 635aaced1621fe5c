package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestTokensCommand: `tokens create` with repeated --scope and --kind
// prints the token once and stores its limits; `tokens list` shows them
// without the token; `tokens revoke` revokes; both changes are in the
// activity log with the CLI as actor.
func TestTokensCommand(t *testing.T) {
	st, dbURL := storetest.New(t)
	t.Setenv("STARPIPE_DATABASE_URL", dbURL)
	out, stderr, code := run(t, "", "tokens", "create", "--name", "ci", "--role", "ingest",
		"--scope", "https://*.example.com", "--scope", "git.example.com/acme/**", "--kind", "external", "--kind", "code")
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "sp_") {
		t.Fatalf("create: exit %d, %q, %s", code, out, stderr)
	}
	p, err := st.Authenticate(t.Context(), tok)
	if err != nil || !slices.Equal(p.Kinds, []string{"code", "external"}) || len(p.Scopes) != 2 {
		t.Fatalf("principal %+v, %v", p, err)
	}
	if _, stderr, code := run(t, "", "tokens", "create", "--name", "bad", "--role", "ingest", "--kind", "internal"); code == 0 || !strings.Contains(stderr, "kinds") {
		t.Fatalf("bad kind: exit %d, %s", code, stderr)
	}

	out, stderr, code = run(t, "", "tokens", "list", "--json")
	if code != 0 || strings.Contains(out, "sp_") {
		t.Fatalf("list: exit %d, %q, %s", code, out, stderr)
	}
	var info struct {
		Name, Role    string
		Scopes, Kinds []string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &info); err != nil || info.Name != "ci" || len(info.Scopes) != 2 || len(info.Kinds) != 2 {
		t.Fatalf("list: %q (%v)", out, err)
	}
	out, _, _ = run(t, "", "tokens", "list")
	if !strings.Contains(out, "git.example.com/acme/**,https://*.example.com") || !strings.Contains(out, "code,external") {
		t.Fatalf("list table:\n%s", out)
	}

	if _, stderr, code := run(t, "", "tokens", "revoke", "ci"); code != 0 {
		t.Fatalf("revoke: exit %d, %s", code, stderr)
	}
	acts := storetest.Strings(t, st, `SELECT action FROM activity_log WHERE subject_type = 'token' AND subject_id = 'ci' AND actor LIKE 'cli:%' ORDER BY id`)
	if !slices.Equal(acts, []string{"token.created", "token.revoked"}) {
		t.Fatalf("activity %q", acts)
	}
}

// TestTokensCreateForUser: `tokens create --user` makes a token that acts
// as the user with the user's role; another role, or neither --role nor
// --user, is refused.
func TestTokensCreateForUser(t *testing.T) {
	st, dbURL := storetest.New(t)
	t.Setenv("STARPIPE_DATABASE_URL", dbURL)
	if _, err := st.CreateUser(t.Context(), nil, "test", store.NewUser{Name: "ann", Email: "ann@example.com", Role: store.RoleOwner}, nil); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "", "tokens", "create", "--name", "ann-laptop", "--user", "ann")
	if code != 0 {
		t.Fatalf("create: exit %d, %s", code, stderr)
	}
	p, err := st.Authenticate(t.Context(), strings.TrimSpace(out))
	if err != nil || p.User != "ann" || p.Role != store.RoleOwner || p.Actor() != "ann" {
		t.Fatalf("principal %+v, %v; want owner acting as ann", p, err)
	}
	if _, stderr, code := run(t, "", "tokens", "create", "--name", "x", "--user", "ann", "--role", "admin"); code == 0 || !strings.Contains(stderr, "role") {
		t.Fatalf("other role: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, "", "tokens", "create", "--name", "y"); code == 0 || !strings.Contains(stderr, "--user") {
		t.Fatalf("neither: exit %d, %s", code, stderr)
	}
	out, _, _ = run(t, "", "tokens", "list")
	if !strings.Contains(out, "ann-laptop") || !strings.Contains(out, "USER") {
		t.Fatalf("list:\n%s", out)
	}
}
