package nuclei

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// minDerivedSecret is the shortest part of a header value that is redacted
// on its own. Shorter parts (a cookie flag "1", say) would turn ordinary
// text into Redacted everywhere; the whole header value is redacted
// whatever its length.
const minDerivedSecret = 4

// Redactor replaces secret values in strings.
type Redactor struct {
	secrets []string // longest first, so a value goes before its parts
}

// NewRedactor collects the secrets in headers given as "Name: value": the
// whole value, the credential after an authorization scheme ("Bearer X"
// gives X), the user:password of Basic credentials and the password, and
// each cookie value.
func NewRedactor(headers []string) (*Redactor, error) {
	set := map[string]bool{}
	add := func(s string, min int) {
		s = strings.TrimSpace(s)
		if len(s) >= min && s != "" {
			set[s] = true
		}
	}
	for i, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			// The header itself is not quoted: it may be a bare secret.
			return nil, fmt.Errorf("header %d: %w", i+1, errBadHeader)
		}
		value = strings.TrimSpace(value)
		add(value, 1)
		if scheme, cred, ok := strings.Cut(value, " "); ok {
			add(cred, minDerivedSecret)
			if strings.EqualFold(scheme, "basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
					add(string(dec), minDerivedSecret)
					if _, pass, ok := strings.Cut(string(dec), ":"); ok {
						add(pass, minDerivedSecret)
					}
				}
			}
		}
		if strings.EqualFold(name, "cookie") {
			for _, c := range strings.Split(value, ";") {
				if _, v, ok := strings.Cut(c, "="); ok {
					add(v, minDerivedSecret)
				}
			}
		}
	}
	r := &Redactor{}
	for s := range set {
		r.secrets = append(r.secrets, s)
	}
	slices.SortFunc(r.secrets, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	return r, nil
}

// Empty reports whether there is nothing to redact.
func (r *Redactor) Empty() bool { return len(r.secrets) == 0 }

// Redact replaces every secret in s.
func (r *Redactor) Redact(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// Walk redacts every string in a decoded JSON value, map keys included.
func (r *Redactor) Walk(v any) any {
	switch x := v.(type) {
	case string:
		return r.Redact(x)
	case []any:
		for i := range x {
			x[i] = r.Walk(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[r.Redact(k)] = r.Walk(val)
		}
		return out
	default:
		return v
	}
}
