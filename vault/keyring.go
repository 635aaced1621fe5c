package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// NonceSize is the GCM nonce length. Nonces are random: with 96 bits the
// chance of a repeat stays negligible well past the number of credentials
// a deployment will ever seal under one key.
const NonceSize = 12

// aadPrefix separates vault ciphertexts from any other use of the key and
// versions the AAD layout together with the "v1" storage format.
const aadPrefix = "starpipe/vault/v1\x00"

// ErrAuth is wrapped by Open when a ciphertext fails authentication: it was
// altered, or the AAD (the credential id) differs from the one it was
// sealed with.
var ErrAuth = errors.New("message authentication failed (ciphertext altered, or sealed for a different credential)")

// UnknownKeyError is returned by Open when no key in the keyring has the
// ciphertext's key id.
type UnknownKeyError struct {
	KeyID   string
	Current string
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("vault: ciphertext was sealed with key %s, which is not in the keyring (current key %s); load that key as an old key to decrypt it", e.KeyID, e.Current)
}

// Keyring seals under its current key and opens with any key it holds. It
// is safe for concurrent use.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns a keyring sealing with current and able to open what
// current or any of old sealed.
func NewKeyring(current Key, old ...Key) (*Keyring, error) {
	if current.IsZero() {
		return nil, errors.New("vault: keyring needs a current key")
	}
	kr := &Keyring{current: current.ID(), aeads: make(map[string]cipher.AEAD, 1+len(old))}
	for _, k := range append([]Key{current}, old...) {
		if k.IsZero() {
			return nil, errors.New("vault: zero key among the old keys")
		}
		if _, ok := kr.aeads[k.ID()]; ok {
			continue
		}
		block, err := aes.NewCipher(k.b[:])
		if err != nil {
			return nil, fmt.Errorf("vault: key %s: %w", k.ID(), err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("vault: key %s: %w", k.ID(), err)
		}
		kr.aeads[k.ID()] = aead
	}
	return kr, nil
}

// CurrentID is the id of the key Seal uses.
func (kr *Keyring) CurrentID() string { return kr.current }

// CredentialAAD is the AAD that binds a ciphertext to the credential row
// with the given id. Seal and Open a credential's secret with it.
func CredentialAAD(id string) []byte { return []byte("credential:" + id) }

func fullAAD(aad []byte) []byte {
	return append([]byte(aadPrefix), aad...)
}

// Seal encrypts plaintext under the current key with a fresh random nonce.
// aad is authenticated but not encrypted; Open must be given the same aad.
func (kr *Keyring) Seal(plaintext, aad []byte) (Sealed, error) {
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("vault: generating nonce: %w", err)
	}
	aead := kr.aeads[kr.current]
	return Sealed{
		KeyID:      kr.current,
		Nonce:      nonce,
		Ciphertext: aead.Seal(nil, nonce, plaintext, fullAAD(aad)),
	}, nil
}

// Open decrypts s with the key named by s.KeyID. It returns an
// *UnknownKeyError when the keyring lacks that key, and an error wrapping
// ErrAuth when authentication fails.
func (kr *Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	aead, ok := kr.aeads[s.KeyID]
	if !ok {
		return nil, &UnknownKeyError{KeyID: s.KeyID, Current: kr.current}
	}
	if len(s.Nonce) != NonceSize {
		return nil, fmt.Errorf("vault: nonce is %d bytes, want %d", len(s.Nonce), NonceSize)
	}
	pt, err := aead.Open(nil, s.Nonce, s.Ciphertext, fullAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("vault: opening with key %s: %w", s.KeyID, ErrAuth)
	}
	return pt, nil
}

// Rotate re-encrypts s under the current key. The result always has a new
// nonce, even when s already used the current key.
func (kr *Keyring) Rotate(s Sealed, aad []byte) (Sealed, error) {
	pt, err := kr.Open(s, aad)
	if err != nil {
		return Sealed{}, err
	}
	defer clear(pt)
	return kr.Seal(pt, aad)
}

// RotationSource is what RotateAll needs from the credential store.
// Each calls fn once per sealed credential with the credential's id and
// stores what fn returns in place of the old value; it stops and returns
// fn's first error. Each should run inside one transaction and roll back on
// error, so that an interrupted rotation leaves every row readable with the
// keys it was read with. fn returns its argument unchanged for rows already
// under the current key; the store may skip writing when the returned
// KeyID equals the old one.
type RotationSource interface {
	Each(ctx context.Context, fn func(id string, sealed Sealed) (Sealed, error)) error
}

// RotateAll moves every credential in src that is not under the current key
// to it, using CredentialAAD(id) as AAD, and returns how many it rotated.
// Run it after adding a new current key with the old one still in kr;
// once it returns without error, the old key may be retired.
func RotateAll(ctx context.Context, src RotationSource, kr *Keyring) (n int, err error) {
	err = src.Each(ctx, func(id string, s Sealed) (Sealed, error) {
		if err := ctx.Err(); err != nil {
			return Sealed{}, err
		}
		if s.KeyID == kr.current {
			return s, nil
		}
		next, err := kr.Rotate(s, CredentialAAD(id))
		if err != nil {
			return Sealed{}, fmt.Errorf("rotating credential %s: %w", id, err)
		}
		n++
		return next, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
