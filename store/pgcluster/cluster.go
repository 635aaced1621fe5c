// Package pgcluster runs a private PostgreSQL server from the system's
// PostgreSQL binaries, for `starpipe dev`, for `make test` and for tests run
// by hand. It is not a production deployment tool: production points
// starpipe at a PostgreSQL it does not manage.
//
// A state directory holds everything about one server:
//
//	Dir/cluster.lock   flock held by the managing process (see Start)
//	Dir/cluster.json   where the data directory is and the last port used
//	Dir/password       the generated superuser password (0600)
//	Dir/data/          PGDATA
//	Dir/postgres.log   the server log
//
// When starpipe runs as root the server runs as an unprivileged system user
// (PostgreSQL refuses root). If that user cannot reach Dir (a root-owned 0700
// directory on the way, as t.TempDir, mktemp -d and /root are), data/ and
// postgres.log go to /var/lib/starpipe/pgcluster/<hash of Dir> instead and
// cluster.json records it.
//
// The server listens on 127.0.0.1 only, without a Unix socket (so nothing
// depends on /var/run/postgresql), and requires the generated password
// (scram-sha-256), so other local users cannot connect as superuser.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// DatabaseName is the database Start creates and URL points at.
	DatabaseName = "starpipe"
	// SuperUser is the database superuser initdb creates.
	SuperUser = "starpipe"

	readyTimeout = 60 * time.Second
)

// Config says where and how to run the server.
type Config struct {
	// Dir is the state directory; it is created if missing.
	Dir string
	// Port is the TCP port on 127.0.0.1. Zero reuses the port recorded in
	// Dir if it is free, else picks a free one.
	Port int
	// User is the system user the server runs as when starpipe is root.
	// Empty means the owner of an existing data directory, else "postgres",
	// else a "starpipe" system user created for the purpose. Ignored (must
	// be empty or the current user) when not root.
	User string
	// DisableFsync trades crash safety for speed: fsync, synchronous_commit
	// and full_page_writes are turned off. For test databases only.
	DisableFsync bool
	// BinDir, when set, is the only directory searched for initdb, pg_ctl
	// and postgres (like STARPIPE_PG_BINDIR).
	BinDir string
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running server started by Start.
type Cluster struct {
	dir      string
	base     string // holds data/ and postgres.log
	dataDir  string
	logFile  string
	port     int
	password string
	bins     *binaries
	user     *serverUser
	log      *slog.Logger

	pid int // postmaster, in case postmaster.pid disappears under us

	mu   sync.Mutex
	lock *dirLock
	done bool // stopped or detached
}

// state is Dir/cluster.json.
type state struct {
	DataDir string `json:"data_dir"`
	Port    int    `json:"port,omitempty"`
}

// Start initialises the data directory if needed, starts the server and
// waits until it accepts connections, then makes sure database "starpipe"
// exists.
//
// Start takes an exclusive lock on the state directory and keeps it until
// Stop or Detach; a second Start on the same directory fails at once with an
// *InUseError and touches nothing. A server left running by a process that
// no longer holds the lock (a crash, or Detach) is stopped and started again
// with this Config.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "pgcluster")
	if cfg.Dir == "" {
		return nil, errors.New("starting PostgreSQL: no state directory given")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving state directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.release()
		}
	}()

	c := &Cluster{dir: dir, log: log, lock: lock}
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	c.setBase(dir)
	if st.DataDir != "" {
		c.setBase(filepath.Dir(st.DataDir))
	}
	// Fail on missing binaries before resolveUser possibly creates a user.
	if _, err := findBinaries(ctx, cfg.BinDir, 0); err != nil {
		return nil, err
	}
	if c.user, err = resolveUser(ctx, cfg.User, c.dataDir, log); err != nil {
		return nil, err
	}
	if st.DataDir == "" {
		if ok, blocker := c.user.canReach(dir); !ok {
			c.setBase(relocatedBase(dir))
			log.Warn("server user cannot reach the state directory; keeping the server's files elsewhere",
				"user", c.user.name, "blocked_at", blocker, "data_dir", c.dataDir)
			if err := os.MkdirAll(c.base, 0o755); err != nil {
				return nil, fmt.Errorf("creating relocated server directory: %w", err)
			}
		}
	} else if ok, blocker := c.user.canReach(c.base); !ok {
		return nil, fmt.Errorf("server user %s cannot reach %s (blocked at %s): make it searchable (chmod o+x)", c.user.name, c.base, blocker)
	}
	major := dataMajor(c.dataDir)
	if c.bins, err = findBinaries(ctx, cfg.BinDir, major); err != nil {
		return nil, err
	}
	if major != 0 && c.bins.major != 0 && major != c.bins.major {
		return nil, fmt.Errorf("data directory %s was created by PostgreSQL %d but only PostgreSQL %d was found in %s: install version %d or remove %s",
			c.dataDir, major, c.bins.major, c.bins.dir, major, dir)
	}

	if major == 0 {
		if err := c.initdb(ctx, cfg.DisableFsync); err != nil {
			return nil, err
		}
	} else if c.password, err = readPassword(dir); err != nil {
		return nil, err
	}
	if err := writeState(dir, state{DataDir: c.dataDir, Port: st.Port}); err != nil {
		return nil, err
	}

	// Before choosing the port: a leftover server still holds the recorded
	// one.
	if err := stopLeftover(ctx, c.bins, c.user, c.base, c.dataDir, log); err != nil {
		return nil, err
	}
	c.port = cfg.Port
	if c.port == 0 {
		if st.Port != 0 && portFree(st.Port) {
			c.port = st.Port
		} else if c.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := c.writeConf(cfg.DisableFsync); err != nil {
		return nil, err
	}
	if err := c.ensureLogFile(); err != nil {
		return nil, err
	}
	log.Info("starting PostgreSQL", "data_dir", c.dataDir, "port", c.port, "bin_dir", c.bins.dir, "fsync", !cfg.DisableFsync)
	if out, err := runAs(ctx, c.user, c.base, c.bins.pgCtl, "start", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", strconv.Itoa(int(readyTimeout/time.Second)), "-s"); err != nil {
		return nil, fmt.Errorf("starting PostgreSQL (pg_ctl start): %w: %s\nserver log (%s):\n%s", err, bytes.TrimSpace(out), c.logFile, c.logTail())
	}
	defer func() {
		if err != nil {
			_ = stopServer(context.WithoutCancel(ctx), c.bins, c.user, c.base, c.dataDir, c.pid, log)
		}
	}()
	c.pid = postmasterPID(c.dataDir)
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := c.ensureDatabase(ctx); err != nil {
		return nil, err
	}
	if err := writeState(dir, state{DataDir: c.dataDir, Port: c.port}); err != nil {
		return nil, err
	}
	log.Info("PostgreSQL ready", "port", c.port)
	return c, nil
}

