-- +goose Up
-- Control links are always reached through their finding, and a finding's
-- links are replaced as a whole when it is seen again (so links follow the
-- current rules). A narrow index on finding_id serves that; the wide
-- four-column primary key and the per-control index cost twelve text
-- index insertions per finding (two CCM versions, ~6 controls each) and
-- dominated ingest time. The per-control summary scans the table anyway.
ALTER TABLE control_links DROP CONSTRAINT control_links_pkey;
DROP INDEX control_links_control_idx;
CREATE INDEX control_links_finding_idx ON control_links (finding_id);

-- +goose Down
DROP INDEX control_links_finding_idx;
CREATE INDEX control_links_control_idx ON control_links (ccm_version, control_id);
ALTER TABLE control_links ADD PRIMARY KEY (finding_id, ccm_version, control_id, rule_id);
