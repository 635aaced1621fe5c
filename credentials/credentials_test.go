package credentials_test

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

func newKeyring(t *testing.T, keys ...vault.Key) *vault.Keyring {
	t.Helper()
	kr, err := vault.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func genKey(t *testing.T) vault.Key {
	t.Helper()
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// secretForms are the encodings of a secret that would also count as a
// leak if found in the database.
func secretForms(s string) []string {
	return []string{s, base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s))}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	kr := newKeyring(t, genKey(t))
	creds := []vault.Credential{
		{Name: "api-token", Kind: vault.KindBearer, Secret: vault.Secret("tok-Abc123.xyz"), Targets: testTargets},
		{Name: "portal", Kind: vault.KindBasic, Username: "scanner", Secret: vault.Secret("pa ss\r\nword"), Targets: testTargets},
		{Name: "gw-key", Kind: vault.KindHeader, HeaderName: "X-API-Key", Secret: vault.Secret("k-998877"), Targets: testTargets},
		{Name: "session", Kind: vault.KindCookie, Secret: vault.Secret("sid=abc123; csrf=zz9"), Targets: testTargets},
	}
	ids := map[string]string{}
	for _, c := range creds {
		id, created, err := credentials.Save(ctx, st, kr, c, "alice")
		if err != nil || !created || len(id) != 36 {
			t.Fatalf("Save(%s) = %q, %v, %v", c.Name, id, created, err)
		}
		ids[c.Name] = id
	}
	for _, c := range creds {
		got, err := credentials.LoadCredential(ctx, st, kr, c.Name)
		if err != nil {
			t.Fatalf("LoadCredential(%s): %v", c.Name, err)
		}
		if got.ID != ids[c.Name] || got.Kind != c.Kind || got.Username != c.Username ||
			got.HeaderName != c.HeaderName || got.Secret.Reveal() != c.Secret.Reveal() {
			t.Fatalf("LoadCredential(%s) = %+v (secret equal: %v)", c.Name, got, got.Secret.Reveal() == c.Secret.Reveal())
		}
	}

	// Replacing keeps the id, changes the secret, and is logged as an update.
	up := vault.Credential{Name: "api-token", Kind: vault.KindBearer, Secret: vault.Secret("tok-NEW-456"), Targets: testTargets}
	id, created, err := credentials.Save(ctx, st, kr, up, "bob")
	if err != nil || created || id != ids["api-token"] {
		t.Fatalf("Save(replace) = %q, %v, %v; want %q, false", id, created, err, ids["api-token"])
	}
	got, err := credentials.NewResolver(st, kr).Credential(ctx, "api-token")
	if err != nil || got.Secret.Reveal() != "tok-NEW-456" {
		t.Fatalf("after replace: %v", err)
	}
	var actions []string
	rows, _ := storetest.SQL(t, st).Query(ctx, `SELECT actor || ':' || action FROM activity_log WHERE subject_id = $1 ORDER BY id`, id)
	for rows.Next() {
		var a string
		_ = rows.Scan(&a)
		actions = append(actions, a)
	}
	if strings.Join(actions, ",") != "alice:credential.created,bob:credential.updated" {
		t.Fatalf("activity = %v", actions)
	}

	if _, err := credentials.Create(ctx, st, kr, up, "bob"); !errors.Is(err, credentials.ErrExists) {
		t.Fatalf("Create(taken name) = %v, want ErrExists", err)
	}
	if _, err := credentials.LoadCredential(ctx, st, kr, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LoadCredential(unknown) = %v, want ErrNotFound", err)
	}

	// Neither the credentials table nor the activity log holds any secret in
	// clear or in an obvious encoding.
	dump := storetest.DumpTable(t, st, "credentials") + storetest.DumpTable(t, st, "activity_log")
	for _, c := range append(creds, up) {
		for _, f := range secretForms(c.Secret.Reveal()) {
			if strings.Contains(dump, f) {
				t.Fatalf("secret of %s found in the database", c.Name)
			}
		}
	}
	if !strings.Contains(dump, kr.CurrentID()) {
		t.Fatal("dump lacks the key id: did the search look at the right tables?")
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	kr := newKeyring(t, genKey(t))
	for _, c := range []vault.Credential{
		{Name: "bad name", Kind: vault.KindBearer, Secret: vault.Secret("tok-unique-9911"), Targets: testTargets},
		{Name: "../x", Kind: vault.KindBearer, Secret: vault.Secret("tok-unique-9922"), Targets: testTargets},
		{Name: "h", Kind: vault.KindHeader, HeaderName: "X-K", Secret: vault.Secret("v\r\nHost: evil"), Targets: testTargets},
		{Name: "e", Kind: vault.KindBearer, Targets: testTargets},
		{Name: "no-targets", Kind: vault.KindBearer, Secret: vault.Secret("tok-unique-9933")},
		{Name: "http-target", Kind: vault.KindBearer, Secret: vault.Secret("tok-unique-9944"), Targets: []string{"http://app.example.com/"}},
		{Name: "bad-target", Kind: vault.KindBearer, Secret: vault.Secret("tok-unique-9955"), Targets: []string{"ftp://app.example.com/"}},
	} {
		var ce *vault.CredentialError
		if _, _, err := credentials.Save(t.Context(), st, kr, c, "a"); !errors.As(err, &ce) {
			t.Fatalf("Save(%q) = %v, want *vault.CredentialError", c.Name, err)
		} else if len(c.Secret) > 0 && strings.Contains(err.Error(), c.Secret.Reveal()) {
			t.Fatalf("error holds the secret: %v", err)
		}
	}
	if n := strings.Count(storetest.DumpTable(t, st, "credentials"), "\n"); n != 0 {
		t.Fatalf("%d rows stored for invalid credentials", n)
	}
}

// TestSealedBoundToRow: a ciphertext copied onto another row does not open.
func TestSealedBoundToRow(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	kr := newKeyring(t, genKey(t))
	for _, c := range []vault.Credential{
		{Name: "low", Kind: vault.KindBearer, Secret: vault.Secret("low-priv"), Targets: testTargets},
		{Name: "high", Kind: vault.KindBearer, Secret: vault.Secret("high-priv"), Targets: testTargets},
	} {
		if _, err := credentials.Create(ctx, st, kr, c, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := storetest.SQL(t, st).Exec(ctx, `UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE name = 'high') WHERE name = 'low'`); err != nil {
		t.Fatal(err)
	}
	c, err := credentials.LoadCredential(ctx, st, kr, "low")
	if !errors.Is(err, vault.ErrAuth) {
		t.Fatalf("LoadCredential after swap = %v, %v; want ErrAuth", c.Secret.Reveal() == "high-priv", err)
	}
	if strings.Contains(err.Error(), "high-priv") || strings.Contains(err.Error(), "low-priv") {
		t.Fatalf("error holds a secret: %v", err)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	k1, k2 := genKey(t), genKey(t)
	kr1 := newKeyring(t, k1)
	names := []string{"a", "b", "c"}
	for _, n := range names {
		if _, err := credentials.Create(ctx, st, kr1, vault.Credential{Name: n, Kind: vault.KindBearer, Secret: vault.Secret("secret-" + n), Targets: testTargets}, "a"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := credentials.Rotate(ctx, st, newKeyring(t, k2, k1), "keys-rotate")
	if err != nil || n != 3 {
		t.Fatalf("Rotate = %d, %v; want 3", n, err)
	}
	only2 := newKeyring(t, k2)
	for _, name := range names {
		c, err := credentials.LoadCredential(ctx, st, only2, name)
		if err != nil || c.Secret.Reveal() != "secret-"+name {
			t.Fatalf("LoadCredential(%s) with the new key only: %v", name, err)
		}
		var uk *vault.UnknownKeyError
		if _, err := credentials.LoadCredential(ctx, st, kr1, name); !errors.As(err, &uk) {
			t.Fatalf("LoadCredential(%s) with the old key only = %v, want UnknownKeyError", name, err)
		}
	}
	var stale int
	if err := storetest.SQL(t, st).QueryRow(ctx, `SELECT count(*) FROM credentials WHERE key_id <> $1 OR rotated_at IS NULL`, k2.ID()).Scan(&stale); err != nil || stale != 0 {
		t.Fatalf("%d rows not under the new key (%v)", stale, err)
	}
	var logged int
	if err := storetest.SQL(t, st).QueryRow(ctx, `SELECT count(*) FROM activity_log WHERE action = 'credentials.rotated' AND actor = 'keys-rotate'`).Scan(&logged); err != nil || logged != 1 {
		t.Fatalf("rotation activity entries = %d, %v", logged, err)
	}
	if n, err := credentials.Rotate(ctx, st, only2, "keys-rotate"); err != nil || n != 0 {
		t.Fatalf("second Rotate = %d, %v; want 0", n, err)
	}
}

// TestRotateRollsBack: one row that cannot be opened fails the rotation
// and leaves every row, including those rotated before it, as it was.
func TestRotateRollsBack(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	k1, k2 := genKey(t), genKey(t)
	kr1 := newKeyring(t, k1)
	for _, n := range []string{"a", "b", "zz-victim"} {
		if _, err := credentials.Create(ctx, st, kr1, vault.Credential{Name: n, Kind: vault.KindBearer, Secret: vault.Secret("s-" + n), Targets: testTargets}, "a"); err != nil {
			t.Fatal(err)
		}
	}
	// zz-victim sorts last, so a and b are rotated before the failure. Its
	// ciphertext comes from another row and fails authentication.
	if _, err := storetest.SQL(t, st).Exec(ctx, `UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE name = 'a') WHERE name = 'zz-victim'`); err != nil {
		t.Fatal(err)
	}
	before := storetest.DumpTable(t, st, "credentials")
	n, err := credentials.Rotate(ctx, st, newKeyring(t, k2, k1), "keys-rotate")
	if !errors.Is(err, vault.ErrAuth) || n != 0 {
		t.Fatalf("Rotate = %d, %v; want 0, ErrAuth", n, err)
	}
	if after := storetest.DumpTable(t, st, "credentials"); after != before {
		t.Fatalf("rows changed by a failed rotation:\nbefore %s\nafter  %s", before, after)
	}
	if _, err := credentials.LoadCredential(ctx, st, kr1, "a"); err != nil {
		t.Fatalf("a unreadable with the old key after the failed rotation: %v", err)
	}

	// A sealed value that does not even parse fails the same way.
	if _, err := storetest.SQL(t, st).Exec(ctx, `UPDATE credentials SET sealed = 'v1:' || key_id || ':bm9wZQ==:x' WHERE name = 'zz-victim'`); err != nil {
		t.Fatal(err)
	}
	before = storetest.DumpTable(t, st, "credentials")
	if n, err := credentials.Rotate(ctx, st, newKeyring(t, k2, k1), "keys-rotate"); err == nil || n != 0 {
		t.Fatalf("Rotate over a corrupt row = %d, %v; want an error", n, err)
	}
	if after := storetest.DumpTable(t, st, "credentials"); after != before {
		t.Fatal("rows changed by a failed rotation")
	}
}

// testTargets is where the tests' credentials may be sent.
var testTargets = []string{"https://app.example.com/"}
