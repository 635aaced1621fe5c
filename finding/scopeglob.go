package finding

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scope patterns limit what an API token may upload (see the api's token
// scopes). A scope is free text that names what was scanned (a URL base, a
// host, a repository path), so the pattern language is a small glob over
// the whole string, with '/' as the only separator:
//
//   - '*' matches any run of characters except '/' (so "https://*.example.com"
//     matches every subdomain, and "git.example.com/acme/*" every repository
//     directly under acme);
//   - '**' matches any run of characters, '/' included
//     ("git.example.com/acme/**" matches everything under acme/);
//   - '?' matches exactly one character except '/';
//   - every other character, '[' and '\' included, matches itself, so that
//     a scope containing them needs no escaping.
//
// The pattern must match the whole scope; a pattern without wildcards is
// an exact match. Matching is case-sensitive, as scopes are.
//
// This is path.Match's '*' and '?' without its character classes and
// escapes, plus '**', matched in time proportional to the pattern's length
// times the scope's (no backtracking blow-up on hostile patterns).

// MaxScopePattern bounds a pattern's length in bytes (a scope's own limit).
const MaxScopePattern = 2048

// ValidScopePattern reports why p cannot be a scope pattern, or nil.
func ValidScopePattern(p string) error {
	switch {
	case p == "":
		return errors.New("empty scope pattern")
	case len(p) > MaxScopePattern:
		return fmt.Errorf("scope pattern longer than %d bytes", MaxScopePattern)
	case !utf8.ValidString(p):
		return errors.New("scope pattern is not UTF-8")
	case strings.TrimSpace(p) != p:
		return errors.New("scope pattern has leading or trailing space (scopes are trimmed)")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return errors.New("scope pattern has a control character")
	}
	return nil
}

// globToken is one element of a compiled pattern.
type globToken struct {
	kind byte // 'l' literal, '?' one character, '*' a segment run, 'a' any run
	r    rune
}

// MatchScope reports whether scope matches pattern (see ValidScopePattern
// for what a pattern may be; an invalid pattern matches nothing).
func MatchScope(pattern, scope string) bool {
	if ValidScopePattern(pattern) != nil {
		return false
	}
	var toks []globToken
	for i := 0; i < len(pattern); {
		r, n := utf8.DecodeRuneInString(pattern[i:])
		switch {
		case r == '*' && strings.HasPrefix(pattern[i:], "**"):
			toks = append(toks, globToken{kind: 'a'})
			n = 2
		case r == '*':
			toks = append(toks, globToken{kind: '*'})
		case r == '?':
			toks = append(toks, globToken{kind: '?'})
		default:
			toks = append(toks, globToken{kind: 'l', r: r})
		}
		i += n
	}
	s := []rune(scope)
	// cur[j]: the tokens so far match s[:j]. One row per token keeps
	// memory linear in the scope's length.
	cur := make([]bool, len(s)+1)
	next := make([]bool, len(s)+1)
	cur[0] = true
	for _, t := range toks {
		clear(next)
		switch t.kind {
		case 'l', '?':
			for j := 0; j < len(s); j++ {
				if cur[j] && ((t.kind == 'l' && s[j] == t.r) || (t.kind == '?' && s[j] != '/')) {
					next[j+1] = true
				}
			}
		case '*', 'a':
			// next[j] holds when cur[k] for some k <= j with s[k:j]
			// free of '/' (for '*').
			run := false
			for j := 0; j <= len(s); j++ {
				if j > 0 && t.kind == '*' && s[j-1] == '/' {
					run = false
				}
				run = run || cur[j]
				next[j] = run
			}
		}
		cur, next = next, cur
	}
	return cur[len(s)]
}

// MatchAnyScope reports whether scope matches one of patterns.
func MatchAnyScope(patterns []string, scope string) bool {
	for _, p := range patterns {
		if MatchScope(p, scope) {
			return true
		}
	}
	return false
}