func (c *Cluster) setBase(base string) {
	c.base = base
	c.dataDir = filepath.Join(base, "data")
	c.logFile = filepath.Join(base, "postgres.log")
}

// URL is the connection string of database "starpipe".
func (c *Cluster) URL() string { return c.DatabaseURL(DatabaseName) }

// DatabaseURL is the connection string of another database on this server.
func (c *Cluster) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", SuperUser, c.password, c.port, name)
}

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir is PGDATA.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile is the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// Stop shuts the server down (pg_ctl stop -m fast), waits for the postmaster
// to exit and releases the state directory. It is safe to call more than
// once and after Detach (then it does nothing).
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	if err := stopServer(ctx, c.bins, c.user, c.base, c.dataDir, c.pid, c.log); err != nil {
		return err
	}
	c.done = true
	c.lock.release()
	c.log.Info("PostgreSQL stopped")
	return nil
}

// Detach releases the state directory and leaves the server running, for a
// command that starts a server and exits (`starpipe testdb start`). Stop the
// server later with StopDir, or a later Start on the same directory will
// restart it.
func (c *Cluster) Detach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	c.lock.release()
}

// StopDir stops a server left running in the state directory dir (after
// Detach or a crash). It fails with *InUseError when a live process manages
// the directory, and does nothing when no server is running.
func StopDir(ctx context.Context, dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "pgcluster")
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving state directory: %w", err)
	}
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st.DataDir == "" {
		return nil // never initialised here
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.release()
	if postmasterPID(st.DataDir) == 0 {
		return nil
	}
	bins, err := findBinaries(ctx, "", dataMajor(st.DataDir))
	if err != nil {
		return err
	}
	u, err := resolveUser(ctx, "", st.DataDir, log)
	if err != nil {
		return err
	}
	if err := stopServer(ctx, bins, u, filepath.Dir(st.DataDir), st.DataDir, 0, log); err != nil {
		return err
	}
	log.Info("PostgreSQL stopped", "data_dir", st.DataDir)
	return nil
}

