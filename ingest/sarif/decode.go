package sarif

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// This file decodes the parts of a SARIF run that normalisation uses. Each
// decoder reads exactly one JSON value and skips what it does not know, so
// unknown properties, codeFlows, graphs and the like cost a syntax scan and no
// memory.

// decodeTool reads run.tool. SARIF 2.0.0 put the driver's properties directly
// on tool (tool.name); those are read as the driver too.
func (d *lexer) decodeTool(rc *runCtx) {
	if !d.beginObj() {
		return
	}
	rc.toolSeen = true
	for d.objMore() {
		switch string(d.key()) {
		case "driver":
			d.decodeComponent(&rc.driver)
		case "extensions":
			if d.beginArr() {
				for d.arrMore() {
					var c component
					d.decodeComponent(&c)
					rc.extensions = append(rc.extensions, c)
				}
			}
		case "name":
			rc.driver.name = d.strVal()
		case "version":
			if v := d.strVal(); v != "" {
				rc.driver.version = v
			}
		case "semanticVersion":
			if v := d.strVal(); v != "" && rc.driver.version == "" {
				rc.driver.version = v
			}
		default:
			d.skip()
		}
	}
}

// decodeComponent reads a toolComponent (driver, extension or taxonomy).
func (d *lexer) decodeComponent(c *component) {
	if !d.beginObj() {
		return
	}
	var version, semver string
	for d.objMore() {
		switch string(d.key()) {
		case "name":
			c.name = d.strVal()
		case "version":
			version = d.strVal()
		case "semanticVersion":
			semver = d.strVal()
		case "guid":
			c.guid = d.strVal()
		case "rules":
			// notifications (the tool's own problems) are not findings and
			// their descriptors are skipped with everything else.
			c.rules = d.decodeRules(c.rules)
		case "taxa":
			c.taxa = d.decodeRules(c.taxa)
		case "globalMessageStrings":
			c.globalMessages = d.decodeMessageStrings()
		default:
			d.skip()
		}
	}
	c.version = version
	if c.version == "" {
		c.version = semver
	}
	c.index()
}

// index builds the id lookup once the rules are known. The first rule with
// an id wins, as a reader scanning the array would find it.
func (c *component) index() {
	list := c.rules
	if len(list) == 0 {
		list = c.taxa
	}
	if len(list) == 0 {
		return
	}
	c.byID = make(map[string]int, len(list))
	for i, r := range list {
		if _, dup := c.byID[r.id]; !dup && r.id != "" {
			c.byID[r.id] = i
		}
	}
}

// decodeRules reads an array of reportingDescriptors, or the SARIF 2.0.0
// form (run.resources.rules), an object keyed by rule id.
func (d *lexer) decodeRules(into []rule) []rule {
	c, ok := d.peek()
	if ok && c == '{' {
		d.beginObj()
		for d.objMore() {
			id := string(d.key())
			r := d.decodeRule()
			if r.id == "" {
				r.id = id
			}
			into = append(into, r)
		}
		return into
	}
	if !d.beginArr() {
		return into
	}
	for d.arrMore() {
		into = append(into, d.decodeRule())
	}
	return into
}

func (d *lexer) decodeRule() rule {
	r := rule{}
	if !d.beginObj() {
		return r
	}
	for d.objMore() {
		switch string(d.key()) {
		case "id":
			r.id = d.strVal()
		case "name":
			r.name = d.strVal()
		case "shortDescription":
			r.short = d.decodeMessageText()
		case "fullDescription":
			r.full = d.decodeMessageText()
		case "helpUri":
			r.helpURI = d.strVal()
		case "messageStrings":
			r.messages = d.decodeMessageStrings()
		case "defaultConfiguration", "configuration":
			// "configuration" with "defaultLevel" is the SARIF 2.0.0 spelling.
			if d.beginObj() {
				for d.objMore() {
					switch string(d.key()) {
					case "level", "defaultLevel":
						r.defaultLevel = d.strVal()
						r.hasDefaultConfig = true
					default:
						d.skip()
					}
				}
			}
		case "properties":
			d.decodeProps(&r.props)
		case "relationships":
			if d.beginArr() {
				for d.arrMore() {
					if !d.beginObj() {
						continue
					}
					for d.objMore() {
						if string(d.key()) == "target" {
							r.relationships = append(r.relationships, d.decodeTaxonRef())
						} else {
							d.skip()
						}
					}
				}
			}
		default:
			d.skip()
		}
	}
	return r
}

