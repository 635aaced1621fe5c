package mapping

import (
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/finding"
)

// DefaultRulesPath is the default rules file inside configs.FS.
const DefaultRulesPath = "mapping.yaml"

// Option changes how a Mapper is built.
type Option func(*options)

type options struct {
	version     string
	allVersions bool
}

// WithVersion selects the CCM version Map returns links for, overriding the
// rules file's `version:` key and the catalogue default.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithAllVersions makes Map return links for every CCM version the rules
// name, not only the selected one.
func WithAllVersions() Option { return func(o *options) { o.allVersions = true } }

// Mapper evaluates compiled rules against findings. It is immutable and safe
// for concurrent use.
type Mapper struct {
	file     string
	version  string
	versions []string
	cats     *Catalogs
	rules    []compiledRule
	// active are the rules with at least one link for the returned versions,
	// each with only those links: the per-finding loop does no filtering.
	active []activeRule
	hash   string // RulesHash
}

type activeRule struct {
	r     *compiledRule
	links []linkSpec
}

// Rule describes a loaded rule, for listing and explaining.
type Rule struct {
	ID       string              `json:"id"`
	Controls map[string][]string `json:"controls"` // CCM version -> control ids
	Reason   string              `json:"reason"`   // the template, unrendered
	File     string              `json:"file"`
	Line     int                 `json:"line"`
}

// Default returns the Mapper for the rules shipped in the binary.
func Default(opts ...Option) (*Mapper, error) {
	cats, err := DefaultCatalogs()
	if err != nil {
		return nil, err
	}
	return Load(configs.FS, DefaultRulesPath, cats, opts...)
}

// Load reads a rules file from fsys. A file whose top-level says
// `extends: default` is applied on top of the default rules (configs.FS);
// otherwise it replaces them. cats nil means the shipped catalogues.
func Load(fsys fs.FS, path string, cats *Catalogs, opts ...Option) (*Mapper, error) {
	data, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("reading mapping rules: %w", err)
	}
	return load(path, data, cats, false, opts)
}

// LoadFile reads a rules file from disk. With extend, or when the file says
// `extends: default`, the file is applied on top of the default rules;
// otherwise it replaces them. cats nil means the shipped catalogues.
func LoadFile(path string, cats *Catalogs, extend bool, opts ...Option) (*Mapper, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading mapping rules: %w", err)
	}
	return load(path, data, cats, extend, opts)
}

// LoadBytes compiles rules held in memory; name is used in error messages.
func LoadBytes(name string, data []byte, cats *Catalogs, extend bool, opts ...Option) (*Mapper, error) {
	return load(name, data, cats, extend, opts)
}

func load(name string, data []byte, cats *Catalogs, extend bool, opts []Option) (*Mapper, error) {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	if cats == nil {
		var err error
		if cats, err = DefaultCatalogs(); err != nil {
			return nil, err
		}
	}
	el := &errList{}
	spec := parseFile(name, data, el)
	if spec == nil {
		return nil, el.err()
	}
	if spec.extends || extend {
		base, err := fs.ReadFile(configs.FS, DefaultRulesPath)
		if err != nil {
			return nil, fmt.Errorf("reading default mapping rules: %w", err)
		}
		bel := &errList{}
		bspec := parseFile("default "+DefaultRulesPath, base, bel)
		if bspec == nil || bspec.extends {
			return nil, fmt.Errorf("default mapping rules: %w", bel.err())
		}
		spec = merge(bspec, spec, el)
	} else if len(spec.rules) == 0 {
		el.add(name, nil, "no rules (a file without `extends: default` replaces the default rules)")
	}

	m := &Mapper{file: name, cats: cats}
	switch {
	case o.version != "":
		v, ok := cats.Resolve(o.version)
		if !ok {
			return nil, fmt.Errorf("unknown CCM version %q (known: %s)", o.version, strings.Join(cats.Versions(), ", "))
		}
		m.version = v
	case spec.version != "":
		v, ok := cats.Resolve(spec.version)
		if !ok {
			el.add(name, spec.versionNode, "unknown CCM version %q (known: %s)", spec.version, strings.Join(cats.Versions(), ", "))
		}
		m.version = v
	default:
		m.version = cats.Default()
	}

	c := &compiler{cats: cats, el: el}
	c.compileClasses(spec.classes)
	seen := map[string]bool{}
	for _, rs := range spec.rules {
		if rs.disabled {
			continue
		}
		if cr, ok := c.compileRule(rs, seen); ok {
			m.rules = append(m.rules, cr)
		}
	}
	if err := el.err(); err != nil {
		return nil, err
	}

	// Rank rules by id once, so that ordering links by rule id compares
	// integers per finding.
	byID := make([]int, len(m.rules))
	for i := range byID {
		byID[i] = i
	}
	slices.SortFunc(byID, func(a, b int) int { return strings.Compare(m.rules[a].id, m.rules[b].id) })
	for rank, i := range byID {
		m.rules[i].rank = int32(rank)
	}

	if o.allVersions {
		m.versions = cats.Versions()
	} else {
		m.versions = []string{m.version}
	}
	for i := range m.rules {
		r := &m.rules[i]
		var links []linkSpec
		for _, l := range r.links {
			if slices.Contains(m.versions, l.version) {
				links = append(links, l)
			}
		}
		if links != nil {
			m.active = append(m.active, activeRule{r: r, links: links})
		}
	}
	if len(m.active) == 0 {
		return nil, &Error{File: name, Msg: fmt.Sprintf("no rule names a control for CCM %s", strings.Join(m.versions, " or "))}
	}
	h, err := rulesHash(spec, m)
	if err != nil {
		return nil, err
	}
	m.hash = h
	return m, nil
}

