package sarif

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

// FuzzParse: no panic, every error is a *parse.Error naming the file, and
// the counts agree with what was emitted. Seeded from the small corpus files
// and testdata.
func FuzzParse(f *testing.F) {
	for _, e := range loadManifest(f) {
		data, err := os.ReadFile(filepath.Join(corpusDir(f), e.path))
		if err != nil {
			f.Fatal(err)
		}
		if len(data) <= 16<<10 {
			f.Add(data)
		}
	}
	extra, _ := filepath.Glob(filepath.Join("testdata", "*.sarif"))
	for _, p := range extra {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	lim := parse.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxString: 64 << 10, MaxResults: 10000}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []interface {
			Read([]byte) (int, error)
		}{bytes.NewReader(data), nonSeeker{bytes.NewReader(data)}} {
			n := 0
			st, err := Parse(context.Background(), r, parse.Options{File: "fuzz", Limits: lim}, parse.Sink{
				Finding: func(f *finding.Finding) error {
					if len(f.Fingerprint) != 64 {
						t.Fatalf("fingerprint %q", f.Fingerprint)
					}
					n++
					return nil
				},
			})
			if err != nil {
				var pe *parse.Error
				if !errors.As(err, &pe) || pe.File != "fuzz" {
					t.Fatalf("error %T %v is not a *parse.Error naming the file", err, err)
				}
				if !errors.Is(err, parse.ErrFormat) && !errors.Is(err, parse.ErrLimit) {
					t.Fatalf("error %v wraps neither ErrFormat nor ErrLimit", err)
				}
				continue
			}
			if n != st.Findings || st.Suppressed > st.Findings {
				t.Fatalf("emitted %d, stats %+v", n, st)
			}
		}
		Sniff(data)
	})
}
