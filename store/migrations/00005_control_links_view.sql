-- +goose Up
-- A finding's control links are part of its normalised form (data ->
-- 'controls': version, id, rule, reason for each link), written in the same
-- row by the same statement. Keeping a second copy in a table of their own
-- cost twelve rows per finding (two CCM versions, ~6 controls each) and was
-- most of the ingest time; it could also drift from the finding. The
-- relation stays, as a view over the findings, so every query and report
-- reads control links exactly as before, and a finding seen again under
-- other rules carries exactly its current links.
DROP TABLE control_links;
CREATE VIEW control_links AS
SELECT f.id            AS finding_id,
       c->>'version'   AS ccm_version,
       c->>'id'        AS control_id,
       c->>'rule'      AS rule_id,
       coalesce(c->>'reason', '') AS reason
FROM findings f
CROSS JOIN LATERAL jsonb_array_elements(coalesce(f.data->'controls', '[]'::jsonb)) AS c;

-- +goose Down
DROP VIEW control_links;
CREATE TABLE control_links (
    finding_id  bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    ccm_version text NOT NULL,
    control_id  text NOT NULL,
    rule_id     text NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (finding_id, ccm_version, control_id, rule_id)
);
CREATE INDEX control_links_control_idx ON control_links (ccm_version, control_id);
INSERT INTO control_links (finding_id, ccm_version, control_id, rule_id, reason)
SELECT DISTINCT ON (f.id, c->>'version', c->>'id', c->>'rule')
       f.id, c->>'version', c->>'id', c->>'rule', coalesce(c->>'reason', '')
FROM findings f
CROSS JOIN LATERAL jsonb_array_elements(coalesce(f.data->'controls', '[]'::jsonb)) AS c;
