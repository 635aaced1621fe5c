// Package storetest gives each test its own freshly migrated PostgreSQL
// database, for tests in any package.
//
// Every package that uses it needs a TestMain that hands control to Main,
// which drops this process's template database and stops the private server
// when the tests are done:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// The server comes from, in order:
//
//   - STARPIPE_TEST_DATABASE_URL, a superuser (or CREATEDB) URL; `make test`
//     starts a private server with `starpipe testdb start` and sets it;
//   - nothing when CI=true: the test fails, because CI must run the real
//     thing and a silent skip would hide that it did not;
//   - otherwise (`go test ./store/` by hand) a private server started with
//     pgcluster in a temporary directory, once per test process, fsync off.
//
// Each test database is cloned from a template migrated once per process
// (CREATE DATABASE ... TEMPLATE is a file copy, far cheaper than running the
// migrations again), and dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/pgcluster"
)

// EnvURL names the variable holding the test server's URL.
const EnvURL = "STARPIPE_TEST_DATABASE_URL"

var (
	mainCalled atomic.Bool

	serverOnce sync.Once
	server     string // base URL
	serverErr  error
	cluster    *pgcluster.Cluster
	clusterDir string

	tmplMu  sync.Mutex
	tmpl    string // template database name, once created
	tmplErr error
)

// Main runs the tests, then drops the template database and stops the
// private server if one was started. Call it from TestMain.
func Main(m *testing.M) {
	mainCalled.Store(true)
	// TestMain returning (rather than calling os.Exit) makes the testing
	// package exit with m.Run's result, after this teardown.
	m.Run()
	teardown()
}

func teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if tmpl != "" && server != "" {
		if err := dropDatabase(ctx, server, tmpl); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: dropping template database %s: %v\n", tmpl, err)
		}
	}
	if cluster != nil {
		if err := cluster.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: stopping private PostgreSQL: %v\n", err)
			return // keep the directory: the server may still be using it
		}
		os.RemoveAll(clusterDir)
	}
}

// New returns a Store on a new database with every migration applied, and
// that database's URL. Both are closed and dropped when the test ends.
func New(t testing.TB) (*store.Store, string) {
	t.Helper()
	dbURL := newDatabase(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, dbURL, store.WithMaxConns(4))
	if err != nil {
		t.Fatalf("storetest: opening store: %v", err)
	}
	t.Cleanup(s.Close) // runs before the drop registered earlier
	Attach(t, s, dbURL)
	return s, dbURL
}

// Attach lets SQL serve a store that New did not make (one on a server the
// test runs itself), given the URL it was opened with.
func Attach(t testing.TB, st *store.Store, url string) {
	raw := &rawDB{url: url}
	rawDBs.Store(st, raw)
	t.Cleanup(func() {
		rawDBs.Delete(st)
		raw.close()
	})
}

// rawDBs holds, per Store that New returned, a pool of its own on the same
// database for SQL, so that tests can arrange and inspect rows the store's
// API has no query for while the store itself offers no pool to anyone.
var rawDBs sync.Map // *store.Store -> *rawDB

type rawDB struct {
	url  string
	mu   sync.Mutex
	pool *pgxpool.Pool
}

func (r *rawDB) get(ctx context.Context) (*pgxpool.Pool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pool == nil {
		cfg, err := pgxpool.ParseConfig(r.url)
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = 2
		if r.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return r.pool, nil
}

func (r *rawDB) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pool != nil {
		r.pool.Close()
	}
}

// DB is a raw connection pool on a test database, for tests that check
// outcomes in SQL; it is pgx's pool, named here so that tests outside store
// need not import pgx.
type DB = pgxpool.Pool

// SQL returns a connection pool on st's database (st must come from New or
// be attached), for tests that set up or check rows directly. Test code
// only: outside the store, production code runs no SQL.
func SQL(t testing.TB, st *store.Store) *DB {
	t.Helper()
	v, ok := rawDBs.Load(st)
	if !ok {
		t.Fatal("storetest: SQL needs a store made by storetest.New")
	}
	p, err := v.(*rawDB).get(context.Background())
	if err != nil {
		t.Fatalf("storetest: opening a pool on the test database: %v", err)
	}
	return p
}

// CutOff makes st's database (st from New) refuse new connections and
// ends the open ones, for tests of what the code does while the database
// is away. The database accepts connections again when the test ends.
func CutOff(t testing.TB, st *store.Store) {
	t.Helper()
	v, ok := rawDBs.Load(st)
	if !ok {
		t.Fatal("storetest: CutOff needs a store made by storetest.New")
	}
	raw := v.(*rawDB)
	u, err := url.Parse(raw.url)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	base := serverURL(t)
	ctx := context.Background()
	ident := pgx.Identifier{name}.Sanitize()
	if err := execAdmin(ctx, base, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatalf("storetest: refusing connections to %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := execAdmin(context.Background(), base, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true"); err != nil {
			t.Errorf("storetest: allowing connections to %s again: %v", name, err)
		}
	})
	if err := execAdmin(ctx, base, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "+
		"'"+strings.ReplaceAll(name, "'", "''")+"' AND pid <> pg_backend_pid()"); err != nil {
		t.Fatalf("storetest: ending connections to %s: %v", name, err)
	}
}

