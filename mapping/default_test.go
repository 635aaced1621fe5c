package mapping_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
)

func ptr[T any](v T) *T { return &v }

// representative findings, built by hand the way the parsers fill them.
var (
	nucleiCVE = finding.Finding{
		Kind: finding.KindExternal, Tool: "nuclei", RuleID: "CVE-2021-44228", Title: "Apache Log4j2 RCE",
		Tags: []string{"cve", "cve2021", "rce", "oast", "log4j", "injection"}, CVE: []string{"CVE-2021-44228"}, CWE: []int{502, 917},
		Signals:  finding.Signals{Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", Label: "critical"},
		Severity: finding.SeverityCritical, Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/api"},
	}
	nucleiTLS = finding.Finding{
		Kind: finding.KindExternal, Tool: "nuclei", RuleID: "deprecated-tls", Tags: []string{"ssl", "tls"},
		Severity: finding.SeverityInfo, Location: finding.Location{Kind: finding.LocationHost, URI: "app.example.com:443"},
	}
	nucleiMisconfig = finding.Finding{
		Kind: finding.KindExternal, Tool: "nuclei", RuleID: "http-missing-security-headers", Tags: []string{"misconfig", "headers", "generic"},
		Severity: finding.SeverityInfo, Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/"},
	}
	nucleiDefaultLogin = finding.Finding{
		Kind: finding.KindExternal, Tool: "nuclei", RuleID: "ftp-default-credentials", Tags: []string{"network", "ftp", "default-login"},
		Severity: finding.SeverityHigh, Location: finding.Location{Kind: finding.LocationHost, URI: "ftp.example.com:21"},
	}
	sarifXSS = finding.Finding{
		Kind: finding.KindCode, Tool: "CodeQL", RuleID: "js/xss", Tags: []string{"security", "external/cwe/cwe-079"}, CWE: []int{79, 116},
		Signals: finding.Signals{Score: ptr(6.1), Level: "error"}, Severity: finding.SeverityMedium,
		Location: finding.Location{Kind: finding.LocationFile, URI: "src/app.js", StartLine: 12},
	}
	grypeCVE = finding.Finding{
		Kind: finding.KindCode, Tool: "grype", RuleID: "CVE-2022-42889-commons-text", CVE: []string{"CVE-2022-42889"},
		CVSS:     &finding.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Base: 9.8},
		Severity: finding.SeverityCritical, Location: finding.Location{Kind: finding.LocationFile, URI: "pom.xml"},
	}
	trivyGHSA = finding.Finding{
		Kind: finding.KindCode, Tool: "Trivy", RuleID: "GHSA-xxxx-yyyy-zzzz", Severity: finding.SeverityHigh,
		Location: finding.Location{Kind: finding.LocationFile, URI: "package-lock.json"},
	}
	trivyMisconfig = finding.Finding{
		Kind: finding.KindCode, Tool: "Trivy", RuleID: "AVD-DS-0002", Tags: []string{"misconfiguration", "dockerfile"},
		Severity: finding.SeverityHigh, Location: finding.Location{Kind: finding.LocationFile, URI: "Dockerfile"},
	}
	gitleaksSecret = finding.Finding{
		Kind: finding.KindCode, Tool: "gitleaks", RuleID: "aws-access-token", Severity: finding.SeverityHigh,
		Location: finding.Location{Kind: finding.LocationFile, URI: "config/prod.env", StartLine: 3},
	}
	zapAuthenticated = finding.Finding{
		Kind: finding.KindAuthenticated, Tool: "ZAP", RuleID: "10202", Title: "Absence of Anti-CSRF Tokens", CWE: []int{352},
		Severity: finding.SeverityMedium, Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/account"},
	}
	techDetect = finding.Finding{
		Kind: finding.KindExternal, Tool: "nuclei", RuleID: "tech-detect", Tags: []string{"tech"},
		Severity: finding.SeverityInfo, Location: finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/"},
	}
)

func ids(links []finding.ControlLink) []string {
	var out []string
	for _, l := range links {
		if !slices.Contains(out, l.Control) {
			out = append(out, l.Control)
		}
	}
	slices.Sort(out)
	return out
}

