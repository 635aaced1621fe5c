package vault

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Redacted is what a Secret shows wherever it is printed, logged or
// marshalled.
const Redacted = "[REDACTED]"

// Secret is secret material in clear. Every way the standard library has of
// turning a value into text (fmt verbs including %#v, encoding/json,
// encoding/text, slog) yields Redacted, so a Secret that ends up in a log
// line, an error message or an API response does not leak.
//
// fmt cannot call methods on values in unexported struct fields and prints
// their bytes through reflection instead; keep Secrets (and Credentials) in
// exported fields or behind a pointer.
type Secret []byte

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb, %x and %q included,
// prints Redacted.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, Redacted) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText implements encoding.TextMarshaler (used by JSON, YAML and XML
// encoders for map keys and values).
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// UnmarshalText accepts a secret in clear, as the credentials API receives
// it. It refuses the literal Redacted so that a client echoing back a
// credential it fetched cannot overwrite the real secret with the
// placeholder.
func (s *Secret) UnmarshalText(b []byte) error {
	if string(b) == Redacted {
		return errors.New("vault: secret is the redaction placeholder; send the real secret")
	}
	*s = append(Secret(nil), b...)
	return nil
}

// Reveal returns the secret in clear. Its name makes the few places that
// need the clear value easy to find.
func (s Secret) Reveal() string { return string(s) }

// CredentialKind says how a credential is presented to the target.
type CredentialKind string

const (
	KindBearer CredentialKind = "bearer" // Authorization: Bearer SECRET
	KindBasic  CredentialKind = "basic"  // Authorization: Basic base64(USERNAME:SECRET)
	KindHeader CredentialKind = "header" // HEADERNAME: SECRET
	KindCookie CredentialKind = "cookie" // Cookie: SECRET
)

// ParseCredentialKind validates a credential kind given by a user.
func ParseCredentialKind(s string) (CredentialKind, error) {
	switch k := CredentialKind(s); k {
	case KindBearer, KindBasic, KindHeader, KindCookie:
		return k, nil
	}
	return "", fmt.Errorf("invalid credential kind %q (allowed: bearer, basic, header, cookie)", truncate(s))
}

// Credential is a secret used by authenticated scans. The secret is stored
// sealed (Keyring.Seal with CredentialAAD(ID)); this is the opened form.
type Credential struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Kind       CredentialKind `json:"kind"`
	Username   string         `json:"username,omitempty"`    // basic only
	HeaderName string         `json:"header_name,omitempty"` // header only
	Secret     Secret         `json:"secret,omitempty"`
	// Targets are the URL prefixes the credential may be sent to, and
	// AllowHTTP lets it travel over plain http (see Scope).
	Targets   []string `json:"targets,omitempty"`
	AllowHTTP bool     `json:"allow_http,omitempty"`
}

// CredentialError reports an invalid credential. It names the field and
// never includes the secret.
type CredentialError struct {
	Name, Field, Reason string
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("credential %q: %s: %s", e.Name, e.Field, e.Reason)
}

// forbiddenHeaders are header names a credential may not set: they frame
// the HTTP message or route it, so setting them would let a credential
// change where or how a request goes rather than authenticate it.
var forbiddenHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true,
	"connection": true, "upgrade": true, "te": true, "trailer": true,
	"keep-alive": true, "proxy-connection": true,
}

// Validate checks that c is complete and that every value can be put in an
// HTTP header without injecting further headers.
func (c Credential) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &CredentialError{Name: c.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(c.Name) == "" {
		return bad("name", "required")
	}
	if _, err := ParseCredentialKind(string(c.Kind)); err != nil {
		return bad("kind", "%v", err)
	}
	if c.Kind != KindBasic && c.Username != "" {
		return bad("username", "only basic credentials have a username")
	}
	if c.Kind != KindHeader && c.HeaderName != "" {
		return bad("header_name", "only header credentials have a header name")
	}
	// A basic password travels base64-encoded, so any byte is safe there;
	// every other secret is sent as a header value verbatim.
	if c.Kind != KindBasic {
		if r := headerValueProblem(string(c.Secret)); r != "" {
			return bad("secret", "%s", r)
		}
	}
	switch c.Kind {
	case KindBearer:
		if len(c.Secret) == 0 {
			return bad("secret", "a bearer token is required")
		}
		if strings.ContainsAny(string(c.Secret), " \t") {
			return bad("secret", "a bearer token cannot contain white space")
		}
	case KindBasic:
		if c.Username == "" {
			return bad("username", "required for basic credentials")
		}
		if strings.ContainsRune(c.Username, ':') {
			return bad("username", "cannot contain ':' (RFC 7617)")
		}
		if r := headerValueProblem(c.Username); r != "" {
			return bad("username", "%s", r)
		}
	case KindHeader:
		if !isToken(c.HeaderName) {
			return bad("header_name", "%q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)", truncate(c.HeaderName))
		}
		if forbiddenHeaders[strings.ToLower(c.HeaderName)] {
			return bad("header_name", "%q controls message framing or routing and cannot carry a credential", c.HeaderName)
		}
		if len(c.Secret) == 0 {
			return bad("secret", "a header value is required")
		}
	case KindCookie:
		if !strings.Contains(string(c.Secret), "=") {
			return bad("secret", "want cookie pairs like name=value; other=value")
		}
	}
	return nil
}

// Headers returns the HTTP header lines ("Name: value") that present c, for
// the nuclei runner's -H flags. It validates c first.
func (c Credential) Headers() ([]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Kind {
	case KindBearer:
		return []string{"Authorization: Bearer " + string(c.Secret)}, nil
	case KindBasic:
		up := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + string(c.Secret)))
		return []string{"Authorization: Basic " + up}, nil
	case KindHeader:
		return []string{c.HeaderName + ": " + string(c.Secret)}, nil
	default: // KindCookie, the only kind Validate leaves
		return []string{"Cookie: " + string(c.Secret)}, nil
	}
}

// headerValueProblem explains why v cannot be a header value: control
// characters (CR and LF above all, which would start a new header or the
// body) are refused, and so is surrounding white space, which HTTP strips.
func headerValueProblem(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			if c == '\r' || c == '\n' {
				return "contains CR or LF (header injection)"
			}
			return "contains a control character"
		}
	}
	if strings.TrimSpace(v) != v {
		return "has leading or trailing white space"
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token, the syntax of a header
// name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