// decodeMessageText reads a message or multiformatMessageString and returns
// its text, or its markdown when there is no text.
func (d *lexer) decodeMessageText() string {
	var text, md string
	c, ok := d.peek()
	if ok && c == '"' { // SARIF 1.0.0 and some converters write a bare string
		return string(d.str())
	}
	if !d.beginObj() {
		return ""
	}
	for d.objMore() {
		switch string(d.key()) {
		case "text":
			text = d.strVal()
		case "markdown":
			md = d.strVal()
		default:
			d.skip()
		}
	}
	if text == "" {
		return md
	}
	return text
}

// decodeMessageStrings reads rule.messageStrings / globalMessageStrings.
func (d *lexer) decodeMessageStrings() map[string]string {
	if !d.beginObj() {
		return nil
	}
	m := map[string]string{}
	for d.objMore() {
		id := string(d.key())
		m[id] = d.decodeMessageText()
	}
	return m
}

// decodeTaxonRef reads a reportingDescriptorReference.
// descriptorRef is a SARIF reportingDescriptorReference: a rule or taxon
// named by id and/or index, possibly in another tool component.
type descriptorRef struct {
	id                 string
	index              int
	compName, compGUID string
	compIndex          int
}

func (d *lexer) decodeDescriptorRef() descriptorRef {
	ref := descriptorRef{index: -1, compIndex: -1}
	if !d.beginObj() {
		return ref
	}
	for d.objMore() {
		switch string(d.key()) {
		case "id":
			ref.id = d.strVal()
		case "index":
			if n, ok := d.intVal(); ok {
				ref.index = n
			}
		case "toolComponent":
			if !d.beginObj() {
				continue
			}
			for d.objMore() {
				switch string(d.key()) {
				case "name":
					ref.compName = d.strVal()
				case "index":
					if n, ok := d.intVal(); ok {
						ref.compIndex = n
					}
				case "guid":
					ref.compGUID = d.strVal()
				default:
					d.skip()
				}
			}
		default:
			d.skip()
		}
	}
	return ref
}

func (d *lexer) decodeTaxonRef() taxonRef {
	ref := d.decodeDescriptorRef()
	return taxonRef{id: ref.id, index: ref.index, compName: ref.compName, compIndex: ref.compIndex}
}

// decodeBases reads run.originalUriBaseIds.
func (d *lexer) decodeBases(rc *runCtx) {
	if !d.beginObj() {
		return
	}
	if rc.bases == nil {
		rc.bases = map[string]uriBase{}
	}
	for d.objMore() {
		id := string(d.key())
		rc.bases[id] = d.decodeArtifactLocation()
	}
}

// decodeArtifactLocation reads an artifactLocation's uri and uriBaseId.
func (d *lexer) decodeArtifactLocation() uriBase {
	var u uriBase
	if !d.beginObj() {
		return u
	}
	for d.objMore() {
		switch string(d.key()) {
		case "uri":
			u.uri = d.strVal()
		case "uriBaseId":
			u.baseID = d.strVal()
		default:
			d.skip()
		}
	}
	return u
}

