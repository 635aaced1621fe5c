package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
	}{
		{"", FormatEmpty},
		{" \r\n\t", FormatEmpty},
		{"\xef\xbb\xbf\n", FormatEmpty},
		{`{"version":"2.1.0","runs":[]}`, FormatSARIF},
		{"\xef\xbb\xbf  {\"$schema\":\"https://json.schemastore.org/sarif-2.1.0.json\", ,}", FormatSARIF},
		{`{"template-id":"x","info":{}}`, FormatNuclei},
		{"[\n {\"templateID\":\"x\"}]", FormatNuclei},
		{`{"name":"a.example.com","domain":"example.com","addresses":[]}`, FormatAmass},
		{"a.example.com (FQDN) --> a_record --> 192.0.2.1 (IPAddress)", FormatAmass},
		{"SQLite format 3\x00\x10\x00", FormatAmass},
	} {
		got, err := Detect([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("Detect(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{`{"SchemaVersion":2,"ArtifactName":"x","Results":[]}`, "trivy -f sarif"},
		{`{"@version":"2.11","site":[]}`, "ZAP"},
		{`null`, "JSON null"},
		{`[]`, "empty JSON array"},
		{`[1,2]`, "non-objects"},
		{`{"a":1,"b":2}`, "keys: a, b"},
		{`"str"`, "scalar"},
		{"<?xml version=\"1.0\"?>", "XML"},
		{"\x00\x01\x02binary", "binary"},
		{"hello world\nmore", `"hello world"`},
	} {
		_, err := Detect([]byte(tc.in))
		var pe *parse.Error
		if !errors.As(err, &pe) || !errors.Is(err, parse.ErrFormat) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "not a supported format") {
			t.Errorf("Detect(%q) error %v, want a *parse.Error mentioning %q", tc.in, err, tc.msg)
		}
	}
}

func FuzzDetect(f *testing.F) {
	dir := corpusDir(f)
	for _, p := range []string{
		"sarif/spec-examples/sarif-2.2-minimal-valid.json",
		"nuclei/nuclei/dd-multiple-v3-export.json",
		"amass/amass/amass-v4-text-beyondmachines-net.txt",
		"amass/amass/amass-v3-example-com.jsonl",
		"json/trivy/trivy-legacy-array.json",
		"json/zap/zap-petstore-api.json",
	} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 4096 {
			b = b[:4096]
		}
		f.Add(b)
	}
	f.Add([]byte("SQLite format 3\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Detect(data)
		if err != nil {
			var pe *parse.Error
			if !errors.As(err, &pe) || !errors.Is(err, parse.ErrFormat) {
				t.Fatalf("error %T %v is not a *parse.Error wrapping ErrFormat", err, err)
			}
			return
		}
		switch got {
		case FormatSARIF, FormatNuclei, FormatAmass, FormatEmpty:
		default:
			t.Fatalf("Detect returned %q", got)
		}
	})
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatAuto, "AUTO": FormatAuto, "sarif": FormatSARIF, "nuclei": FormatNuclei, "amass": FormatAmass} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("trivy"); err == nil {
		t.Error("ParseFormat(trivy) accepted")
	}
}

