package mapping_test

import (
	"regexp"
	"testing"

	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
)

const hashBase = `version: "4.0.13"
cwe_classes:
  injection: [79, 89]
rules:
  - id: ident
    match: {kind: [external, code]}
    controls: {"4.0.13": [TVM-07]}
    reason: "{{.Tool}} found {{.RuleID}}"
  - id: inj
    match: {cwe: [injection]}
    controls: {"4.0.13": [AIS-04]}
    reason: "injection"
`

// TestRulesHash: the hash ignores what cannot change a link (layout,
// comments, key and rule order) and changes with anything that can.
func TestRulesHash(t *testing.T) {
	cats := loadCatalogs(t)
	load := func(t *testing.T, src string, opts ...mapping.Option) *mapping.Mapper {
		t.Helper()
		m, err := mapping.LoadBytes("rules.yaml", []byte(src), cats, false, opts...)
		if err != nil {
			t.Fatalf("LoadBytes: %v", err)
		}
		return m
	}
	base := load(t, hashBase).RulesHash()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(base) {
		t.Fatalf("RulesHash %q is not a hex SHA-256", base)
	}
	for _, tc := range []struct {
		name, src string
		opts      []mapping.Option
		same      bool
	}{
		{name: "identical", src: hashBase, same: true},
		{name: "layout, comments and order", same: true, src: `# reordered
rules:
  - id: inj
    reason: injection
    controls:
      "4.0.13": [AIS-04]
    match:
      cwe: [injection]
  - reason: "{{.Tool}} found {{.RuleID}}"
    id: ident
    controls: {"4.0.13": ["TVM-07"]}
    match: {kind: [external, code]}
cwe_classes: {injection: [79, 89]}
version: "4.0.13"
`},
		{name: "another control", src: replace(hashBase, "[TVM-07]", "[TVM-08]")},
		{name: "another reason", src: replace(hashBase, `reason: "injection"`, `reason: "code injection"`)},
		{name: "another match", src: replace(hashBase, "[external, code]", "[external]")},
		{name: "another class", src: replace(hashBase, "[79, 89]", "[79]")},
		{name: "another version selected", src: hashBase, opts: []mapping.Option{mapping.WithAllVersions()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := load(t, tc.src, tc.opts...).RulesHash()
			if (got == base) != tc.same {
				t.Fatalf("hash %s against the base's %s: want same=%v", got, base, tc.same)
			}
		})
	}

	// An extension that changes nothing is the default rules.
	def, err := mapping.Load(configs.FS, mapping.DefaultRulesPath, cats)
	if err != nil {
		t.Fatal(err)
	}
	if ext := load(t, "extends: default\n"); ext.RulesHash() != def.RulesHash() {
		t.Fatalf("extends: default alone hashes %s, the default rules %s", ext.RulesHash(), def.RulesHash())
	}

	// Apply carries the hash with the links.
	m := load(t, hashBase)
	f := &finding.Finding{Kind: finding.KindExternal, Tool: "nuclei", RuleID: "x"}
	m.Apply(f)
	if f.MappingRules != base || len(f.Controls) != 1 {
		t.Fatalf("after Apply: rules %q, links %v", f.MappingRules, f.Controls)
	}
}

func replace(s, old, new string) string {
	out := regexp.MustCompile(regexp.QuoteMeta(old)).ReplaceAllLiteralString(s, new)
	if out == s {
		panic("replace: " + old + " not found")
	}
	return out
}
