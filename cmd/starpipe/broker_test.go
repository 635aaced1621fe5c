package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/internal/tlsconfig/tlstest"
)

func TestBrokerFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t)
	pair := ca.Issue(t, "", "broker", "127.0.0.1")
	ok := brokerFlags{
		data: filepath.Join(dir, "kafka"), listen: "127.0.0.1:9092", partitions: 6,
		retention: time.Hour, retentionInterval: time.Minute, logLevel: "info", logFormat: "auto",
	}
	with := func(f func(*brokerFlags)) brokerFlags { c := ok; f(&c); return c }
	for _, tc := range []struct {
		name  string
		fl    brokerFlags
		env   map[string]string
		want  string // error substring; empty: valid
		check func(t *testing.T, cfg bus.EmbeddedConfig)
	}{
		{"defaults on loopback", ok, nil, "", func(t *testing.T, cfg bus.EmbeddedConfig) {
			if cfg.Listen != "127.0.0.1:9092" || cfg.Retention != time.Hour || cfg.Users != nil || cfg.TLS != nil {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"no data", with(func(f *brokerFlags) { f.data = "" }), nil, "--data is required", nil},
		{"bad listen", with(func(f *brokerFlags) { f.listen = "9092" }), nil, "--listen", nil},
		{"zero retention", with(func(f *brokerFlags) { f.retention = 0 }), nil, "--retention", nil},
		{"zero partitions", with(func(f *brokerFlags) { f.partitions = 0 }), nil, "--partitions", nil},
		{"remote without user", with(func(f *brokerFlags) { f.listen = "0.0.0.0:9092"; f.advertise = "kafka.lan" }), nil, "not a loopback address", nil},
		{"remote insecure", with(func(f *brokerFlags) { f.listen = "0.0.0.0:9092"; f.advertise = "kafka.lan"; f.insecure = true }), nil, "", nil},
		{"remote with user, env password", with(func(f *brokerFlags) { f.listen = "0.0.0.0:9092"; f.user = "ingest" }),
			map[string]string{brokerPasswordEnv: "env-pw"}, "", func(t *testing.T, cfg bus.EmbeddedConfig) {
				if cfg.Users["ingest"] != "env-pw" {
					t.Errorf("users = %v", cfg.Users)
				}
			}},
		{"password file wins", with(func(f *brokerFlags) { f.user = "ingest"; f.passwordFile = pwFile }),
			map[string]string{brokerPasswordEnv: "env-pw"}, "", func(t *testing.T, cfg bus.EmbeddedConfig) {
				if cfg.Users["ingest"] != "file-pw" {
					t.Errorf("users = %v", cfg.Users)
				}
			}},
		{"user without password", with(func(f *brokerFlags) { f.user = "ingest" }), nil, brokerPasswordEnv, nil},
		{"password file without user", with(func(f *brokerFlags) { f.passwordFile = pwFile }), nil, "needs --user", nil},
		{"tls", with(func(f *brokerFlags) { f.tlsCert, f.tlsKey = pair.CertFile, pair.KeyFile }), nil, "", func(t *testing.T, cfg bus.EmbeddedConfig) {
			if cfg.TLS == nil {
				t.Error("no TLS")
			}
		}},
		{"tls cert only", with(func(f *brokerFlags) { f.tlsCert = pair.CertFile }), nil, "go together", nil},
		{"tls missing files", with(func(f *brokerFlags) { f.tlsCert, f.tlsKey = pwFile+".no", pwFile+".no" }), nil, "--tls-cert", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.fl.embeddedConfig(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

// TestBrokerCommandServesAndStops runs `starpipe broker` in-process on a
// free loopback port, has a producer and a consumer use it, then cancels
// the context as SIGTERM does in main and expects a clean return.
func TestBrokerCommandServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	data := filepath.Join(t.TempDir(), "kafka")
	outR, outW := io.Pipe()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"broker", "--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn", "--retention", "1h"})
	cmd.SetOut(outW)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(runCtx)
		outW.Close()
		done <- err
	}()

	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatalf("no brokers line: %v (command: %v)", err, <-done)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "brokers: ")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	go io.Copy(io.Discard, outR)

	cfg := bus.Config{Brokers: []string{addr}}.WithDefaults()
	p := bus.NewProducer(cfg, nil)
	if err := p.Publish(ctx, bus.TopicScanResults, bus.Message{Key: []byte("run-1"), Value: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c := bus.NewConsumer(cfg, "test", bus.TopicScanResults, nil)
	m, err := c.Fetch(ctx)
	if err != nil || string(m.Value) != "hello" {
		t.Fatalf("Fetch = %q, %v", m.Value, err)
	}
	c.Close()

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("broker returned %v on shutdown", err)
		}
	case <-ctx.Done():
		t.Fatal("broker did not stop")
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", fi, err)
	}

	// The clean stop flushed the record to --data.
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedConfig{DataDir: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c = bus.NewConsumer(bus.Config{Brokers: e.Addrs()}.WithDefaults(), "after-restart", bus.TopicScanResults, nil)
	defer c.Close()
	if m, err := c.Fetch(ctx); err != nil || string(m.Value) != "hello" {
		t.Fatalf("after restart Fetch = %q, %v", m.Value, err)
	}
}