// decodeArtifacts reads run.artifacts, keeping only each artifact's
// location; SARIF 2.0.0's run.files (an object keyed by URI) is accepted too.
func (d *lexer) decodeArtifacts(rc *runCtx) {
	c, ok := d.peek()
	if ok && c == '{' {
		d.skip() // 2.0.0 files map: results there carry their own URIs
		return
	}
	if !d.beginArr() {
		return
	}
	for d.arrMore() {
		var a uriBase
		if d.beginObj() {
			for d.objMore() {
				if string(d.key()) == "location" {
					a = d.decodeArtifactLocation()
				} else {
					d.skip()
				}
			}
		}
		rc.artifacts = append(rc.artifacts, a)
	}
}

// decodeLogicals reads run.logicalLocations.
func (d *lexer) decodeLogicals(rc *runCtx) {
	if !d.beginArr() {
		return
	}
	for d.arrMore() {
		var l logical
		if d.beginObj() {
			for d.objMore() {
				switch string(d.key()) {
				case "fullyQualifiedName":
					l.fqn = d.strVal()
				case "name":
					l.name = d.strVal()
				default:
					d.skip()
				}
			}
		}
		rc.logicals = append(rc.logicals, l)
	}
}

// decodeTaxonomies reads run.taxonomies.
func (d *lexer) decodeTaxonomies(rc *runCtx) {
	if !d.beginArr() {
		return
	}
	for d.arrMore() {
		var c component
		d.decodeComponent(&c)
		rc.taxonomies = append(rc.taxonomies, c)
	}
}

// decodeVCP reads the first versionControlProvenance entry's repositoryUri.
func (d *lexer) decodeVCP(rc *runCtx) {
	if !d.beginArr() {
		return
	}
	first := true
	for d.arrMore() {
		if !first || !d.beginObj() {
			d.skip()
			continue
		}
		first = false
		for d.objMore() {
			if string(d.key()) == "repositoryUri" {
				rc.repoURI = d.strVal()
			} else {
				d.skip()
			}
		}
	}
}

// decodeResult reads one result object.
func (d *lexer) decodeResult(r *rawResult) {
	*r = rawResult{ruleIndex: -1, refIndex: -1, refCompIndex: -1}
	r.loc.artIndex, r.loc.logicalIndex = -1, -1
	if !d.beginObj() {
		return
	}
	for d.objMore() {
		switch string(d.key()) {
		case "ruleId":
			r.ruleID = d.strVal()
		case "ruleIndex":
			if n, ok := d.intVal(); ok {
				r.ruleIndex = n
			}
		case "rule":
			d.decodeRuleRef(r)
		case "kind":
			r.kind = d.strVal()
		case "level":
			r.level = d.strVal()
		case "baselineState":
			r.baselineAbsent = d.strVal() == "absent"
		case "message":
			d.decodeMessage(r)
		case "ruleMessageId": // SARIF 2.0.0
			if id := d.strVal(); r.msgID == "" {
				r.msgID = id
			}
		case "locations":
			if d.beginArr() {
				for d.arrMore() {
					if r.hasLoc {
						d.skip()
						continue
					}
					r.hasLoc = d.decodeLocation(&r.loc)
				}
			}
		case "analysisTarget":
			u := d.decodeArtifactLocation()
			r.target = rawLocation{uri: u.uri, baseID: u.baseID, artIndex: -1, logicalIndex: -1, hasPhysical: u.uri != ""}
			r.hasTarget = u.uri != ""
		case "fingerprints":
			r.fpKey, r.fpVal = d.decodeFirstEntry()
		case "partialFingerprints":
			if d.beginObj() {
				for d.objMore() {
					k := string(d.key())
					if v, _, ok := d.scalar(); ok && v != "" {
						r.partials = append(r.partials, [2]string{k, v})
					}
				}
				// Sorted so that the fingerprint does not depend on key order;
				// a duplicated key keeps its smallest value for the same reason.
				slices.SortFunc(r.partials, func(a, b [2]string) int {
					return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
				})
				r.partials = slices.CompactFunc(r.partials, func(a, b [2]string) bool { return a[0] == b[0] })
				if len(r.partials) > 0 {
					r.pfpKey = r.partials[0][0]
				}
			}
		case "suppressions":
			d.decodeSuppressions(r)
		case "suppressionStates": // SARIF 2.0.0
			if d.beginArr() {
				for d.arrMore() {
					if s := d.strVal(); strings.HasPrefix(s, "suppressed") {
						r.suppressed = true
						r.justification = joinNonEmpty(r.justification, s)
					}
				}
			}
		case "taxa":
			if d.beginArr() {
				for d.arrMore() {
					r.taxa = append(r.taxa, d.decodeTaxonRef())
				}
			}
		case "properties":
			d.decodeProps(&r.props)
		default:
			d.skip()
		}
	}
}

