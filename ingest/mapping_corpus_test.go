package ingest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scoring"
)

// TestCorpusFindingsMapToControls checks the promise of the default rules:
// every finding the parsers read from the real corpus, scored as the
// pipeline scores it, evidences at least one TVM, AIS or IVS control under
// both CCM versions.
func TestCorpusFindingsMapToControls(t *testing.T) {
	m, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	dir := corpusDir(t)
	total := 0
	for _, row := range readManifest(t) {
		if row.format != "sarif" && row.format != "nuclei" {
			continue
		}
		var kinds []finding.ScanKind
		if row.format == "sarif" {
			kinds = []finding.ScanKind{finding.KindCode}
		} else {
			kinds = []finding.ScanKind{finding.KindExternal, finding.KindAuthenticated}
		}
		for _, kind := range kinds {
			sink := parse.Sink{
				Finding: func(f *finding.Finding) error {
					total++
					scoring.Apply(f, nil)
					byVersion := map[string]bool{}
					for _, l := range m.Map(f) {
						if d, _, _ := strings.Cut(l.Control, "-"); d == "TVM" || d == "AIS" || d == "IVS" || d == "I&S" {
							byVersion[l.Version] = true
						}
					}
					if !byVersion["4.0.13"] || !byVersion["4.1"] {
						t.Errorf("%s (%s): finding %s/%s maps to no TVM, AIS or IVS control in both versions: %v",
							row.path, kind, f.Tool, f.RuleID, m.Map(f))
					}
					return nil
				},
				Asset: func(*finding.Asset) error { return nil },
			}
			// Files the parsers reject are covered by the corpus count test.
			_, _, _ = ParseFile(context.Background(), filepath.Join(dir, row.path), FormatAuto, parse.Options{Kind: kind}, sink)
		}
	}
	if total < 1000 {
		t.Fatalf("only %d findings read from the corpus; is it complete?", total)
	}
	t.Logf("%d findings checked", total)
}
