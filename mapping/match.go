package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/finding"
)

// view is what the matchers read from one finding, computed once per
// finding so that no rule lower-cases or parses anything again.
type view struct {
	f       *finding.Finding
	kind    uint8 // kindBit
	loc     uint8 // locBit
	sev     uint8 // 1 << severity
	tool    string
	rule    string
	tags    []string
	hasCVE  bool
	hasCVSS bool
}

// newView builds the view of f. Parsers mostly emit lower-case tags, so
// the finding's own slice is used unless a tag needs lower-casing.
func newView(f *finding.Finding) view {
	return view{
		f:       f,
		kind:    kindBit(f.Kind),
		loc:     locBit(f.Location.Kind),
		sev:     1 << (f.Severity & 7),
		tool:    strings.ToLower(f.Tool),
		rule:    strings.ToLower(f.RuleID),
		tags:    lowerAll(f.Tags),
		hasCVE:  len(f.CVE) > 0,
		hasCVSS: f.CVSS != nil || f.Signals.Vector != "" || f.Signals.Score != nil,
	}
}

func lowerAll(tags []string) []string {
	for i, t := range tags {
		if !isLowerASCII(t) {
			out := make([]string, len(tags))
			copy(out, tags[:i])
			for j := i; j < len(tags); j++ {
				out[j] = strings.ToLower(tags[j])
			}
			return out
		}
	}
	return tags
}

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

var kindNames = []finding.ScanKind{finding.KindExternal, finding.KindAuthenticated, finding.KindCode}

func kindBit(k finding.ScanKind) uint8 {
	for i, n := range kindNames {
		if k == n {
			return 1 << i
		}
	}
	return 0
}

var locNames = []finding.LocationKind{finding.LocationFile, finding.LocationURL, finding.LocationHost, finding.LocationLogical, finding.LocationNone}

// locBit maps a location kind to a bit; LocationNone is written "none" in
// rules files.
func locBit(k finding.LocationKind) uint8 {
	for i, n := range locNames {
		if k == n {
			return 1 << i
		}
	}
	return 0
}

func parseLocation(s string) (uint8, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "none" {
		return locBit(finding.LocationNone), true
	}
	if s == "" {
		return 0, false
	}
	b := locBit(finding.LocationKind(s))
	return b, b != 0
}

// tri is an optional boolean condition.
type tri int8

const (
	triAny tri = iota
	triTrue
	triFalse
)

func (t tri) ok(v bool) bool { return t == triAny || (t == triTrue) == v }

// matcher is one compiled match block. Every constrained field must match
// (AND); within a field any listed value may match (OR).
type matcher struct {
	any      bool
	kinds    uint8 // 0: unconstrained
	locs     uint8
	sevs     uint8
	tools    []pattern
	rules    []pattern
	tagSet   map[string]struct{}
	tagPats  []pattern
	hasTags  bool
	cwe      *cweSet
	hasCVE   tri
	hasCVSS  tri
	not      *matcher
	anyOf    []*matcher
	nonEmpty bool // at least one field was given
}

func (m *matcher) match(v *view) bool {
	if m.kinds != 0 && m.kinds&v.kind == 0 {
		return false
	}
	if m.locs != 0 && m.locs&v.loc == 0 {
		return false
	}
	if m.sevs != 0 && m.sevs&v.sev == 0 {
		return false
	}
	if !m.hasCVE.ok(v.hasCVE) || !m.hasCVSS.ok(v.hasCVSS) {
		return false
	}
	if m.tools != nil && !matchAny(m.tools, v.tool) {
		return false
	}
	if m.rules != nil && !matchAny(m.rules, v.rule) {
		return false
	}
	if m.hasTags && !m.matchTags(v.tags) {
		return false
	}
	if m.cwe != nil && !m.cwe.matchAny(v.f.CWE) {
		return false
	}
	if m.not != nil && m.not.match(v) {
		return false
	}
	if m.anyOf != nil {
		for _, sub := range m.anyOf {
			if sub.match(v) {
				return true
			}
		}
		return false
	}
	return true
}

func (m *matcher) matchTags(tags []string) bool {
	for _, t := range tags {
		if _, ok := m.tagSet[t]; ok {
			return true
		}
		if m.tagPats != nil && matchAny(m.tagPats, t) {
			return true
		}
	}
	return false
}

// pattern is a compiled glob (or "re:" regular expression) over a
// lower-cased value. Most globs reduce to an exact, prefix, suffix or
// substring test; the rest compile to one regular expression at load.
type pattern struct {
	op   uint8
	s    string
	segs []string // opSegments: the parts between stars, in order
	re   *regexp.Regexp
	src  string
}

const (
	opExact uint8 = iota
	opPrefix
	opSuffix
	opContains
	opAll
	opSegments
	opRegexp
)

func matchAny(ps []pattern, s string) bool {
	for i := range ps {
		if ps[i].match(s) {
			return true
		}
	}
	return false
}

func (p *pattern) match(s string) bool {
	switch p.op {
	case opExact:
		return s == p.s
	case opPrefix:
		return strings.HasPrefix(s, p.s)
	case opSuffix:
		return strings.HasSuffix(s, p.s)
	case opContains:
		return strings.Contains(s, p.s)
	case opAll:
		return true
	case opSegments:
		return matchSegments(p.segs, s)
	}
	return p.re.MatchString(s)
}

