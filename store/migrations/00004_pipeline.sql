-- +goose Up
-- The name the file had when it was uploaded, for error messages and the
-- evidence trail (the artifact itself is content-addressed).
ALTER TABLE scan_runs ADD COLUMN file_name text;
-- The CVSS environmental fragment a schedule asks its findings to be
-- scored under (CR/IR/AR and modified base metrics).
ALTER TABLE scan_runs ADD COLUMN environment text;

-- +goose Down
ALTER TABLE scan_runs DROP COLUMN environment;
ALTER TABLE scan_runs DROP COLUMN file_name;