func TestParseReader(t *testing.T) {
	ctx := context.Background()
	nuc := `{"template-id":"a","matched-at":"https://x.example/"}` + "\n"
	n := 0
	sink := parse.Sink{Finding: func(*finding.Finding) error { n++; return nil }}
	f, st, err := ParseReader(ctx, strings.NewReader(nuc+nuc), FormatAuto, parse.Options{}, sink)
	if err != nil || f != FormatNuclei || st.Findings != 2 || n != 2 {
		t.Errorf("got %s %+v %v, want nuclei with 2 findings", f, st, err)
	}

	// Empty input: accepted with no findings, except a .sarif name.
	f, st, err = ParseReader(ctx, strings.NewReader(""), FormatAuto, parse.Options{File: "scan.jsonl"}, sink)
	if err != nil || f != FormatEmpty || !reflect.DeepEqual(st, parse.Stats{}) {
		t.Errorf("empty: got %s %+v %v", f, st, err)
	}
	_, _, err = ParseReader(ctx, strings.NewReader(""), FormatAuto, parse.Options{File: "scan.sarif"}, sink)
	var pe *parse.Error
	if !errors.As(err, &pe) || pe.File != "scan.sarif" {
		t.Errorf("empty .sarif: err %v, want *parse.Error naming the file", err)
	}
	// An explicit format is used as given.
	_, _, err = ParseReader(ctx, strings.NewReader(nuc), FormatAmass, parse.Options{File: "x"}, sink)
	if !errors.As(err, &pe) || pe.File != "x" {
		t.Errorf("nuclei read as amass: err %v, want *parse.Error", err)
	}
	// Detection errors name the file.
	_, _, err = ParseReader(ctx, strings.NewReader(`{"a":1}`), FormatAuto, parse.Options{File: "json/x.json"}, sink)
	if !errors.As(err, &pe) || pe.File != "json/x.json" || !strings.HasPrefix(err.Error(), "json/x.json: not a supported format") {
		t.Errorf("err %v", err)
	}
	// MaxBytes is enforced for every format, including a SQLite copy.
	big := strings.Repeat(nuc, 100)
	_, _, err = ParseReader(ctx, strings.NewReader(big), FormatAuto, parse.Options{File: "x", Limits: parse.Limits{MaxBytes: 1000}}, sink)
	if !errors.As(err, &pe) || !errors.Is(err, parse.ErrLimit) {
		t.Errorf("MaxBytes: err %v, want *parse.Error wrapping ErrLimit", err)
	}
}

func TestParseFileDirectory(t *testing.T) {
	dir := t.TempDir()
	_, _, err := ParseFile(context.Background(), dir, FormatAuto, parse.Options{}, parse.Sink{})
	var pe *parse.Error
	if !errors.As(err, &pe) || pe.File != dir {
		t.Errorf("err %v, want *parse.Error naming the directory", err)
	}
}

func TestParseFileMissing(t *testing.T) {
	_, _, err := ParseFile(context.Background(), "does/not/exist.sarif", FormatAuto, parse.Options{}, parse.Sink{})
	var pe *parse.Error
	if !errors.As(err, &pe) || pe.File != "does/not/exist.sarif" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err %v, want *parse.Error naming the file and wrapping ErrNotExist", err)
	}
}

// --- dry run ---------------------------------------------------------------

func dryRun(t *testing.T, files []string, opt DryRunOptions) (bool, []map[string]any) {
	t.Helper()
	var out bytes.Buffer
	failed, err := DryRun(context.Background(), files, opt, &out)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return failed, lines
}

func TestDryRunSummary(t *testing.T) {
	dir := corpusDir(t)
	nuc := filepath.Join(dir, "nuclei", "nuclei", "dd-many-findings-new.json")
	bad := filepath.Join(dir, "json", "trivy", "trivy-alpine-310.json")
	empty := filepath.Join(dir, "nuclei", "nuclei", "dd-no-findings.json")
	enrich := func(f *finding.Finding) {
		if s, ok := finding.ParseSeverity(f.Signals.Label); ok {
			f.Severity, f.SeveritySource = s, finding.SourceToolSeverity
		}
		f.Controls = []finding.ControlLink{
			{Version: "4.0.13", Control: "TVM-07", Rule: "r1", Reason: "because"},
			{Version: "4.0.13", Control: "TVM-07", Rule: "r2", Reason: "also"},
		}
	}
	failed, lines := dryRun(t, []string{nuc, bad, empty}, DryRunOptions{Enrich: enrich})
	if !failed {
		t.Error("failed = false with an unsupported file")
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want one summary per file", len(lines))
	}
	s := lines[0]
	want := `{"assets":0,"by_severity":{"critical":0,"high":0,"info":0,"low":1,"medium":1},"controls":{"TVM-07":2},"errors":[],"file":"` + nuc + `","findings":2,"format":"nuclei","not_findings":0,"suppressed":0}`
	if got, _ := json.Marshal(s); string(got) != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	if errs := lines[1]["errors"].([]any); len(errs) != 1 || !strings.Contains(errs[0].(string), "trivy -f sarif") {
		t.Errorf("errors %v", errs)
	}
	if lines[2]["format"] != "empty" || lines[2]["findings"].(float64) != 0 || len(lines[2]["errors"].([]any)) != 0 {
		t.Errorf("zero-byte file: %v", lines[2])
	}
}

