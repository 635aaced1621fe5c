package sarif

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// shuffledJSON re-encodes a decoded JSON value with every object's keys in
// random order, and every run's results array shuffled.
func shuffledJSON(buf *bytes.Buffer, v any, rng *rand.Rand, key string) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			shuffledJSON(buf, x[k], rng, k)
		}
		buf.WriteByte('}')
	case []any:
		if key == "results" {
			x = slices.Clone(x)
			rng.Shuffle(len(x), func(i, j int) { x[i], x[j] = x[j], x[i] })
		}
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			shuffledJSON(buf, e, rng, "")
		}
		buf.WriteByte(']')
	default:
		b, _ := json.Marshal(x)
		buf.Write(b)
	}
}

// findingSet is the parser's output as sorted JSON lines: equal sets mean
// the same findings regardless of emission order.
func findingSet(t *testing.T, data []byte, name string) []string {
	t.Helper()
	got, _, err := collect(bytes.NewReader(data), name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(got))
	for i, f := range got {
		b, _ := json.Marshal(f)
		out[i] = string(b)
	}
	slices.Sort(out)
	return out
}

// TestDeterminism: shuffling object keys and result order changes neither
// the fingerprints nor anything else in the findings.
func TestDeterminism(t *testing.T) {
	inputs := []string{"testdata/extensions-rules.sarif"}
	for _, e := range loadManifest(t) {
		if _, odd := corpusOverrides[e.path]; odd {
			continue
		}
		if n, err := strconv.Atoi(e.expected); err == nil && n > 0 {
			inputs = append(inputs, filepath.Join(corpusDir(t), e.path))
		}
	}
	for _, path := range inputs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
			want := findingSet(t, data, path)
			var v any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			for seed := range uint64(3) {
				var buf bytes.Buffer
				shuffledJSON(&buf, v, rand.New(rand.NewPCG(seed, 7)), "")
				got := findingSet(t, buf.Bytes(), path)
				if !slices.Equal(got, want) {
					for i := range min(len(got), len(want)) {
						if got[i] != want[i] {
							t.Fatalf("seed %d: findings differ after shuffling:\n got: %s\nwant: %s", seed, got[i], want[i])
						}
					}
					t.Fatalf("seed %d: %d findings after shuffling, want %d", seed, len(got), len(want))
				}
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
