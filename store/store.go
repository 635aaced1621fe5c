// Package store is starpipe's PostgreSQL persistence: the connection pool,
// the embedded schema migrations, and the queries the other packages need
// (API tokens, the activity log, raw artifacts, bulk finding writes).
//
// Methods that take a DBTX run inside the caller's transaction when given a
// pgx.Tx, so that a finding change, its activity-log entry and its outbox
// message commit together; given nil they use the pool.
package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/zstd"
)

// DBTX is what both *pgxpool.Pool and pgx.Tx offer, so that a query can run
// inside the caller's transaction or on its own.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// Store is a connection pool plus starpipe's queries. It is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// Artifact chunks are compressed and decompressed whole (EncodeAll,
	// DecodeAll), both safe for concurrent use and bounded by ChunkSize.
	zenc *zstd.Encoder
	zdec *zstd.Decoder
}

type options struct {
	log      *slog.Logger
	maxConns int32
}

// Option configures Open.
type Option func(*options)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMaxConns caps the pool. The default is 16 unless the URL sets
// pool_max_conns.
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

const defaultMaxConns = 16

// Open connects to url (a postgres:// URL or key=value DSN) and checks that
// the server answers. application_name is "starpipe" unless the URL sets it,
// so that pg_stat_activity shows whose connections these are.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "starpipe"
	}
	switch {
	case o.maxConns > 0:
		cfg.MaxConns = o.maxConns
	case !strings.Contains(url, "pool_max_conns"):
		cfg.MaxConns = defaultMaxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating connection pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL at %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	// A chunk decompresses to at most ChunkSize: a frame claiming more is
	// corrupt, and refusing it keeps a damaged header from allocating.
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(2*ChunkSize))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("creating zstd decoder: %w", err)
	}
	// Two encoders: concurrent uploads beyond that wait for one, which
	// bounds the memory compression takes.
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(ChunkSize), zstd.WithLowerEncoderMem(true))
	if err != nil {
		pool.Close()
		zdec.Close()
		return nil, fmt.Errorf("creating zstd encoder: %w", err)
	}
	return &Store{pool: pool, log: o.log.With("component", "store"), zenc: zenc, zdec: zdec}, nil
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging PostgreSQL: %w", err)
	}
	return nil
}

// Close waits for acquired connections to be released and closes the pool.
func (s *Store) Close() {
	s.pool.Close()
	s.zdec.Close()
	_ = s.zenc.Close()
}

// Tx is a transaction opened by InTx. The store functions that take one
// run in it, so that a caller composes several writes (a finding change,
// its activity-log entry, its outbox message) into one commit without
// running SQL itself: Tx offers no query methods outside this package.
type Tx struct{ tx pgx.Tx }

// InTx runs fn in a transaction, committing if fn returns nil and rolling
// back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error { return fn(&Tx{tx: tx}) })
}

func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// on is the transaction when there is one, the pool otherwise.
func (s *Store) on(tx *Tx) DBTX {
	if tx == nil {
		return s.pool
	}
	return tx.tx
}

func (s *Store) q(q DBTX) DBTX {
	if q == nil {
		return s.pool
	}
	return q
}
