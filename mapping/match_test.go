package mapping

import "testing"

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		pat   string
		op    uint8
		yes   []string
		no    []string
		isErr bool
	}{
		{pat: "nuclei", op: opExact, yes: []string{"nuclei"}, no: []string{"nuclei2", "xnuclei"}},
		{pat: "Grype", op: opExact, yes: []string{"grype"}},
		{pat: "cve-*", op: opPrefix, yes: []string{"cve-2021-1", "cve-"}, no: []string{"xcve-1"}},
		{pat: "*-tls", op: opSuffix, yes: []string{"deprecated-tls"}, no: []string{"tls-version"}},
		{pat: "*default-login*", op: opContains, yes: []string{"dvwa-default-login", "default-login"}, no: []string{"default"}},
		{pat: "*", op: opAll, yes: []string{"", "x"}},
		{pat: "js/*xss*", op: opSegments, yes: []string{"js/xss", "js/reflected-xss-x"}, no: []string{"py/xss", "js/xs"}},
		{pat: "a*b*c", op: opSegments, yes: []string{"abc", "axxbyyc", "abbc", "abcbc"}, no: []string{"ab", "acb", "bc", "abcx"}},
		{pat: "ab*ba", op: opSegments, yes: []string{"abba", "abxba"}, no: []string{"aba"}},
		{pat: "*a**b*", op: opSegments, yes: []string{"ab", "xaxbx"}, no: []string{"ba"}},
		{pat: "g10?", op: opRegexp, yes: []string{"g101"}, no: []string{"g10", "g1011"}},
		{pat: "ds0[0-9][0-9]", op: opRegexp, yes: []string{"ds002"}, no: []string{"ds0a2"}},
		{pat: "[!a]b", op: opRegexp, yes: []string{"xb"}, no: []string{"ab"}},
		{pat: `a\*b`, op: opRegexp, yes: []string{"a*b"}, no: []string{"axb"}},
		{pat: "a.b", op: opExact, yes: []string{"a.b"}, no: []string{"axb"}},
		{pat: "re:^go-20[0-9]{2}-", op: opRegexp, yes: []string{"go-2022-0001"}, no: []string{"xgo-2022-"}},
		{pat: "", isErr: true},
		{pat: "zap[", isErr: true},
		{pat: "a]", isErr: true},
		{pat: `a\`, isErr: true},
		{pat: "[]", isErr: true},
		{pat: "re:(", isErr: true},
		{pat: "re:", isErr: true},
	} {
		p, err := compilePattern(tc.pat)
		if tc.isErr {
			if err == nil {
				t.Errorf("%q: compiled", tc.pat)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.pat, err)
			continue
		}
		if p.op != tc.op {
			t.Errorf("%q: op %d, want %d", tc.pat, p.op, tc.op)
		}
		for _, s := range tc.yes {
			if !p.match(s) {
				t.Errorf("%q does not match %q", tc.pat, s)
			}
		}
		for _, s := range tc.no {
			if p.match(s) {
				t.Errorf("%q matches %q", tc.pat, s)
			}
		}
	}
}

func TestCWESet(t *testing.T) {
	var s cweSet
	for _, item := range []string{"79", "CWE-89", "200-213", "cwe-210-cwe-220", "1000"} {
		lo, hi, numeric, err := parseCWEItem(item)
		if err != nil || !numeric {
			t.Fatalf("%q: %v %v", item, numeric, err)
		}
		s.add(lo, hi)
	}
	s.normalise()
	if len(s.iv) != 4 {
		t.Errorf("intervals %v, want 4 after merging", s.iv)
	}
	for id, want := range map[int]bool{79: true, 80: false, 89: true, 199: false, 200: true, 215: true, 220: true, 221: false, 1000: true, 1: false} {
		if s.contains(id) != want {
			t.Errorf("contains(%d) = %v", id, !want)
		}
	}
	for _, bad := range []string{"0", "299-200", "200-abc", "12x", "-5"} {
		_, _, numeric, err := parseCWEItem(bad)
		if numeric && err == nil {
			t.Errorf("%q accepted", bad)
		}
		if !numeric && bad != "-5" {
			t.Errorf("%q not seen as numeric", bad)
		}
	}
	if _, _, numeric, _ := parseCWEItem("injection"); numeric {
		t.Error("class name read as numeric")
	}
}

func TestReasonTemplate(t *testing.T) {
	for _, bad := range []string{"{{.Nope}}", "{{Tool}}", "a {{.Tool", "a }} b", "{{ if .Tool }}x{{end}}"} {
		if _, err := compileReason(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	r, err := compileReason("plain text")
	if err != nil || !r.constant {
		t.Errorf("plain: %v %v", r, err)
	}
	r, err = compileReason("{{ .Control }} by {{.MappingRule}}")
	if err != nil || !r.perControl {
		t.Errorf("per control: %v %v", r, err)
	}
}