// Version returns the selected CCM version.
func (m *Mapper) Version() string { return m.version }

// Versions returns the CCM versions Map returns links for.
func (m *Mapper) Versions() []string { return slices.Clone(m.versions) }

// File returns the name of the rules file the Mapper was loaded from.
func (m *Mapper) File() string { return m.file }

// Catalogs returns the catalogues the rules were checked against.
func (m *Mapper) Catalogs() *Catalogs { return m.cats }

// Rules lists the loaded rules in evaluation order.
func (m *Mapper) Rules() []Rule {
	out := make([]Rule, len(m.rules))
	for i, r := range m.rules {
		ctl := make(map[string][]string, len(r.controls))
		for v, ids := range r.controls {
			ctl[v] = slices.Clone(ids)
		}
		out[i] = Rule{ID: r.id, Controls: ctl, Reason: r.reason.text, File: r.file, Line: r.line}
	}
	return out
}

// Map returns the controls a finding evidences under the selected
// version(s), ordered by version, catalogue position and rule id. A (version,
// control, rule) triple appears once.
func (m *Mapper) Map(f *finding.Finding) []finding.ControlLink {
	return m.AppendMap(nil, f)
}

// Apply sets f.Controls to Map(f) and f.MappingRules to RulesHash, so that
// the links travel with the hash of the rules that made them.
func (m *Mapper) Apply(f *finding.Finding) {
	f.Controls = m.Map(f)
	f.MappingRules = m.hash
}

// AppendMap appends Map(f) to dst, so that a caller mapping many findings
// can reuse one slice.
func (m *Mapper) AppendMap(dst []finding.ControlLink, f *finding.Finding) []finding.ControlLink {
	v := newView(f)
	// The buffers below live on the stack: 32 matching rules and 32 links
	// cover a realistic finding; more spill to the heap, still correct.
	var hitBuf [32]int32
	hits := hitBuf[:0]
	n := 0
	for i := range m.active {
		if m.active[i].r.m.any || m.active[i].r.m.match(&v) {
			hits = append(hits, int32(i))
			n += len(m.active[i].links)
		}
	}
	if n == 0 {
		return dst
	}
	// Order the links by integer keys first, so that the sort moves no
	// strings, then build them in that order.
	var keyBuf [32]linkKey
	keys := keyBuf[:0]
	for h, i := range hits {
		ar := &m.active[i]
		for j := range ar.links {
			keys = append(keys, linkKey{vIdx: int32(ar.links[j].vIdx), cIdx: int32(ar.links[j].cIdx), rank: ar.r.rank, hit: int32(h), link: int32(j)})
		}
	}
	sortKeys(keys)

	dst = slices.Grow(dst, n)
	var reasonBuf [32]string // reasons shared by all links of one rule, by hit
	shared := reasonBuf[:0]
	if len(hits) <= len(reasonBuf) {
		shared = reasonBuf[:len(hits)]
	} else {
		shared = make([]string, len(hits))
	}
	var scratch [256]byte
	for _, k := range keys {
		r := m.active[hits[k.hit]].r
		l := &m.active[hits[k.hit]].links[k.link]
		var reason string
		switch {
		case r.reason.perControl:
			reason = r.reason.render(scratch[:0], f, l, r.id)
		case shared[k.hit] != "":
			reason = shared[k.hit]
		default:
			reason = r.reason.render(scratch[:0], f, l, r.id)
			shared[k.hit] = reason
		}
		dst = append(dst, finding.ControlLink{Version: l.version, Control: l.control, Rule: r.id, Reason: reason})
	}
	return dst
}

// linkKey orders one link of one matching rule: by CCM version, catalogue
// position, then rule id (rank is the rule's position in id order). Rule
// ids are unique and a rule lists a control once, so keys never tie.
type linkKey struct {
	vIdx, cIdx, rank int32
	hit, link        int32
}

func (a *linkKey) less(b *linkKey) bool {
	if a.vIdx != b.vIdx {
		return a.vIdx < b.vIdx
	}
	if a.cIdx != b.cIdx {
		return a.cIdx < b.cIdx
	}
	return a.rank < b.rank
}

// sortKeys is an insertion sort: a finding has a handful of links, and it
// neither allocates nor calls through a comparison function.
func sortKeys(keys []linkKey) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j].less(&keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// Count adds one to counts for each distinct control in links (links of one
// finding), however many rules gave it: the dry-run summary counts findings
// per control. Keys are control ids ("TVM-07"); when the Mapper returns more
// than one CCM version they are "VERSION/ID" ("4.1/TVM-03"), because the same
// id names different controls in different versions.
func (m *Mapper) Count(counts map[string]int, links []finding.ControlLink) {
	multi := len(m.versions) > 1
	for i, l := range links {
		// Links are ordered by version and control, so a repeat is adjacent.
		if i > 0 && links[i-1].Version == l.Version && links[i-1].Control == l.Control {
			continue
		}
		key := l.Control
		if multi {
			key = l.Version + "/" + l.Control
		}
		counts[key]++
	}
}
