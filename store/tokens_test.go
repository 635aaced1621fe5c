package store_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestScopedTokens: a token's scope patterns and kinds are stored sorted
// and de-duplicated, come back with its principal and in the list (never
// the secret), invalid fields are refused naming the field, and every
// creation and revocation is in the activity log with its actor.
func TestScopedTokens(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	tok, err := s.IssueToken(ctx, store.TokenSpec{
		Name: "ci-shop", Role: store.RoleIngest,
		Scopes: []string{"https://*.example.com", "git.example.com/acme/**", "https://*.example.com"},
		Kinds:  []string{"external", "code"},
	}, "alice")
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	p, err := s.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"git.example.com/acme/**", "https://*.example.com"}; !slices.Equal(p.Scopes, want) {
		t.Errorf("scopes = %q, want %q", p.Scopes, want)
	}
	if want := []string{"code", "external"}; !slices.Equal(p.Kinds, want) {
		t.Errorf("kinds = %q, want %q", p.Kinds, want)
	}
	plain, err := s.CreateToken(ctx, "plain", store.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Authenticate(ctx, plain); err != nil || len(p.Scopes) != 0 || len(p.Kinds) != 0 {
		t.Fatalf("unlimited token: %+v, %v", p, err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "ci-shop" || len(list[0].Scopes) != 2 || len(list[1].Kinds) != 0 {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}

	for _, tc := range []struct {
		spec  store.TokenSpec
		param string
	}{
		{store.TokenSpec{Name: "", Role: store.RoleIngest}, "name"},
		{store.TokenSpec{Name: "x", Role: "root"}, "role"},
		{store.TokenSpec{Name: "x", Role: store.RoleIngest, Scopes: []string{""}}, "scopes"},
		{store.TokenSpec{Name: "x", Role: store.RoleIngest, Scopes: []string{"a\x00b"}}, "scopes"},
		{store.TokenSpec{Name: "x", Role: store.RoleIngest, Kinds: []string{"internal"}}, "kinds"},
	} {
		_, err := s.IssueToken(ctx, tc.spec, "alice")
		var ia *store.InvalidArgumentError
		if !errors.As(err, &ia) || ia.Param != tc.param {
			t.Errorf("IssueToken(%+v) = %v, want an invalid %s", tc.spec, err, tc.param)
		}
	}

	if err := s.RevokeToken(ctx, "ci-shop", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "ci-shop", "bob"); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	rows := storetest.Strings(t, s, `
		SELECT action || ' ' || subject_id || ' by ' || actor || ' ' || coalesce(after::text, '')
		FROM activity_log WHERE subject_type = 'token' ORDER BY id`)
	want := []string{
		`token.created ci-shop by alice {"role": "ingest", "kinds": ["code", "external"], "scopes": ["git.example.com/acme/**", "https://*.example.com"]}`,
		`token.created plain by system {"role": "operator", "kinds": [], "scopes": []}`,
		`token.revoked ci-shop by bob {"role": "ingest", "revoked": true}`,
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("activity:\n%q\nwant\n%q", rows, want)
	}
	if n := storetest.Strings(t, s, `SELECT id::text FROM activity_log WHERE after::text LIKE '%sp\_%'`); len(n) != 0 {
		t.Fatal("a token secret reached the activity log")
	}
}
