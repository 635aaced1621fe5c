-- Review by named people: users and the tokens that act as them, CCM
-- domain and control ownership, review decisions keyed by a finding's
-- identity, the SLA policy with its history, and the SLA breaches already
-- announced.

-- +goose Up

-- A named person (or a named service with a role). Users are never
-- deleted: the activity log and review decisions name them. Disabling one
-- makes every token acting as them unusable.
CREATE TABLE users (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._@-]*$' AND length(name) <= 128),
    email       text NOT NULL DEFAULT '' CHECK (length(email) <= 320),
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'owner', 'auditor', 'ingest')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- A token that belongs to a user acts as that user: the user's current role
-- (not the one the token row was created with) and the user's name as the
-- actor of every change. Tokens without a user are named services.
ALTER TABLE api_tokens ADD COLUMN user_name text REFERENCES users (name);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_name) WHERE user_name IS NOT NULL;

-- What an owner is responsible for: a CCM domain (by code, in every CCM
-- version: AIS is AIS in v4.0.13 and v4.1) or one control of one version.
-- A control assignment is stored again for the same-title control of the
-- other version (via names the assignment it was derived from), because
-- v4.1 renumbered controls and findings carry links in both versions.
-- scopes, when not empty, limits the assignment to findings of those scan
-- scopes (exact match).
CREATE TABLE ownership (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text NOT NULL REFERENCES users (name),
    domain      text NOT NULL DEFAULT '',
    ccm_version text NOT NULL DEFAULT '',
    control_id  text NOT NULL DEFAULT '',
    via         text NOT NULL DEFAULT '',
    scopes      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    CHECK ((domain <> '' AND ccm_version = '' AND control_id = '')
        OR (domain = '' AND ccm_version <> '' AND control_id <> '')),
    UNIQUE (owner, domain, ccm_version, control_id)
);
CREATE INDEX ownership_control_idx ON ownership (ccm_version, control_id) WHERE control_id <> '';

-- Each finding's owners, derived from its control links. Disabled users own
-- nothing.
CREATE VIEW finding_owners AS
SELECT DISTINCT cl.finding_id, o.owner
FROM control_links cl
JOIN findings f ON f.id = cl.finding_id
JOIN ownership o
  ON ((o.domain <> '' AND starts_with(cl.control_id, o.domain || '-'))
      OR (o.control_id <> '' AND o.ccm_version = cl.ccm_version AND o.control_id = cl.control_id))
 AND (cardinality(o.scopes) = 0 OR f.scope = ANY (o.scopes))
JOIN users u ON u.name = o.owner AND u.disabled_at IS NULL;

-- The people's view of a finding, keyed by its identity rather than its id,
-- and with no foreign key: a rescan, a re-ingest, or a finding deleted and
-- found again all meet the same decision. No row means untriaged.
CREATE TABLE finding_reviews (
    scope         text NOT NULL,
    kind          text NOT NULL,
    fingerprint   text NOT NULL,
    state         text NOT NULL
                  CHECK (state IN ('untriaged', 'confirmed', 'false_positive', 'risk_accepted', 'not_applicable')),
    justification text NOT NULL DEFAULT '',
    comment       text NOT NULL DEFAULT '' CHECK (length(comment) <= 10000),
    decided_by    text NOT NULL,
    decided_at    timestamptz NOT NULL,
    -- When a decision first took the finding out of untriaged: how long it
    -- sat in triage is triaged_at minus the finding's first_seen.
    triaged_at    timestamptz,
    PRIMARY KEY (scope, kind, fingerprint)
);
CREATE INDEX finding_reviews_state_idx ON finding_reviews (state);

-- The SLA policy with its history: a new version whenever the configured
-- policy changes, so that a past cycle reads the policy then in force. A
-- NULL duration means the severity has no SLA.
CREATE TABLE sla_policies (
    version        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    critical       interval CHECK (critical > interval '0'),
    high           interval CHECK (high > interval '0'),
    medium         interval CHECK (medium > interval '0'),
    low            interval CHECK (low > interval '0'),
    info           interval CHECK (info > interval '0'),
    effective_from timestamptz NOT NULL,
    recorded_by    text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sla_policies_effective_idx ON sla_policies (effective_from);

-- One row per finding and due date whose breach was announced: the key
-- makes the sla-breached event go out once per due date however many
-- replicas check, and a reopened finding (a fresh due date) can breach
-- again.
CREATE TABLE sla_breaches (
    finding_id  bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    sla_due     timestamptz NOT NULL,
    severity    text NOT NULL,
    breached_at timestamptz NOT NULL,
    PRIMARY KEY (finding_id, sla_due)
);

-- +goose Down
DROP TABLE sla_breaches;
DROP TABLE sla_policies;
DROP TABLE finding_reviews;
DROP VIEW finding_owners;
DROP TABLE ownership;
DROP INDEX api_tokens_user_idx;
ALTER TABLE api_tokens DROP COLUMN user_name;
DROP TABLE users;
