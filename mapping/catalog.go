// Package mapping attaches findings to CSA Cloud Controls Matrix (CCM v4)
// controls by explainable rules, and holds the CCM catalogues the rules are
// checked against.
//
// A control reference is always a (version, id) pair: CCM v4.1 gave many of
// the v4.0.13 ids to different controls (v4.0.13 TVM-07 "Vulnerability
// Identification" is v4.1 TVM-03), so an id alone is ambiguous.
//
// Rules are read from a YAML file (configs/mapping.yaml is the default; see
// docs/mapping.md), checked strictly against the catalogues and compiled once
// at load. A Mapper is immutable and safe for concurrent use.
package mapping

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/configs"
)

// Control is one CCM control: an id, its domain code and its short title.
// No control specification text is shipped.
type Control struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Title  string `json:"title"`
	// SameTitle is, for a version whose catalogue names one, the id of the
	// control in that other version (crosswalk_via) with exactly the same
	// title. It is derived, not an official CSA crosswalk.
	SameTitle string `json:"same_title,omitempty"`
}

// Domain is a CCM domain code and name.
type Domain struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// Framework is a framework the crosswalk maps CCM controls to.
type Framework struct {
	Key  string `json:"key"`  // short key: soc2, iso27001, iso27002, nist80053
	Name string `json:"name"` // full name, e.g. "ISO/IEC 27001:2022"
}

// Catalog is the list of controls of one CCM version. Catalogues are shared
// (DefaultCatalogs returns the same ones to every caller): treat them as
// read-only.
type Catalog struct {
	Version  string
	Source   string
	Domains  []Domain
	Controls []Control // catalogue order

	index     map[string]int // upper-case id -> position in Controls
	byTitle   map[string]int // title -> position in Controls
	domains   map[string]string
	crosswalk map[string]map[string][]string // control id -> framework key -> ids
	via       *Catalog                       // catalogue whose crosswalk this one borrows
}

// Len returns the number of controls.
func (c *Catalog) Len() int { return len(c.Controls) }

// Control looks a control up by id, case-insensitively.
func (c *Catalog) Control(id string) (Control, bool) {
	i, ok := c.index[strings.ToUpper(strings.TrimSpace(id))]
	if !ok {
		return Control{}, false
	}
	return c.Controls[i], true
}

// position returns the catalogue position of an id, used to order links.
func (c *Catalog) position(id string) (int, bool) {
	i, ok := c.index[strings.ToUpper(strings.TrimSpace(id))]
	return i, ok
}

// DomainName returns the name of a domain code, or "" when unknown.
func (c *Catalog) DomainName(code string) string { return c.domains[code] }

// Crosswalk returns the ids a control maps to in a framework (by key, see
// Catalogs.Framework). For a version without its own crosswalk the ids are
// borrowed from the same-title control of the crosswalk_via version, and via
// names it ("4.0.13 TVM-07"); via is "" when the ids are the version's own.
func (c *Catalog) Crosswalk(id, framework string) (ids []string, via string) {
	ctl, ok := c.Control(id)
	if !ok {
		return nil, ""
	}
	if c.via == nil {
		return c.crosswalk[ctl.ID][framework], ""
	}
	if ctl.SameTitle == "" {
		return nil, ""
	}
	ids, _ = c.via.Crosswalk(ctl.SameTitle, framework)
	if len(ids) == 0 {
		return nil, ""
	}
	return ids, c.via.Version + " " + ctl.SameTitle
}

// Catalogs holds every shipped CCM version.
type Catalogs struct {
	defaultVersion string
	frameworks     []Framework
	order          []*Catalog
	byVersion      map[string]*Catalog
}

// Default returns the CCM version used when none is configured.
func (cs *Catalogs) Default() string { return cs.defaultVersion }

// Versions lists the catalogue versions in the order the manifest gives.
func (cs *Catalogs) Versions() []string {
	v := make([]string, len(cs.order))
	for i, c := range cs.order {
		v[i] = c.Version
	}
	return v
}

