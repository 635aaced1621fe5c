// Package pgcluster runs a private PostgreSQL server from the system's
// PostgreSQL binaries, for `starpipe dev`, for `make test` and for tests run
// by hand. It is not a production deployment tool: production points
// starpipe at a PostgreSQL it does not manage.
//
// A state directory (0700, every file 0600) holds what starpipe keeps about
// one server:
//
//	Dir/cluster.lock        flock held by the managing process (see Start)
//	Dir/cluster.json        where the data directory is, the last port used
//	Dir/password            the generated superuser password
//	Dir/starpipe.password   the generated password of the daemon's role
//
// and the server's own files live in a server directory owned by the
// account that runs it:
//
//	ServerDir/data/         PGDATA
//	ServerDir/postgres.log  the server log
//
// Not root, the server runs as the current user and the server directory is
// Dir itself. As root, the server runs as an unprivileged system account
// (PostgreSQL refuses root; DefaultUser, created by `make deps`) and the
// server directory is Config.ServerDir or, by default, a directory in that
// account's home: the account never needs to enter the state directory, so
// it stays private. Root never follows a symbolic link inside the server
// directory, which the account controls (see nofollow.go).
//
// Two roles are created: the superuser (AdminUser) for set-up and tests, and
// the daemon's login role (AppUser) without any special privilege, which
// owns database "starpipe". store.Migrate run with AdminURL then hands the
// activity log to a role the daemon cannot act as.
//
// The server listens on 127.0.0.1 only, without a Unix socket (so nothing
// depends on /var/run/postgresql), and requires the generated passwords
// (scram-sha-256), so other local users cannot connect.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

const (
	// DatabaseName is the database Start creates and URL points at.
	DatabaseName = "starpipe"
	// AdminUser is the database superuser initdb creates.
	AdminUser = "starpipe_admin"
	// AppUser is the daemon's login role: no superuser, no CREATEROLE or
	// CREATEDB; it owns database "starpipe".
	AppUser = "starpipe"

	// Clusters created before the role split have the superuser "starpipe";
	// their daemon role gets another name.
	legacyAdminUser = "starpipe"
	legacyAppUser   = "starpipe_app"

	readyTimeout = 60 * time.Second
)

