package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/finding"
)

// Error is a problem in a rules file, with the line it was found on.
type Error struct {
	File string
	Line int // 1-based; 0 when the problem is about the whole file
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// maxErrors bounds how many problems one load reports: enough to fix a file
// in one pass, not a wall of text for a file that is not a rules file.
const maxErrors = 20

type errList struct{ errs []error }

func (l *errList) add(file string, n *yaml.Node, format string, args ...any) {
	if len(l.errs) >= maxErrors {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	l.errs = append(l.errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (l *errList) err() error { return errors.Join(l.errs...) }

// fileSpec is a parsed, not yet compiled rules file.
type fileSpec struct {
	name        string
	version     string
	versionNode *yaml.Node
	extends     bool
	classes     []classSpec
	rules       []ruleSpec
}

type classSpec struct {
	file string
	name string
	node *yaml.Node
}

type ruleSpec struct {
	file       string
	node       *yaml.Node
	id         string
	disabled   bool
	match      *yaml.Node
	controls   *yaml.Node
	reason     string
	reasonNode *yaml.Node
}

var (
	ruleIDRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	classNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// parseFile reads the structure of a rules file. It checks every key, so a
// misspelt field is an error, not a silently ignored line.
func parseFile(name string, data []byte, el *errList) *fileSpec {
	spec := &fileSpec{name: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		msg := err.Error()
		// yaml.v3 reports "yaml: line N: ..." for syntax errors.
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			fmt.Sscan(m[1], &line)
			msg = m[2]
		}
		el.errs = append(el.errs, &Error{File: name, Line: line, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")})
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		el.add(name, nil, "empty rules file")
		return nil
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		el.add(name, root, "a rules file is a mapping with the keys version, extends, cwe_classes and rules")
		return nil
	}
	forEachKey(name, root, el, func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			if s, ok := scalar(name, v, el, "version"); ok {
				spec.version, spec.versionNode = s, v
			}
		case "extends":
			if s, ok := scalar(name, v, el, "extends"); ok {
				if s != "default" {
					el.add(name, v, "extends: only \"default\" can be extended, not %q", s)
				}
				spec.extends = true
			}
		case "cwe_classes":
			if v.Kind != yaml.MappingNode {
				el.add(name, v, "cwe_classes: want a mapping of class name to a list of CWE ids or ranges")
				return
			}
			forEachKey(name, v, el, func(cname string, ck, cv *yaml.Node) {
				if !classNameRe.MatchString(cname) {
					el.add(name, ck, "cwe_classes: bad class name %q (lower-case letters, digits, '-' and '_', starting with a letter)", cname)
					return
				}
				spec.classes = append(spec.classes, classSpec{file: name, name: cname, node: cv})
			})
		case "rules":
			if v.Kind != yaml.SequenceNode {
				el.add(name, v, "rules: want a list of rules")
				return
			}
			for _, rn := range v.Content {
				if r, ok := parseRule(name, deref(rn), el); ok {
					spec.rules = append(spec.rules, r)
				}
			}
		default:
			el.add(name, k, "unknown field %q (known: version, extends, cwe_classes, rules)", key)
		}
	})
	return spec
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseRule(file string, n *yaml.Node, el *errList) (ruleSpec, bool) {
	r := ruleSpec{file: file, node: n}
	if n.Kind != yaml.MappingNode {
		el.add(file, n, "a rule is a mapping with the keys id, match, controls and reason")
		return r, false
	}
	forEachKey(file, n, el, func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			if s, ok := scalar(file, v, el, "id"); ok {
				if !ruleIDRe.MatchString(s) {
					el.add(file, v, "bad rule id %q (letters, digits, '.', '_' and '-')", s)
				}
				r.id = s
			}
		case "match":
			r.match = v
		case "controls":
			r.controls = v
		case "reason":
			if s, ok := scalar(file, v, el, "reason"); ok {
				r.reason, r.reasonNode = s, v
			}
		case "disabled":
			if b, ok := boolean(file, v, el, "disabled"); ok {
				r.disabled = b
			}
		default:
			el.add(file, k, "unknown rule field %q (known: id, match, controls, reason, disabled)", key)
		}
	})
	if r.id == "" {
		el.add(file, n, "rule has no id")
		return r, false
	}
	return r, true
}

// merge applies an extending file to the default: classes with the same
// name are replaced, rules with the same id are replaced in place or removed
// (disabled: true), new rules are appended, and version is overridden.
func merge(base, ext *fileSpec, el *errList) *fileSpec {
	out := &fileSpec{name: ext.name, version: base.version, versionNode: base.versionNode}
	if ext.version != "" {
		out.version, out.versionNode = ext.version, ext.versionNode
	}
	out.classes = slices.Clone(base.classes)
	for _, c := range ext.classes {
		i := slices.IndexFunc(out.classes, func(b classSpec) bool { return b.name == c.name })
		if i >= 0 {
			out.classes[i] = c
		} else {
			out.classes = append(out.classes, c)
		}
	}
	out.rules = slices.Clone(base.rules)
	seen := map[string]bool{}
	for _, r := range ext.rules {
		if seen[r.id] {
			el.add(r.file, r.node, "rule %q: duplicate rule id", r.id)
			continue
		}
		seen[r.id] = true
		i := slices.IndexFunc(out.rules, func(b ruleSpec) bool { return b.id == r.id })
		switch {
		case i >= 0 && r.disabled:
			out.rules = slices.Delete(out.rules, i, i+1)
		case r.disabled:
			el.add(r.file, r.node, "rule %q: disabled, but the default rules have no rule with that id", r.id)
		case i >= 0:
			out.rules[i] = r
		default:
			out.rules = append(out.rules, r)
		}
	}
	return out
}

// compiledRule is a rule ready to evaluate.
type compiledRule struct {
	id       string
	rank     int32 // position in rule id order
	m        matcher
	links    []linkSpec // every version, catalogue order
	reason   *reasonTmpl
	file     string
	line     int
	controls map[string][]string
}

// linkSpec is one (version, control) a rule evidences, with the positions
// used to order links without comparing strings.
type linkSpec struct {
	version, control, title string
	vIdx, cIdx              int
}

type compiler struct {
	cats    *Catalogs
	el      *errList
	classes map[string]*cweSet
}

func (c *compiler) compileClasses(specs []classSpec) {
	c.classes = map[string]*cweSet{}
	for _, cs := range specs {
		if _, dup := c.classes[cs.name]; dup {
			c.el.add(cs.file, cs.node, "cwe_classes: class %q defined twice", cs.name)
			continue
		}
		set := &cweSet{}
		items := seqOrScalar(cs.node)
		if len(items) == 0 {
			c.el.add(cs.file, cs.node, "cwe_classes: class %q is empty", cs.name)
		}
		for _, it := range items {
			lo, hi, numeric, err := parseCWEItem(it.Value)
			switch {
			case it.Kind != yaml.ScalarNode:
				c.el.add(cs.file, it, "cwe_classes: %s: want CWE ids or ranges", cs.name)
			case err != nil:
				c.el.add(cs.file, it, "cwe_classes: %s: %v", cs.name, err)
			case !numeric:
				c.el.add(cs.file, it, "cwe_classes: %s: %q is not a CWE id or range (classes cannot name other classes)", cs.name, it.Value)
			default:
				set.add(lo, hi)
			}
		}
		set.normalise()
		c.classes[cs.name] = set
	}
}

func (c *compiler) compileRule(r ruleSpec, seen map[string]bool) (compiledRule, bool) {
	cr := compiledRule{id: r.id, file: r.file, line: r.node.Line, controls: map[string][]string{}}
	start := len(c.el.errs)
	if seen[r.id] {
		c.el.add(r.file, r.node, "rule %q: duplicate rule id", r.id)
	}
	seen[r.id] = true
	if r.match == nil {
		c.el.add(r.file, r.node, "rule %q: no match (write `match: {any: true}` to match every finding)", r.id)
	} else {
		c.compileMatch(r.file, r.id, deref(r.match), &cr.m, true)
	}
	if r.controls == nil {
		c.el.add(r.file, r.node, "rule %q: no controls", r.id)
	} else {
		c.compileControls(r, &cr)
	}
	if r.reasonNode == nil || strings.TrimSpace(r.reason) == "" {
		c.el.add(r.file, r.node, "rule %q: no reason (say why a match is evidence for the controls)", r.id)
	} else if t, err := compileReason(r.reason); err != nil {
		c.el.add(r.file, r.reasonNode, "rule %q: %v", r.id, err)
	} else {
		cr.reason = t
	}
	return cr, len(c.el.errs) == start
}

func (c *compiler) compileControls(r ruleSpec, cr *compiledRule) {
	n := deref(r.controls)
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		c.el.add(r.file, n, `rule %q: controls: want a mapping of CCM version to control ids, e.g. {"4.0.13": [TVM-07], "4.1": [TVM-03]}`, r.id)
		return
	}
	forEachKey(r.file, n, c.el, func(ver string, k, v *yaml.Node) {
		cv, ok := c.cats.Resolve(ver)
		if !ok {
			c.el.add(r.file, k, "rule %q: unknown CCM version %q (known: %s)", r.id, ver, strings.Join(c.cats.Versions(), ", "))
			return
		}
		if _, dup := cr.controls[cv]; dup {
			c.el.add(r.file, k, "rule %q: CCM version %s given twice", r.id, cv)
			return
		}
		cat := c.cats.byVersion[cv]
		items := seqOrScalar(v)
		if len(items) == 0 {
			c.el.add(r.file, v, "rule %q: no controls for CCM %s", r.id, cv)
		}
		var ids []string
		for _, it := range items {
			if it.Kind != yaml.ScalarNode {
				c.el.add(r.file, it, "rule %q: want a control id", r.id)
				continue
			}
			pos, ok := cat.position(it.Value)
			if !ok {
				c.el.add(r.file, it, "rule %q: unknown control %q in CCM %s%s", r.id, it.Value, cv, c.hint(cat, it.Value))
				continue
			}
			ctl := cat.Controls[pos]
			if slices.Contains(ids, ctl.ID) {
				c.el.add(r.file, it, "rule %q: control %s listed twice for CCM %s", r.id, ctl.ID, cv)
				continue
			}
			ids = append(ids, ctl.ID)
			cr.links = append(cr.links, linkSpec{version: cv, control: ctl.ID, title: ctl.Title, vIdx: c.cats.versionIndex(cv), cIdx: pos})
		}
		cr.controls[cv] = ids
	})
	slices.SortFunc(cr.links, compareLinkSpec)
}

func compareLinkSpec(a, b linkSpec) int {
	if a.vIdx != b.vIdx {
		return a.vIdx - b.vIdx
	}
	return a.cIdx - b.cIdx
}

// hint suggests the control with the same title when an id belongs to
// another CCM version, the commonest mistake given v4.1's renumbering.
func (c *compiler) hint(cat *Catalog, id string) string {
	for _, other := range c.cats.order {
		if other == cat {
			continue
		}
		oc, ok := other.Control(id)
		if !ok {
			continue
		}
		if i, ok := cat.byTitle[oc.Title]; ok {
			return fmt.Sprintf(" (%s is CCM %s %q; in CCM %s that title is %s)", oc.ID, other.Version, oc.Title, cat.Version, cat.Controls[i].ID)
		}
		return fmt.Sprintf(" (%s is CCM %s %q, which has no same-title control in CCM %s)", oc.ID, other.Version, oc.Title, cat.Version)
	}
	return ""
}

// matchKeys documents the match fields, in the order error messages list them.
const matchKeys = "any, kind, tool, rule, tags, cwe, has_cve, has_cvss, severity, min_severity, location, any_of, not"

func (c *compiler) compileMatch(file, id string, n *yaml.Node, m *matcher, top bool) {
	if n.Kind != yaml.MappingNode {
		c.el.add(file, n, "rule %q: match: want a mapping with some of: %s", id, matchKeys)
		return
	}
	var sevList, sevMin uint8
	var anyNode *yaml.Node
	forEachKey(file, n, c.el, func(key string, k, v *yaml.Node) {
		m.nonEmpty = true
		switch key {
		case "any":
			if b, ok := boolean(file, v, c.el, "any"); ok {
				if !b {
					c.el.add(file, v, "rule %q: any: false matches nothing; remove the rule or set disabled: true", id)
				}
				m.any, anyNode = b, k
			}
		case "kind":
			for _, it := range c.scalars(file, id, key, v) {
				k, err := finding.ParseScanKind(strings.ToLower(it.Value))
				if err != nil {
					c.el.add(file, it, "rule %q: kind: %v", id, err)
					continue
				}
				m.kinds |= kindBit(k)
			}
		case "location":
			for _, it := range c.scalars(file, id, key, v) {
				b, ok := parseLocation(it.Value)
				if !ok {
					c.el.add(file, it, "rule %q: location: unknown location kind %q (allowed: file, url, host, logical, none)", id, it.Value)
					continue
				}
				m.locs |= b
			}
		case "severity":
			for _, it := range c.scalars(file, id, key, v) {
				s, ok := finding.ParseSeverity(it.Value)
				if !ok {
					c.el.add(file, it, "rule %q: severity: unknown severity %q (allowed: info, low, medium, high, critical)", id, it.Value)
					continue
				}
				sevList |= 1 << s
			}
		case "min_severity":
			if s, ok := scalar(file, v, c.el, "min_severity"); ok {
				sev, ok := finding.ParseSeverity(s)
				if !ok {
					c.el.add(file, v, "rule %q: min_severity: unknown severity %q (allowed: info, low, medium, high, critical)", id, s)
					return
				}
				for x := sev; x <= finding.SeverityCritical; x++ {
					sevMin |= 1 << x
				}
			}
		case "tool":
			m.tools = c.patterns(file, id, key, v)
		case "rule":
			m.rules = c.patterns(file, id, key, v)
		case "tags":
			m.hasTags = true
			for _, p := range c.patterns(file, id, key, v) {
				if p.op == opExact {
					if m.tagSet == nil {
						m.tagSet = map[string]struct{}{}
					}
					m.tagSet[p.s] = struct{}{}
				} else {
					m.tagPats = append(m.tagPats, p)
				}
			}
		case "cwe":
			m.cwe = c.cweMatch(file, id, v)
		case "has_cve":
			if b, ok := boolean(file, v, c.el, "has_cve"); ok {
				m.hasCVE = triOf(b)
			}
		case "has_cvss":
			if b, ok := boolean(file, v, c.el, "has_cvss"); ok {
				m.hasCVSS = triOf(b)
			}
		case "not":
			m.not = &matcher{}
			c.compileMatch(file, id, v, m.not, false)
		case "any_of":
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				c.el.add(file, v, "rule %q: any_of: want a list of match blocks", id)
				return
			}
			for _, sn := range v.Content {
				sub := &matcher{}
				c.compileMatch(file, id, deref(sn), sub, false)
				m.anyOf = append(m.anyOf, sub)
			}
		default:
			c.el.add(file, k, "rule %q: unknown match field %q (known: %s)", id, key, matchKeys)
		}
	})
	switch {
	case sevList != 0 && sevMin != 0:
		m.sevs = sevList & sevMin
		if m.sevs == 0 {
			c.el.add(file, n, "rule %q: severity and min_severity together match no severity", id)
		}
	case sevList != 0:
		m.sevs = sevList
	default:
		m.sevs = sevMin
	}
	if !m.nonEmpty {
		if top {
			c.el.add(file, n, "rule %q: empty match; write `match: {any: true}` to match every finding", id)
		} else {
			c.el.add(file, n, "rule %q: empty match block in not or any_of", id)
		}
	}
	if m.any && len(n.Content) > 2 {
		c.el.add(file, anyNode, "rule %q: any: true cannot be combined with other match fields", id)
	}
	if m.any && !top {
		c.el.add(file, anyNode, "rule %q: any: true belongs at the top of a match, not inside not or any_of", id)
	}
}

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

func (c *compiler) scalars(file, id, key string, v *yaml.Node) []*yaml.Node {
	items := seqOrScalar(v)
	if len(items) == 0 {
		c.el.add(file, v, "rule %q: %s: empty list", id, key)
	}
	out := items[:0:0]
	for _, it := range items {
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			c.el.add(file, it, "rule %q: %s: want a string or a list of strings", id, key)
			continue
		}
		out = append(out, it)
	}
	return out
}

