package sarif

import (
	"slices"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/finding"
)

// This file turns a decoded result plus its run into a finding.Finding.

// isFinding reports whether a result kind is a finding. Unknown kinds are
// treated as findings: dropping a result silently is worse than showing one
// too many.
func isFinding(kind string) bool {
	switch kind {
	case "pass", "informational", "notApplicable":
		return false
	}
	return true
}

// component finds the toolComponent a result's rule reference points at:
// rule.toolComponent.index into tool.extensions, or its name or guid; the
// driver otherwise (also when the reference is out of range).
func (rc *runCtx) component(rr *rawResult) *component {
	if rr.refCompIndex >= 0 && rr.refCompIndex < len(rc.extensions) {
		return &rc.extensions[rr.refCompIndex]
	}
	if rr.refCompGUID != "" {
		for i := range rc.extensions {
			if strings.EqualFold(rc.extensions[i].guid, rr.refCompGUID) {
				return &rc.extensions[i]
			}
		}
	}
	if rr.refCompName != "" && rr.refCompName != rc.driver.name {
		for i := range rc.extensions {
			if rc.extensions[i].name == rr.refCompName {
				return &rc.extensions[i]
			}
		}
	}
	return &rc.driver
}

// lookup finds a rule by id in c, falling back from a hierarchical id
// ("A/B/C") to its ancestors ("A/B", then "A") as SARIF §3.27.5 allows.
func (c *component) lookup(id string) *rule {
	for id != "" {
		if i, ok := c.byID[id]; ok {
			return &c.rules[i]
		}
		slash := strings.LastIndexByte(id, '/')
		if slash < 0 {
			break
		}
		id = id[:slash]
	}
	return nil
}

// rule resolves the reportingDescriptor of a result. An index wins when it
// is in range and agrees with the id; otherwise the id is looked up in the
// referenced component, then the driver, then every extension (CodeQL puts
// rules in extensions and some converters omit the reference).
func (rc *runCtx) rule(rr *rawResult, id string) (*component, *rule) {
	comp := rc.component(rr)
	idx := rr.refIndex
	if idx < 0 {
		idx = rr.ruleIndex
	}
	if idx >= 0 && idx < len(comp.rules) {
		r := &comp.rules[idx]
		if id == "" || r.id == id || strings.HasPrefix(id, r.id+"/") {
			return comp, r
		}
	}
	if id == "" {
		return comp, nil
	}
	if r := comp.lookup(id); r != nil {
		return comp, r
	}
	if comp != &rc.driver {
		if r := rc.driver.lookup(id); r != nil {
			return &rc.driver, r
		}
	}
	for i := range rc.extensions {
		if c := &rc.extensions[i]; c != comp {
			if r := c.lookup(id); r != nil {
				return c, r
			}
		}
	}
	return comp, nil
}

// taxon resolves a taxon reference to its taxonomy name and taxon id.
func (rc *runCtx) taxon(t taxonRef) (comp, id string) {
	comp, id = t.compName, t.id
	var tc *component
	switch {
	case t.compIndex >= 0 && t.compIndex < len(rc.taxonomies):
		tc = &rc.taxonomies[t.compIndex]
	case comp != "":
		for i := range rc.taxonomies {
			if strings.EqualFold(rc.taxonomies[i].name, comp) {
				tc = &rc.taxonomies[i]
				break
			}
		}
	}
	if tc != nil {
		if comp == "" {
			comp = tc.name
		}
		if id == "" && t.index >= 0 && t.index < len(tc.taxa) {
			id = tc.taxa[t.index].id
		}
	}
	return comp, id
}

// addTaxa folds taxon references into CWE ids (taxonomy named CWE) and tags
// ("<taxonomy>/<id>") for every other taxonomy.
func (rc *runCtx) addTaxa(refs []taxonRef, cwe []int, tags []string) ([]int, []string) {
	for _, t := range refs {
		comp, id := rc.taxon(t)
		if id == "" {
			continue
		}
		if strings.EqualFold(comp, "CWE") {
			cwe = append(cwe, cweNumbers(id, false)...)
			continue
		}
		if comp != "" {
			tags = append(tags, comp+"/"+id)
		}
	}
	return cwe, tags
}

// resolveURI resolves a relative URI against originalUriBaseIds, following
// chains of uriBaseId (bounded, so a cycle cannot loop). A base id that the
// run does not define leaves the URI relative, which is what CodeQL's
// %SRCROOT% needs: the path relative to the repository is the useful one.
func (rc *runCtx) resolveURI(uri, baseID string) string {
	for steps := 0; baseID != "" && steps < 32 && !hasScheme(uri) && !strings.HasPrefix(uri, "/"); steps++ {
		b, ok := rc.bases[baseID]
		if !ok {
			break
		}
		if b.uri != "" {
			uri = joinURI(b.uri, uri)
		}
		baseID = b.baseID
	}
	return uri
}

