package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/starpipe/starpipe/finding"
)

// FuzzLoadBytes feeds arbitrary rules files to the loader: it must never
// panic, every refusal must be a *Error (file:line: reason) or a join of
// them, and a file it accepts must map a finding without panicking.
func FuzzLoadBytes(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../configs/mapping.yaml"} {
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("rules: []\n"))
	cats, err := DefaultCatalogs()
	if err != nil {
		f.Fatal(err)
	}
	sample := &finding.Finding{Kind: finding.KindCode, Tool: "semgrep", RuleID: "x", CWE: []int{79}, Tags: []string{"security"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadBytes("fuzz.yaml", data, cats, false)
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("refusal is not a *mapping.Error: %T %v", err, err)
			}
			return
		}
		_ = m.Map(sample)
	})
}