func (c *compiler) patterns(file, id, key string, v *yaml.Node) []pattern {
	var ps []pattern
	for _, it := range c.scalars(file, id, key, v) {
		p, err := compilePattern(it.Value)
		if err != nil {
			c.el.add(file, it, "rule %q: %s: %v", id, key, err)
			continue
		}
		ps = append(ps, p)
	}
	if ps == nil {
		ps = []pattern{} // constrained, matches nothing; the error is already recorded
	}
	return ps
}

func (c *compiler) cweMatch(file, id string, v *yaml.Node) *cweSet {
	set := &cweSet{}
	for _, it := range c.scalars(file, id, "cwe", v) {
		lo, hi, numeric, err := parseCWEItem(it.Value)
		switch {
		case err != nil:
			c.el.add(file, it, "rule %q: cwe: %v", id, err)
		case numeric:
			set.add(lo, hi)
		default:
			cls, ok := c.classes[strings.ToLower(strings.TrimSpace(it.Value))]
			if !ok {
				c.el.add(file, it, "rule %q: cwe: %q is neither a CWE id, a range (200-299) nor a class defined in cwe_classes", id, it.Value)
				continue
			}
			set.iv = append(set.iv, cls.iv...)
		}
	}
	set.normalise()
	return set
}

// YAML helpers. Aliases are followed so that anchors work as YAML users
// expect; merge keys ("<<") are reported as unknown fields.

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func forEachKey(file string, n *yaml.Node, el *errList, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			el.add(file, k, "keys must be strings")
			continue
		}
		if seen[k.Value] {
			el.add(file, k, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, v)
	}
}

func seqOrScalar(n *yaml.Node) []*yaml.Node {
	switch n.Kind {
	case yaml.SequenceNode:
		out := make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			out[i] = deref(c)
		}
		return out
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []*yaml.Node{n}
	}
	return []*yaml.Node{n}
}

func scalar(file string, n *yaml.Node, el *errList, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		el.add(file, n, "%s: want a string", key)
		return "", false
	}
	return n.Value, true
}

func boolean(file string, n *yaml.Node, el *errList, key string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		el.add(file, n, "%s: want true or false", key)
		return false, false
	}
	return strings.EqualFold(n.Value, "true"), true
}
