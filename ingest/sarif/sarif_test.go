package sarif

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

func parseString(s string, lim parse.Limits) (parse.Stats, error) {
	return Parse(context.Background(), strings.NewReader(s), parse.Options{File: "t.sarif", Limits: lim}, parse.Sink{})
}

const oneResult = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"T"}},"results":[{"ruleId":"R","message":{"text":"m"}}]}]}`

func TestLimits(t *testing.T) {
	deep := `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"T"}},"results":[{"properties":{"a":` +
		strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}]}]}`
	long := `{"version":"2.1.0","runs":[{"results":[{"message":{"text":"` + strings.Repeat("x", 5000) + `"}}]}]}`
	tests := []struct {
		name, in string
		lim      parse.Limits
		want     string
	}{
		{"bytes", oneResult, parse.Limits{MaxBytes: 50}, "file larger than 50 bytes"},
		{"depth", deep, parse.Limits{}, "nesting deeper than 128"},
		{"string", long, parse.Limits{MaxString: 1000}, "string longer than 1000 bytes"},
		{"results", strings.Replace(oneResult, `[{"ruleId"`, `[{},{"ruleId"`, 1), parse.Limits{MaxResults: 1}, "more than 1 results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(tc.in, tc.lim)
			var pe *parse.Error
			if !errors.As(err, &pe) || !errors.Is(err, parse.ErrLimit) {
				t.Fatalf("want a *parse.Error wrapping ErrLimit, got %v", err)
			}
			if pe.File != "t.sarif" || pe.Line != 1 || pe.Offset < 0 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (%+v)", err, pe)
			}
		})
	}
	// No limit (negative) lets the same inputs through.
	if _, err := parseString(long, parse.Limits{MaxString: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestFormatErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty file"},
		{"  \n ", "empty file"},
		{"[]", "expected '{'"},
		{`{"runs":[{"results":{}}]}`, "run.results is not an array (found an object)"},
		{`{"runs":{}}`, "runs is not an array"},
		{`{"version":"3.0","runs":[]}`, "unsupported SARIF version 3.0"},
		{`{"$schema":"http://json.schemastore.org/sarif-1.0.0","runs":[]}`, "unsupported SARIF version 1.0.0"},
		{`{"runs":[]} x`, "unexpected data after"},
		{"{\"runs\":[\x00]}", "invalid character '\\x00'"},
		{`{"runs":[],}`, "trailing comma"},
		{`{"runs":[{"results":[{"message":{"text":"a\qb"}}]}]}`, "invalid escape"},
		{`{"runs":[{"results":[{"ruleIndex":01}]}]}`, "invalid"},
		{`{"runs":[{"results":[`, "unexpected end of input"},
	}
	for _, tc := range tests {
		_, err := parseString(tc.in, parse.Limits{})
		var pe *parse.Error
		if !errors.As(err, &pe) || !errors.Is(err, parse.ErrFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want a format error mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestLineAndOffset(t *testing.T) {
	in := "{\n  \"runs\": [\n    {\"results\": 42}\n  ]\n}\n"
	_, err := parseString(in, parse.Limits{})
	var pe *parse.Error
	if !errors.As(err, &pe) || pe.Line != 3 || pe.Offset != int64(strings.Index(in, "42")) {
		t.Fatalf("got %v (%+v)", err, pe)
	}
}

func TestOddButValid(t *testing.T) {
	tests := []struct {
		in   string
		want parse.Stats
	}{
		{`{"runs":null}`, parse.Stats{}},
		{`{"runs":[null]}`, parse.Stats{}},
		{`{"runs":[{"results":null}]}`, parse.Stats{Runs: 1}},
		{"\xEF\xBB\xBF" + oneResult, parse.Stats{Runs: 1, Findings: 1, Tools: []string{"T"}}},
		{`{"runs":[{"tool":{"driver":{"name":"T","rules":null}},"results":[{"ruleIndex":5,"message":{"text":"\u0000\ud800"}}]}]}`,
			parse.Stats{Runs: 1, Findings: 1, Tools: []string{"T"}}},
		{`{"runs":[{"results":[{"kind":"pass"},{"kind":"notApplicable"},{"kind":"informational"},{"kind":"open"},{"suppressions":[{"status":"accepted"}]}]}]}`,
			parse.Stats{Runs: 1, Findings: 2, NotFindings: 3, Suppressed: 1}},
	}
	for _, tc := range tests {
		st, err := parseString(tc.in, parse.Limits{})
		if err != nil || st.Runs != tc.want.Runs || st.Findings != tc.want.Findings || st.NotFindings != tc.want.NotFindings ||
			st.Suppressed != tc.want.Suppressed || strings.Join(st.Tools, ",") != strings.Join(tc.want.Tools, ",") {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, st, err, tc.want)
		}
	}
}

func TestSinkErrorStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	_, err := Parse(context.Background(), strings.NewReader(strings.Replace(oneResult, `[{"ruleId"`, `[{},{"ruleId"`, 1)),
		parse.Options{File: "t"}, parse.Sink{Finding: func(*finding.Finding) error { n++; return stop }})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("got %v after %d findings", err, n)
	}
}

func TestScopeAndKind(t *testing.T) {
	in := `{"runs":[{"versionControlProvenance":[{"repositoryUri":"https://g/r"}],"results":[{"ruleId":"R"}]}]}`
	var got []*finding.Finding
	sink := parse.Sink{Finding: func(f *finding.Finding) error { got = append(got, f); return nil }}
	if _, err := Parse(context.Background(), strings.NewReader(in), parse.Options{}, sink); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(context.Background(), strings.NewReader(in), parse.Options{Scope: "s", Kind: finding.KindExternal}, sink); err != nil {
		t.Fatal(err)
	}
	if got[0].Scope != "https://g/r" || got[0].Kind != finding.KindCode || got[1].Scope != "s" || got[1].Kind != finding.KindExternal {
		t.Fatalf("got %+v / %+v", got[0], got[1])
	}
}

func TestSniff(t *testing.T) {
	yes := []string{
		`{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","version":"2.1.0","runs":[`,
		"\xEF\xBB\xBF{\"version\": \"2.1.0\", \"runs\": [",
		`{"runs":[{"results":[{"ruleId":"G104","message":{"text":"long...`,
	}
	no := []string{
		``, `[]`, `{"template-id":"x","info":{"name":"sarif"}}`, `{"name":"a.example.com","sources":["x"]}`,
		`{"version":"1","items":[]}`, `{"SchemaVersion":2,"Results":[]}`,
	}
	for _, s := range yes {
		if !Sniff([]byte(s)) {
			t.Errorf("Sniff(%q) = false", s)
		}
	}
	for _, s := range no {
		if Sniff([]byte(s)) {
			t.Errorf("Sniff(%q) = true", s)
		}
	}
	// Every parseable corpus SARIF file sniffs as SARIF from its first 4 KB.
	for _, e := range loadManifest(t) {
		if e.expected == "invalid" || e.expected == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(corpusDir(t), e.path))
		if err != nil {
			t.Fatal(err)
		}
		if !Sniff(data[:min(len(data), 4096)]) {
			t.Errorf("corpus %s does not sniff as SARIF", e.path)
		}
	}
	// And no nuclei/amass/native JSON file does.
	for _, dir := range []string{"nuclei", "amass", "json"} {
		files, _ := filepath.Glob(filepath.Join(corpusDir(t), dir, "*", "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if Sniff(data[:min(len(data), 4096)]) {
				t.Errorf("%s sniffs as SARIF", f)
			}
		}
	}
}
