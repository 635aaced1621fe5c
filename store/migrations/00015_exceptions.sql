-- The exceptions register: an accepted risk over named findings, with its
-- owner, rationale, compensating CCM controls, expiry and review cadence,
-- optionally approved by a second person. The findings' decisions live in
-- finding_reviews (keyed by identity) with the exception that made them.

-- +goose Up

CREATE TABLE exceptions (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state                 text NOT NULL CHECK (state IN ('pending', 'active', 'expired')),
    owner                 text NOT NULL REFERENCES users (name),
    rationale             text NOT NULL CHECK (length(rationale) BETWEEN 1 AND 10000),
    compensating_controls text[] NOT NULL DEFAULT '{}',
    expires_at            timestamptz NOT NULL,
    review_every          text NOT NULL DEFAULT '',
    next_review           timestamptz,
    created_by            text NOT NULL,
    created_at            timestamptz NOT NULL,
    approved_by           text,
    approved_at           timestamptz,
    expired_at            timestamptz,
    -- When the exception-expiring warning went out (once).
    expiry_warned_at      timestamptz,
    -- The review date whose exception-review-due event went out (once per
    -- review date).
    review_warned_for     timestamptz
);
CREATE INDEX exceptions_live_idx ON exceptions (expires_at) WHERE state <> 'expired';

-- The findings an exception covers, by id and by identity.
CREATE TABLE exception_findings (
    exception_id bigint NOT NULL REFERENCES exceptions (id) ON DELETE CASCADE,
    finding_id   bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    scope        text NOT NULL,
    kind         text NOT NULL,
    fingerprint  text NOT NULL,
    PRIMARY KEY (exception_id, finding_id)
);
CREATE INDEX exception_findings_finding_idx ON exception_findings (finding_id);

-- The exception a risk_accepted decision was made under; expiry returns the
-- findings still decided under it to untriaged.
ALTER TABLE finding_reviews ADD COLUMN exception_id bigint REFERENCES exceptions (id);
CREATE INDEX finding_reviews_exception_idx ON finding_reviews (exception_id) WHERE exception_id IS NOT NULL;

-- +goose Down
DROP INDEX finding_reviews_exception_idx;
ALTER TABLE finding_reviews DROP COLUMN exception_id;
DROP TABLE exception_findings;
DROP TABLE exceptions;
