-- Two things the Level 3 cadence report reads as evidence, and which must
-- not depend on what happened later:
--
-- 1. Every scan run a due time produced. One due time of an external
--    schedule with domains produces an amass run and a nuclei run per
--    target; schedule_ledger.run_id can hold only one of them (the first,
--    kept for compatibility), so the runs holding the findings were lost.
-- 2. The control links each sighting of a finding had, as the mapping rules
--    then in force produced them, with the rules' hash. findings.data holds
--    only the current links, which a rules change rewrites.

-- +goose Up

-- The runs of a due time. A run belongs to one due time; its scope and
-- status are read from scan_runs, where the pipeline keeps them current.
CREATE TABLE ledger_runs (
    run_id      uuid PRIMARY KEY REFERENCES scan_runs (id),
    ledger_id   bigint NOT NULL REFERENCES schedule_ledger (id) ON DELETE CASCADE,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_runs_ledger_idx ON ledger_runs (ledger_id);
INSERT INTO ledger_runs (run_id, ledger_id)
SELECT l.run_id, l.id FROM schedule_ledger l JOIN scan_runs r ON r.id = l.run_id;

-- A set of control links as one version of the mapping rules produced it
-- for one finding, content-addressed: key is the SHA-256 of the rules hash
-- and the links (store.mappingKey computes it). Rescans under unchanged
-- rules produce the same key, so a set is stored once however many
-- sightings share it.
CREATE TABLE control_mappings (
    key        bytea PRIMARY KEY CHECK (length(key) = 32),
    rules_hash text NOT NULL,  -- mapping.Mapper.RulesHash; '' when unknown
    links      jsonb NOT NULL, -- [{version, id, rule, reason}], as in findings.data->'controls'
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The key of the links in findings.data (written with data, by the same
-- statement), and the key each sighting saw. A sighting whose key is still
-- the finding's reads its links from findings.data, so a first scan writes
-- its links once; the trigger below saves a finding's links into
-- control_mappings the moment an update replaces them, so every key an
-- observation holds stays readable. Sightings recorded before this
-- migration have no key: what they saw is unknown.
ALTER TABLE findings ADD COLUMN mapping_key bytea;
ALTER TABLE observations ADD COLUMN mapping_key bytea;

-- +goose StatementBegin
CREATE FUNCTION findings_keep_mapping() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO control_mappings (key, rules_hash, links)
    VALUES (OLD.mapping_key, coalesce(OLD.data->>'mapping_rules', ''), coalesce(OLD.data->'controls', '[]'::jsonb))
    ON CONFLICT (key) DO NOTHING;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
-- Only updates that name mapping_key are considered (reconciliation's
-- status updates do not), and only a changed key queues an event.
CREATE TRIGGER findings_keep_mapping
    AFTER UPDATE OF mapping_key ON findings
    FOR EACH ROW
    WHEN (OLD.mapping_key IS NOT NULL AND OLD.mapping_key IS DISTINCT FROM NEW.mapping_key)
    EXECUTE FUNCTION findings_keep_mapping();

-- Each sighting with the links and rules hash it was recorded under (NULL
-- for sightings from before keys were kept).
CREATE VIEW observation_mappings AS
SELECT o.run_id, o.finding_id, o.seen_at, o.mapping_key,
       coalesce(m.rules_hash, CASE WHEN o.mapping_key = f.mapping_key THEN coalesce(f.data->>'mapping_rules', '') END) AS rules_hash,
       coalesce(m.links, CASE WHEN o.mapping_key = f.mapping_key THEN coalesce(f.data->'controls', '[]'::jsonb) END) AS controls
FROM observations o
JOIN findings f ON f.id = o.finding_id
LEFT JOIN control_mappings m ON m.key = o.mapping_key;

-- The same, one row per link, shaped like control_links.
CREATE VIEW observed_control_links AS
SELECT om.run_id, om.finding_id, om.seen_at, om.rules_hash,
       c->>'version'   AS ccm_version,
       c->>'id'        AS control_id,
       c->>'rule'      AS rule_id,
       coalesce(c->>'reason', '') AS reason
FROM observation_mappings om
CROSS JOIN LATERAL jsonb_array_elements(coalesce(om.controls, '[]'::jsonb)) AS c;

-- +goose Down
DROP VIEW observed_control_links;
DROP VIEW observation_mappings;
DROP TRIGGER findings_keep_mapping ON findings;
DROP FUNCTION findings_keep_mapping();
ALTER TABLE observations DROP COLUMN mapping_key;
ALTER TABLE findings DROP COLUMN mapping_key;
DROP TABLE control_mappings;
DROP TABLE ledger_runs;