func (d *lexer) decodeRuleRef(r *rawResult) {
	ref := d.decodeDescriptorRef()
	if ref.id != "" {
		r.refID = ref.id
	}
	if ref.index >= 0 {
		r.refIndex = ref.index
	}
	if ref.compName != "" {
		r.refCompName = ref.compName
	}
	if ref.compIndex >= 0 {
		r.refCompIndex = ref.compIndex
	}
	if ref.compGUID != "" {
		r.refCompGUID = ref.compGUID
	}
}

func (d *lexer) decodeMessage(r *rawResult) {
	c, ok := d.peek()
	if ok && c == '"' {
		r.msgText = string(d.str())
		return
	}
	if !d.beginObj() {
		return
	}
	for d.objMore() {
		switch string(d.key()) {
		case "text":
			r.msgText = d.strVal()
		case "markdown":
			r.msgMarkdown = d.strVal()
		case "id", "messageId":
			r.msgID = d.strVal()
		case "arguments":
			if d.beginArr() {
				for d.arrMore() {
					s, _, _ := d.scalar()
					r.msgArgs = append(r.msgArgs, s)
				}
			}
		default:
			d.skip()
		}
	}
}

// decodeLocation reads a location; it reports whether it held anything
// usable, so that an empty first location does not hide a later one.
func (d *lexer) decodeLocation(l *rawLocation) bool {
	if !d.beginObj() {
		return false
	}
	for d.objMore() {
		switch string(d.key()) {
		case "physicalLocation":
			d.decodePhysical(l)
		case "logicalLocations":
			if d.beginArr() {
				first := true
				for d.arrMore() {
					if !first || !d.beginObj() {
						d.skip()
						continue
					}
					first = false
					for d.objMore() {
						switch string(d.key()) {
						case "fullyQualifiedName":
							l.logicalFQN = d.strVal()
						case "name":
							l.logicalName = d.strVal()
						case "index":
							if n, ok := d.intVal(); ok {
								l.logicalIndex = n
							}
						default:
							d.skip()
						}
					}
				}
			}
		case "fullyQualifiedLogicalName": // SARIF 2.0.0
			l.logicalFQN = d.strVal()
		default:
			d.skip()
		}
	}
	l.hasLogicalDirect = l.logicalFQN != "" || l.logicalName != "" || l.logicalIndex >= 0
	return l.hasPhysical || l.hasLogicalDirect
}

func (d *lexer) decodePhysical(l *rawLocation) {
	if !d.beginObj() {
		return
	}
	for d.objMore() {
		switch string(d.key()) {
		case "artifactLocation", "fileLocation": // fileLocation: SARIF 2.0.0
			if d.beginObj() {
				for d.objMore() {
					switch string(d.key()) {
					case "uri":
						l.uri = d.strVal()
					case "uriBaseId":
						l.baseID = d.strVal()
					case "index":
						if n, ok := d.intVal(); ok {
							l.artIndex = n
						}
					default:
						d.skip()
					}
				}
			}
			l.hasPhysical = l.uri != "" || l.artIndex >= 0
		case "region":
			if d.beginObj() {
				for d.objMore() {
					switch string(d.key()) {
					case "startLine":
						l.startLine, _ = d.intVal()
					case "startColumn":
						l.startColumn, _ = d.intVal()
					case "endLine":
						l.endLine, _ = d.intVal()
					case "endColumn":
						l.endColumn, _ = d.intVal()
					case "snippet":
						l.snippet = d.decodeMessageText()
					default:
						d.skip()
					}
				}
			}
		default:
			d.skip()
		}
	}
}

