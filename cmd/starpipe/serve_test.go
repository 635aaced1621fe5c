package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(serveChildVar) != "" {
		os.Exit(serveChild())
	}
	storetest.Main(m)
}

// serveChildVar makes the test binary act as `starpipe serve` with the
// arguments in it, so that the test can signal a real process.
const serveChildVar = "STARPIPE_TEST_SERVE_CONFIG"

// serveChild is main for `serve -c $STARPIPE_TEST_SERVE_CONFIG`.
func serveChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"serve", "-c", os.Getenv(serveChildVar)})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "starpipe:", err)
		return 1
	}
	return 0
}

// TestServeExitsZeroOnSIGTERM runs `starpipe serve` as a process against
// the test PostgreSQL and an embedded broker, waits until it is ready and
// sends SIGTERM: it must exit 0.
func TestServeExitsZeroOnSIGTERM(t *testing.T) {
	_, dbURL := storetest.New(t)
	broker, err := bus.StartEmbedded(t.Context(), bus.EmbeddedConfig{Partitions: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "starpipe.yaml")
	cfg := fmt.Sprintf("state_dir: %q\nlisten: %q\nshutdown_timeout: 20s\nshutdown_delay: 0s\nlog: {level: warn, format: text}\ndatabase: {url: %q}\nkafka: {brokers: [%q], partitions: 2}\nroles: [api, ingest, relay]\n",
		filepath.Join(dir, "state"), addr, dbURL, broker.Addrs()[0])
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveChildVar+"="+cfgFile, "STARPIPE_MASTER_KEY=")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("serve exited before it was ready: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready after 2 minutes")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("serve exited with status %d after SIGTERM, want 0", ee.ExitCode())
		}
		t.Fatal(err)
	}
}
