package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: arbitrary configuration files never panic the strict decoder
// or the validator.
func FuzzDecode(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "configs", "starpipe.example.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("kafka:\n  brokers: [a, b]\nroles: [api]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := Decode(data, &cfg); err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
