-- +goose Up
-- A finding is one issue in one scope as one kind of scan sees it. An
-- external and an authenticated scan of the same URL report the same
-- template at the same place; each must be reconciled by its own kind's
-- rescans (reconciliation already keys on scope, kind and tool), so they
-- are two findings, not one row whose kind flips with every scan.
ALTER TABLE findings DROP CONSTRAINT findings_scope_fingerprint_key;
ALTER TABLE findings ADD CONSTRAINT findings_scope_kind_fingerprint_key UNIQUE (scope, kind, fingerprint);

-- +goose Down
-- Fails if both kinds hold the same (scope, fingerprint): merge them first.
ALTER TABLE findings DROP CONSTRAINT findings_scope_kind_fingerprint_key;
ALTER TABLE findings ADD CONSTRAINT findings_scope_fingerprint_key UNIQUE (scope, fingerprint);