// TestDefaultRulesRepresentative pins the controls the default rules give
// representative findings, under both CCM versions.
func TestDefaultRulesRepresentative(t *testing.T) {
	m40, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	m41, err := mapping.Default(mapping.WithVersion("4.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		f          finding.Finding
		want, w41  string
		wantRuleOf map[string]string // control -> a rule that must give it (4.0.13)
	}{
		{"nuclei CVE template", nucleiCVE,
			"AIS-04 AIS-05 AIS-07 TVM-03 TVM-07 TVM-08", "AIS-04 AIS-05 AIS-07 TVM-03 TVM-08 TVM-09",
			map[string]string{"TVM-08": "vulnerability-prioritisation-cvss", "AIS-04": "secure-design-weakness"}},
		{"nuclei tls", nucleiTLS,
			"IVS-03 IVS-04 IVS-09 TVM-07", "I&S-03 I&S-04 I&S-09 TVM-03",
			map[string]string{"IVS-03": "transport-security", "IVS-04": "hardening-misconfiguration"}},
		{"nuclei tls located at a URL", func() finding.Finding {
			f := nucleiTLS
			f.Location = finding.Location{Kind: finding.LocationURL, URI: "https://app.example.com/"}
			return f
		}(),
			"IVS-03 IVS-04 TVM-07", "I&S-03 I&S-04 TVM-03", // not AIS-05: TLS is infrastructure
			map[string]string{"IVS-03": "transport-security"}},
		{"nuclei misconfig", nucleiMisconfig,
			"AIS-05 IVS-04 TVM-07", "AIS-05 I&S-04 TVM-03",
			map[string]string{"IVS-04": "hardening-misconfiguration", "AIS-05": "application-security-testing-dynamic"}},
		{"nuclei default-login", nucleiDefaultLogin,
			"IVS-03 IVS-04 IVS-09 TVM-03 TVM-07", "I&S-03 I&S-04 I&S-09 TVM-03 TVM-08",
			map[string]string{"IVS-04": "hardening-misconfiguration", "IVS-09": "network-exposure"}},
		{"SARIF SAST CWE-79", sarifXSS,
			"AIS-04 AIS-05 AIS-07 TVM-03 TVM-07 TVM-08", "AIS-04 AIS-05 AIS-07 TVM-03 TVM-08 TVM-09",
			map[string]string{"AIS-05": "application-security-testing-static", "AIS-04": "secure-design-weakness"}},
		{"grype SCA with CVE", grypeCVE,
			"AIS-05 AIS-07 TVM-03 TVM-05 TVM-07 TVM-08", "AIS-05 AIS-07 TVM-03 TVM-06 TVM-08 TVM-09",
			map[string]string{"TVM-05": "vulnerable-external-components"}},
		{"trivy advisory without CVE", trivyGHSA,
			"AIS-05 AIS-07 TVM-03 TVM-05 TVM-07", "AIS-05 AIS-07 TVM-03 TVM-06 TVM-08",
			map[string]string{"TVM-05": "vulnerable-external-components"}},
		{"trivy misconfiguration", trivyMisconfig,
			"AIS-05 AIS-07 IVS-04 TVM-03 TVM-07", "AIS-05 AIS-07 I&S-04 TVM-03 TVM-08",
			map[string]string{"IVS-04": "hardening-misconfiguration"}},
		{"gitleaks secret", gitleaksSecret,
			"AIS-04 AIS-05 AIS-07 TVM-03 TVM-07", "AIS-04 AIS-05 AIS-07 TVM-03 TVM-08",
			map[string]string{"AIS-04": "hard-coded-credentials"}},
		{"authenticated ZAP CSRF", zapAuthenticated,
			"AIS-04 AIS-05 AIS-07 TVM-03 TVM-07", "AIS-04 AIS-05 AIS-07 TVM-03 TVM-08",
			map[string]string{"AIS-05": "application-security-testing-dynamic"}},
		{"informational tech detection", techDetect,
			"AIS-05 TVM-07", "AIS-05 TVM-03", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			links := m40.Map(&tc.f)
			if got := strings.Join(ids(links), " "); got != tc.want {
				t.Errorf("4.0.13: %s, want %s", got, tc.want)
			}
			if got := strings.Join(ids(m41.Map(&tc.f)), " "); got != tc.w41 {
				t.Errorf("4.1: %s, want %s", got, tc.w41)
			}
			for ctl, rule := range tc.wantRuleOf {
				if !slices.ContainsFunc(links, func(l finding.ControlLink) bool { return l.Control == ctl && l.Rule == rule }) {
					t.Errorf("no %s link by rule %s in %v", ctl, rule, links)
				}
			}
			for _, l := range links {
				if l.Version != "4.0.13" || l.Reason == "" || strings.Contains(l.Reason, "{{") {
					t.Errorf("bad link %+v", l)
				}
			}
		})
	}
}

// TestDefaultRulesCoverEveryKind checks the guarantee of issue 5: every
// finding of an external, authenticated or code scan, even one with nothing
// but its kind, is evidence for a TVM, AIS or IVS (I&S) control.
func TestDefaultRulesCoverEveryKind(t *testing.T) {
	for _, v := range []string{"4.0.13", "4.1"} {
		m, err := mapping.Default(mapping.WithVersion(v))
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []finding.ScanKind{finding.KindExternal, finding.KindAuthenticated, finding.KindCode} {
			for _, loc := range []finding.LocationKind{finding.LocationNone, finding.LocationFile, finding.LocationURL, finding.LocationHost, finding.LocationLogical} {
				for _, sev := range finding.Severities() {
					f := &finding.Finding{Kind: kind, Tool: "unknown-tool", RuleID: "r", Severity: sev, Location: finding.Location{Kind: loc}}
					links := m.Map(f)
					ok := slices.ContainsFunc(links, func(l finding.ControlLink) bool {
						d, _, _ := strings.Cut(l.Control, "-")
						return d == "TVM" || d == "AIS" || d == "IVS" || d == "I&S"
					})
					if !ok {
						t.Errorf("CCM %s: %s/%s/%s finding has no TVM, AIS or IVS control: %v", v, kind, loc, sev, links)
					}
				}
			}
		}
	}
}

