package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "configs", "starpipe.example.yaml"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.ShutdownTimeout != 10*time.Second {
		t.Errorf("shutdown_timeout = %v", cfg.ShutdownTimeout)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "listne: 1\n", "field listne not found"},
		{"unknown nested", "kafka:\n  brokerz: [a]\n", "line 2"},
		{"bad level", "log:\n  level: loud\n", "log.level"},
		{"bad compression", "kafka:\n  compression: brotli\n", "kafka.compression"},
		{"bad role", "roles: [api, chef]\n", "unknown role"},
		{"bad listen", "listen: nope\n", "listen"},
		{"bad ccm", "mapping:\n  ccm_version: '5'\n", "mapping.ccm_version"},
		{"huge batch", "ingest:\n  batch_size: 100000\n", "ingest.batch_size"},
		{"no relay attempts", "relay:\n  max_attempts: 0\n", "relay.max_attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg := Default()
	env := map[string]string{
		"STARPIPE_DATABASE_URL":  "postgres://x@127.0.0.1:5/db",
		"STARPIPE_KAFKA_BROKERS": "127.0.0.1:9092, 127.0.0.1:9093",
		"STARPIPE_ROLES":         "api,ingest",
	}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Database.URL != env["STARPIPE_DATABASE_URL"] {
		t.Errorf("database url = %q", cfg.Database.URL)
	}
	if len(cfg.Kafka.Brokers) != 2 || cfg.Kafka.Brokers[1] != "127.0.0.1:9093" {
		t.Errorf("brokers = %q", cfg.Kafka.Brokers)
	}
	if cfg.HasRole(RoleScheduler) || !cfg.HasRole(RoleIngest) {
		t.Errorf("roles = %q", cfg.Roles)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != Default().Listen {
		t.Errorf("listen = %q", cfg.Listen)
	}
}

// TestTestdata loads every file under testdata/good (each must load) and
// testdata/bad (each must fail with the text its "# want:" line names).
func TestTestdata(t *testing.T) {
	good, err := filepath.Glob(filepath.Join("testdata", "good", "*.yaml"))
	if err != nil || len(good) == 0 {
		t.Fatalf("no good testdata: %v", err)
	}
	for _, p := range good {
		t.Run(p, func(t *testing.T) {
			if _, err := Load(p); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
	bad, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(bad) == 0 {
		t.Fatalf("no bad testdata: %v", err)
	}
	for _, p := range bad {
		t.Run(p, func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s does not start with a \"# want: \" line", p)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load = %v, want an error containing %q", err, want)
			}
		})
	}
}

func TestRolesAndDelayDefaults(t *testing.T) {
	cfg := Default()
	for _, r := range AllRoles() {
		if !cfg.HasRole(r) {
			t.Errorf("default roles %q lack %q", cfg.Roles, r)
		}
	}
	if cfg.ShutdownDelay <= 0 || cfg.ShutdownDelay >= cfg.ShutdownTimeout {
		t.Errorf("default shutdown_delay %v not within (0, %v)", cfg.ShutdownDelay, cfg.ShutdownTimeout)
	}
	cfg.ShutdownDelay = 0
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("roles: [relay]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOver(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ShutdownDelay != 0 || !slices.Equal(got.Roles, []string{RoleRelay}) {
		t.Errorf("LoadOver: delay %v roles %q", got.ShutdownDelay, got.Roles)
	}
	if !slices.Equal(cfg.Roles, AllRoles()) {
		t.Errorf("LoadOver changed the defaults' roles to %q", cfg.Roles)
	}
}
