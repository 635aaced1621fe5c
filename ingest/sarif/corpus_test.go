package sarif

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/internal/corpus"
)

// corpusDir is the shared scanner-output corpus (see internal/corpus).
func corpusDir(t testing.TB) string {
	t.Helper()
	return corpus.Dir(t)
}

type corpusEntry struct {
	path     string // relative to corpusDir
	expected string // expected_findings: a number, "invalid" or ""
	notes    string
}

func loadManifest(t testing.TB) []corpusEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir(t), "MANIFEST.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var out []corpusEntry
	for _, r := range rows[1:] {
		if r[col["format"]] != "sarif" {
			continue
		}
		out = append(out, corpusEntry{path: r[col["path"]], expected: r[col["expected_findings"]], notes: r[col["notes"]]})
	}
	if len(out) == 0 {
		t.Fatal("no SARIF entries in MANIFEST.csv")
	}
	return out
}

// parseFile parses a corpus file through an *os.File (the seeking path).
func parseFile(t testing.TB, path string) ([]*finding.Finding, parse.Stats, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return collect(f, path)
}

func collect(r io.Reader, name string) ([]*finding.Finding, parse.Stats, error) {
	var got []*finding.Finding
	st, err := Parse(context.Background(), r, parse.Options{File: name}, parse.Sink{
		Finding: func(f *finding.Finding) error { got = append(got, f); return nil },
	})
	return got, st, err
}

// nonSeeker hides io.Seeker so the streaming/buffering path is exercised.
type nonSeeker struct{ r io.Reader }

func (n nonSeeker) Read(p []byte) (int, error) { return n.r.Read(p) }

// Decisions for corpus files whose manifest count is not what the reader
// gives, with the reason.
var corpusOverrides = map[string]string{
	// SARIF 1.0.0 has a different shape; it is rejected with a clear error
	// rather than half-read.
	"sarif/edge-cases/sarif-v1.0.0-comprehensive.sarif": "error:unsupported SARIF version 1.0.0",
	// "results": 42. The manifest leaves the count empty; the reader fails
	// naming run.results.
	"sarif/edge-cases/results-not-array.sarif": "error:run.results is not an array",
}

func TestCorpusCounts(t *testing.T) {
	for _, e := range loadManifest(t) {
		t.Run(e.path, func(t *testing.T) {
			path := filepath.Join(corpusDir(t), e.path)
			got, st, err := parseFile(t, path)
			want := e.expected
			if o, ok := corpusOverrides[e.path]; ok {
				want = o
			}
			switch {
			case want == "invalid" || strings.HasPrefix(want, "error:"):
				var pe *parse.Error
				if !errors.As(err, &pe) {
					t.Fatalf("want *parse.Error, got %v (stats %+v)", err, st)
				}
				if pe.File != path || (pe.Line <= 0 && pe.Offset < 0) {
					t.Fatalf("error does not name the file and a place: %+v", pe)
				}
				if !errors.Is(err, parse.ErrFormat) {
					t.Fatalf("error does not wrap ErrFormat: %v", err)
				}
				if msg, ok := strings.CutPrefix(want, "error:"); ok && !strings.Contains(err.Error(), msg) {
					t.Fatalf("error %q does not mention %q", err, msg)
				}
				t.Logf("error as expected: %v", err)
			case want == "":
				t.Fatalf("no expected count for %s: add a decision to corpusOverrides", e.path)
			default:
				n, _ := strconv.Atoi(want)
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if st.Findings+st.NotFindings != n {
					t.Fatalf("findings %d + not-findings %d != expected %d", st.Findings, st.NotFindings, n)
				}
				if len(got) != st.Findings {
					t.Fatalf("emitted %d findings, stats say %d", len(got), st.Findings)
				}
				checkInvariants(t, got)
				// The non-seeking path must count the same.
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got2, st2, err := collect(nonSeeker{bytes.NewReader(data)}, path)
				if err != nil || !reflect.DeepEqual(st2, st) || len(got2) != len(got) {
					t.Fatalf("non-seeking reader: stats %+v err %v, seeking: %+v", st2, err, st)
				}
			}
		})
	}
}

// checkInvariants asserts what every finding must satisfy.
func checkInvariants(t testing.TB, got []*finding.Finding) {
	t.Helper()
	for _, f := range got {
		if len(f.Fingerprint) != 64 {
			t.Fatalf("fingerprint %q", f.Fingerprint)
		}
		if f.FingerprintSource != "computed" && !strings.HasPrefix(f.FingerprintSource, "tool:") {
			t.Fatalf("fingerprint source %q", f.FingerprintSource)
		}
		if f.Kind != finding.KindCode {
			t.Fatalf("kind %q", f.Kind)
		}
		for i := 1; i < len(f.CWE); i++ {
			if f.CWE[i] <= f.CWE[i-1] {
				t.Fatalf("CWE not sorted unique: %v", f.CWE)
			}
		}
		for i := 1; i < len(f.CVE); i++ {
			if f.CVE[i] <= f.CVE[i-1] {
				t.Fatalf("CVE not sorted unique: %v", f.CVE)
			}
		}
		for _, c := range f.CVE {
			if !strings.HasPrefix(c, "CVE-") {
				t.Fatalf("CVE %q", c)
			}
		}
		switch f.Signals.Level {
		case "error", "warning", "note", "none":
		default:
			t.Logf("%s: unusual level %q", f.RuleID, f.Signals.Level)
		}
	}
}
