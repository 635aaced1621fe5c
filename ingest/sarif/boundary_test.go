package sarif

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// trickleReader returns at most a few bytes per Read and still seeks, so
// every token straddles window refills somewhere.
type trickleReader struct {
	r *bytes.Reader
	n int
}

func (t *trickleReader) Read(p []byte) (int, error) {
	t.n = t.n%7 + 1
	return t.r.Read(p[:min(len(p), t.n)])
}

func (t *trickleReader) Seek(off int64, whence int) (int64, error) { return t.r.Seek(off, whence) }

// TestTinyReads: reading a few bytes at a time gives exactly the findings a
// whole-buffer read gives, on the seeking and on the streaming path.
func TestTinyReads(t *testing.T) {
	for _, e := range loadManifest(t) {
		if _, err := strconv.Atoi(e.expected); err != nil {
			continue
		}
		if _, odd := corpusOverrides[e.path]; odd {
			continue
		}
		path := filepath.Join(corpusDir(t), e.path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 300<<10 {
			continue // keep the test fast; large files add no new shapes
		}
		t.Run(e.path, func(t *testing.T) {
			want := findingSet(t, data, path)
			for name, r := range map[string]io.Reader{
				"seek":   &trickleReader{r: bytes.NewReader(data)},
				"stream": nonSeeker{&trickleReader{r: bytes.NewReader(data)}},
			} {
				got, _, err := collect(r, path)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %d findings, want %d", name, len(got), len(want))
				}
				if name == "seek" {
					var lines []string
					for _, f := range got {
						lines = append(lines, mustJSON(f))
					}
					slices.Sort(lines)
					if !slices.Equal(lines, want) {
						t.Fatalf("%s: findings differ from a whole read", name)
					}
				}
			}
		})
	}
}
