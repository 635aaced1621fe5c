-- +goose Up
-- Every query reaches control links through a finding (the primary key
-- starts with finding_id), and the per-control summary scans the table
-- anyway; this index only cost 12 extra index insertions per finding.
DROP INDEX control_links_control_idx;

-- +goose Down
CREATE INDEX control_links_control_idx ON control_links (ccm_version, control_id);