// decodeFirstEntry reads a string-to-string object and returns the entry with
// the lexicographically smallest key, so that the choice does not depend on
// the order the producer wrote the keys in.
func (d *lexer) decodeFirstEntry() (key, val string) {
	if !d.beginObj() {
		return "", ""
	}
	found := false
	for d.objMore() {
		k := d.key()
		if found && string(k) >= key {
			d.skip()
			continue
		}
		ks := string(k)
		s, _, ok := d.scalar()
		if !ok || s == "" {
			continue
		}
		key, val, found = ks, s, true
	}
	return key, val
}

// decodeSuppressions reads result.suppressions. A suppression whose status
// is "rejected" does not suppress. "underReview" does not suppress either: a
// reviewer has not accepted it yet, so the finding stays active; its
// justification is kept only if another suppression takes effect.
func (d *lexer) decodeSuppressions(r *rawResult) {
	if !d.beginArr() {
		return
	}
	for d.arrMore() {
		var kind, status, just string
		if !d.beginObj() {
			continue
		}
		for d.objMore() {
			switch string(d.key()) {
			case "kind":
				kind = d.strVal()
			case "status":
				status = d.strVal()
			case "justification":
				just = d.strVal()
			default:
				d.skip()
			}
		}
		switch status {
		case "rejected":
			continue
		case "", "accepted":
			r.suppressed = true
		}
		desc := kind
		if status != "" {
			desc = kind + ", " + status
			if kind == "" {
				desc = status
			}
		}
		if just == "" {
			just = "suppressed"
		}
		if desc != "" {
			just += " (" + desc + ")"
		}
		r.justification = joinNonEmpty(r.justification, just)
	}
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// decodeProps reads a property bag. Known keys are interpreted; every string
// value anywhere in the bag is searched for CVE ids and CVSS vectors.
func (d *lexer) decodeProps(p *props) {
	if !d.beginObj() {
		return
	}
	for d.objMore() {
		k := string(d.key())
		d.decodePropValue(p, k, 0)
	}
}

// decodePropValue reads one property value. path is the dotted key path
// (nested bags are flattened) and nest how deep it is; top-level keys win
// over nested ones.
func (d *lexer) decodePropValue(p *props, path string, nest int) {
	lk := strings.ToLower(path)
	c, ok := d.peek()
	if !ok {
		d.unexpected("a value")
		return
	}
	switch c {
	case '{':
		d.beginObj()
		for d.objMore() {
			k := string(d.key())
			d.decodePropValue(p, path+"."+k, nest+1)
		}
		return
	case '[':
		d.beginArr()
		isTags := lk == "tags" && nest == 0
		for d.arrMore() {
			if isTags {
				if s, _, ok := d.scalar(); ok && s != "" {
					p.addTag(s)
				}
				continue
			}
			d.decodePropValue(p, path, nest+1)
		}
		return
	}
	s, isNum, ok := d.scalar()
	if !ok {
		return
	}
	switch {
	case lk == "security-severity":
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f >= 0 && f <= 10 {
			p.score = &f
		}
		return
	case isCWEKey(lk):
		for _, n := range cweNumbers(s, isNum) {
			p.cwe = append(p.cwe, n)
		}
	}
	p.cve = appendCVEs(p.cve, s)
	if strings.HasPrefix(s, "CVSS:3") {
		rank := nest*4 + 3
		switch {
		case strings.Contains(lk, "cvss") && strings.Contains(lk, "vector"):
			rank = nest * 4
		case strings.Contains(lk, "cvss"):
			rank = nest*4 + 1
		case strings.Contains(lk, "vector"):
			rank = nest*4 + 2
		}
		if p.vector == "" || rank < p.vecRank || (rank == p.vecRank && path < p.vecKey) {
			p.vector, p.vecRank, p.vecKey = strings.TrimSpace(s), rank, path
		}
		return
	}
	if lrank := labelRank(lk); lrank > 0 && !isNum {
		if p.label == "" || lrank < labelRank(strings.ToLower(p.labelKey)) ||
			(lrank == labelRank(strings.ToLower(p.labelKey)) && path < p.labelKey) {
			p.label, p.labelKey = s, path
		}
	}
}

// labelRank orders the property keys tools use for their own severity word;
// 0 means the key is not one.
func labelRank(lk string) int {
	switch lk {
	case "severity":
		return 1
	case "problem.severity":
		return 2
	case "issue_severity", "issue.severity":
		return 3
	}
	if strings.HasSuffix(lk, "severity") && !strings.Contains(lk, "security-severity") &&
		!strings.Contains(lk, "cvss") && !strings.Contains(lk, "sub-severity") {
		return 4
	}
	return 0
}

func isCWEKey(lk string) bool {
	switch lk {
	case "cwe", "cwes", "cweid", "cwe_id", "cwe-id", "cwe_ids", "cweids":
		return true
	}
	return false
}

func (p *props) addTag(s string) {
	if n, ok := parseCWETag(s); ok {
		p.cwe = append(p.cwe, n)
		return
	}
	p.cve = appendCVEs(p.cve, s)
	p.tags = append(p.tags, s)
}

// parseCWETag recognises CWE tags as tools write them: "external/cwe/cwe-079"
// (CodeQL), "CWE-79", "cwe-79", "CWE:79", "CWE-79: Improper ...".
func parseCWETag(s string) (int, bool) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "external/cwe/")
	if !strings.HasPrefix(t, "cwe") {
		return 0, false
	}
	t = strings.TrimLeft(t[3:], "-:_ /")
	n, i := 0, 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' && n < 1e6 {
		n = n*10 + int(t[i]-'0')
		i++
	}
	if i == 0 || n == 0 {
		return 0, false
	}
	// The id must end the tag or be followed by a separator ("CWE-79: ..."),
	// so "cwe-79abc" is not read as 79.
	if i < len(t) && t[i] != ':' && t[i] != ' ' && t[i] != ',' {
		return 0, false
	}
	return n, true
}

// cweNumbers reads the value of a "cwe"-like property: "CWE-798: ...", "23",
// 79, or several separated by commas.
func cweNumbers(s string, isNum bool) []int {
	if isNum {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return []int{n}
		}
		return nil
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if n, ok := parseCWETag(part); ok {
			out = append(out, n)
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// appendCVEs appends the CVE ids (CVE-\d{4}-\d{4,}, any case) found in s,
// upper-cased. A hand-written scan instead of a regexp: it runs on every
// property string and almost never matches.
func appendCVEs(out []string, s string) []string {
	for i := 0; i+8 < len(s); i++ {
		if s[i]|0x20 != 'c' || s[i+1]|0x20 != 'v' || s[i+2]|0x20 != 'e' || s[i+3] != '-' {
			continue
		}
		if i > 0 && isAlnum(s[i-1]) {
			continue
		}
		j := i + 4
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k-j != 4 || k >= len(s) || s[k] != '-' {
			continue
		}
		m := k + 1
		for m < len(s) && isDigit(s[m]) {
			m++
		}
		if m-(k+1) < 4 || (m < len(s) && isAlnum(s[m])) {
			continue
		}
		out = append(out, "CVE-"+s[j:m])
		i = m - 1
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z')
}