// Frameworks lists the crosswalk frameworks.
func (cs *Catalogs) Frameworks() []Framework { return slices.Clone(cs.frameworks) }

// Framework resolves a framework key case-insensitively, ignoring '-', '_',
// '/', ' ' and ':' so that "ISO-27001" and "nist-800-53" work.
func (cs *Catalogs) Framework(key string) (Framework, bool) {
	k := normFramework(key)
	for _, f := range cs.frameworks {
		if normFramework(f.Key) == k {
			return f, true
		}
	}
	return Framework{}, false
}

func normFramework(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '/', ' ', ':', '.':
			return -1
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// Get returns the catalogue of a version. It accepts "4.1", "v4.1" and
// "4.1.0" for the version "4.1".
func (cs *Catalogs) Get(version string) (*Catalog, bool) {
	v, ok := cs.Resolve(version)
	if !ok {
		return nil, false
	}
	return cs.byVersion[v], true
}

// Resolve returns the canonical spelling of a version ("v4.1.0" -> "4.1").
func (cs *Catalogs) Resolve(version string) (string, bool) {
	v := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(version), "v"), "V")
	for {
		if _, ok := cs.byVersion[v]; ok {
			return v, true
		}
		trimmed, ok := strings.CutSuffix(v, ".0")
		if !ok || !strings.Contains(trimmed, ".") {
			return "", false
		}
		v = trimmed
	}
}

// versionIndex orders versions as the manifest does.
func (cs *Catalogs) versionIndex(v string) int {
	for i, c := range cs.order {
		if c.Version == v {
			return i
		}
	}
	return len(cs.order)
}

// manifest is ccm/catalogs.yaml.
type manifest struct {
	Default    string            `yaml:"default"`
	Frameworks map[string]string `yaml:"frameworks"`
	Catalogs   []struct {
		Version      string `yaml:"version"`
		Source       string `yaml:"source"`
		Domains      string `yaml:"domains"`
		Controls     string `yaml:"controls"`
		Crosswalk    string `yaml:"crosswalk"`
		CrosswalkVia string `yaml:"crosswalk_via"`
	} `yaml:"catalogs"`
}

// ManifestPath is where LoadCatalogs looks in the file system it is given.
const ManifestPath = "ccm/catalogs.yaml"

// LoadCatalogs reads the CCM catalogues from fsys, which is rooted like
// configs.FS (the manifest is ccm/catalogs.yaml; the files it names are
// relative to it).
func LoadCatalogs(fsys fs.FS) (*Catalogs, error) {
	raw, err := fs.ReadFile(fsys, ManifestPath)
	if err != nil {
		return nil, fmt.Errorf("reading CCM catalogue manifest: %w", err)
	}
	var m manifest
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestPath, err)
	}
	dir := path.Dir(ManifestPath)
	cs := &Catalogs{defaultVersion: m.Default, byVersion: map[string]*Catalog{}}
	for k, name := range m.Frameworks {
		cs.frameworks = append(cs.frameworks, Framework{Key: k, Name: name})
	}
	slices.SortFunc(cs.frameworks, func(a, b Framework) int { return strings.Compare(a.Key, b.Key) })
	vias := map[*Catalog]string{}
	for _, mc := range m.Catalogs {
		if mc.Version == "" || cs.byVersion[mc.Version] != nil {
			return nil, fmt.Errorf("%s: missing or duplicate version %q", ManifestPath, mc.Version)
		}
		c := &Catalog{Version: mc.Version, Source: mc.Source}
		if err := c.load(fsys, dir, mc.Domains, mc.Controls, mc.Crosswalk); err != nil {
			return nil, fmt.Errorf("CCM %s catalogue: %w", mc.Version, err)
		}
		if mc.CrosswalkVia != "" {
			vias[c] = mc.CrosswalkVia
		}
		cs.order = append(cs.order, c)
		cs.byVersion[c.Version] = c
	}
	for c, v := range vias {
		via := cs.byVersion[v]
		if via == nil || via == c || via.via != nil {
			return nil, fmt.Errorf("%s: CCM %s: bad crosswalk_via %q", ManifestPath, c.Version, v)
		}
		for _, ctl := range c.Controls {
			if ctl.SameTitle != "" {
				if _, ok := via.Control(ctl.SameTitle); !ok {
					return nil, fmt.Errorf("CCM %s %s: same-title control %s is not in CCM %s", c.Version, ctl.ID, ctl.SameTitle, v)
				}
			}
		}
		c.via = via
	}
	if _, ok := cs.byVersion[cs.defaultVersion]; !ok {
		return nil, fmt.Errorf("%s: default version %q has no catalogue", ManifestPath, cs.defaultVersion)
	}
	return cs, nil
}

