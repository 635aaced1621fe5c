package pgcluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// dirs returns a state directory and a server directory inside the test's
// temporary directory. As root the server runs as DefaultUser (created by
// `make deps`), which must reach the server directory: t.TempDir and its
// parent are 0700 root, so the test opens those two to search (0711).
// Nothing outside the test's temporary directory changes.
func dirs(t *testing.T) (state, server string) {
	t.Helper()
	td := t.TempDir()
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Dir(td), td} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	return filepath.Join(td, "state"), filepath.Join(td, "server")
}

func testConfig(t *testing.T) Config {
	state, server := dirs(t)
	return Config{Dir: state, ServerDir: server, DisableFsync: true, Logger: testLogger(t)}
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
	cfg := testConfig(t)
	dir := cfg.Dir
	c := startT(t, cfg)
	if !strings.HasPrefix(c.URL(), "postgres://starpipe:") || !strings.Contains(c.URL(), "@127.0.0.1:") || !strings.HasSuffix(c.URL(), "/starpipe?sslmode=disable") {
		t.Fatalf("URL = %q", c.URL())
	}
	checkPrivate(t, cfg, c)
	checkRoles(t, c)
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

func TestMissingBinaries(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinDirEnv, empty)
	cfg := testConfig(t)
	_, err := Start(t.Context(), cfg)
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

// checkPrivate: the state directory is 0700 with every file 0600, and the
// server's files belong to the account that runs it, the log unreadable to
// others.
func checkPrivate(t *testing.T, cfg Config, c *Cluster) {
	t.Helper()
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
			t.Errorf("%s in the state directory: mode %v, want a 0600 file", e.Name(), fi.Mode())
		}
	}
	if !strings.HasPrefix(c.DataDir(), cfg.ServerDir+"/") {
		t.Errorf("data directory %s not in the server directory %s", c.DataDir(), cfg.ServerDir)
	}
	for _, p := range []string{cfg.ServerDir, c.DataDir(), c.LogFile()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != c.user.uid {
			t.Errorf("%s belongs to uid %d, want the server user %s (%d)", p, st.Uid, c.user.name, c.user.uid)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s mode %v: readable by others", p, fi.Mode().Perm())
		}
	}
	if os.Geteuid() == 0 && c.user.name != DefaultUser {
		t.Errorf("server user %s, want %s", c.user.name, DefaultUser)
	}
}

// checkRoles: the daemon's URL is a role without privileges that owns
// database "starpipe"; the admin URL is the superuser.
func checkRoles(t *testing.T, c *Cluster) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var user, owner string
	var super, createRole, createDB bool
	if err := conn.QueryRow(t.Context(), `SELECT current_user, rolsuper, rolcreaterole, rolcreatedb,
		(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database())
		FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super, &createRole, &createDB, &owner); err != nil {
		t.Fatal(err)
	}
	if user != AppUser || super || createRole || createDB || owner != AppUser {
		t.Fatalf("daemon role %s: superuser %v, createrole %v, createdb %v, database owner %s; want %s with none, owning the database",
			user, super, createRole, createDB, owner, AppUser)
	}
	if _, err := conn.Exec(t.Context(), "CREATE ROLE sp_should_fail"); err == nil {
		t.Fatal("the daemon role created a role")
	}
	if n := queryInt(t, c.AdminURL(""), "SELECT count(*) FROM pg_roles WHERE rolname = current_user AND rolsuper"); n != 1 {
		t.Fatal("AdminURL is not a superuser")
	}
}

// TestSymlinksRefused: the server's directory belongs to the account that
// runs the server, which could plant symbolic links in it. Root neither
// follows nor writes through them.
func TestSymlinksRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)

	t.Run("server directory is a link", func(t *testing.T) {
		state, server := dirs(t)
		elsewhere := filepath.Join(filepath.Dir(server), "elsewhere")
		if err := os.Mkdir(elsewhere, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(elsewhere, server); err != nil {
			t.Fatal(err)
		}
		_, err := Start(t.Context(), Config{Dir: state, ServerDir: server, DisableFsync: true})
		if !errors.Is(err, ErrSymlink) {
			t.Fatalf("Start: got %v, want ErrSymlink", err)
		}
	})

	c := startT(t, cfg)
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A crash leaves postmaster.pid; here it is a link to a file the
	// account must not have removed or read for it.
	victim := filepath.Join(filepath.Dir(cfg.Dir), "victim")
	if err := os.WriteFile(victim, []byte(strconv.Itoa(os.Getpid())+"\n"+c.DataDir()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(c.DataDir(), "postmaster.pid")); err != nil {
		t.Fatal(err)
	}
	c2 := startT(t, cfg)
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("link target: %v", err)
	}
	if err := c2.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// The data directory swapped for a link: refused, not re-initialised.
	moved := cfg.ServerDir + "/data-moved"
	if err := os.Rename(c.DataDir(), moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, c.DataDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), cfg); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Start with a linked data directory: got %v, want ErrSymlink", err)
	}
	if _, err := os.Stat(filepath.Join(moved, "PG_VERSION")); err != nil {
		t.Fatalf("the linked data directory was touched: %v", err)
	}
}

func TestMissingAccount(t *testing.T) {
	cfg := testConfig(t)
	cfg.User = "starpipe-no-such-account"
	_, err := Start(t.Context(), cfg)
	want := "run `make deps`"
	if os.Geteuid() != 0 {
		want = "needs root"
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start as missing account: got %v, want an error containing %q", err, want)
	}
}

// As root without a server directory, the server's files go to the
// account's home, one directory per state directory.
func TestHomeServerDir(t *testing.T) {
	home := t.TempDir()
	u := &serverUser{name: "pg", home: home, uid: uint32(os.Geteuid())}
	a, err := u.homeServerDir("/srv/one/.starpipe/postgres")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := u.homeServerDir("/srv/one/.starpipe/postgres")
	other, _ := u.homeServerDir("/srv/two/.starpipe/postgres")
	if a != b || a == other || filepath.Dir(a) != filepath.Join(home, "clusters") {
		t.Fatalf("homeServerDir: %s, again %s, other state dir %s", a, b, other)
	}
	for _, bad := range []string{"", "/", filepath.Join(home, "missing")} {
		u := &serverUser{name: "pg", home: bad, uid: uint32(os.Geteuid())}
		if _, err := u.homeServerDir("/x"); err == nil || !strings.Contains(err.Error(), "make deps") {
			t.Errorf("home %q: got %v, want an error naming make deps", bad, err)
		}
	}
}
