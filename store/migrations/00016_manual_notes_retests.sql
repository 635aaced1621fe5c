-- Manual findings' evidence files, notes on findings with their edit
-- history, and retests paired with the finding they retest.

-- +goose Up

-- Files a person attached to a finding (a pentest's screenshots, requests
-- and responses), stored once as artifacts by their SHA-256.
CREATE TABLE finding_evidence (
    finding_id      bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    artifact_sha256 text NOT NULL REFERENCES artifacts (sha256),
    file_name       text NOT NULL DEFAULT '' CHECK (length(file_name) <= 255),
    content_type    text NOT NULL DEFAULT '' CHECK (length(content_type) <= 255),
    size            bigint NOT NULL CHECK (size >= 0),
    added_by        text NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (finding_id, artifact_sha256)
);

-- A note on a finding: its current text here, every version (the first
-- included) in finding_note_versions, so an edit never loses what was
-- written before.
CREATE TABLE finding_notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finding_id bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    text       text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    version    int NOT NULL DEFAULT 1,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX finding_notes_finding_idx ON finding_notes (finding_id, id);

CREATE TABLE finding_note_versions (
    note_id   bigint NOT NULL REFERENCES finding_notes (id) ON DELETE CASCADE,
    version   int NOT NULL,
    text      text NOT NULL,
    edited_by text NOT NULL,
    edited_at timestamptz NOT NULL,
    PRIMARY KEY (note_id, version)
);

-- A retest asked for by a person: what it re-runs (the originating
-- schedule, the rule and the target) and the run that answered it.
-- pending until a run of the finding's scope, kind and tool that started
-- after the request (or the retest's own run) completes: passed when that
-- run did not see the finding (it resolved it), failed when it did.
CREATE TABLE retests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finding_id   bigint NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL,
    schedule_id  text NOT NULL DEFAULT '',
    rule_id      text NOT NULL,
    target       text NOT NULL DEFAULT '',
    run_id       uuid REFERENCES scan_runs (id),
    result       text NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'passed', 'failed')),
    decided_at   timestamptz,
    CHECK ((result = 'pending') = (decided_at IS NULL))
);
-- One pending retest per finding: asking again returns the pending one.
CREATE UNIQUE INDEX retests_pending_idx ON retests (finding_id) WHERE result = 'pending';
CREATE INDEX retests_run_idx ON retests (run_id) WHERE run_id IS NOT NULL;

-- +goose Down
DROP TABLE retests;
DROP TABLE finding_note_versions;
DROP TABLE finding_notes;
DROP TABLE finding_evidence;
