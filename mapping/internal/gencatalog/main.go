// Command gencatalog builds the CCM catalogue files shipped in configs/ccm
// from the reference tables in ../shared/ccm (see SOURCES.md there).
//
// It keeps only what starpipe needs to name a control: id, domain, short
// title, the v4.1 control with exactly the same title as a v4.0.13 one, and
// the v4.0.13 crosswalk ids. No control specification text is copied, so the
// shipped files stay a list of names and references.
//
// Run from the module root after the reference tables change:
//
//	go run ./mapping/internal/gencatalog -src ../shared/ccm -out configs/ccm
//	go run ./mapping/internal/gencatalog -src ../shared/ccm -check
//
// The output is deterministic (input order is kept), so a re-run with
// unchanged inputs leaves the files byte-identical. With -check nothing is
// written; the command fails if the shipped files differ from what it would
// write (for CI, where ../shared/ccm is available).
package main

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Expected control counts: the generator refuses to write a catalogue that
// does not match the published size of the version.
const (
	want4013 = 197
	want41   = 207
)

// frameworkKeys turns the crosswalk's framework names into the short keys
// used by `starpipe controls --framework`.
var frameworkKeys = map[string]string{
	"AICPA TSC 2017 (SOC 2)": "soc2",
	"ISO/IEC 27001:2022":     "iso27001",
	"ISO/IEC 27002:2022":     "iso27002",
	"NIST SP 800-53 Rev 5":   "nist80053",
}

func main() {
	src := flag.String("src", "../shared/ccm", "directory holding the reference CSV files")
	out := flag.String("out", "configs/ccm", "directory to write the catalogue files to")
	check := flag.Bool("check", false, "compare with the files in -out instead of writing them")
	flag.Parse()
	if err := run(*src, *out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "gencatalog:", err)
		os.Exit(1)
	}
}

