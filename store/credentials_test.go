package store_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

const (
	keyA = "0123456789abcdef"
	keyB = "fedcba9876543210"
)

// fakeSealed looks like a vault storage form; the store does not parse it.
func fakeSealed(key, tag string) string { return "v1:" + key + ":bm9uY2U=:" + tag }

func TestPutGetListDeleteCredential(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	rec := store.CredentialRecord{ID: uuid.NewString(), Name: "portal", Kind: "basic", Username: "scanner",
		KeyID: keyA, Sealed: fakeSealed(keyA, "SEALED-ONE"), Targets: []string{"https://portal.example/"}}
	id, created, err := s.PutCredential(ctx, rec, "alice")
	if err != nil || !created || id != rec.ID {
		t.Fatalf("PutCredential = %q, %v, %v", id, created, err)
	}
	// Same name under another id: refused, nothing changed.
	other := rec
	other.ID, other.Sealed = uuid.NewString(), fakeSealed(keyA, "SEALED-OTHER")
	if _, _, err := s.PutCredential(ctx, other, "mallory"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutCredential(other id) = %v, want ErrConflict", err)
	}
	// Same id: replaced in place.
	rec.Sealed, rec.KeyID = fakeSealed(keyB, "SEALED-TWO"), keyB
	if id, created, err := s.PutCredential(ctx, rec, "bob"); err != nil || created || id != rec.ID {
		t.Fatalf("PutCredential(replace) = %q, %v, %v", id, created, err)
	}
	got, err := s.GetCredential(ctx, "portal")
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("GetCredential = %+v, %v; want %+v", got, err, rec)
	}
	if _, err := s.GetCredential(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCredential(nope) = %v", err)
	}
	if id, err := s.CredentialID(ctx, "portal"); err != nil || id != rec.ID {
		t.Fatalf("CredentialID = %q, %v", id, err)
	}

	// Key id and sealed value must agree (the CHECK constraint).
	bad := store.CredentialRecord{ID: uuid.NewString(), Name: "x", Kind: "bearer", KeyID: keyA, Sealed: fakeSealed(keyB, "T")}
	if _, _, err := s.PutCredential(ctx, bad, "a"); err == nil {
		t.Fatal("sealed value under another key id accepted")
	}

	list, err := s.ListCredentials(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListCredentials = %+v, %v", list, err)
	}
	m := list[0]
	if m.ID != rec.ID || m.Name != "portal" || m.Kind != "basic" || m.Username != "scanner" || m.KeyID != keyB || m.CreatedBy != "alice" || m.CreatedAt.IsZero() {
		t.Fatalf("meta = %+v", m)
	}
	if one, err := s.CredentialMetadata(ctx, "portal"); err != nil || one.ID != m.ID {
		t.Fatalf("CredentialMetadata = %+v, %v", one, err)
	}

	if err := s.DeleteCredential(ctx, "portal", "carol"); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	if err := s.DeleteCredential(ctx, "portal", "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteCredential again = %v, want ErrNotFound", err)
	}

	// The activity log names who did what, with no sealed value in it.
	rows, err := storetest.SQL(t, s).Query(ctx, `SELECT actor, action, coalesce(before::text, ''), coalesce(after::text, '') FROM activity_log WHERE subject_type = 'credential' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for rows.Next() {
		var actor, action, before, after string
		if err := rows.Scan(&actor, &action, &before, &after); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(before+after, "SEALED") || strings.Contains(before+after, "bm9uY2U") {
			t.Fatalf("activity %s holds the sealed value: %s %s", action, before, after)
		}
		log = append(log, actor+":"+action)
	}
	if want := "alice:credential.created,bob:credential.updated,carol:credential.deleted"; strings.Join(log, ",") != want {
		t.Fatalf("activity = %v, want %s", log, want)
	}
}

func TestRotateCredentialsRollsBack(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	for _, n := range []string{"a", "b", "c"} {
		if _, _, err := s.PutCredential(ctx, store.CredentialRecord{ID: uuid.NewString(), Name: n, Kind: "bearer",
			KeyID: keyA, Sealed: fakeSealed(keyA, "OLD-"+n)}, "a"); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	calls := 0
	n, err := s.RotateCredentials(ctx, "rot", func(id, sealed string) (string, string, error) {
		calls++
		if strings.HasSuffix(sealed, "OLD-c") {
			return "", "", boom
		}
		return fakeSealed(keyB, "NEW"), keyB, nil
	})
	if !errors.Is(err, boom) || n != 0 || calls != 3 {
		t.Fatalf("RotateCredentials = %d, %v after %d calls; want 0, boom, 3", n, err, calls)
	}
	var moved int
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT count(*) FROM credentials WHERE key_id = $1 OR rotated_at IS NOT NULL`, keyB).Scan(&moved); err != nil || moved != 0 {
		t.Fatalf("%d rows changed by a failed rotation (%v)", moved, err)
	}

	// Unchanged values are not written; changed ones are, with the key id.
	n, err = s.RotateCredentials(ctx, "rot", func(id, sealed string) (string, string, error) {
		if strings.HasSuffix(sealed, "OLD-a") {
			return sealed, keyA, nil
		}
		return fakeSealed(keyB, "NEW"), keyB, nil
	})
	if err != nil || n != 2 {
		t.Fatalf("RotateCredentials = %d, %v; want 2", n, err)
	}
	var underB int
	if err := storetest.SQL(t, s).QueryRow(ctx, `SELECT count(*) FROM credentials WHERE key_id = $1 AND rotated_at IS NOT NULL`, keyB).Scan(&underB); err != nil || underB != 2 {
		t.Fatalf("%d rows under the new key (%v)", underB, err)
	}
}

// TestSetCredentialTargets: a row stored without targets (as every row
// from before the targets column) gets them set without its secret
// changing, and the change is in the activity log.
func TestSetCredentialTargets(t *testing.T) {
	s, _ := storetest.New(t)
	ctx := t.Context()
	rec := store.CredentialRecord{ID: uuid.NewString(), Name: "legacy", Kind: "bearer", KeyID: keyA, Sealed: fakeSealed(keyA, "S")}
	if _, _, err := s.PutCredential(ctx, rec, "alice"); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCredential(ctx, "legacy")
	if err != nil || len(got.Targets) != 0 || got.AllowHTTP {
		t.Fatalf("GetCredential = %+v, %v; want no targets", got, err)
	}
	if err := s.SetCredentialTargets(ctx, "legacy", []string{"http://app.example/"}, true, "admin"); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetCredential(ctx, "legacy")
	if err != nil || !reflect.DeepEqual(got.Targets, []string{"http://app.example/"}) || !got.AllowHTTP || got.Sealed != rec.Sealed {
		t.Fatalf("after SetCredentialTargets: %+v, %v", got, err)
	}
	m, err := s.CredentialMetadata(ctx, "legacy")
	if err != nil || !reflect.DeepEqual(m.Targets, got.Targets) || !m.AllowHTTP {
		t.Fatalf("CredentialMetadata = %+v, %v", m, err)
	}
	if err := s.SetCredentialTargets(ctx, "nope", []string{"https://x/"}, false, "admin"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown name: %v", err)
	}
}
