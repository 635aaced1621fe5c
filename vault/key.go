// Package vault encrypts scan credentials at rest with AES-256-GCM.
//
// A 32-byte master key comes from the STARPIPE_MASTER_KEY environment
// variable (base64 or hex) or from a key file that only its owner can read.
// Every ciphertext records the id of the key that sealed it (the first 8
// bytes of the key's SHA-256, in hex), so that after a key rotation a
// Keyring holding the new key and the old ones can still open rows sealed
// under an old key, and Rotate/RotateAll can move them to the new key.
//
// Ciphertexts are bound to the row they belong to through GCM's additional
// authenticated data: callers pass CredentialAAD(id) when sealing and
// opening a credential. Someone with write access to the database who copies
// one credential's ciphertext onto another row (to make the scanner send a
// more privileged secret to a target they control) gets an authentication
// error instead of a decrypted secret.
//
// Secrets are held as Secret values, which print, log and marshal as
// "[REDACTED]".
package vault

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// EnvMasterKey names the environment variable holding the master key.
const EnvMasterKey = "STARPIPE_MASTER_KEY"

// KeySize is the master key length: AES-256.
const KeySize = 32

// ErrNoKey is returned by KeyFromEnv when the variable is unset or empty.
var ErrNoKey = errors.New("vault: no master key: set " + EnvMasterKey + " or configure a key file")

// Key is a master key. The zero Key is not usable. Key formats as its id
// only, so that logging a Key never leaks it.
type Key struct {
	b  [KeySize]byte
	id string
}

func newKey(b []byte) Key {
	var k Key
	copy(k.b[:], b)
	sum := sha256.Sum256(k.b[:])
	k.id = hex.EncodeToString(sum[:8])
	return k
}

// ID is the key id stored next to every ciphertext sealed with the key.
func (k Key) ID() string { return k.id }

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.id == "" }

// String returns a description naming the id, never the key bytes.
func (k Key) String() string { return "vault.Key(" + k.id + ")" }

// GoString keeps %#v from printing the key bytes.
func (k Key) GoString() string { return k.String() }

// Base64 exports the key in the form ParseKey, LoadKeyFile and
// STARPIPE_MASTER_KEY accept. It is the only way key material leaves a Key.
func (k Key) Base64() string { return base64.StdEncoding.EncodeToString(k.b[:]) }

// GenerateKey returns a new random key.
func GenerateKey() (Key, error) {
	var b [KeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Key{}, fmt.Errorf("vault: generating key: %w", err)
	}
	return newKey(b[:]), nil
}

// ParseKey decodes a key written as standard base64 (44 characters) or hex
// (64 characters); surrounding white space is ignored. Errors never quote
// the input, since it is secret.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, errors.New("vault: empty key")
	}
	if len(s) == 2*KeySize {
		b, err := hex.DecodeString(s)
		if err == nil {
			return newKey(b), nil
		}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("vault: key is neither base64 nor %d hex digits", 2*KeySize)
	}
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("vault: key decodes to %d bytes, want %d", len(b), KeySize)
	}
	return newKey(b), nil
}

// KeyFromEnv reads the key from STARPIPE_MASTER_KEY. It returns ErrNoKey
// when the variable is unset or empty.
func KeyFromEnv() (Key, error) {
	v, ok := os.LookupEnv(EnvMasterKey)
	if !ok || strings.TrimSpace(v) == "" {
		return Key{}, ErrNoKey
	}
	k, err := ParseKey(v)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", EnvMasterKey, err)
	}
	return k, nil
}

// LoadKeyFile reads a key file written by WriteKeyFile (base64 text). It
// refuses a file that group or others may read or write: a master key that
// other local users can read protects nothing.
func LoadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("vault: opening key file: %w", err)
	}
	defer f.Close()
	// Stat the opened file rather than the path so that the mode checked is
	// the mode of the bytes read.
	st, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("vault: key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Key{}, fmt.Errorf("vault: key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("vault: key file %s has mode %04o, which lets group or others access it; run chmod 600 %s", path, perm, path)
	}
	const maxKeyFile = 4096 // a key file is one short line; anything bigger is the wrong file
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return Key{}, fmt.Errorf("vault: reading key file %s: %w", path, err)
	}
	if len(buf) > maxKeyFile {
		return Key{}, fmt.Errorf("vault: key file %s is larger than %d bytes", path, maxKeyFile)
	}
	k, err := ParseKey(string(buf))
	if err != nil {
		return Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to a new file at path with mode 0600, creating the
// parent directory (0700) if needed. It never overwrites an existing file:
// replacing a master key makes every credential sealed with it unreadable.
func WriteKeyFile(path string, k Key) error {
	if k.IsZero() {
		return errors.New("vault: refusing to write the zero key")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("vault: creating key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vault: creating key file: %w", err)
	}
	_, err = f.WriteString(k.Base64() + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("vault: writing key file %s: %w", path, err)
	}
	return nil
}