// CopyRows COPYs rows into table (the columns named), for tests and
// benchmarks that load data the store's API would not write as is.
func CopyRows(t testing.TB, st *store.Store, table string, columns []string, rows [][]any) int64 {
	t.Helper()
	n, err := SQL(t, st).CopyFrom(context.Background(), pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
	if err != nil {
		t.Fatalf("storetest: copying into %s: %v", table, err)
	}
	return n
}

// Strings runs a query whose rows are one text column and returns them.
func Strings(t testing.TB, st *store.Store, sql string, args ...any) []string {
	t.Helper()
	rows, err := SQL(t, st).Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("storetest: %s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("storetest: %s: %v", sql, err)
	}
	return out
}

// NewEmptyDatabase returns the URL of a new database with no migrations
// applied, for testing the migrations themselves. It is dropped when the
// test ends.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("storetest: this package needs `func TestMain(m *testing.M) { storetest.Main(m) }` " +
			"so that the template database is dropped and a private server stopped after the tests")
	}
	base := serverURL(t)
	source := "template0"
	if migrated {
		source = template(t, base)
	}
	name := "sp_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execAdmin(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{source}.Sanitize()); err != nil {
		t.Fatalf("storetest: creating test database: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, base, name); err != nil {
			t.Errorf("storetest: dropping test database %s: %v", name, err)
		}
	})
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return u
}

// serverURL finds or starts the server (see the package comment).
func serverURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(EnvURL + " not set: run tests with `make test`, which starts a private PostgreSQL")
	}
	serverOnce.Do(func() {
		server, serverErr = startPrivate()
	})
	if serverErr != nil {
		t.Fatalf("storetest: starting a private PostgreSQL (set %s to use an existing server): %v", EnvURL, serverErr)
	}
	return server
}

func startPrivate() (string, error) {
	// One temporary directory per test process, removed in teardown: the
	// state directory and the server's files both go inside it.
	dir, err := os.MkdirTemp("", "starpipe-storetest-")
	if err != nil {
		return "", fmt.Errorf("creating state directory: %w", err)
	}
	// MkdirTemp makes it 0700; when root, the server runs as DefaultUser,
	// which must be able to pass through it to its own directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("opening the temporary directory to the server user: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{
		Dir:          filepath.Join(dir, "state"),
		ServerDir:    filepath.Join(dir, "server"),
		DisableFsync: true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	cluster, clusterDir = c, dir
	// Tests create databases: the superuser's URL.
	return c.AdminURL(""), nil
}

// template creates and migrates this process's template database once. The
// name carries the pid so that test processes of several packages sharing
// one server never collide.
func template(t testing.TB, base string) string {
	t.Helper()
	tmplMu.Lock()
	defer tmplMu.Unlock()
	if tmpl == "" && tmplErr == nil {
		tmplErr = createTemplate(base)
	}
	if tmplErr != nil {
		t.Fatalf("storetest: preparing the migrated template database: %v", tmplErr)
	}
	return tmpl
}

func createTemplate(base string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("sp_tmpl_%d_%s", os.Getpid(), randomHex(4))
	if err := execAdmin(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("creating template database: %w", err)
	}
	u, err := withDatabase(base, name)
	if err == nil {
		err = store.Migrate(ctx, u)
	}
	if err != nil {
		_ = dropDatabase(ctx, base, name)
		return err
	}
	tmpl = name
	return nil
}

func execAdmin(ctx context.Context, base, sql string) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return fmt.Errorf("connecting to the test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// dropDatabase uses FORCE so that a connection a test leaked cannot keep the
// database alive.
func dropDatabase(ctx context.Context, base, name string) error {
	return execAdmin(ctx, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// withDatabase points a postgres:// URL at another database.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}

// DumpTable returns every row of table as JSON text, one per line, for
// tests that search a table for material that must not be there (secrets).
func DumpTable(t testing.TB, st *store.Store, table string) string {
	t.Helper()
	rows, err := SQL(t, st).Query(t.Context(), `SELECT row_to_json(x)::text FROM `+pgx.Identifier{table}.Sanitize()+` x`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// ReadArtifact reads a whole stored artifact, for tests that look inside
// small ones; the daemon itself only streams them (store.OpenArtifact).
func ReadArtifact(t testing.TB, st *store.Store, sha string) (store.Artifact, []byte, error) {
	t.Helper()
	a, r, err := st.OpenArtifact(t.Context(), sha)
	if err != nil {
		return a, nil, err
	}
	defer r.Close()
	content, err := io.ReadAll(r)
	return a, content, err
}
