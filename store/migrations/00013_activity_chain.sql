-- Hash-chains the activity log. Every row gets its place in the chain
-- (seq, gapless from 1), the hash of the row before it (prev_hash; 64
-- zeros for the first) and its own hash: the SHA-256, in lower-case hex,
-- of the row's canonical form. The canonical form is the text of the
-- jsonb object activity_log_canonical builds (see package activity and
-- docs/activity-log.md, which define it byte for byte so that a verifier
-- reproduces it from an export without PostgreSQL).
--
-- BEFORE INSERT triggers fill the three columns, so no writer can set
-- them and every existing insert path (INSERT, COPY) chains its rows.
-- They take a transaction-scoped advisory lock before reading the last
-- row, so inserts from several daemon replicas take turns: the lock is
-- held until the inserting transaction ends, and the next inserter reads
-- the row it committed. A rolled-back insert gives its seq back.
--
-- Rows already in the table are chained in id order. Changing the table
-- needs its owner: once `starpipe migrate` has run as a superuser, the
-- activity log belongs to starpipe_audit and this migration must run as a
-- superuser too.

-- +goose Up
ALTER TABLE activity_log
    ADD COLUMN seq       bigint,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash      text;

-- +goose StatementBegin
CREATE FUNCTION activity_log_canonical(
    id bigint, seq bigint, at timestamptz, actor text, action text,
    subject_type text, subject_id text, run_id uuid, before jsonb, after jsonb, prev_hash text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- The text PostgreSQL prints for the jsonb object of these keys
    -- (sorted by length, then bytewise; ", " and ": " separators; strings
    -- escaped by to_json as jsonb does; jsonb values as jsonb prints them),
    -- built by concatenation, which costs less than half of building the
    -- jsonb object and printing it.
    SELECT '{"id": ' || id || ', "seq": ' || seq
        || ', "time": "' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || '", "actor": ' || to_json(actor)::text
        || ', "after": ' || coalesce(after::text, 'null')
        || ', "action": ' || to_json(action)::text
        || ', "before": ' || coalesce(before::text, 'null')
        || ', "run_id": ' || coalesce(to_json(run_id::text)::text, 'null')
        || ', "entity_id": ' || to_json(subject_id)::text
        || ', "prev_hash": ' || to_json(prev_hash)::text
        || ', "entity_type": ' || to_json(subject_type)::text || '}'
$$;
-- +goose StatementEnd

-- The backfill runs with the append-only trigger off, inside this
-- migration's transaction; ALTER TABLE holds an exclusive lock on the table
-- meanwhile, so nothing is appended in between.
ALTER TABLE activity_log DISABLE TRIGGER activity_log_no_update_delete;
-- +goose StatementBegin
DO $$
DECLARE
    r    record;
    n    bigint := 0;
    prev text   := repeat('0', 64);
    h    text;
BEGIN
    FOR r IN SELECT * FROM activity_log ORDER BY id LOOP
        n := n + 1;
        h := encode(sha256(convert_to(activity_log_canonical(
                r.id, n, r.at, r.actor, r.action, r.subject_type, r.subject_id,
                r.run_id, r.before, r.after, prev), 'UTF8')), 'hex');
        UPDATE activity_log SET seq = n, prev_hash = prev, hash = h WHERE id = r.id;
        prev := h;
    END LOOP;
END $$;
-- +goose StatementEnd
ALTER TABLE activity_log ENABLE TRIGGER activity_log_no_update_delete;

ALTER TABLE activity_log
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT activity_log_seq_positive CHECK (seq > 0),
    ADD CONSTRAINT activity_log_prev_hash_hex CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT activity_log_hash_hex CHECK (hash ~ '^[0-9a-f]{64}$');
-- Unique: two inserters that somehow read the same last row (a
-- REPEATABLE READ transaction whose snapshot predates the other's commit)
-- fail instead of forking the chain.
CREATE UNIQUE INDEX activity_log_seq_idx ON activity_log (seq);

-- Two triggers, so that a COPY of many rows pays for the lock and the
-- look-up of the last row once per statement rather than per row: the
-- statement-level one takes the lock and reads the chain's head into a
-- transaction-local setting; the row-level one chains each row from that
-- setting and advances it. The lock is held to the end of the transaction,
-- so the head cannot move underneath; a rolled-back subtransaction
-- restores the setting with its rows.
-- +goose StatementBegin
CREATE FUNCTION activity_log_chain_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash text;
    ignored   text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('starpipe.activity_log.chain'));
    -- Under READ COMMITTED this query's snapshot is taken after the lock
    -- was granted, so it sees the row the previous holder committed.
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM activity_log a ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_hash := repeat('0', 64);
    END IF;
    ignored := set_config('starpipe.activity_chain_head', last_seq || ':' || last_hash, true);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION activity_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text := current_setting('starpipe.activity_chain_head', true);
BEGIN
    IF coalesce(head, '') = '' THEN
        RAISE EXCEPTION 'activity_log: chain head not set (the statement trigger did not run)'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    NEW.seq := split_part(head, ':', 1)::bigint + 1;
    NEW.prev_hash := split_part(head, ':', 2);
    -- activity_log_canonical, written out: a SQL function called from
    -- PL/pgSQL costs more than the expression itself.
    -- TestCanonicalMatchesPostgreSQL keeps the two and Go's in step.
    NEW.hash := encode(sha256(convert_to('{"id": ' || NEW.id || ', "seq": ' || NEW.seq
            || ', "time": "' || to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            || '", "actor": ' || to_json(NEW.actor)::text
            || ', "after": ' || coalesce(NEW.after::text, 'null')
            || ', "action": ' || to_json(NEW.action)::text
            || ', "before": ' || coalesce(NEW.before::text, 'null')
            || ', "run_id": ' || coalesce(to_json(NEW.run_id::text)::text, 'null')
            || ', "entity_id": ' || to_json(NEW.subject_id)::text
            || ', "prev_hash": ' || to_json(NEW.prev_hash)::text
            || ', "entity_type": ' || to_json(NEW.subject_type)::text || '}', 'UTF8')), 'hex');
    head := set_config('starpipe.activity_chain_head', NEW.seq || ':' || NEW.hash, true);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER activity_log_chain_head
    BEFORE INSERT ON activity_log
    FOR EACH STATEMENT EXECUTE FUNCTION activity_log_chain_head();
CREATE TRIGGER activity_log_chain
    BEFORE INSERT ON activity_log
    FOR EACH ROW EXECUTE FUNCTION activity_log_chain();

-- +goose Down
DROP TRIGGER activity_log_chain ON activity_log;
DROP TRIGGER activity_log_chain_head ON activity_log;
DROP FUNCTION activity_log_chain();
DROP FUNCTION activity_log_chain_head();
DROP FUNCTION activity_log_canonical(bigint, bigint, timestamptz, text, text, text, text, uuid, jsonb, jsonb, text);
DROP INDEX activity_log_seq_idx;
ALTER TABLE activity_log DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