// TestDefaultRulesBothVersions checks that every default rule states the
// same intent under v4.0.13 and v4.1: each v4.0.13 control is matched by the
// v4.1 control with the same title, or, for the two AIS controls v4.1
// retitled, by the same id.
func TestDefaultRulesBothVersions(t *testing.T) {
	cats := loadCatalogs(t)
	v40, _ := cats.Get("4.0.13")
	v41, _ := cats.Get("4.1")
	byTitle := map[string]string{}
	for _, c := range v41.Controls {
		byTitle[c.Title] = c.ID
	}
	m, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Rules() {
		old, now := r.Controls["4.0.13"], r.Controls["4.1"]
		if len(old) == 0 || len(old) != len(now) {
			t.Errorf("rule %s: controls %v: want the same number for 4.0.13 and 4.1", r.ID, r.Controls)
			continue
		}
		for _, id := range old {
			c, _ := v40.Control(id)
			want, ok := byTitle[c.Title]
			if !ok {
				want = id // retitled in v4.1 (AIS-04, AIS-05): same id, same intent
			}
			if !slices.Contains(now, want) {
				t.Errorf("rule %s: 4.0.13 %s %q has no 4.1 counterpart %s in %v", r.ID, id, c.Title, want, now)
			}
		}
	}
}

// TestDefaultRulesAreCommented checks that every default rule carries a
// comment with its reasoning, since auditors read that file.
func TestDefaultRulesAreCommented(t *testing.T) {
	data, err := configs.FS.ReadFile("mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" {
			continue
		}
		for _, r := range root.Content[i+1].Content {
			if len(strings.Fields(r.HeadComment)) < 15 {
				t.Errorf("line %d: rule has no reasoning comment (%q)", r.Line, r.HeadComment)
			}
		}
	}
}

func TestMapOrderAndDeterminism(t *testing.T) {
	m, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	links := m.Map(&nucleiDefaultLogin)
	seen := map[string]bool{}
	var prev string
	for _, l := range links {
		key := fmt.Sprintf("%s|%s|%s", l.Version, l.Control, l.Rule)
		if seen[key] {
			t.Errorf("duplicate link %s", key)
		}
		seen[key] = true
		if l.Version < prev {
			t.Errorf("links not ordered by version: %v", links)
		}
		prev = l.Version
	}
	if links[0].Version != "4.0.13" || links[len(links)-1].Version != "4.1" {
		t.Errorf("WithAllVersions: %v", links)
	}
	for i := 0; i < 20; i++ {
		if again := m.Map(&nucleiDefaultLogin); !slices.Equal(again, links) {
			t.Fatalf("Map is not deterministic:\n%v\n%v", links, again)
		}
	}
	// AppendMap appends after what the slice holds.
	buf := []finding.ControlLink{{Control: "keep"}}
	buf = m.AppendMap(buf, &nucleiDefaultLogin)
	if buf[0].Control != "keep" || !slices.Equal(buf[1:], links) {
		t.Errorf("AppendMap: %v", buf)
	}
}

func TestReasonRendering(t *testing.T) {
	m, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Map(&nucleiCVE) {
		switch l.Rule {
		case "vulnerability-prioritisation-cvss":
			want := "nuclei gave a CVSS vector or score (CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H); the finding is prioritised by it as critical."
			if l.Reason != want {
				t.Errorf("reason %q, want %q", l.Reason, want)
			}
		case "secure-design-weakness":
			if !strings.Contains(l.Reason, "CWE-502, CWE-917") {
				t.Errorf("reason %q lacks the CWE ids", l.Reason)
			}
		}
	}
}

func TestCount(t *testing.T) {
	m, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	// nucleiTLS gets IVS-03 from two rules: it counts once.
	for _, f := range []finding.Finding{nucleiTLS, nucleiDefaultLogin} {
		m.Count(counts, m.Map(&f))
	}
	want := map[string]int{"TVM-07": 2, "TVM-03": 1, "IVS-03": 2, "IVS-04": 2, "IVS-09": 2}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	all, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{}
	all.Count(counts, all.Map(&nucleiTLS))
	if counts["4.1/TVM-03"] != 1 || counts["4.0.13/TVM-07"] != 1 || counts["4.1/I&S-03"] != 1 {
		t.Errorf("all versions: %v", counts)
	}
}

// TestMapConcurrent runs Map from several goroutines (meaningful under
// -race): a Mapper is shared by every ingest worker.
func TestMapConcurrent(t *testing.T) {
	m, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	want := m.Map(&sarifXSS)
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				f := sarifXSS
				if got := m.Map(&f); !slices.Equal(got, want) {
					errs <- fmt.Sprint(got)
					return
				}
			}
			errs <- ""
		}()
	}
	for g := 0; g < 4; g++ {
		if e := <-errs; e != "" {
			t.Errorf("concurrent Map gave %s", e)
		}
	}
}