func (c *Catalog) load(fsys fs.FS, dir, domains, controls, crosswalk string) error {
	if domains == "" || controls == "" {
		return errors.New("manifest names no domains or controls file")
	}
	rows, err := readCSV(fsys, path.Join(dir, domains), "code", "name")
	if err != nil {
		return err
	}
	c.domains = map[string]string{}
	for _, r := range rows {
		c.Domains = append(c.Domains, Domain{Code: r[0], Name: r[1]})
		c.domains[r[0]] = r[1]
	}
	rows, err = readCSV(fsys, path.Join(dir, controls), "id", "domain", "title", "?same_title_4_0_13")
	if err != nil {
		return err
	}
	c.index = make(map[string]int, len(rows))
	c.byTitle = make(map[string]int, len(rows))
	for _, r := range rows {
		id := strings.ToUpper(r[0])
		if _, dup := c.index[id]; dup {
			return fmt.Errorf("%s: duplicate control %s", controls, r[0])
		}
		if _, ok := c.domains[r[1]]; !ok {
			return fmt.Errorf("%s: control %s: unknown domain %s", controls, r[0], r[1])
		}
		c.index[id] = len(c.Controls)
		c.byTitle[r[2]] = len(c.Controls)
		c.Controls = append(c.Controls, Control{ID: r[0], Domain: r[1], Title: r[2], SameTitle: r[3]})
	}
	if crosswalk == "" {
		return nil
	}
	rows, err = readCSV(fsys, path.Join(dir, crosswalk), "ccm_id", "framework", "framework_id")
	if err != nil {
		return err
	}
	c.crosswalk = map[string]map[string][]string{}
	for _, r := range rows {
		ctl, ok := c.Control(r[0])
		if !ok {
			return fmt.Errorf("%s: unknown control %s", crosswalk, r[0])
		}
		m := c.crosswalk[ctl.ID]
		if m == nil {
			m = map[string][]string{}
			c.crosswalk[ctl.ID] = m
		}
		m[r[1]] = append(m[r[1]], r[2])
	}
	return nil
}

// readCSV returns the named columns of every row; a column named "?x" is
// optional and reads as "" when absent.
func readCSV(fsys fs.FS, name string, cols ...string) ([][]string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: empty file", name)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		optional := strings.HasPrefix(c, "?")
		c = strings.TrimPrefix(c, "?")
		idx[i] = slices.Index(recs[0], c)
		if idx[i] < 0 && !optional {
			return nil, fmt.Errorf("%s: no column %q", name, c)
		}
	}
	rows := make([][]string, 0, len(recs)-1)
	for _, r := range recs[1:] {
		row := make([]string, len(cols))
		for i, j := range idx {
			if j >= 0 {
				row[i] = r[j]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// DefaultCatalogs returns the catalogues embedded in the binary. They are
// parsed once per process: the embedded data cannot change.
func DefaultCatalogs() (*Catalogs, error) { return defaultCatalogs() }

var defaultCatalogs = sync.OnceValues(func() (*Catalogs, error) {
	return LoadCatalogs(configs.FS)
})
