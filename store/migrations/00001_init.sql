-- The first schema: artifacts, scan runs, findings and what links them,
-- the outbox, the append-only activity log and API tokens.

-- +goose Up

-- Raw scanner output, content-addressed: the same bytes are stored once
-- whatever the number of runs or uploads that produced them.
CREATE TABLE artifacts (
    sha256          text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'), -- of the uncompressed bytes
    size            bigint NOT NULL CHECK (size >= 0),
    compressed_size bigint NOT NULL CHECK (compressed_size >= 0),
    encoding        text NOT NULL CHECK (encoding IN ('zstd', 'gzip')),
    format          text NOT NULL, -- sarif, nuclei-jsonl, amass, ...
    content         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scan_runs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    schedule_id      text,          -- null for ad-hoc uploads and CLI ingests
    kind             text NOT NULL CHECK (kind IN ('external', 'authenticated', 'code')),
    scope            text NOT NULL,
    tool             text NOT NULL,
    format           text NOT NULL,
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'queued', 'processing', 'succeeded', 'failed')),
    error            text,
    artifact_sha256  text REFERENCES artifacts (sha256),
    batches_expected int,           -- known once run-finished arrives
    batches_stored   int NOT NULL DEFAULT 0,
    findings_seen    int NOT NULL DEFAULT 0,
    stats            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    created_by       text
);
CREATE INDEX scan_runs_scope_created_idx ON scan_runs (scope, created_at);
CREATE INDEX scan_runs_schedule_created_idx ON scan_runs (schedule_id, created_at) WHERE schedule_id IS NOT NULL;

CREATE TABLE findings (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope                     text NOT NULL,
    fingerprint               text NOT NULL,
    kind                      text NOT NULL CHECK (kind IN ('external', 'authenticated', 'code')),
    tool                      text NOT NULL,
    tool_version              text,
    rule_id                   text NOT NULL,
    rule_name                 text,
    title                     text NOT NULL,
    message                   text,
    description               text,
    location                  jsonb,
    location_uri              text,
    cwe                       int[],
    cve                       text[],
    tags                      text[],
    cvss_version              text,
    cvss_vector               text,
    cvss_base                 numeric(3,1),
    cvss_temporal             numeric(3,1),
    cvss_environmental        numeric(3,1),
    severity                  text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    severity_source           text,
    status                    text NOT NULL DEFAULT 'open'
                              CHECK (status IN ('open', 'resolved', 'reopened', 'accepted', 'false_positive')),
    suppressed                bool NOT NULL DEFAULT false,
    suppression_justification text,
    first_seen                timestamptz NOT NULL,
    last_seen                 timestamptz NOT NULL,
    last_run_id               uuid REFERENCES scan_runs (id),
    resolved_at               timestamptz,
    resolved_by_run           uuid REFERENCES scan_runs (id),
    sla_due                   timestamptz,
    data                      jsonb NOT NULL, -- the full normalised finding.Finding
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope, fingerprint)
);
CREATE INDEX findings_status_severity_idx ON findings (status, severity);
CREATE INDEX findings_scope_tool_status_idx ON findings (scope, tool, status);
CREATE INDEX findings_sla_due_idx ON findings (sla_due) WHERE sla_due IS NOT NULL;

-- Which run saw which finding: the retest evidence.
CREATE TABLE observations (
    run_id     uuid NOT NULL REFERENCES scan_runs (id) ON DELETE CASCADE,
    finding_id bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, finding_id)
);
CREATE INDEX observations_finding_idx ON observations (finding_id);

CREATE TABLE control_links (
    finding_id  bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    ccm_version text NOT NULL,
    control_id  text NOT NULL,
    rule_id     text NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (finding_id, ccm_version, control_id, rule_id)
);
CREATE INDEX control_links_control_idx ON control_links (ccm_version, control_id);

-- One row per consumed findings batch: the idempotency receipt that makes a
-- replayed Kafka message a no-op.
CREATE TABLE run_batches (
    run_id    uuid NOT NULL REFERENCES scan_runs (id) ON DELETE CASCADE,
    seq       int NOT NULL,
    findings  int NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- Messages written in the same transaction as their cause and published to
-- Kafka afterwards (transactional outbox).
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text NOT NULL,
    key        text,
    payload    bytea NOT NULL,
    headers    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   int NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

CREATE TABLE activity_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    subject_type text NOT NULL,
    subject_id   text NOT NULL,
    run_id       uuid,
    before       jsonb,
    after        jsonb
);
CREATE INDEX activity_log_subject_idx ON activity_log (subject_type, subject_id, at);
CREATE INDEX activity_log_at_idx ON activity_log (at);

-- The activity log is audit evidence: rows are only ever added. The
-- triggers stop the application (and a careless operator) from rewriting
-- history; a superuser can still drop them, which is an auditable act.
-- +goose StatementBegin
CREATE FUNCTION activity_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'activity_log is append-only'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER activity_log_no_update_delete
    BEFORE UPDATE OR DELETE ON activity_log
    FOR EACH ROW EXECUTE FUNCTION activity_log_append_only();
CREATE TRIGGER activity_log_no_truncate
    BEFORE TRUNCATE ON activity_log
    FOR EACH STATEMENT EXECUTE FUNCTION activity_log_append_only();

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL UNIQUE,
    -- SHA-256 of the token. Tokens are 32 random bytes, so a fast unsalted
    -- hash is safe (nothing to brute-force) and lets Authenticate find the
    -- row by an index lookup; a slow password hash would add nothing.
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'owner', 'auditor', 'ingest')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE activity_log;
DROP FUNCTION activity_log_append_only();
DROP TABLE outbox;
DROP TABLE run_batches;
DROP TABLE control_links;
DROP TABLE observations;
DROP TABLE findings;
DROP TABLE scan_runs;
DROP TABLE artifacts;
