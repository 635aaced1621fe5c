package pgcluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// stateDir makes a state directory the server user can reach even when the
// test runs as root: t.TempDir is 0700 root, which would force relocation to
// /var/lib (tested separately).
func stateDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startT(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	return c
}

func exec1(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, url, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestLifecycle covers one initdb: start, a second manager refused, stop,
// idempotent stop, restart with the data and port kept, and Detach followed
// by StopDir. It is one test because initdb dominates the cost.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	dir := stateDir(t)
	cfg := Config{Dir: dir, DisableFsync: true, Logger: testLogger(t)}
	c := startT(t, cfg)
	if !strings.HasPrefix(c.URL(), "postgres://starpipe:") || !strings.Contains(c.URL(), "@127.0.0.1:") || !strings.HasSuffix(c.URL(), "/starpipe?sslmode=disable") {
		t.Fatalf("URL = %q", c.URL())
	}
	exec1(t, c.URL(), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")

	t.Run("second manager refused", func(t *testing.T) {
		_, err := Start(t.Context(), cfg)
		var inUse *InUseError
		if !errors.As(err, &inUse) {
			t.Fatalf("second Start: got %v, want *InUseError", err)
		}
		want := "state directory " + dir + " is in use by another starpipe (pid "
		if !strings.Contains(err.Error(), want) || inUse.PID != os.Getpid() {
			t.Fatalf("second Start error = %q, want it to contain %q and pid %d", err, want, os.Getpid())
		}
		// The refused Start must not have harmed the running server.
		if n := queryInt(t, c.URL(), "SELECT n FROM kept"); n != 42 {
			t.Fatalf("after refused Start: n = %d", n)
		}
		if err := StopDir(t.Context(), dir, nil); !errors.As(err, &inUse) {
			t.Fatalf("StopDir while managed: got %v, want *InUseError", err)
		}
	})

	port := c.Port()
	pid := postmasterPID(c.DataDir())
	if pid == 0 {
		t.Fatal("no postmaster pid while running")
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if processAlive(pid) {
		t.Fatalf("postmaster %d still alive after Stop", pid)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// A crash can leave postmaster.pid behind, and in a container its pid is
	// soon reused by another process; the postmaster would then refuse to
	// start. Simulate it with this test process's own pid.
	stale := strconv.Itoa(os.Getpid()) + "\n" + c.DataDir() + "\n"
	if err := os.WriteFile(filepath.Join(c.DataDir(), "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}

	c2 := startT(t, cfg)
	if c2.Port() != port {
		t.Errorf("restart port = %d, want the recorded %d", c2.Port(), port)
	}
	if n := queryInt(t, c2.URL(), "SELECT n FROM kept"); n != 42 {
		t.Fatalf("after restart: n = %d, want 42", n)
	}

	// Detach leaves the server running and the directory free, as
	// `starpipe testdb start` needs; StopDir then stops it.
	c2.Detach()
	if n := queryInt(t, c2.URL(), "SELECT n FROM kept"); n != 42 {
		t.Fatalf("after Detach: n = %d, want 42", n)
	}
	pid = postmasterPID(c2.DataDir())
	if err := StopDir(t.Context(), dir, testLogger(t)); err != nil {
		t.Fatalf("StopDir: %v", err)
	}
	if processAlive(pid) {
		t.Fatalf("postmaster %d still alive after StopDir", pid)
	}
	if err := StopDir(t.Context(), dir, nil); err != nil {
		t.Fatalf("StopDir with nothing running: %v", err)
	}

	// A server left running by a manager that went away is taken over.
	c3 := startT(t, cfg)
	c3.Detach()
	c4 := startT(t, cfg)
	if n := queryInt(t, c4.URL(), "SELECT n FROM kept"); n != 42 {
		t.Fatalf("after takeover: n = %d, want 42", n)
	}
	if c4.Port() != c3.Port() {
		t.Errorf("takeover port = %d, want the recorded %d", c4.Port(), c3.Port())
	}
}

// TestUnreachableDirRelocates: as root the server runs as another user, and
// a state directory under a root-only 0700 directory (t.TempDir, mktemp -d,
// /root) cannot hold its data; the data goes to /var/lib/starpipe instead.
func TestUnreachableDirRelocates(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	c := startT(t, Config{Dir: dir, DisableFsync: true, Logger: testLogger(t)})
	t.Cleanup(func() {
		// Stop before removing, so that postmaster.pid is there to find.
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if c.base != dir {
			os.RemoveAll(c.base)
		}
	})
	relocated := !strings.HasPrefix(c.DataDir(), dir)
	if os.Geteuid() == 0 && !relocated {
		t.Fatalf("data dir %s: want relocation out of %s", c.DataDir(), dir)
	}
	if os.Geteuid() != 0 && relocated {
		t.Fatalf("data dir %s relocated although not root", c.DataDir())
	}
	exec1(t, c.URL(), "SELECT 1")
	st, err := readState(dir)
	if err != nil || st.DataDir != c.DataDir() {
		t.Fatalf("state = %+v, %v; want data_dir %s", st, err, c.DataDir())
	}
}

func TestMissingBinaries(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinDirEnv, empty)
	_, err := Start(t.Context(), Config{Dir: stateDir(t)})
	if !errors.Is(err, ErrBinariesNotFound) {
		t.Fatalf("Start: got %v, want ErrBinariesNotFound", err)
	}
	for _, want := range []string{
		"PostgreSQL server binaries not found (looked in " + empty + ")",
		"apt-get install -y postgresql",
		"set STARPIPE_PG_BINDIR",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
