package mapping_test

import (
	"fmt"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
)

// benchMix is a realistic mix of findings, weighted like a week of scans
// of one web product: many nuclei results (most of them informational
// header and technology templates), SAST results with CWEs, SCA results
// with CVEs and CVSS vectors, a few secrets, IaC misconfigurations, TLS and
// network results. Each finding gets its own rule id and location so that
// nothing is shared between iterations.
func benchMix(n int) []finding.Finding {
	templates := []struct {
		f      finding.Finding
		weight int
	}{
		{nucleiMisconfig, 30},
		{techDetect, 15},
		{nucleiTLS, 5},
		{nucleiDefaultLogin, 2},
		{nucleiCVE, 3},
		{zapAuthenticated, 5},
		{sarifXSS, 20},
		{grypeCVE, 10},
		{trivyGHSA, 3},
		{trivyMisconfig, 4},
		{gitleaksSecret, 3},
	}
	var out []finding.Finding
	for len(out) < n {
		for _, t := range templates {
			for i := 0; i < t.weight && len(out) < n; i++ {
				f := t.f
				f.RuleID = fmt.Sprintf("%s-%d", f.RuleID, len(out)%7)
				f.Location.URI = fmt.Sprintf("%s/%d", f.Location.URI, len(out))
				out = append(out, f)
			}
		}
	}
	return out
}

// BenchmarkMap measures the default rules on the realistic mix. The
// any-rule case is a single match-everything rule: the floor set by building
// one link per finding.
func BenchmarkMap(b *testing.B) {
	findings := benchMix(1000)
	anyOnly, err := mapping.LoadBytes("any.yaml", []byte(`rules:
  - id: all
    match: {any: true}
    controls: {"4.0.13": [TVM-07]}
    reason: "{{.Tool}} identified {{.RuleID}}."
`), nil, false)
	if err != nil {
		b.Fatal(err)
	}
	def, err := mapping.Default()
	if err != nil {
		b.Fatal(err)
	}
	all, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		m    *mapping.Mapper
	}{
		{"rules=default/version=4.0.13", def},
		{"rules=default/version=all", all},
		{"rules=any-only", anyOnly},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var links int
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				links += len(bc.m.Map(&findings[i%len(findings)]))
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "findings/s")
			if cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "findings/cpu-s")
			}
			b.ReportMetric(float64(links)/float64(b.N), "links/finding")
		})
	}
}

// BenchmarkLoadDefault measures compiling the default rules (done once per
// process or per --mapping file).
func BenchmarkLoadDefault(b *testing.B) {
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := mapping.LoadFile("../configs/mapping.yaml", cats, false); err != nil {
			b.Fatal(err)
		}
	}
}