func joinURI(base, rel string) string {
	rel = strings.TrimPrefix(rel, "./")
	if rel == "" {
		return base
	}
	if strings.HasSuffix(base, "/") {
		return base + rel
	}
	return base + "/" + rel
}

// hasScheme reports whether s starts with an RFC 3986 scheme ("file:",
// "https:"). A one-letter scheme is a Windows drive ("C:"), not a URI scheme.
func hasScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			return i > 1
		case c|0x20 >= 'a' && c|0x20 <= 'z':
		case i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return false
}

func isWebURI(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// formatMessage fills SARIF placeholders ("{0}") from arguments and turns
// the escapes "{{" and "}}" back into braces (SARIF §3.11.5). Placeholders
// without an argument stay as written.
func formatMessage(s string, args []string) string {
	if !strings.ContainsAny(s, "{}") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '{' && i+1 < len(s) && s[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		if c == '}' && i+1 < len(s) && s[i+1] == '}' {
			b.WriteByte('}')
			i++
			continue
		}
		if c == '{' {
			j := i + 1
			for j < len(s) && isDigit(s[j]) && j-i < 6 {
				j++
			}
			if j > i+1 && j < len(s) && s[j] == '}' {
				n, _ := strconv.Atoi(s[i+1 : j])
				if n < len(args) {
					b.WriteString(args[n])
					i = j
					continue
				}
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// normSnippet makes a snippet independent of line endings and surrounding
// whitespace before it goes into a fingerprint.
func normSnippet(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.TrimSpace(s)
}

const maxEvidence = 1024

// build turns a decoded result into a finding. ok is false for results that
// are not findings (pass, informational, notApplicable, baselineState
// absent).
func (p *parser) build(rc *runCtx, rr *rawResult) (f *finding.Finding, ok bool) {
	kind := rr.kind
	if !isFinding(kind) || rr.baselineAbsent {
		return nil, false
	}
	id := rr.ruleID
	if id == "" {
		id = rr.refID
	}
	comp, rl := rc.rule(rr, id)
	if id == "" && rl != nil {
		id = rl.id
	}
	f = &finding.Finding{
		Scope:       p.opt.Scope,
		Kind:        p.opt.Kind,
		Tool:        rc.driver.name,
		ToolVersion: rc.driver.version,
		RuleID:      id,
	}
	if f.Kind == "" {
		f.Kind = finding.KindCode
	}
	if f.Scope == "" {
		f.Scope = rc.repoURI
	}

	// Message: text, markdown, or a messageStrings entry by id.
	msg := rr.msgText
	if msg == "" {
		msg = rr.msgMarkdown
	}
	fromStrings := false
	if msg == "" && rr.msgID != "" {
		fromStrings = true
		if rl != nil {
			msg = rl.messages[rr.msgID]
		}
		if msg == "" {
			msg = comp.globalMessages[rr.msgID]
		}
		if msg == "" {
			msg = rc.driver.globalMessages[rr.msgID]
		}
	}
	if len(rr.msgArgs) > 0 || fromStrings {
		msg = formatMessage(msg, rr.msgArgs)
	}
	f.Message = msg

	// Level (SARIF §3.27.10): a non-fail kind means "none"; otherwise the
	// rule's default configuration, otherwise "warning".
	level := rr.level
	if level == "" {
		switch {
		case kind != "" && kind != "fail":
			level = "none"
		case rl != nil && rl.defaultLevel != "":
			level = rl.defaultLevel
		default:
			level = "warning"
		}
	}
	f.Signals.Level = level

	var cwe []int
	var cve, tags []string
	if rl != nil {
		f.RuleName = rl.name
		f.Title = rl.short
		if f.Title == "" {
			f.Title = rl.name
		}
		f.Description = rl.full
		if rl.helpURI != "" {
			f.References = []string{rl.helpURI}
		}
		f.Signals.Score = rl.props.score
		f.Signals.Vector = rl.props.vector
		f.Signals.Label = rl.props.label
		cwe = append(cwe, rl.props.cwe...)
		cve = append(cve, rl.props.cve...)
		tags = append(tags, rl.props.tags...)
		cwe, tags = rc.addTaxa(rl.relationships, cwe, tags)
		cve = appendCVEs(cve, rl.name)
	}
	if f.Title == "" {
		f.Title = id
	}
	if f.Title == "" {
		f.Title = firstLine(msg, 120)
	}
	// Result properties override the rule's.
	if rr.props.score != nil {
		f.Signals.Score = rr.props.score
	}
	if rr.props.vector != "" {
		f.Signals.Vector = rr.props.vector
	}
	if rr.props.label != "" {
		f.Signals.Label = rr.props.label
	}
	cwe = append(cwe, rr.props.cwe...)
	cve = append(cve, rr.props.cve...)
	tags = append(tags, rr.props.tags...)
	cwe, tags = rc.addTaxa(rr.taxa, cwe, tags)
	cve = appendCVEs(cve, id)
	f.CWE = sortedUniqueInts(cwe)
	f.CVE = sortedUnique(cve)
	f.Tags = sortedUnique(tags)

	// Location: the first location with something in it, or the analysis
	// target when there is none.
	loc := rr.loc
	if !rr.hasLoc && rr.hasTarget {
		loc = rr.target
	}
	uri, base := loc.uri, loc.baseID
	if loc.artIndex >= 0 && loc.artIndex < len(rc.artifacts) {
		a := rc.artifacts[loc.artIndex]
		if uri == "" {
			uri = a.uri
		}
		if base == "" && a.uri == uri {
			base = a.baseID
		}
	}
	logicalName := loc.logicalFQN
	if logicalName == "" {
		logicalName = loc.logicalName
	}
	if loc.logicalIndex >= 0 && loc.logicalIndex < len(rc.logicals) && logicalName == "" {
		l := rc.logicals[loc.logicalIndex]
		logicalName = l.fqn
		if logicalName == "" {
			logicalName = l.name
		}
	}
	resolved := rc.resolveURI(uri, base)
	f.Location = finding.Location{
		URI:         resolved,
		StartLine:   max(loc.startLine, 0),
		StartColumn: max(loc.startColumn, 0),
		EndLine:     max(loc.endLine, 0),
		EndColumn:   max(loc.endColumn, 0),
		Logical:     logicalName,
	}
	switch {
	case resolved != "" && isWebURI(resolved):
		f.Location.Kind = finding.LocationURL
	case resolved != "":
		f.Location.Kind = finding.LocationFile
	case logicalName != "":
		f.Location.Kind = finding.LocationLogical
	}
	if s := loc.snippet; s != "" {
		f.Evidence = []string{truncate(s, maxEvidence)}
	}

	// Suppressions.
	f.Suppressed = rr.suppressed
	if rr.suppressed {
		f.Justification = rr.justification
	}

	p.fingerprint(f, rc, rr, uri, loc, logicalName)
	return f, true
}

// fingerprint sets the finding's identity.
//
//   - fingerprints (full, SARIF §3.27.16): the entry with the smallest key.
//   - partialFingerprints (§3.27.17) are partial by definition: CodeQL's
//     primaryLocationLineHash repeats across rules on one line and
//     ShiftLeft's scanFileHash is per file. They are combined with the rule
//     id, the URI and every other partial entry (sorted), so two different
//     results never share one; the source names the smallest key.
//   - otherwise computed from tool, rule, the URI as written (before base
//     resolution, so a checkout path does not leak in), start line and
//     column, logical location and the snippet. The message is left out
//     because tools put volatile data in it, except when the result has no
//     location at all, where it is the only thing telling results apart.
func (p *parser) fingerprint(f *finding.Finding, rc *runCtx, rr *rawResult, uri string, loc rawLocation, logicalName string) {
	switch {
	case rr.fpKey != "":
		f.Fingerprint = finding.ToolFingerprint(f.Tool, rr.fpKey, rr.fpVal)
		f.FingerprintSource = "tool:" + rr.fpKey
		return
	case rr.pfpKey != "":
		var fp finding.Fingerprinter
		fp.Add("rule", f.RuleID).Add("uri", strings.TrimPrefix(uri, "./"))
		for _, kv := range rr.partials {
			fp.Add(kv[0], kv[1])
		}
		f.Fingerprint = finding.ToolFingerprint(f.Tool, rr.pfpKey, fp.Sum())
		f.FingerprintSource = "tool:" + rr.pfpKey
		return
	}
	var fp finding.Fingerprinter
	fp.Add("tool", strings.ToLower(f.Tool)).
		Add("rule", f.RuleID).
		Add("uri", strings.TrimPrefix(uri, "./")).
		Add("line", strconv.Itoa(loc.startLine)).
		Add("column", strconv.Itoa(loc.startColumn)).
		Add("logical", logicalName)
	if loc.snippet != "" {
		fp.Add("snippet", normSnippet(loc.snippet))
	}
	if uri == "" && logicalName == "" {
		fp.Add("message", f.Message)
	}
	f.Fingerprint = fp.Sum()
	f.FingerprintSource = "computed"
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}

func sortedUniqueInts(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the evidence stays valid UTF-8.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func firstLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return truncate(strings.TrimSpace(s), n)
}
