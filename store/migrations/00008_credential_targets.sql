-- Where each credential may be sent: URL prefixes (scheme, host, port and
-- a path prefix) and whether plain http is acceptable. Rows stored before
-- this migration get no targets, which the application reads as "may be
-- sent nowhere": schedules naming them are refused and their scans fail
-- with a message saying how to set the targets (see docs/credentials).

-- +goose Up
ALTER TABLE credentials
    ADD COLUMN targets    text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN allow_http boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE credentials DROP COLUMN targets, DROP COLUMN allow_http;
