package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestErrorClasses provokes each error from the real server and checks the
// class the consumer and the API decide on.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	s, url := storetest.New(t)
	db := storetest.SQL(t, s)
	ctx := t.Context()
	for _, ddl := range []string{
		`CREATE TABLE short_text (v varchar(2))`,
		`CREATE TABLE indexed_text (v text)`,
		`CREATE INDEX ON indexed_text (v)`,
		`CREATE TABLE unique_text (v text UNIQUE)`,
		`INSERT INTO unique_text VALUES ('taken')`,
	} {
		if _, err := db.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(sql string) func() error {
		return func() error { _, err := db.Exec(ctx, sql); return err }
	}
	type class struct{ permanent, invalid, unavailable bool }
	cases := []struct {
		name string
		code string // the SQLSTATE the server must give, "" for none
		err  func() error
		want class
	}{
		{"malformed uuid", "22P02", exec(`SELECT 'not-a-uuid'::uuid`), class{permanent: true, invalid: true}},
		{"NUL byte", "22021", exec(`SELECT convert_from('\x00'::bytea, 'UTF8')`), class{permanent: true, invalid: true}},
		{"string too long", "22001", exec(`INSERT INTO short_text VALUES ('abc')`), class{permanent: true, invalid: true}},
		{"batch of an unknown run", "23503", exec(`INSERT INTO run_batches (run_id, seq, findings) VALUES (gen_random_uuid(), 1, 0)`), class{permanent: true}},
		{"btree row too big", "54000", exec(`INSERT INTO indexed_text SELECT string_agg(md5(i::text || random()::text), '') FROM generate_series(1, 1000) i`), class{permanent: true, invalid: true}},
		{"unique violation (a concurrent writer)", "23505", exec(`INSERT INTO unique_text VALUES ('taken')`), class{}},
		{"undefined table (a bug, not the input)", "42P01", exec(`SELECT * FROM no_such_table`), class{}},
		{"admin shutdown", "57P01", func() error {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			var pid int
			if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := db.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				return err
			}
			_, err = conn.Exec(ctx, `SELECT 1`)
			return err
		}, class{unavailable: true}},
		{"connection refused", "", func() error {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			addr := l.Addr().String()
			l.Close() // nothing listens there now
			_, err = pgx.Connect(ctx, "postgres://u@"+addr+"/db?connect_timeout=5")
			return err
		}, class{unavailable: true}},
		{"serialization failure", "40001", func() error { return &pgconn.PgError{Code: "40001"} }, class{unavailable: true}},
		{"deadlock", "40P01", func() error { return &pgconn.PgError{Code: "40P01"} }, class{unavailable: true}},
		{"corrupt artifact", "", func() error { return fmt.Errorf("reading artifact x: %w", store.ErrCorrupt) }, class{permanent: true}},
		{"context cancelled", "", func() error { return context.Canceled }, class{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("doing something: %w", tc.err())
			if tc.code != "" {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("got %v, want SQLSTATE %s", err, tc.code)
				}
			} else if errors.Unwrap(err) == nil {
				t.Fatal("no error")
			}
			got := class{store.IsPermanent(err), store.IsInvalidData(err), store.IsUnavailable(err)}
			if got != tc.want {
				t.Fatalf("%v: got %+v, want %+v", err, got, tc.want)
			}
		})
	}
}
