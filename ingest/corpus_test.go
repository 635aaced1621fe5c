package ingest

import (
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strconv"
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

type manifestRow struct {
	path, format, tool, expected, notes string
}

func readManifest(t testing.TB) []manifestRow {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir(t), "MANIFEST.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"path", "format", "tool", "expected_findings", "notes"} {
		if _, ok := col[h]; !ok {
			t.Fatalf("MANIFEST.csv has no %s column", h)
		}
	}
	var rows []manifestRow
	for _, r := range recs[1:] {
		rows = append(rows, manifestRow{r[col["path"]], r[col["format"]], r[col["tool"]], r[col["expected_findings"]], r[col["notes"]]})
	}
	return rows
}

// sarifRejected lists SARIF files that MANIFEST counts but ingest/sarif
// rejects on purpose; they must fail with a *parse.Error, or, should the
// SARIF parser start reading them, give the MANIFEST count.
var sarifRejected = map[string]string{
	"sarif/edge-cases/sarif-v1.0.0-comprehensive.sarif": "SARIF 1.0.0 is not read by ingest/sarif",
}

// Every corpus file goes through ParseFile with format detection, and the
// count under this package's rules equals MANIFEST's expected_findings:
// nuclei findings, Amass FQDN assets, SARIF findings plus not-findings.
// Files MANIFEST marks invalid, and native JSON reports, are rejected with
// a *parse.Error that names the file.
func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	rows := readManifest(t)
	if len(rows) < 100 {
		t.Fatalf("MANIFEST has %d rows; corpus incomplete?", len(rows))
	}
	seen := map[string]int{}
	for _, row := range rows {
		t.Run(row.path, func(t *testing.T) {
			path := filepath.Join(dir, filepath.FromSlash(row.path))
			var fqdn, n int
			format, st, err := ParseFile(context.Background(), path, FormatAuto, parse.Options{}, parse.Sink{
				Finding: func(*finding.Finding) error { n++; return nil },
				Asset: func(a *finding.Asset) error {
					if a.Type == finding.AssetFQDN {
						fqdn++
					}
					return nil
				},
			})
			seen[row.format]++

			rejected := func(why string) {
				t.Helper()
				var pe *parse.Error
				if !errors.As(err, &pe) {
					t.Fatalf("%s: error %v, want a *parse.Error", why, err)
				}
				if pe.File != path {
					t.Errorf("error names %q, want %q: %v", pe.File, path, err)
				}
			}

			switch {
			case row.format == "json":
				// Native reports are rejected; content that is really
				// SARIF or nuclei would be parsed (none in the corpus).
				if err == nil {
					t.Fatalf("native %s report accepted as %s", row.tool, format)
				}
				rejected("native " + row.tool)
				t.Logf("rejected: %v", err)
				return
			case row.expected == "invalid":
				rejected("invalid file")
				return
			case row.expected == "":
				// MANIFEST cannot count it (SQLite without an assets
				// table, SARIF results that are not an array): reject.
				rejected("uncountable file")
				return
			}
			if why, ok := sarifRejected[row.path]; ok && err != nil {
				rejected(why)
				return
			}
			if err != nil {
				t.Fatalf("format %s: %v", format, err)
			}
			if n != st.Findings {
				t.Errorf("sink saw %d findings, Stats.Findings = %d", n, st.Findings)
			}
			want, perr := strconv.Atoi(row.expected)
			if perr != nil {
				t.Fatalf("bad expected_findings %q", row.expected)
			}
			var got int
			switch row.format {
			case "nuclei":
				got = st.Findings
				if format != FormatNuclei && !(format == FormatEmpty && want == 0) {
					t.Errorf("detected %s, want nuclei", format)
				}
			case "amass":
				got = fqdn
				if format != FormatAmass && !(format == FormatEmpty && want == 0) {
					t.Errorf("detected %s, want amass", format)
				}
			case "sarif":
				got = st.Findings + st.NotFindings
				if format != FormatSARIF {
					t.Errorf("detected %s, want sarif", format)
				}
			default:
				t.Fatalf("unknown corpus format %q", row.format)
			}
			if got != want {
				t.Errorf("%s count %d, MANIFEST expects %d (%s)", row.format, got, want, row.notes)
			}
		})
	}
	for _, f := range []string{"sarif", "nuclei", "amass", "json"} {
		if seen[f] == 0 {
			t.Errorf("no %s files in the corpus", f)
		}
	}
}
