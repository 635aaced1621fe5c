package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(t testing.TB, fill byte) Key {
	t.Helper()
	k, err := ParseKey(hex.EncodeToString(bytes.Repeat([]byte{fill}, KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testKeyring(t testing.TB, current Key, old ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := testKeyring(t, testKey(t, 1))
	aad := CredentialAAD("cred-1")
	for _, pt := range [][]byte{nil, []byte("x"), []byte("hunter2"), bytes.Repeat([]byte("a"), 10000)} {
		s, err := kr.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if s.KeyID != kr.CurrentID() || len(s.Nonce) != NonceSize {
			t.Fatalf("sealed = %+v", s)
		}
		// Through the storage form, as the store will keep it.
		parsed, err := ParseSealed(s.String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := kr.Open(parsed, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, want %q", got, pt)
		}
	}
	a, _ := kr.Seal([]byte("same"), aad)
	b, _ := kr.Seal([]byte("same"), aad)
	if bytes.Equal(a.Nonce, b.Nonce) || bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Fatal("two seals of the same plaintext share a nonce or ciphertext")
	}
}

func TestOpenRejectsTampering(t *testing.T) {
	kr := testKeyring(t, testKey(t, 1))
	aad := CredentialAAD("cred-1")
	s, err := kr.Seal([]byte("token-abc"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(s.Ciphertext) * 8 {
		bad := Sealed{KeyID: s.KeyID, Nonce: s.Nonce, Ciphertext: bytes.Clone(s.Ciphertext)}
		bad.Ciphertext[i/8] ^= 1 << (i % 8)
		if _, err := kr.Open(bad, aad); !errors.Is(err, ErrAuth) {
			t.Fatalf("flipping ciphertext bit %d: err = %v, want ErrAuth", i, err)
		}
	}
	bad := Sealed{KeyID: s.KeyID, Nonce: bytes.Clone(s.Nonce), Ciphertext: s.Ciphertext}
	bad.Nonce[0] ^= 0x80
	if _, err := kr.Open(bad, aad); !errors.Is(err, ErrAuth) {
		t.Fatalf("flipped nonce: err = %v, want ErrAuth", err)
	}
	if _, err := kr.Open(Sealed{KeyID: s.KeyID, Nonce: s.Nonce[:8], Ciphertext: s.Ciphertext}, aad); err == nil {
		t.Fatal("short nonce accepted")
	}
}

func TestOpenRejectsOtherCredentialAAD(t *testing.T) {
	kr := testKeyring(t, testKey(t, 1))
	s, err := kr.Seal([]byte("admin-token"), CredentialAAD("cred-admin"))
	if err != nil {
		t.Fatal(err)
	}
	// The ciphertext copied onto another row does not open there.
	_, err = kr.Open(s, CredentialAAD("cred-readonly"))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), s.KeyID) {
		t.Fatalf("error %q does not name key %s", err, s.KeyID)
	}
}

func TestOpenUnknownKey(t *testing.T) {
	oldKR := testKeyring(t, testKey(t, 1))
	s, err := oldKR.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kr := testKeyring(t, testKey(t, 2))
	_, err = kr.Open(s, nil)
	var uk *UnknownKeyError
	if !errors.As(err, &uk) || uk.KeyID != s.KeyID || uk.Current != kr.CurrentID() {
		t.Fatalf("err = %v, want *UnknownKeyError for %s", err, s.KeyID)
	}
	if !strings.Contains(err.Error(), s.KeyID) {
		t.Fatalf("error %q does not name the key id", err)
	}
}

func TestRotate(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	aad := CredentialAAD("c")
	s1, err := testKeyring(t, k1).Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	kr := testKeyring(t, k2, k1)
	if got, err := kr.Open(s1, aad); err != nil || string(got) != "secret" {
		t.Fatalf("old key: Open = %q, %v", got, err)
	}
	s2, err := kr.Rotate(s1, aad)
	if err != nil {
		t.Fatal(err)
	}
	if s2.KeyID != k2.ID() || s2.KeyID == s1.KeyID {
		t.Fatalf("rotated key id = %s, want %s", s2.KeyID, k2.ID())
	}
	// The old key can be retired after rotation.
	if got, err := testKeyring(t, k2).Open(s2, aad); err != nil || string(got) != "secret" {
		t.Fatalf("after rotation: Open = %q, %v", got, err)
	}
	if _, err := kr.Rotate(s1, CredentialAAD("other")); !errors.Is(err, ErrAuth) {
		t.Fatalf("Rotate with wrong AAD: %v", err)
	}
}

// memSource is a RotationSource over a map, writing back like a store would.
type memSource struct{ rows map[string]Sealed }

func (m *memSource) Each(ctx context.Context, fn func(string, Sealed) (Sealed, error)) error {
	next := make(map[string]Sealed, len(m.rows))
	for id, s := range m.rows {
		n, err := fn(id, s)
		if err != nil {
			return err // nothing written: the "transaction" rolls back
		}
		next[id] = n
	}
	m.rows = next
	return nil
}

func TestRotateAll(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	old := testKeyring(t, k1)
	kr := testKeyring(t, k2, k1)
	src := &memSource{rows: map[string]Sealed{}}
	for _, id := range []string{"a", "b", "c"} {
		s, _ := old.Seal([]byte("pw-"+id), CredentialAAD(id))
		src.rows[id] = s
	}
	s, _ := kr.Seal([]byte("pw-d"), CredentialAAD("d"))
	src.rows["d"] = s

	n, err := RotateAll(context.Background(), src, kr)
	if err != nil || n != 3 {
		t.Fatalf("RotateAll = %d, %v; want 3, nil", n, err)
	}
	for id, s := range src.rows {
		got, err := testKeyring(t, k2).Open(s, CredentialAAD(id))
		if err != nil || string(got) != "pw-"+id {
			t.Fatalf("row %s: %q, %v", id, got, err)
		}
	}
	if n, err := RotateAll(context.Background(), src, kr); err != nil || n != 0 {
		t.Fatalf("second RotateAll = %d, %v; want 0, nil", n, err)
	}

	// A row sealed for a different id (swapped) fails and rolls back.
	src.rows["e"], _ = old.Seal([]byte("x"), CredentialAAD("not-e"))
	before := len(src.rows)
	if _, err := RotateAll(context.Background(), src, kr); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "credential e") {
		t.Fatalf("RotateAll with swapped row: %v", err)
	}
	if len(src.rows) != before {
		t.Fatal("rows changed after a failed rotation")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RotateAll(ctx, src, kr); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled RotateAll: %v", err)
	}
}

func TestNewKeyring(t *testing.T) {
	if _, err := NewKeyring(Key{}); err == nil {
		t.Fatal("zero current key accepted")
	}
	if _, err := NewKeyring(testKey(t, 1), Key{}); err == nil {
		t.Fatal("zero old key accepted")
	}
	if _, err := NewKeyring(testKey(t, 1), testKey(t, 1)); err != nil {
		t.Fatalf("duplicate key: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	k := testKey(t, 7)
	for _, s := range []string{k.Base64(), " " + k.Base64() + "\n", strings.Repeat("07", 32), strings.Repeat("07", 32) + "\n"} {
		got, err := ParseKey(s)
		if err != nil || got.ID() != k.ID() {
			t.Fatalf("ParseKey(%q) = %v, %v", s, got, err)
		}
	}
	if len(k.ID()) != 16 {
		t.Fatalf("key id %q is not 16 hex digits", k.ID())
	}
	for _, tt := range []struct{ in, want string }{
		{"", "empty key"},
		{"   ", "empty key"},
		{"not base64!", "neither base64 nor 64 hex digits"},
		{"c2hvcnQ=", "decodes to 5 bytes, want 32"},
		{strings.Repeat("zz", 32), "decodes to 48 bytes, want 32"}, // not hex, so read as base64
		{strings.Repeat("ab", 31), "neither base64 nor 64 hex digits"},
	} {
		_, err := ParseKey(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKey(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
	// Key material never appears when a Key is printed.
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%s", k)} {
		if strings.Contains(out, "7, 7") || strings.Contains(out, k.Base64()) {
			t.Fatalf("key printed as %q", out)
		}
	}
}

func TestKeyFromEnv(t *testing.T) {
	k := testKey(t, 3)
	t.Setenv(EnvMasterKey, k.Base64())
	got, err := KeyFromEnv()
	if err != nil || got.ID() != k.ID() {
		t.Fatalf("KeyFromEnv = %v, %v", got, err)
	}
	t.Setenv(EnvMasterKey, "")
	if _, err := KeyFromEnv(); !errors.Is(err, ErrNoKey) {
		t.Fatalf("empty env: %v", err)
	}
	t.Setenv(EnvMasterKey, "short")
	if _, err := KeyFromEnv(); err == nil || !strings.Contains(err.Error(), EnvMasterKey) || strings.Contains(err.Error(), "short") {
		t.Fatalf("bad env: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "master.key")
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadKeyFile(path)
	if err != nil || got.ID() != k.ID() {
		t.Fatalf("LoadKeyFile = %v, %v", got, err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("WriteKeyFile overwrote an existing key file")
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), "group or others") || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %04o: err = %v, want a permission error", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err != nil {
		t.Fatalf("mode 0400: %v", err)
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad content: %v", err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := LoadKeyFile(dir); err == nil {
		t.Fatal("directory accepted as key file")
	}
	if err := WriteKeyFile(filepath.Join(dir, "zero"), Key{}); err == nil {
		t.Fatal("zero key written")
	}
}

func TestSealedEncoding(t *testing.T) {
	kr := testKeyring(t, testKey(t, 1))
	s, _ := kr.Seal([]byte("x"), nil)
	str := s.String()
	if !strings.HasPrefix(str, "v1:"+s.KeyID+":") || strings.Count(str, ":") != 3 {
		t.Fatalf("storage form %q", str)
	}
	text, _ := s.MarshalText()
	var back Sealed
	if err := back.UnmarshalText(text); err != nil || back.String() != str {
		t.Fatalf("text round trip: %v, %v", back, err)
	}
	ok := strings.Split(str, ":")
	for _, tt := range []struct{ in, want string }{
		{"", "want v1:KEYID:NONCE:CIPHERTEXT"},
		{"v1:a:b", "want v1:KEYID:NONCE:CIPHERTEXT"},
		{"v2:" + ok[1] + ":" + ok[2] + ":" + ok[3], "unsupported version"},
		{"v1:XYZ:" + ok[2] + ":" + ok[3], "key id"},
		{"v1:" + strings.ToUpper(ok[1]) + ":" + ok[2] + ":" + ok[3], "key id"},
		{"v1:" + ok[1] + ":AAAA:" + ok[3], "nonce"},
		{"v1:" + ok[1] + ":" + ok[2] + ":!!", "ciphertext"},
		{"v1:" + ok[1] + ":" + ok[2] + ":AAAA", "shorter than the 16-byte tag"},
		{"v1:" + ok[1] + ":" + ok[2] + ":" + strings.TrimRight(ok[3], "="), "ciphertext"},
	} {
		if _, err := ParseSealed(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSealed(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseSealed(f *testing.F) {
	kr := testKeyring(f, testKey(f, 1))
	s, _ := kr.Seal([]byte("seed"), CredentialAAD("x"))
	f.Add(s.String())
	f.Add("v1:0123456789abcdef:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("v1:::")
	f.Add("v1:0123456789abcdef:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSealed(in)
		if err != nil {
			return
		}
		if got := s.String(); got != in {
			t.Fatalf("ParseSealed(%q).String() = %q: not canonical", in, got)
		}
		if len(s.Nonce) != NonceSize || len(s.Ciphertext) < 16 || len(s.KeyID) != 16 {
			t.Fatalf("ParseSealed(%q) = %+v", in, s)
		}
		// Opening arbitrary input must fail cleanly, never panic.
		if _, err := kr.Open(s, nil); err == nil {
			t.Fatalf("fuzzed input %q opened", in)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	kr := testKeyring(b, testKey(b, 1))
	aad := CredentialAAD("bench")
	for _, size := range []int{32, 1024} {
		pt := bytes.Repeat([]byte("s"), size)
		s, _ := kr.Seal(pt, aad)
		b.Run(fmt.Sprintf("op=seal/size=%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := kr.Seal(pt, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("op=open/size=%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := kr.Open(s, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
