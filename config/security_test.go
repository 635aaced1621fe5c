package config

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGoodTestdataLoads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "good", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no good testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadTestdataRejected(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wantLine(t, f)
			_, err := Load(f)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load = %v, want an error containing %q", err, want)
			}
		})
	}
}

// wantLine reads the "# want: ..." first line of a bad testdata file.
func wantLine(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatalf("%s is empty", path)
	}
	want, ok := strings.CutPrefix(sc.Text(), "# want: ")
	if !ok || want == "" {
		t.Fatalf("%s: first line must be '# want: <error substring>'", path)
	}
	return want
}

func TestSecurityKeysDecode(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "good", "kafka-scram-tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := KafkaTLSConfig{
		Enabled: true, CAFile: "/etc/starpipe/kafka-ca.pem",
		CertFile: "/etc/starpipe/kafka-client.pem", KeyFile: "/etc/starpipe/kafka-client-key.pem",
		ServerName: "kafka.internal",
	}
	if cfg.Kafka.TLS != want {
		t.Errorf("kafka.tls = %+v, want %+v", cfg.Kafka.TLS, want)
	}
	if s := cfg.Kafka.SASL; s.Mechanism != SASLScramSHA512 || s.Username != "starpipe" || s.PasswordFile != "/run/secrets/kafka-password" {
		t.Errorf("kafka.sasl = %+v", s)
	}

	cfg, err = Load(filepath.Join("testdata", "good", "http-tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.HTTP; !h.TLS.Enabled() || h.BodyReadTimeout != 30*time.Second || h.IdleTimeout != 90*time.Second || h.ReadHeaderTimeout != 5*time.Second {
		t.Errorf("http = %+v", h)
	}
}

func TestHTTPDefaultsSuitLargeUploads(t *testing.T) {
	h := Default().HTTP
	// A multi-GB upload must not be cut off by a whole-request deadline;
	// a stalled one is ended by the body read timeout instead.
	if h.ReadTimeout != 0 || h.WriteTimeout != 0 {
		t.Errorf("read/write timeouts %s/%s would cut off long uploads", h.ReadTimeout, h.WriteTimeout)
	}
	if h.BodyReadTimeout <= 0 || h.ReadHeaderTimeout <= 0 || h.IdleTimeout <= 0 {
		t.Errorf("stall bounds missing: %+v", h)
	}
	if h.TLS.Enabled() {
		t.Error("TLS on by default without files")
	}
}

func TestSASLPasswordSources(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := KafkaSASLConfig{Mechanism: SASLScramSHA256, Username: "u"}
	for _, tc := range []struct {
		name    string
		sasl    KafkaSASLConfig
		env     map[string]string
		want    string
		wantErr string
	}{
		{"inline", withPW(base, "inline", ""), nil, "inline", ""},
		{"file, newline dropped", withPW(base, "", pwFile), nil, "from-file", ""},
		{"env wins over file", withPW(base, "", pwFile), map[string]string{"STARPIPE_KAFKA_SASL_PASSWORD": "from-env"}, "from-env", ""},
		{"env wins over inline", withPW(base, "inline", ""), map[string]string{"STARPIPE_KAFKA_SASL_PASSWORD": "from-env"}, "from-env", ""},
		{"missing file", withPW(base, "", filepath.Join(dir, "nope")), nil, "", "password_file"},
		{"empty file", withPW(base, "", empty), nil, "", "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Kafka.SASL = tc.sasl
			if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			got, err := cfg.Kafka.SASL.ResolvePassword()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ResolvePassword = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func withPW(s KafkaSASLConfig, pw, file string) KafkaSASLConfig {
	s.Password, s.PasswordFile = Secret(pw), file
	return s
}

func TestPasswordNeverPrinted(t *testing.T) {
	cfg := Default()
	cfg.Kafka.SASL = KafkaSASLConfig{Mechanism: SASLPlain, Username: "u", Password: "hunter2"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "kafka", cfg.Kafka, "password", cfg.Kafka.SASL.Password)
	for _, out := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String(),
	} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("password printed: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprintf("%v", cfg.Kafka.SASL), "[redacted]") {
		t.Error("password not shown as redacted")
	}
}