func TestDryRunPrint(t *testing.T) {
	dir := corpusDir(t)
	nuc := filepath.Join(dir, "nuclei", "nuclei", "dd-many-findings-new.json")
	am := filepath.Join(dir, "amass", "amass", "amass-v3-example-com.jsonl")
	enrich := func(f *finding.Finding) {
		f.Controls = []finding.ControlLink{{Version: "4.0.13", Control: "TVM-07", Rule: "r1", Reason: "because"}}
	}
	for _, explain := range []bool{false, true} {
		failed, lines := dryRun(t, []string{nuc, am}, DryRunOptions{PrintFindings: true, Explain: explain, Enrich: enrich, Kind: finding.KindAuthenticated, Scope: "s1"})
		if failed {
			t.Fatal("failed")
		}
		// 2 findings + summary, 4 assets + summary.
		if len(lines) != 8 {
			t.Fatalf("%d lines, want 8", len(lines))
		}
		for _, l := range lines[:2] {
			for _, k := range []string{"fingerprint", "scope", "kind", "tool", "rule", "title", "location", "severity", "severity_source", "suppressed"} {
				if _, ok := l[k]; !ok {
					t.Errorf("finding line lacks %q: %v", k, l)
				}
			}
			if l["scope"] != "s1" || l["kind"] != "authenticated" {
				t.Errorf("scope/kind not applied: %v", l)
			}
			_, has := l["controls"]
			if has != explain {
				t.Errorf("explain=%v: controls present=%v", explain, has)
			}
		}
		if lines[1]["cvss_vector"] != nil || lines[0]["cvss_vector"] != "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N" {
			t.Errorf("cvss_vector: %v / %v", lines[0]["cvss_vector"], lines[1]["cvss_vector"])
		}
		if explain {
			c := lines[0]["controls"].([]any)[0].(map[string]any)
			if c["id"] != "TVM-07" || c["reason"] != "because" || c["version"] != "4.0.13" || c["rule"] != "r1" {
				t.Errorf("controls %v", c)
			}
		}
		if lines[2]["file"] != nuc {
			t.Errorf("line 3 is not the summary: %v", lines[2])
		}
		if a, ok := lines[3]["asset"].(map[string]any); !ok || a["type"] != "fqdn" {
			t.Errorf("asset line %v", lines[3])
		}
		if lines[7]["assets"].(float64) != 4 {
			t.Errorf("amass summary %v", lines[7])
		}
	}
}

func TestDryRunStdin(t *testing.T) {
	in := strings.NewReader(`{"template-id":"a","matched-at":"https://x.example/"}`)
	failed, lines := dryRun(t, []string{"-"}, DryRunOptions{Stdin: in})
	if failed || len(lines) != 1 || lines[0]["file"] != "-" || lines[0]["findings"].(float64) != 1 {
		t.Errorf("failed=%v lines=%v", failed, lines)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDryRunWriteError(t *testing.T) {
	nuc := filepath.Join(corpusDir(t), "nuclei", "nuclei", "dd-issue-14071.json")
	_, err := DryRun(context.Background(), []string{nuc}, DryRunOptions{PrintFindings: true}, failWriter{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err %v, want the write error", err)
	}
}

// Files above ProgressThreshold get a progress bar on opt.Progress.
func TestDryRunProgress(t *testing.T) {
	rec := []byte(`{"template-id":"a","matched-at":"https://x.example/","response":"` + strings.Repeat("x", 64<<10) + `"}` + "\n")
	path := filepath.Join(t.TempDir(), "big.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n := ProgressThreshold/len(rec) + 2
	for range n {
		if _, err := f.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	failed, lines := dryRun(t, []string{path}, DryRunOptions{Progress: &progress})
	if failed || lines[0]["findings"].(float64) != float64(n) {
		t.Fatalf("failed=%v %v", failed, lines)
	}
	if progress.Len() == 0 {
		t.Error("no progress written for a file above the threshold")
	}
}