// Config says where and how to run the server.
type Config struct {
	// Dir is the state directory; it is created if missing.
	Dir string
	// Port is the TCP port on 127.0.0.1. Zero reuses the port recorded in
	// Dir if it is free, else picks a free one.
	Port int
	// User is the system account the server runs as when starpipe is root.
	// Empty means the owner of an existing data directory, else DefaultUser.
	// The account must exist (`make deps` creates DefaultUser). Must be empty
	// or the current user when not root.
	User string
	// ServerDir holds the server's own files (data/, postgres.log) and
	// belongs to the account that runs it; it is created if missing, below
	// directories only root or starpipe's user can change, and the account
	// must be able to reach it. Empty means Dir when not root, and
	// <account home>/clusters/<hash of Dir> when root. Only used when the
	// cluster is created: cluster.json remembers where it is.
	ServerDir string
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
	password string // AdminUser's
	admin    string // superuser name
	app      string // daemon role name
	appPass  string
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
	// AdminUser is the superuser; empty in clusters created before the
	// role split, whose superuser is legacyAdminUser.
	AdminUser string `json:"admin_user,omitempty"`
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
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
	if _, err := findBinaries(ctx, cfg.BinDir, 0); err != nil {
		return nil, err
	}
	if c.user, err = resolveUser(cfg.User, st.DataDir); err != nil {
		return nil, err
	}
	if st.DataDir != "" {
		c.setBase(filepath.Dir(st.DataDir))
	} else {
		base, err := c.prepareServerDir(cfg.ServerDir)
		if err != nil {
			return nil, err
		}
		c.setBase(base)
	}
	if ok, blocker := c.user.canReach(c.base); !ok {
		return nil, fmt.Errorf("server user %s cannot reach %s (blocked at %s): choose a server directory it can reach, or make the directories above it searchable (chmod o+x)", c.user.name, c.base, blocker)
	}
	d, err := openNoFollow(c.base, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("server directory: %w", err)
	}
	d.Close()
	// A data directory that is there but cannot be opened without following
	// a link must stop us: read as "no cluster yet" it would be initialised
	// afresh.
	if _, err := os.Lstat(c.dataDir); err == nil {
		d, err := openNoFollow(c.dataDir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		d.Close()
	}
	major := dataMajor(c.dataDir)
	if major != 0 && st.DataDir == "" && !fileExists(filepath.Join(dir, "password")) {
		// The state directory was deleted (rm -rf .starpipe) but the
		// server's files in the account's home were not: without the
		// password they are unusable, and starting afresh is what deleting
		// the state asked for.
		log.Warn("discarding the server files of a deleted state directory", "data_dir", c.dataDir)
		major = 0
	}
	if c.bins, err = findBinaries(ctx, cfg.BinDir, major); err != nil {
		return nil, err
	}
	if major != 0 && c.bins.major != 0 && major != c.bins.major {
		return nil, fmt.Errorf("data directory %s was created by PostgreSQL %d but only PostgreSQL %d was found in %s: install version %d or remove %s",
			c.dataDir, major, c.bins.major, c.bins.dir, major, dir)
	}

	c.admin = st.AdminUser
	if major == 0 {
		c.admin = AdminUser
		if err := c.initdb(ctx, cfg.DisableFsync); err != nil {
			return nil, err
		}
	} else if c.password, err = readPassword(dir, "password"); err != nil {
		return nil, err
	}
	if c.admin == "" {
		c.admin = legacyAdminUser
	}
	c.app = AppUser
	if c.admin == legacyAdminUser {
		c.app = legacyAppUser
	}
	if c.appPass, err = ensureSecret(filepath.Join(dir, "starpipe.password")); err != nil {
		return nil, err
	}
	if err := writeState(dir, state{DataDir: c.dataDir, Port: st.Port, AdminUser: c.admin}); err != nil {
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
	log.Info("starting PostgreSQL", "data_dir", c.dataDir, "port", c.port, "bin_dir", c.bins.dir, "fsync", !cfg.DisableFsync)
	// pg_ctl creates the log as the server user, mode 0600 (it sets its
	// umask from the data directory's 0700).
	if out, err := runAs(ctx, c.user, c.base, c.bins.pgCtl, "start", "-D", c.dataDir, "-l", c.logFile, "-o", c.serverOptions(cfg.DisableFsync),
		"-w", "-t", strconv.Itoa(int(readyTimeout/time.Second)), "-s"); err != nil {
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
	if c.admin == legacyAdminUser {
		log.Warn("this cluster predates the separate daemon role: its superuser is \"starpipe\" and the daemon connects as "+legacyAppUser,
			"state_dir", dir)
	}
	if err := writeState(dir, state{DataDir: c.dataDir, Port: c.port, AdminUser: c.admin}); err != nil {
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

// URL is the daemon's connection string: database "starpipe" as the
// daemon role (AppUser), which owns that database and nothing else.
func (c *Cluster) URL() string { return c.url(c.app, c.appPass, DatabaseName) }

// AdminURL is the superuser's connection string for database name ("" is
// "starpipe"): for migrations that hand the activity log over (see
// store.Migrate), and for test servers that create databases.
func (c *Cluster) AdminURL(name string) string {
	if name == "" {
		name = DatabaseName
	}
	return c.url(c.admin, c.password, name)
}

func (c *Cluster) url(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
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
	u, err := resolveUser("", st.DataDir)
	if err != nil {
		return err
	}
	if err := stopServer(ctx, bins, u, filepath.Dir(st.DataDir), st.DataDir, 0, log); err != nil {
		return err
	}
	log.Info("PostgreSQL stopped", "data_dir", st.DataDir)
	return nil
}

// prepareServerDir decides where the server's files go for a new cluster
// and makes sure that directory exists, belongs to the server user and is
// reached without a symbolic link the server user could have planted.
func (c *Cluster) prepareServerDir(explicit string) (string, error) {
	var top string     // a directory only root or we can change
	var below []string // components under it, created for the server user
	switch {
	case explicit != "":
		abs, err := filepath.Abs(explicit)
		if err != nil {
			return "", fmt.Errorf("resolving server directory: %w", err)
		}
		top, below = filepath.Dir(abs), []string{filepath.Base(abs)}
	case !c.user.setCred:
		return c.dir, nil // our own files, in our own directory
	default:
		p, err := c.user.homeServerDir(c.dir)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(filepath.Dir(c.user.home), p)
		top, below = filepath.Dir(c.user.home), strings.Split(rel, string(filepath.Separator))
	}
	top, err := trustedDir(top)
	if err != nil {
		return "", fmt.Errorf("server directory: %w", err)
	}
	p := top
	for _, name := range below {
		p = filepath.Join(p, name)
		d, err := mkdirNoFollow(p, c.user)
		if err != nil {
			return "", fmt.Errorf("server directory: %w", err)
		}
		d.Close()
	}
	return p, nil
}

func (c *Cluster) initdb(ctx context.Context, noSync bool) error {
	// A data directory without PG_VERSION is a half-finished initdb (the
	// process died during it); nothing in it is worth keeping. The server
	// user removes it: it owns it, and can harm nothing else that way.
	if _, err := os.Lstat(c.dataDir); err == nil {
		if out, err := runAs(ctx, c.user, c.base, "rm", "-rf", "--", c.dataDir); err != nil {
			return fmt.Errorf("clearing unfinished data directory: %w: %s", err, bytes.TrimSpace(out))
		}
	}
	var err error
	if c.password, err = newSecret(); err != nil {
		return err
	}
	if err := writeSecret(filepath.Join(c.dir, "password"), c.password); err != nil {
		return err
	}
	// initdb reads the password as the server user, so it gets its own copy
	// in the server directory, removed as soon as initdb is done. O_EXCL:
	// whatever was left there (a symbolic link included) is removed first,
	// never written through.
	pwFile := filepath.Join(c.base, ".initdb-password")
	if err := removeNoFollow(pwFile); err != nil {
		return err
	}
	if err := createNoFollow(pwFile, []byte(c.password+"\n"), 0o600, c.user); err != nil {
		return err
	}
	defer removeNoFollow(pwFile)
	args := []string{"-D", c.dataDir, "-U", c.admin, "--pwfile=" + pwFile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"-E", "UTF8", "--locale=C"}
	if noSync {
		args = append(args, "--no-sync")
	}
	c.log.Info("initialising PostgreSQL data directory", "data_dir", c.dataDir, "user", c.user.name)
	if out, err := runAs(ctx, c.user, c.base, c.bins.initdb, args...); err != nil {
		return fmt.Errorf("initialising data directory (initdb): %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// serverOptions are the settings that may change between starts (the port,
// fsync), given on the command line rather than written into the data
// directory, which the server user controls. pg_ctl passes them through
// /bin/sh; none holds a character the shell would interpret.
func (c *Cluster) serverOptions(noFsync bool) string {
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(c.port),
		// No Unix socket: the default directory (/var/run/postgresql) may
		// not exist or be writable, and TCP on loopback is all starpipe uses.
		"-c unix_socket_directories=",
		// Each test gets its own database and pool, so leave headroom.
		"-c max_connections=200",
	}
	if noFsync {
		opts = append(opts, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	return strings.Join(opts, " ")
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
		conn, err := pgx.Connect(ctx, c.AdminURL("postgres")+"&connect_timeout=5")
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

// ensureDatabase makes sure the daemon role exists with the password on
// file and without privileges, and owns database "starpipe".
func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.AdminURL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to create database %s: %w", DatabaseName, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	role := pgx.Identifier{c.app}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", c.app).Scan(&exists); err != nil {
		return fmt.Errorf("checking for role %s: %w", c.app, err)
	}
	verb := "ALTER"
	if !exists {
		verb = "CREATE"
	}
	// The password is hex, but quote it as a literal regardless: CREATE
	// ROLE takes no parameters.
	pw := "'" + strings.ReplaceAll(c.appPass, "'", "''") + "'"
	if _, err := conn.Exec(ctx, verb+" ROLE "+role+" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD "+pw); err != nil {
		return fmt.Errorf("setting up role %s: %w", c.app, err)
	}
	var owner string
	err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", DatabaseName).Scan(&owner)
	db := pgx.Identifier{DatabaseName}.Sanitize()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+role); err != nil {
			return fmt.Errorf("creating database %s: %w", DatabaseName, err)
		}
	case err != nil:
		return fmt.Errorf("checking for database %s: %w", DatabaseName, err)
	case owner != c.app:
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" OWNER TO "+role); err != nil {
			return fmt.Errorf("giving database %s to role %s: %w", DatabaseName, c.app, err)
		}
	}
	return nil
}

// logTail is the end of the server log, for error messages.
func (c *Cluster) logTail() string { return fileTail(c.logFile, 30) }

func fileTail(path string, lines int) string {
	b, err := readNoFollow(path, 16<<10)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
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
		// Nothing readable, but something may be there that the postmaster
		// would trip over: a symbolic link, which is removed, not followed.
		if fi, err := os.Lstat(pidFile); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			log.Warn("removing a symbolic link in place of postmaster.pid", "path", pidFile)
			return removeNoFollow(pidFile)
		}
		return nil
	}
	if isOurPostmaster(pid, dataDir) {
		log.Warn("stopping a PostgreSQL server left running by an earlier process", "pid", pid)
		return stopServer(ctx, bins, u, base, dataDir, 0, log)
	}
	log.Info("removing stale postmaster.pid", "pid", pid)
	if err := removeNoFollow(pidFile); err != nil {
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
	b, err := readNoFollow(path, 0)
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
	b, err := readNoFollow(filepath.Join(dataDir, "PG_VERSION"), 0)
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
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing cluster state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "cluster.json")); err != nil {
		return fmt.Errorf("writing cluster state: %w", err)
	}
	return nil
}

func readPassword(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("reading the superuser password of the existing cluster (remove %s to start afresh): %w", dir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func newSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func writeSecret(path, secret string) error {
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ensureSecret returns the password kept in path, generating it first if
// the file does not exist.
func ensureSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	s, err := newSecret()
	if err != nil {
		return "", err
	}
	return s, writeSecret(path, s)
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