func (c *Cluster) initdb(ctx context.Context, noSync bool) error {
	// A data directory without PG_VERSION is a half-finished initdb (the
	// process died during it); nothing in it is worth keeping.
	if err := os.RemoveAll(c.dataDir); err != nil {
		return fmt.Errorf("clearing unfinished data directory: %w", err)
	}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if err := c.user.chown(c.dataDir); err != nil {
		return err
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return fmt.Errorf("generating superuser password: %w", err)
	}
	c.password = hex.EncodeToString(pw)
	if err := os.WriteFile(filepath.Join(c.dir, "password"), []byte(c.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing password file: %w", err)
	}
	// initdb reads the password as the server user, so it gets its own copy
	// next to the data directory, removed as soon as initdb is done.
	pwFile := filepath.Join(c.base, ".initdb-password")
	if err := os.WriteFile(pwFile, []byte(c.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing initdb password file: %w", err)
	}
	defer os.Remove(pwFile)
	if err := c.user.chown(pwFile); err != nil {
		return err
	}
	args := []string{"-D", c.dataDir, "-U", SuperUser, "--pwfile=" + pwFile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"-E", "UTF8", "--locale=C"}
	if noSync {
		args = append(args, "--no-sync")
	}
	c.log.Info("initialising PostgreSQL data directory", "data_dir", c.dataDir, "user", c.user.name)
	if out, err := runAs(ctx, c.user, c.base, c.bins.initdb, args...); err != nil {
		return fmt.Errorf("initialising data directory (initdb): %w: %s", err, bytes.TrimSpace(out))
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening postgresql.conf: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n# Settings starpipe manages, rewritten on every start.\ninclude_if_exists = 'starpipe.conf'\n"); err != nil {
		return fmt.Errorf("appending to postgresql.conf: %w", err)
	}
	return nil
}

// writeConf writes the settings that may change between starts (the port,
// fsync) into a file postgresql.conf includes.
func (c *Cluster) writeConf(noFsync bool) error {
	var b strings.Builder
	b.WriteString("# Written by starpipe on every start; edits are overwritten.\n")
	b.WriteString("listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "port = %d\n", c.port)
	// No Unix socket: the default directory (/var/run/postgresql) may not
	// exist or be writable, and TCP on loopback is all starpipe uses.
	b.WriteString("unix_socket_directories = ''\n")
	// Each test gets its own database and pool, so leave headroom.
	b.WriteString("max_connections = 200\n")
	if noFsync {
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	path := filepath.Join(c.dataDir, "starpipe.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return c.user.chown(path)
}

func (c *Cluster) ensureLogFile() error {
	f, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("creating server log: %w", err)
	}
	f.Close()
	return c.user.chown(c.logFile)
}

// waitReady pings until the server accepts connections. pg_ctl -w has
// already waited for the postmaster to report ready; this confirms that the
// TCP listener and the password work, which is what callers need.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	var lastErr error
	for {
		conn, err := pgx.Connect(ctx, c.DatabaseURL("postgres")+"&connect_timeout=5")
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.WithoutCancel(ctx))
			if err == nil {
				return nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for PostgreSQL on 127.0.0.1:%d to accept connections: %w\nserver log (%s):\n%s",
				c.port, lastErr, c.logFile, c.logTail())
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.DatabaseURL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to create database %s: %w", DatabaseName, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", DatabaseName).Scan(&exists); err != nil {
		return fmt.Errorf("checking for database %s: %w", DatabaseName, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{DatabaseName}.Sanitize()); err != nil {
		return fmt.Errorf("creating database %s: %w", DatabaseName, err)
	}
	return nil
}

// logTail is the end of the server log, for error messages.
func (c *Cluster) logTail() string { return fileTail(c.logFile, 30) }

func fileTail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	defer f.Close()
	const window = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// stopLeftover deals with a postmaster.pid found before starting. We hold
// the directory lock, so a server still running from this data directory
// belongs to a manager that crashed or detached: stop it, so that this
// start applies its own Config. A pid file naming a dead process or some
// other program (pids are reused, especially in containers where the old
// postmaster may have had a low pid) is removed, because the postmaster
// would otherwise refuse to start.
func stopLeftover(ctx context.Context, bins *binaries, u *serverUser, base, dataDir string, log *slog.Logger) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	pid := readPIDFile(pidFile)
	if pid == 0 {
		return nil
	}
	if isOurPostmaster(pid, dataDir) {
		log.Warn("stopping a PostgreSQL server left running by an earlier process", "pid", pid)
		return stopServer(ctx, bins, u, base, dataDir, 0, log)
	}
	log.Info("removing stale postmaster.pid", "pid", pid)
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale postmaster.pid: %w", err)
	}
	return nil
}

// stopServer stops the server of dataDir if it runs and waits for the
// postmaster process to be gone, so that the port and the data directory are
// free when it returns. knownPID, when non-zero, is the postmaster we
// started: if its pid file has vanished (the data directory was deleted
// under it) pg_ctl cannot find it, so it gets SIGINT (fast shutdown)
// directly rather than being left running.
func stopServer(ctx context.Context, bins *binaries, u *serverUser, base, dataDir string, knownPID int, log *slog.Logger) error {
	pid := postmasterPID(dataDir)
	if pid == 0 {
		if knownPID == 0 || !isOurPostmaster(knownPID, dataDir) {
			return nil
		}
		pid = knownPID
		log.Warn("postmaster.pid is gone; signalling the postmaster directly", "pid", pid)
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
			return fmt.Errorf("stopping postmaster %d: %w", pid, err)
		}
		return waitExit(ctx, pid)
	}
	out, err := runAs(ctx, u, base, bins.pgCtl, "stop", "-D", dataDir, "-m", "fast", "-w", "-t", "60", "-s")
	if err != nil && processAlive(pid) {
		log.Warn("fast shutdown failed; trying immediate shutdown", "error", err, "output", string(bytes.TrimSpace(out)))
		if out2, err2 := runAs(ctx, u, base, bins.pgCtl, "stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "30", "-s"); err2 != nil && processAlive(pid) {
			return fmt.Errorf("stopping PostgreSQL (pg_ctl stop): %w: %s", err2, bytes.TrimSpace(out2))
		}
	}
	return waitExit(ctx, pid)
}

