package vault

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Sealed is an encrypted secret: the id of the key that sealed it, the GCM
// nonce, and the ciphertext with its authentication tag appended.
type Sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// sealedVersion prefixes the storage form; a future change of algorithm or
// AAD layout gets a new version rather than a guess at decode time.
const sealedVersion = "v1"

// tagSize is GCM's authentication tag length; no valid ciphertext is shorter.
const tagSize = 16

var b64 = base64.StdEncoding.Strict()

// String returns the storage form "v1:KEYID:NONCE:CIPHERTEXT", nonce and
// ciphertext in padded standard base64. It holds no secret in clear.
func (s Sealed) String() string {
	return sealedVersion + ":" + s.KeyID + ":" + b64.EncodeToString(s.Nonce) + ":" + b64.EncodeToString(s.Ciphertext)
}

// MarshalText implements encoding.TextMarshaler with the storage form.
func (s Sealed) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSealed.
func (s *Sealed) UnmarshalText(b []byte) error {
	v, err := ParseSealed(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSealed decodes the storage form written by Sealed.String. It accepts
// only the canonical form, so a stored value round-trips byte for byte.
func ParseSealed(str string) (Sealed, error) {
	parts := strings.Split(str, ":")
	if len(parts) != 4 {
		return Sealed{}, errors.New("vault: sealed value: want v1:KEYID:NONCE:CIPHERTEXT")
	}
	if parts[0] != sealedVersion {
		return Sealed{}, fmt.Errorf("vault: sealed value: unsupported version %q", truncate(parts[0]))
	}
	id := parts[1]
	if !isKeyID(id) {
		return Sealed{}, fmt.Errorf("vault: sealed value: key id %q is not 16 lower-case hex digits", truncate(id))
	}
	nonce, err := b64.DecodeString(parts[2])
	if err != nil || len(nonce) != NonceSize || b64.EncodeToString(nonce) != parts[2] {
		return Sealed{}, fmt.Errorf("vault: sealed value: nonce is not %d bytes of canonical base64", NonceSize)
	}
	ct, err := b64.DecodeString(parts[3])
	if err != nil || b64.EncodeToString(ct) != parts[3] {
		return Sealed{}, errors.New("vault: sealed value: ciphertext is not canonical base64")
	}
	if len(ct) < tagSize {
		return Sealed{}, fmt.Errorf("vault: sealed value: ciphertext is %d bytes, shorter than the %d-byte tag", len(ct), tagSize)
	}
	return Sealed{KeyID: id, Nonce: nonce, Ciphertext: ct}, nil
}

func isKeyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