func run(src, out string, check bool) error {
	domains, err := readCSV(filepath.Join(src, "ccm-v4-domains.csv"), "code", "name")
	if err != nil {
		return err
	}
	c4013, err := readCSV(filepath.Join(src, "ccm-v4-controls.csv"), "id", "domain", "title")
	if err != nil {
		return err
	}
	c41, err := readCSV(filepath.Join(src, "ccm-v4.1-controls.csv"), "id", "domain", "title")
	if err != nil {
		return err
	}
	byTitle, err := readCSV(filepath.Join(src, "ccm-v4.0.13-to-v4.1-by-title.csv"), "v4_0_13_id", "v4_1_id", "match")
	if err != nil {
		return err
	}
	xw, err := readCSV(filepath.Join(src, "crosswalk.csv"), "ccm_id", "framework", "framework_id")
	if err != nil {
		return err
	}
	if len(c4013) != want4013 || len(c41) != want41 {
		return fmt.Errorf("control counts %d and %d, want %d and %d", len(c4013), len(c41), want4013, want41)
	}

	// v4.0.13 domains come straight from CSA's data.
	domainName := map[string]string{}
	d4013 := [][]string{{"code", "name"}}
	for _, d := range domains {
		domainName[d[0]] = d[1]
		d4013 = append(d4013, []string{d[0], d[1]})
	}
	// v4.1 domain names are not in the reference data. I&S is named in
	// SOURCES.md ("Infrastructure Security"); the other codes are unchanged
	// and are assumed to keep their v4.0.13 names.
	d41 := [][]string{{"code", "name"}}
	seen := map[string]bool{}
	for _, c := range c41 {
		code := c[1]
		if seen[code] {
			continue
		}
		seen[code] = true
		name, ok := domainName[code]
		if code == "I&S" {
			name, ok = "Infrastructure Security", true
		}
		if !ok {
			return fmt.Errorf("v4.1 domain %s has no known name", code)
		}
		d41 = append(d41, []string{code, name})
	}

	k4013 := [][]string{{"id", "domain", "title"}}
	ids4013 := map[string]bool{}
	for _, c := range c4013 {
		if _, ok := domainName[c[1]]; !ok {
			return fmt.Errorf("control %s: unknown domain %s", c[0], c[1])
		}
		ids4013[c[0]] = true
		k4013 = append(k4013, c)
	}

	// same_title_4_0_13 lets a v4.1 control borrow the v4.0.13 crosswalk and
	// lets the rules loader suggest the right v4.1 id. It is derived from an
	// exact title match, not from an official CSA crosswalk.
	sameTitle := map[string]string{}
	for _, r := range byTitle {
		if r[1] != "" && r[2] != "no-exact-title-match" {
			sameTitle[r[1]] = r[0]
		}
	}
	k41 := [][]string{{"id", "domain", "title", "same_title_4_0_13"}}
	for _, c := range c41 {
		k41 = append(k41, []string{c[0], c[1], c[2], sameTitle[c[0]]})
	}

	x := [][]string{{"ccm_id", "framework", "framework_id"}}
	for _, r := range xw {
		key, ok := frameworkKeys[r[1]]
		if !ok {
			return fmt.Errorf("crosswalk: unknown framework %q", r[1])
		}
		if !ids4013[r[0]] {
			return fmt.Errorf("crosswalk: unknown control %s", r[0])
		}
		x = append(x, []string{r[0], key, r[2]})
	}

	files := map[string][][]string{
		"domains-4.0.13.csv":   d4013,
		"controls-4.0.13.csv":  k4013,
		"crosswalk-4.0.13.csv": x,
		"domains-4.1.csv":      d41,
		"controls-4.1.csv":     k41,
	}
	contents := map[string][]byte{"catalogs.yaml": []byte(manifest)}
	for name, rows := range files {
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		if err := w.WriteAll(rows); err != nil {
			return err
		}
		contents[name] = buf.Bytes()
	}
	if check {
		var stale []string
		for name, want := range contents {
			got, err := os.ReadFile(filepath.Join(out, name))
			if err != nil || !bytes.Equal(got, want) {
				stale = append(stale, name)
			}
		}
		if stale != nil {
			return fmt.Errorf("out of date in %s: %s (re-run without -check)", out, strings.Join(stale, ", "))
		}
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, data := range contents {
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manifest tells mapping.LoadCatalogs which files make up each version.
const manifest = `# CCM catalogues shipped with starpipe. Generated by
# go run ./mapping/internal/gencatalog; do not edit by hand (see NOTICE.md).
#
# default: the CCM version used when none is configured.
# crosswalk_via: a version without its own crosswalk borrows the crosswalk of
#   the control in that version with exactly the same title (derived, not an
#   official CSA crosswalk; CSA lists v4.1 mappings as pending upstream).
default: "4.0.13"
frameworks:
  soc2: "AICPA TSC 2017 (SOC 2)"
  iso27001: "ISO/IEC 27001:2022"
  iso27002: "ISO/IEC 27002:2022"
  nist80053: "NIST SP 800-53 Rev 5"
catalogs:
  - version: "4.0.13"
    source: "CSA CCM v4.0.13"
    domains: domains-4.0.13.csv
    controls: controls-4.0.13.csv
    crosswalk: crosswalk-4.0.13.csv
  - version: "4.1"
    source: "CSA CCM v4.1.0 (January 2026)"
    domains: domains-4.1.csv
    controls: controls-4.1.csv
    crosswalk_via: "4.0.13"
`

// readCSV returns the named columns of every data row, in file order.
func readCSV(path string, cols ...string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, h := range recs[0] {
			if strings.TrimSpace(h) == c {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("%s: no column %q", path, c)
		}
	}
	var rows [][]string
	for _, r := range recs[1:] {
		row := make([]string, len(cols))
		for i, j := range idx {
			row[i] = strings.TrimSpace(r[j])
		}
		rows = append(rows, row)
	}
	return rows, nil
}
