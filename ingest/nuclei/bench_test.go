package nuclei

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

// benchData builds about 8 MiB of realistic nuclei output by repeating
// every record of the shared corpus (requests, responses, curl commands
// and classifications included), as JSONL and as a -json-export array.
func benchData(b *testing.B) (jsonl, export []byte) {
	b.Helper()
	ents, err := os.ReadDir(corpusDir(b))
	if err != nil {
		b.Fatal(err)
	}
	var recs [][]byte
	for _, e := range ents {
		for _, r := range records(b, readCorpus(b, e.Name())) {
			// -json-export records are indented; JSONL has one per line.
			var c bytes.Buffer
			if err := json.Compact(&c, r); err != nil {
				b.Fatal(err)
			}
			recs = append(recs, c.Bytes())
		}
	}
	var l, a bytes.Buffer
	a.WriteString("[\n")
	for n := 0; l.Len() < 8<<20; n++ {
		r := recs[n%len(recs)]
		l.Write(r)
		l.WriteByte('\n')
		if n > 0 {
			a.WriteString(",\n")
		}
		a.Write(r)
	}
	a.WriteString("\n]\n")
	return l.Bytes(), a.Bytes()
}

// BenchmarkParse compares the parser with a baseline that reads the same
// lines into generic maps (what a parser without a typed record does). The
// baseline does no normalisation at all, so it is a lower bound on work.
func BenchmarkParse(b *testing.B) {
	jsonl, export := benchData(b)
	sink := parse.Sink{Finding: func(*finding.Finding) error { return nil }}
	run := func(data []byte) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var st parse.Stats
			for b.Loop() {
				var err error
				if st, err = Parse(context.Background(), bytes.NewReader(data), parse.Options{File: "bench"}, sink); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.Findings), "findings/op")
		}
	}
	b.Run("format=nuclei-jsonl/parser=starpipe", run(jsonl))
	b.Run("format=nuclei-export/parser=starpipe", run(export))
	b.Run("format=nuclei-jsonl/parser=baseline-map", func(b *testing.B) {
		b.SetBytes(int64(len(jsonl)))
		b.ReportAllocs()
		for b.Loop() {
			sc := bufio.NewScanner(bytes.NewReader(jsonl))
			sc.Buffer(make([]byte, 64<<10), 64<<20)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
