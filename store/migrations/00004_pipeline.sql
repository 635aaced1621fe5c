-- +goose Up
-- The name the file had when it was uploaded, for error messages and the
-- evidence trail (the artifact itself is content-addressed).
ALTER TABLE scan_runs ADD COLUMN file_name text;

-- +goose Down
ALTER TABLE scan_runs DROP COLUMN file_name;
