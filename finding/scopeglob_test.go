package finding

import (
	"path"
	"strings"
	"testing"
)

func TestMatchScope(t *testing.T) {
	for _, tc := range []struct {
		pattern, scope string
		want           bool
	}{
		{"https://shop.example.com", "https://shop.example.com", true},
		{"https://shop.example.com", "https://shop.example.com/", false},
		{"https://shop.example.com", "https://Shop.example.com", false},
		{"https://*.example.com", "https://shop.example.com", true},
		{"https://*.example.com", "https://a.b.example.com", true},
		{"https://*.example.com", "https://example.com", false},
		{"https://*.example.com", "https://evil.com/.example.com", false},
		{"https://*.example.com", "https://shop.example.com.evil.com", false},
		{"git.example.com/acme/*", "git.example.com/acme/web", true},
		{"git.example.com/acme/*", "git.example.com/acme/web/sub", false},
		{"git.example.com/acme/*", "git.example.com/acme", false},
		{"git.example.com/acme/**", "git.example.com/acme/web/sub", true},
		{"git.example.com/acme/**", "git.example.com/acme/", true},
		{"git.example.com/acme/**", "git.example.com/acmecorp/x", false},
		{"**", "anything/at/all", true},
		{"*", "a/b", false},
		{"repo-?", "repo-1", true},
		{"repo-?", "repo-12", false},
		{"repo-?", "repo-/", false},
		{"repo-?", "repo-é", true},
		{"a[b]", "a[b]", true},
		{"a[b]", "ab", false},
		{`a\*`, `a\xyz`, true},
		{"", "", false},
		{" x", " x", false}, // invalid: leading space
	} {
		if got := MatchScope(tc.pattern, tc.scope); got != tc.want {
			t.Errorf("MatchScope(%q, %q) = %v, want %v", tc.pattern, tc.scope, got, tc.want)
		}
	}
}

// TestMatchScopeAgreesWithPathMatch: without '**' and brackets, the
// matcher is path.Match.
func TestMatchScopeAgreesWithPathMatch(t *testing.T) {
	patterns := []string{"*", "a*", "*b", "a*b", "a?c", "*/*", "a/*/c", "?*?", "h*://x.*"}
	scopes := []string{"", "a", "ab", "abc", "a/b", "a/b/c", "acb", "a/x/c", "https://x.y", "xx/yy"}
	for _, p := range patterns {
		for _, s := range scopes {
			want, err := path.Match(p, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := MatchScope(p, s); got != want {
				t.Errorf("MatchScope(%q, %q) = %v, path.Match says %v", p, s, got, want)
			}
		}
	}
}

// TestMatchScopeHostile: many stars against a long scope finish at once
// (no exponential backtracking).
func TestMatchScopeHostile(t *testing.T) {
	p := strings.Repeat("*a", 500) + "b"
	s := strings.Repeat("a", 1500)
	if MatchScope(p, s) {
		t.Fatal("matched")
	}
}

func FuzzMatchScope(f *testing.F) {
	f.Add("https://*.example.com", "https://shop.example.com")
	f.Add("a/**/b", "a/x/y/b")
	f.Fuzz(func(t *testing.T, p, s string) {
		got := MatchScope(p, s)
		if got && ValidScopePattern(p) != nil {
			t.Fatalf("invalid pattern %q matched", p)
		}
		if ValidScopePattern(p) == nil && !strings.ContainsAny(p, "*?") && got != (p == s) {
			t.Fatalf("literal pattern %q vs %q: %v", p, s, got)
		}
	})
}