// matchSegments matches a star glob split at its stars: the first part is a
// prefix, the last a suffix, and the middle ones must appear in order in
// between (leftmost match is enough, since stars absorb any run).
func matchSegments(segs []string, s string) bool {
	first, last := segs[0], segs[len(segs)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	mid := s[len(first) : len(s)-len(last)]
	for _, seg := range segs[1 : len(segs)-1] {
		i := strings.Index(mid, seg)
		if i < 0 {
			return false
		}
		mid = mid[i+len(seg):]
	}
	return true
}

// compilePattern compiles a glob: '*' matches any run of characters
// (including '/'), '?' one character, "[abc]", "[a-z]" and "[!x]" a class,
// '\' escapes the next character. Matching is case-insensitive. A pattern
// starting with "re:" is an RE2 regular expression, unanchored unless it
// anchors itself.
func compilePattern(src string) (pattern, error) {
	p := pattern{src: src}
	if rest, ok := strings.CutPrefix(src, "re:"); ok {
		if rest == "" {
			return p, errors.New("empty regular expression")
		}
		re, err := regexp.Compile("(?i)" + rest)
		if err != nil {
			return p, fmt.Errorf("bad regular expression %q: %v", rest, unwrapRegexpErr(err))
		}
		p.op, p.re = opRegexp, re
		return p, nil
	}
	if src == "" {
		return p, errors.New("empty pattern")
	}
	s := strings.ToLower(src)
	if !strings.ContainsAny(s, "?[]\\") {
		inner := strings.Trim(s, "*")
		leading, trailing := strings.HasPrefix(s, "*"), strings.HasSuffix(s, "*")
		switch {
		case inner == "":
			p.op = opAll
			return p, nil
		case strings.Contains(inner, "*"):
			// stars in the middle: match the parts in order
			p.op, p.segs = opSegments, strings.Split(s, "*")
			return p, nil
		case !leading && !trailing:
			p.op, p.s = opExact, s
			return p, nil
		case !leading:
			p.op, p.s = opPrefix, inner
			return p, nil
		case !trailing:
			p.op, p.s = opSuffix, inner
			return p, nil
		default:
			p.op, p.s = opContains, inner
			return p, nil
		}
	}
	expr, err := globToRegexp(s)
	if err != nil {
		return p, fmt.Errorf("bad glob %q: %v", src, err)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return p, fmt.Errorf("bad glob %q: %v", src, unwrapRegexpErr(err))
	}
	p.op, p.re = opRegexp, re
	return p, nil
}

func unwrapRegexpErr(err error) error {
	var se *syntax.Error
	if errors.As(err, &se) {
		return errors.New(se.Code.String() + ": " + se.Expr)
	}
	return err
}

func globToRegexp(g string) (string, error) {
	var b strings.Builder
	b.WriteString("^(?s)")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 == len(g) {
				return "", errors.New("trailing backslash")
			}
			i++
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		case '[':
			end := strings.IndexByte(g[i+1:], ']')
			if end == 0 && i+2 < len(g) { // "[]x]": ']' first is literal
				end = 1 + strings.IndexByte(g[i+2:], ']')
				if end == 0 {
					end = -1
				}
			}
			if end < 0 {
				return "", errors.New("unclosed '['")
			}
			class := g[i+1 : i+1+end]
			if class == "" || class == "!" {
				return "", errors.New("empty character class")
			}
			b.WriteByte('[')
			if class[0] == '!' {
				b.WriteByte('^')
				class = class[1:]
			}
			for j := 0; j < len(class); j++ {
				switch class[j] {
				case '\\', '[', ']', '^':
					b.WriteByte('\\')
				}
				b.WriteByte(class[j])
			}
			b.WriteByte(']')
			i += 1 + end
		case ']':
			return "", errors.New("unmatched ']'")
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteByte('$')
	return b.String(), nil
}

// cweSet is a set of CWE ids kept as sorted, merged closed intervals.
type cweSet struct {
	iv [][2]int
}

func (s *cweSet) add(lo, hi int) { s.iv = append(s.iv, [2]int{lo, hi}) }

func (s *cweSet) normalise() {
	slices.SortFunc(s.iv, func(a, b [2]int) int { return a[0] - b[0] })
	out := s.iv[:0]
	for _, r := range s.iv {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	s.iv = out
}

func (s *cweSet) contains(id int) bool {
	i, _ := slices.BinarySearchFunc(s.iv, id, func(r [2]int, id int) int {
		switch {
		case r[1] < id:
			return -1
		case r[0] > id:
			return 1
		}
		return 0
	})
	return i < len(s.iv) && s.iv[i][0] <= id && id <= s.iv[i][1]
}

func (s *cweSet) matchAny(ids []int) bool {
	for _, id := range ids {
		if s.contains(id) {
			return true
		}
	}
	return false
}

// parseCWEItem reads "79", "CWE-79", "200-299" or "CWE-200-CWE-299". ok is
// false when the item is not numeric at all (then it may be a class name).
func parseCWEItem(s string) (lo, hi int, ok bool, err error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimPrefix(u, "CWE-")
	if u == "" || u[0] < '0' || u[0] > '9' {
		return 0, 0, false, nil
	}
	a, b, isRange := strings.Cut(u, "-")
	lo, err = strconv.Atoi(a)
	if err != nil {
		return 0, 0, true, fmt.Errorf("bad CWE id %q", s)
	}
	hi = lo
	if isRange {
		hi, err = strconv.Atoi(strings.TrimPrefix(b, "CWE-"))
		if err != nil {
			return 0, 0, true, fmt.Errorf("bad CWE range %q: the upper bound is not a number", s)
		}
	}
	if lo <= 0 || hi <= 0 {
		return 0, 0, true, fmt.Errorf("bad CWE id %q: ids start at 1", s)
	}
	if lo > hi {
		return 0, 0, true, fmt.Errorf("bad CWE range %q: lower bound above upper bound", s)
	}
	return lo, hi, true, nil
}
