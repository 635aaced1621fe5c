package sarif

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the parser's output")

// goldenInputs are a representative subset: each line of the golden file is
// one finding.Finding as JSON, in emission order.
var goldenInputs = []string{
	"corpus:sarif/codeql/codeql-go.sarif.json",                             // partialFingerprints, security-severity, CWE tags
	"corpus:sarif/semgrep/semgrep-ci-autofix.sarif",                        // suppressions, results before tool
	"corpus:sarif/gosec/gosec.sarif",                                       // CWE taxonomy via relationships, keys sorted
	"corpus:sarif/checkmarx-one/checkmarx-multi-run.sarif",                 // two runs, two tools
	"corpus:sarif/spec-examples/appendix-k2-recommended-with-source.sarif", // message arguments
	"corpus:sarif/sarif-tutorials/suppressions-kinds.sarif",                // suppression statuses
	"corpus:sarif/zap/zap.sarif.json",                                      // URL locations
	"testdata/extensions-rules.sarif",                                      // rules in tool.extensions, message ids, base chains
}

// goldenPath resolves an input (a corpus one needs the corpus, so it takes
// the subtest's t) and names its golden file.
func goldenPath(t testing.TB, in string) (src, golden string) {
	t.Helper()
	if rel, ok := strings.CutPrefix(in, "corpus:"); ok {
		src = filepath.Join(corpusDir(t), rel)
	} else {
		src = in
	}
	return src, filepath.Join("testdata", "golden", strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))+".jsonl")
}

func TestGolden(t *testing.T) {
	for _, in := range goldenInputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, golden := goldenPath(t, in)
			got, _, err := parseFile(t, src)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			for _, f := range got {
				if err := enc.Encode(f); err != nil {
					t.Fatal(err)
				}
			}
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				gl, wl := strings.Split(buf.String(), "\n"), strings.Split(string(want), "\n")
				for i := range max(len(gl), len(wl)) {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Fatalf("%s line %d differs:\n got: %s\nwant: %s", golden, i+1, g, w)
					}
				}
			}
		})
	}
}
