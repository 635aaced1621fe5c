package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode checks that no input panics the decoder and that whatever it
// accepts is valid and survives the API's JSON round trip.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"good.yaml", "bad.yaml", "bad-keys.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("schedules:\n  - {name: a, kind: external, targets: {domains: [a.example]}, cadence: '@daily'}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ss, err := Decode(bytes.NewReader(in), "fuzz.yaml", testOptions)
		if err != nil {
			_ = err.Error() // formatting every error must not panic either
			return
		}
		for _, s := range ss {
			if err := s.Validate(testOptions); err != nil {
				t.Fatalf("Decode accepted an invalid schedule: %v", err)
			}
			if _, err := s.CadenceOf(); err != nil {
				t.Fatalf("Decode accepted a schedule whose cadence fails: %v", err)
			}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeJSON(bytes.NewReader(b), testOptions); err != nil {
				t.Fatalf("JSON round trip of %s: %v", b, err)
			}
		}
	})
}