func waitExit(ctx context.Context, pid int) error {
	delay := 5 * time.Millisecond
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for postmaster %d to exit: %w", pid, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
	return nil
}

// postmasterPID is the pid of the running postmaster of dataDir, or 0.
func postmasterPID(dataDir string) int {
	pid := readPIDFile(filepath.Join(dataDir, "postmaster.pid"))
	if pid == 0 || !isOurPostmaster(pid, dataDir) {
		return 0
	}
	return pid
}

func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(first)))
	return pid
}

// isOurPostmaster checks that pid is a live postgres whose command line names
// dataDir, so that a reused pid never gets a shutdown signal.
func isOurPostmaster(pid int, dataDir string) bool {
	if !processAlive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "postgres" {
		return false
	}
	for _, a := range args[1:] {
		if a == dataDir {
			return true
		}
	}
	return false
}

// processAlive treats a zombie as dead: the postmaster's parent is gone and
// whoever inherited it may be slow to reap, but it no longer holds anything.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// runAs runs a PostgreSQL program as the server user, from a directory that
// user can enter, without PG* variables from our environment (PGDATA,
// PGPORT, ... would override the arguments).
func runAs(ctx context.Context, u *serverUser, dir, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = u.sysProcAttr()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The postmaster pg_ctl forks writes to the log file, not to our pipe,
	// but do not hang on output should some child keep it open.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

func dataMajor(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading cluster state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("reading cluster state %s: %w", filepath.Join(dir, "cluster.json"), err)
	}
	return st, nil
}

func writeState(dir string, st state) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := filepath.Join(dir, "cluster.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing cluster state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "cluster.json")); err != nil {
		return fmt.Errorf("writing cluster state: %w", err)
	}
	return nil
}

func readPassword(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "password"))
	if err != nil {
		return "", fmt.Errorf("reading the superuser password of the existing cluster (remove %s to start afresh): %w", dir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("picking a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
