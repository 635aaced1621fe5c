package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScanningConfig(t *testing.T) {
	dir := t.TempDir()
	good := `
analyzers:
  gosec:
    command: ["gosec", "-fmt", "sarif", "-no-fail", "./..."]
    timeout: 15m
    env: {GOFLAGS: "-mod=mod"}
scan:
  allow_networks: [10.20.0.0/16, "fd12::1"]
amass:
  wordlist_dir: ` + dir + "\n"
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Analyzers["gosec"]; a.Timeout != 15*time.Minute || len(a.Command) != 5 || a.EnvList()[0] != "GOFLAGS=-mod=mod" {
		t.Errorf("gosec = %+v", a)
	}
	np, err := cfg.Scan.NetworkPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for addr, ok := range map[string]bool{"10.20.1.1": true, "10.21.1.1": false, "8.8.8.8": true, "169.254.169.254": false, "fd12::1": true} {
		if err := np.CheckAddr(netip.MustParseAddr(addr)); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed=%v", addr, err, ok)
		}
	}
}

func TestScanningConfigRejects(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no command", "analyzers:\n  x: {timeout: 1m}\n", "analyzers.x.command: required"},
		{"bad name", "analyzers:\n  X Y: {command: [a]}\n", "analyzers.X Y"},
		{"PATH override", "analyzers:\n  x: {command: [a], env: {PATH: /tmp}}\n", "PATH is set by the scanner"},
		{"output outside", "analyzers:\n  x: {command: [a], output_file: ../o.sarif}\n", "analyzers.x.output_file"},
		{"bad cidr", "scan:\n  allow_networks: [10.0.0.1/8]\n", "scan.allow_networks"},
		{"nowhere", "scan:\n  allow_public: false\n", "scan.allow_public"},
		{"missing wordlist dir", "amass:\n  wordlist_dir: /nonexistent/lists\n", "amass.wordlist_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
