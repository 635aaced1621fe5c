-- Hardening (issue 11, item 3): evidence cannot be closed by accident or
-- by a stray token.
--
-- 1. A token can be limited to scopes (glob patterns, finding.MatchScope)
--    and scan kinds. Empty arrays mean "no limit", which is what every
--    token created before this migration gets.
-- 2. A run whose reconciliation would resolve too much of its scope at once
--    is held: its observations are stored, nothing is resolved, and a
--    person releases it (status succeeded, the resolutions applied) or
--    discards it (status discarded, nothing resolved).

-- +goose Up
ALTER TABLE api_tokens
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{}',
    ADD COLUMN kinds  text[] NOT NULL DEFAULT '{}'
        CHECK (kinds <@ ARRAY['external', 'authenticated', 'code']::text[]);

ALTER TABLE scan_runs DROP CONSTRAINT scan_runs_status_check;
ALTER TABLE scan_runs ADD CONSTRAINT scan_runs_status_check
    CHECK (status IN ('received', 'queued', 'processing', 'succeeded', 'failed', 'held', 'discarded'));
ALTER TABLE scan_runs
    ADD COLUMN held_at            timestamptz, -- when reconciliation held the run
    ADD COLUMN hold_would_resolve int,         -- findings it would have resolved then
    ADD COLUMN hold_open          int,         -- open findings of its scope, kind and tools then
    ADD COLUMN decided_by         text,        -- who released or discarded it
    ADD COLUMN decided_at         timestamptz;
CREATE INDEX scan_runs_held_idx ON scan_runs (created_at) WHERE status = 'held';

-- +goose Down
DROP INDEX scan_runs_held_idx;
UPDATE scan_runs SET status = 'failed', error = 'held or discarded when the schema was migrated down'
WHERE status IN ('held', 'discarded');
ALTER TABLE scan_runs
    DROP COLUMN held_at, DROP COLUMN hold_would_resolve, DROP COLUMN hold_open,
    DROP COLUMN decided_by, DROP COLUMN decided_at;
ALTER TABLE scan_runs DROP CONSTRAINT scan_runs_status_check;
ALTER TABLE scan_runs ADD CONSTRAINT scan_runs_status_check
    CHECK (status IN ('received', 'queued', 'processing', 'succeeded', 'failed'));
ALTER TABLE api_tokens DROP COLUMN scopes, DROP COLUMN kinds;
