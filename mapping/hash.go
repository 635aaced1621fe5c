package mapping

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// rulesHashFormat names the layout of the document RulesHash hashes; a
// change of layout must change it, so that equal hashes always mean equal
// rules.
const rulesHashFormat = "starpipe-mapping-rules/1"

// RulesHash is the hex SHA-256 of the effective rules: the rules file after
// `extends: default` is applied and disabled rules removed, in a canonical
// form (rules by id, classes by name, keys sorted, comments, layout and
// line numbers ignored), with the CCM versions Map returns and each link's
// control title from the catalogue (reasons may quote it). Two Mappers
// with the same hash link every finding identically; a change that can
// alter a link changes the hash. It is computed once, at load.
//
// Evidence records it next to the links each sighting of a finding was
// given, so that a later rules change does not rewrite what a past cycle
// showed.
func (m *Mapper) RulesHash() string { return m.hash }

type hashDoc struct {
	Format   string      `json:"format"`
	Versions []string    `json:"versions"`
	Classes  []hashClass `json:"cwe_classes"`
	Rules    []hashRule  `json:"rules"`
}

type hashClass struct {
	Name string `json:"name"`
	CWE  any    `json:"cwe"`
}

type hashRule struct {
	ID       string      `json:"id"`
	Match    any         `json:"match"`
	Controls any         `json:"controls"`
	Reason   string      `json:"reason"`
	Links    [][3]string `json:"links"` // version, control, title: only the selected versions
}

// rulesHash computes RulesHash from the merged rules file and the compiled
// rules (for the links, which carry the catalogue's titles).
func rulesHash(spec *fileSpec, m *Mapper) (string, error) {
	doc := hashDoc{Format: rulesHashFormat, Versions: slices.Clone(m.versions)}
	for _, c := range spec.classes {
		doc.Classes = append(doc.Classes, hashClass{Name: c.name, CWE: canonicalYAML(c.node)})
	}
	slices.SortStableFunc(doc.Classes, func(a, b hashClass) int { return cmp.Compare(a.Name, b.Name) })
	active := make(map[string][]linkSpec, len(m.active))
	for _, ar := range m.active {
		active[ar.r.id] = ar.links
	}
	for _, r := range spec.rules {
		if r.disabled {
			continue
		}
		hr := hashRule{ID: r.id, Match: canonicalYAML(r.match), Controls: canonicalYAML(r.controls), Reason: r.reason, Links: [][3]string{}}
		for _, l := range active[r.id] {
			hr.Links = append(hr.Links, [3]string{l.version, l.control, l.title})
		}
		doc.Rules = append(doc.Rules, hr)
	}
	slices.SortStableFunc(doc.Rules, func(a, b hashRule) int { return cmp.Compare(a.ID, b.ID) })
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("hashing mapping rules: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalYAML turns a YAML subtree into plain values that encoding/json
// writes the same way whatever the source's layout: mappings become
// map[string]any (json sorts the keys), aliases are followed, and scalars
// are their text, so that `cwe: 79` and `cwe: "79"` (which the rules read
// alike) hash alike.
func canonicalYAML(n *yaml.Node) any {
	n = deref(n)
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			out[deref(n.Content[i]).Value] = canonicalYAML(n.Content[i+1])
		}
		return out
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			out = append(out, canonicalYAML(c))
		}
		return out
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return canonicalYAML(n.Content[0])
		}
		return nil
	}
	return n.Value
}
