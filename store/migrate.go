package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrateOption configures Migrate and MigrateDown.
type MigrateOption func(*migrateOptions)

type migrateOptions struct{ log *slog.Logger }

// MigrateLogger logs each applied migration.
func MigrateLogger(l *slog.Logger) MigrateOption {
	return func(o *migrateOptions) { o.log = l }
}

// Migration is the state of one embedded migration in a database.
type Migration struct {
	Version   int64
	Name      string // file name, e.g. 00001_init.sql
	Applied   bool
	AppliedAt time.Time
}

// newProvider opens a database/sql handle for goose, which needs one, and a
// provider over the embedded files. The session locker takes a PostgreSQL
// advisory lock for the whole run, so replicas that start together migrate
// one after another instead of racing; the waiting one then finds nothing
// to do. It polls every second for up to five minutes.
func newProvider(url string, o migrateOptions) (*goose.Provider, *sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing database URL: %w", err)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "starpipe-migrate"
	}
	db := stdlib.OpenDB(*cfg)
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("opening embedded migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("creating migration lock: %w", err)
	}
	popts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if o.log != nil {
		l := slog.New(statementsAtDebug{o.log.Handler()}).With("component", "migrate")
		popts = append(popts, goose.WithSlog(l), goose.WithVerbose(true))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, popts...)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("creating migration provider: %w", err)
	}
	return p, db, nil
}

// Migrate applies every pending migration. Run as a superuser it then
// hands the activity log to AuditRole and every other object to the
// database owner, the daemon's role (see protectActivityLog); run as the
// daemon's role it only migrates.
func Migrate(ctx context.Context, url string, opts ...MigrateOption) error {
	var o migrateOptions
	for _, opt := range opts {
		opt(&o)
	}
	p, db, err := newProvider(url, o)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return protectActivityLog(ctx, db, o.log)
}

// MigrateDown rolls back applied migrations newer than toVersion; 0 undoes
// them all.
func MigrateDown(ctx context.Context, url string, toVersion int64, opts ...MigrateOption) error {
	var o migrateOptions
	for _, opt := range opts {
		opt(&o)
	}
	p, db, err := newProvider(url, o)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := p.DownTo(ctx, toVersion); err != nil {
		return fmt.Errorf("rolling back migrations to version %d: %w", toVersion, err)
	}
	return nil
}

// MigrationStatus lists the embedded migrations and whether each is applied.
func MigrationStatus(ctx context.Context, url string) ([]Migration, error) {
	p, db, err := newProvider(url, migrateOptions{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading migration status: %w", err)
	}
	out := make([]Migration, 0, len(st))
	for _, m := range st {
		out = append(out, Migration{
			Version:   m.Source.Version,
			Name:      path.Base(m.Source.Path),
			Applied:   m.State == goose.StateApplied,
			AppliedAt: m.AppliedAt,
		})
	}
	return out, nil
}

// statementsAtDebug demotes goose's per-statement records to debug: an
// operator wants to see which migrations ran at info, not every ALTER.
type statementsAtDebug struct{ slog.Handler }

func (h statementsAtDebug) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug) || h.Handler.Enabled(ctx, l)
}

func (h statementsAtDebug) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "executing statement" {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h statementsAtDebug) WithAttrs(as []slog.Attr) slog.Handler {
	return statementsAtDebug{h.Handler.WithAttrs(as)}
}

func (h statementsAtDebug) WithGroup(name string) slog.Handler {
	return statementsAtDebug{h.Handler.WithGroup(name)}
}
