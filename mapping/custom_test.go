package mapping_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
)

func hasLink(links []finding.ControlLink, version, control, rule string) bool {
	return slices.ContainsFunc(links, func(l finding.ControlLink) bool {
		return l.Version == version && l.Control == control && l.Rule == rule
	})
}

// TestCustomReplace: a file without `extends: default` replaces the default
// rules entirely.
func TestCustomReplace(t *testing.T) {
	m, err := mapping.LoadFile(filepath.Join("testdata", "custom-replace.yaml"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != "4.1" {
		t.Errorf("version %s: the file says 4.1", m.Version())
	}
	if n := len(m.Rules()); n != 1 {
		t.Errorf("%d rules, want 1", n)
	}
	acme := &finding.Finding{Kind: finding.KindCode, Tool: "ACME-Scan", RuleID: "A1"}
	links := m.Map(acme)
	if len(links) != 1 || !hasLink(links, "4.1", "TVM-03", "acme-identification") {
		t.Errorf("acme finding: %v", links)
	}
	if want := "ACME-Scan is the in-house scanner; A1 is one of its results."; links[0].Reason != want {
		t.Errorf("reason %q", links[0].Reason)
	}
	if links := m.Map(&sarifXSS); len(links) != 0 {
		t.Errorf("the default rules still apply: %v", links)
	}
}

// TestCustomExtend: `extends: default` keeps the default rules and applies
// the file's changes: a disabled rule, a redefined CWE class, a new rule.
func TestCustomExtend(t *testing.T) {
	def, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	m, err := mapping.LoadFile(filepath.Join("testdata", "custom-extend.yaml"), nil, false, mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.Rules()), len(def.Rules()); got != want {
		t.Errorf("%d rules, want %d (one disabled, one added)", got, want)
	}

	// Disabled: CVSS no longer makes a finding evidence for TVM-08.
	if !hasLink(def.Map(&grypeCVE), "4.0.13", "TVM-08", "vulnerability-prioritisation-cvss") {
		t.Fatal("default rules do not give grype CVE TVM-08")
	}
	if l := m.Map(&grypeCVE); hasLink(l, "4.0.13", "TVM-08", "vulnerability-prioritisation-cvss") {
		t.Errorf("disabled rule still applies: %v", l)
	}

	// Added: an API finding gains v4.1 AIS-08 "API Security".
	api := &finding.Finding{Kind: finding.KindExternal, Tool: "nuclei", RuleID: "swagger-api", Tags: []string{"exposure", "api", "swagger"},
		Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/swagger.json"}}
	if hasLink(def.Map(api), "4.1", "AIS-08", "api-security") {
		t.Fatal("default rules already give AIS-08")
	}
	if !hasLink(m.Map(api), "4.1", "AIS-08", "api-security") || !hasLink(m.Map(api), "4.0.13", "AIS-04", "api-security") {
		t.Errorf("api finding: %v", m.Map(api))
	}

	// Redefined class: CWE-1333 (ReDoS) is now injection; CWE-502 is not.
	redos := &finding.Finding{Kind: finding.KindCode, Tool: "semgrep", RuleID: "redos", CWE: []int{1333}}
	if !hasLink(m.Map(redos), "4.0.13", "AIS-04", "secure-design-weakness") {
		t.Errorf("CWE-1333: %v", m.Map(redos))
	}
	// Unchanged default rules still apply.
	if !hasLink(m.Map(&nucleiTLS), "4.0.13", "IVS-03", "transport-security") {
		t.Errorf("default rule lost: %v", m.Map(&nucleiTLS))
	}

	// The extend argument has the same effect for a file that does not say so.
	data, err := os.ReadFile(filepath.Join("testdata", "custom-extend.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	noExt := strings.Replace(string(data), "extends: default\n", "", 1)
	m2, err := mapping.LoadBytes("inline.yaml", []byte(noExt), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Rules()) != len(m.Rules()) {
		t.Errorf("extend=true: %d rules, want %d", len(m2.Rules()), len(m.Rules()))
	}
}

// TestDocsExample loads the rules file shown in docs/mapping.md and checks
// that it changes the result the way the page says.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "mapping.md"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- example: custom rules -->"
	_, after, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/mapping.md has no %q", marker)
	}
	_, block, _ := strings.Cut(after, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	m, err := mapping.LoadBytes("docs/mapping.md", []byte(block), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	def, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	// The page's example: an exposed Prometheus metrics endpoint.
	f := &finding.Finding{Kind: finding.KindExternal, Tool: "nuclei", RuleID: "prometheus-metrics", Tags: []string{"exposure", "prometheus"},
		Severity: finding.SeverityMedium, Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/metrics"}}
	// What the page says the default rules give.
	if got := strings.Join(ids(def.Map(f)), " "); got != "AIS-05 AIS-07 IVS-04 TVM-03 TVM-07" {
		t.Errorf("default rules give %s", got)
	}
	if !hasLink(m.Map(f), "4.0.13", "IVS-09", "exposed-monitoring") {
		t.Errorf("docs example: %v", m.Map(f))
	}
}
