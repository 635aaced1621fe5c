package code

import (
	"cmp"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// redacted replaces a secret in error text.
const redacted = "REDACTED"

// minDerivedSecret is the shortest URL user name or password redacted on
// its own: shorter ones ("x", "git") would turn ordinary words into
// REDACTED. They still never show, since user info is cut out of every
// URL in error text. The token is redacted whatever its length.
const minDerivedSecret = 4

// userInfo matches the user info of a URL in free text.
var userInfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@`)

// redactor keeps credentials out of error text.
type redactor struct {
	secrets []string // longest first, so a value goes before its parts
}

// newRedactor returns a redactor for the clone token ("" for none).
func newRedactor(token string) redactor {
	var r redactor
	if token != "" {
		r.addForms(token)
	}
	return r
}

// add registers a credential taken from a URL when secret is true and it
// is long enough to redact without mangling other text.
func (r *redactor) add(s string, secret bool) {
	if secret && len(s) >= minDerivedSecret {
		r.addForms(s)
	}
}

// addForms registers s as it is and as it appears escaped inside a URL,
// since transport errors may quote either.
func (r *redactor) addForms(s string) {
	for _, f := range []string{s, url.PathEscape(s), url.QueryEscape(s), url.UserPassword("", s).String()[1:]} {
		if f != "" && !slices.Contains(r.secrets, f) {
			r.secrets = append(r.secrets, f)
		}
	}
	slices.SortFunc(r.secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
}

// scrub removes every registered secret and all URL user info from s.
func (r redactor) scrub(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return userInfo.ReplaceAllString(s, "$1")
}
