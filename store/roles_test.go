package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// daemonRole creates a login role without privileges that owns the test
// database, as an administrator sets one up for the daemon, and returns
// the database URL as that role. It is dropped after the test.
func daemonRole(t *testing.T, adminURL string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name, pw := "sp_test_daemon_"+hex.EncodeToString(b), hex.EncodeToString(b)+"pw"
	admin := connect(t, adminURL)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE ROLE " + name + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '" + pw + "'")
	t.Cleanup(func() {
		// Before storetest drops the database: give back what the role
		// owns there, then the role can go.
		ctx := context.Background()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("dropping role %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		for _, sql := range []string{"REASSIGN OWNED BY " + name + " TO current_user", "DROP OWNED BY " + name, "DROP ROLE " + name} {
			if _, err := c.Exec(ctx, sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
	var db string
	if err := admin.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	exec("ALTER DATABASE " + pgx.Identifier{db}.Sanitize() + " OWNER TO " + name)
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, pw)
	return u.String()
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func tableOwner(t *testing.T, c *pgx.Conn, table string) string {
	t.Helper()
	var owner string
	if err := c.QueryRow(t.Context(), "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass($1)", table).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	return owner
}

// TestActivityLogOutOfDaemonsReach: migrations work as the daemon's role
// alone (it owns the schema, as on an external PostgreSQL without a
// superuser at hand); a superuser's run then hands the activity log to
// AuditRole, after which the daemon's role can add and read entries but
// neither change, remove nor unprotect them.
func TestActivityLogOutOfDaemonsReach(t *testing.T) {
	t.Parallel()
	adminURL := storetest.NewEmptyDatabase(t)
	appURL := daemonRole(t, adminURL)
	ctx := t.Context()

	if err := store.Migrate(ctx, appURL); err != nil {
		t.Fatalf("Migrate as the daemon's role: %v", err)
	}
	app := connect(t, appURL)
	var me string
	if err := app.QueryRow(ctx, "SELECT current_user").Scan(&me); err != nil {
		t.Fatal(err)
	}
	if got := tableOwner(t, app, "activity_log"); got != me {
		t.Fatalf("after the daemon's own migration the activity log belongs to %s, want %s", got, me)
	}

	if err := store.Migrate(ctx, adminURL); err != nil {
		t.Fatalf("Migrate as superuser: %v", err)
	}
	if got := tableOwner(t, app, "activity_log"); got != store.AuditRole {
		t.Fatalf("activity log belongs to %s, want %s", got, store.AuditRole)
	}
	if got := tableOwner(t, app, "findings"); got != me {
		t.Fatalf("findings belongs to %s, want the daemon's role %s", got, me)
	}
	// The daemon's role still runs migrations (nothing pending) and its
	// own work, including appending to the log.
	if err := store.Migrate(ctx, appURL); err != nil {
		t.Fatalf("Migrate as the daemon's role after the hand-over: %v", err)
	}
	st, err := store.Open(ctx, appURL, store.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AppendActivity(ctx, nil, store.Activity{Actor: "test", Action: "test.appended", SubjectType: "test", SubjectID: "1"}); err != nil {
		t.Fatalf("AppendActivity as the daemon's role: %v", err)
	}

	for _, sql := range []string{
		"UPDATE activity_log SET actor = 'mallory'",
		"DELETE FROM activity_log",
		"TRUNCATE activity_log",
		"ALTER TABLE activity_log DISABLE TRIGGER activity_log_no_update_delete",
		"DROP TRIGGER activity_log_no_update_delete ON activity_log",
		"DROP TABLE activity_log",
		"DROP SCHEMA public CASCADE",
		"DROP FUNCTION activity_log_append_only() CASCADE",
		"ALTER EVENT TRIGGER starpipe_guard_activity_log DISABLE",
		"ALTER TABLE activity_log OWNER TO CURRENT_USER",
		"CREATE OR REPLACE FUNCTION activity_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
		// The hash chain's trigger and functions (migration 00013).
		"ALTER TABLE activity_log DISABLE TRIGGER activity_log_chain",
		"DROP TRIGGER activity_log_chain ON activity_log",
		"DROP FUNCTION activity_log_chain() CASCADE",
		"ALTER TABLE activity_log DISABLE TRIGGER activity_log_chain_head",
		"CREATE OR REPLACE FUNCTION activity_log_chain_head() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
		"CREATE OR REPLACE FUNCTION activity_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
		"CREATE OR REPLACE FUNCTION activity_log_canonical(bigint, bigint, timestamptz, text, text, text, text, uuid, jsonb, jsonb, text) RETURNS text LANGUAGE sql AS $$ SELECT '' $$",
		"SET ROLE " + store.AuditRole,
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := app.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("as the daemon's role: got %v, want insufficient_privilege (42501)", err)
			}
		})
	}
	// A row inserted with a chain of its own making is chained by the
	// trigger all the same.
	forged := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if _, err := app.Exec(ctx, `INSERT INTO activity_log (actor, action, subject_type, subject_id, seq, prev_hash, hash)
		VALUES ('test', 'test.forged', 'test', '2', 99, $1, $1)`, forged); err != nil {
		t.Fatalf("inserting as the daemon's role: %v", err)
	}
	var seq int64
	var prev, hash string
	if err := app.QueryRow(ctx, "SELECT seq, prev_hash, hash FROM activity_log WHERE action = 'test.forged'").Scan(&seq, &prev, &hash); err != nil {
		t.Fatal(err)
	}
	if seq != 2 || prev == forged || hash == forged {
		t.Fatalf("forged chain fields kept: seq %d prev_hash %s hash %s", seq, prev, hash)
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM activity_log WHERE actor = 'test'").Scan(&n); err != nil || n != 2 {
		t.Fatalf("reading the log as the daemon's role: %d rows, %v", n, err)
	}
}

// A database migrated by a superuser from the start: everything but the
// activity log belongs to the database owner, the daemon's role.
func TestMigrateAsSuperuserHandsOver(t *testing.T) {
	t.Parallel()
	adminURL := storetest.NewEmptyDatabase(t)
	appURL := daemonRole(t, adminURL)
	if err := store.Migrate(t.Context(), adminURL); err != nil {
		t.Fatal(err)
	}
	app := connect(t, appURL)
	rows, err := app.Query(t.Context(), `
		SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'm')
		  AND pg_get_userbyid(c.relowner) <> current_user AND c.relname NOT LIKE 'activity_log%'`)
	if err != nil {
		t.Fatal(err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Owner string }])
	if err != nil {
		t.Fatal(err)
	}
	if len(others) != 0 {
		t.Fatalf("objects not handed to the daemon's role: %+v", others)
	}
	if got := tableOwner(t, app, "activity_log"); got != store.AuditRole {
		t.Fatalf("activity log belongs to %s, want %s", got, store.AuditRole)
	}
}
