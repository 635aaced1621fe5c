package api

import (
	"fmt"
	"slices"
	"strings"

	"github.com/starpipe/starpipe/finding"
)

// A token limited to scopes and kinds (POST /v1/tokens) may upload only
// runs of a scope matching one of its patterns (finding.MatchScope: '*'
// within a '/'-separated segment, '**' across them) and of one of its
// kinds, and may release or discard only such runs. An empty list is no
// limit. A token limited to kinds must name the kind of each upload: the
// default kind follows the detected format, which is known only once the
// body is read, and the check runs before that.

// uploadRefusal says why p may not upload a run of scope and kind ("" when
// it may). scope is trimmed as intake trims it; an empty scope is left to
// intake to refuse (400).
func (p Principal) uploadRefusal(scope, kind string) string {
	scope = strings.TrimSpace(scope)
	if len(p.Kinds) > 0 {
		if kind == "" {
			return fmt.Sprintf("token %q may upload only kinds %s: name the upload's kind (kind=...)", p.Name, strings.Join(p.Kinds, ", "))
		}
		if !slices.Contains(p.Kinds, kind) {
			return fmt.Sprintf("token %q may not upload kind %q (its kinds: %s)", p.Name, kind, strings.Join(p.Kinds, ", "))
		}
	}
	if scope != "" && len(p.Scopes) > 0 && !finding.MatchAnyScope(p.Scopes, scope) {
		return fmt.Sprintf("token %q may not upload scope %q: it matches none of the token's scopes (%s)", p.Name, truncate(scope, 200), strings.Join(p.Scopes, ", "))
	}
	return ""
}

// runRefusal says why p may not decide a run of scope and kind ("" when it
// may).
func (p Principal) runRefusal(scope, kind string) string {
	if len(p.Kinds) > 0 && !slices.Contains(p.Kinds, kind) {
		return fmt.Sprintf("token %q may not decide a %s run (its kinds: %s)", p.Name, kind, strings.Join(p.Kinds, ", "))
	}
	if len(p.Scopes) > 0 && !finding.MatchAnyScope(p.Scopes, scope) {
		return fmt.Sprintf("token %q may not decide a run of scope %q (its scopes: %s)", p.Name, truncate(scope, 200), strings.Join(p.Scopes, ", "))
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
