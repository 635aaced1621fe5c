package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// AuditRole owns the activity log. Nobody logs in as it: a superuser
// running the migrations hands the table to it and grants the daemon's
// role (the database owner) INSERT and SELECT only. The daemon can then
// neither change nor remove entries, nor drop the append-only triggers,
// which a table owner could.
const AuditRole = "starpipe_audit"

// protectActivityLog runs after the migrations. As a superuser it (1) makes
// sure AuditRole exists, (2) gives the objects the migrations just created
// as the superuser to the database owner, the daemon's role, so that the
// daemon can run later migrations itself, and (3) hands the activity log to
// AuditRole with only INSERT and SELECT left to the daemon's role. It is
// idempotent, so every superuser run repairs what runs as the daemon's role
// created in between.
//
// As any other role it changes nothing: migrations work for a daemon role
// that owns the schema (an external PostgreSQL where no superuser runs
// them), and it warns that the activity log is then only as safe as its
// triggers.
func protectActivityLog(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var super bool
	var owner sql.NullString
	err := db.QueryRowContext(ctx, `
		SELECT r.rolsuper, (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = to_regclass('activity_log'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&super, &owner)
	if err != nil {
		return fmt.Errorf("checking who owns the activity log: %w", err)
	}
	if !owner.Valid {
		return nil // not migrated that far
	}
	if !super {
		if owner.String != AuditRole && log != nil {
			log.Warn("the activity log belongs to the daemon's role, which could drop its append-only triggers; run `starpipe migrate` once with a superuser's database URL to hand it to "+AuditRole,
				"component", "migrate", "owner", owner.String)
		}
		return nil
	}
	// Two test processes migrating at once may both try to create the
	// role: the loser's error is either of these two.
	if _, err := db.ExecContext(ctx, `
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+AuditRole+`') THEN
        CREATE ROLE `+AuditRole+` NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$`); err != nil {
		return fmt.Errorf("creating role %s: %w", AuditRole, err)
	}
	if _, err := db.ExecContext(ctx, handOverSQL); err != nil {
		return fmt.Errorf("handing the activity log to %s: %w", AuditRole, err)
	}
	return nil
}

// handOverSQL runs as a superuser in one transaction (a DO block is one
// statement), under a lock so that concurrent runs take turns. The daemon's
// role is the database owner. Sequences that belong to a column follow
// their table.
//
// Owning the schema (public belongs to the database owner) would still let
// the daemon's role DROP the activity log, or DROP SCHEMA ... CASCADE, which
// no privilege prevents; an event trigger (only a superuser can create,
// alter or drop one) refuses any drop that takes the log, its triggers or
// its trigger function with it, unless a superuser does it. Its function
// lives in a schema of AuditRole's, out of the daemon's reach.
const handOverSQL = `
DO $$
DECLARE
    app  text := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
    me   oid  := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    r    record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('starpipe.protect_activity_log'));
    IF app <> current_user THEN
        FOR r IN
            SELECT c.oid::regclass AS name, c.relkind
            FROM pg_class c
            WHERE c.relnamespace = current_schema()::regnamespace
              AND c.relowner = me
              AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              AND c.oid <> 'activity_log'::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_depend d
                              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
        LOOP
            EXECUTE format('ALTER %s %s OWNER TO %I',
                CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                               WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                r.name, app);
        END LOOP;
        FOR r IN
            SELECT p.oid::regprocedure AS name
            FROM pg_proc p
            WHERE p.pronamespace = current_schema()::regnamespace
              AND p.proowner = me
              AND p.oid <> 'activity_log_append_only()'::regprocedure
              AND p.oid IS DISTINCT FROM to_regprocedure('activity_log_chain()')
              AND p.oid IS DISTINCT FROM to_regprocedure('activity_log_chain_head()')
              AND p.oid IS DISTINCT FROM to_regprocedure('activity_log_canonical(bigint,bigint,timestamptz,text,text,text,text,uuid,jsonb,jsonb,text)')
        LOOP
            EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, app);
        END LOOP;
        FOR r IN
            SELECT t.oid::regtype AS name
            FROM pg_type t
            WHERE t.typnamespace = current_schema()::regnamespace
              AND t.typowner = me AND t.typtype IN ('e', 'd', 'c')
              AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
        LOOP
            EXECUTE format('ALTER TYPE %s OWNER TO %I', r.name, app);
        END LOOP;
    END IF;
    ALTER TABLE activity_log OWNER TO starpipe_audit;
    ALTER FUNCTION activity_log_append_only() OWNER TO starpipe_audit;
    -- The hash chain's functions (migration 00013): the daemon's role
    -- could otherwise replace them and chain new rows its own way.
    IF to_regprocedure('activity_log_chain()') IS NOT NULL THEN
        ALTER FUNCTION activity_log_chain() OWNER TO starpipe_audit;
        ALTER FUNCTION activity_log_chain_head() OWNER TO starpipe_audit;
        ALTER FUNCTION activity_log_canonical(bigint,bigint,timestamptz,text,text,text,text,uuid,jsonb,jsonb,text) OWNER TO starpipe_audit;
    END IF;
    IF app <> 'starpipe_audit' THEN
        EXECUTE format('REVOKE ALL ON activity_log FROM %I', app);
        EXECUTE format('GRANT SELECT, INSERT ON activity_log TO %I', app);
        FOR r IN
            SELECT c.oid::regclass AS name
            FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
            WHERE c.relkind = 'S' AND d.refobjid = 'activity_log'::regclass AND d.deptype IN ('a', 'i')
        LOOP
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', r.name, app);
        END LOOP;
    END IF;

    CREATE SCHEMA IF NOT EXISTS starpipe_audit AUTHORIZATION starpipe_audit;
    CREATE OR REPLACE FUNCTION starpipe_audit.guard_activity_log() RETURNS event_trigger
    LANGUAGE plpgsql AS $g$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                   WHERE (o.object_type = 'table' AND o.object_name = 'activity_log')
                      OR (o.object_type = 'function' AND o.object_name = 'activity_log_append_only')
                      OR (o.object_type = 'function' AND o.object_identity ~ '(^|\.)activity_log_(append_only|chain|chain_head|canonical)\(')
                      OR (o.object_type = 'trigger' AND o.object_identity LIKE 'activity_log_chain% on %activity_log')
                      OR (o.object_type = 'trigger' AND o.object_identity LIKE 'activity_log_no_% on %activity_log'))
           AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE EXCEPTION 'the activity log is append-only: only a superuser may drop it'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END
    $g$;
    ALTER FUNCTION starpipe_audit.guard_activity_log() OWNER TO starpipe_audit;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'starpipe_guard_activity_log') THEN
        CREATE EVENT TRIGGER starpipe_guard_activity_log ON sql_drop
            EXECUTE FUNCTION starpipe_audit.guard_activity_log();
    END IF;
END $$`
