-- Scan schedules and the run ledger: one row per schedule and due time,
-- the evidence that every committed scan ran on cadence (or why not).

-- +goose Up

-- A schedule is never removed while it has ledger rows: deleting one sets
-- deleted_at, so the ledger keeps pointing at the definition it ran under
-- and the cadence report can still show the schedule's history. Creating a
-- schedule with a deleted schedule's name revives the row.
CREATE TABLE schedules (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]*$' AND length(name) <= 63),
    spec           jsonb NOT NULL,           -- the full scheduler/spec.Schedule
    kind           text NOT NULL CHECK (kind IN ('external', 'authenticated', 'code')),
    enabled        bool NOT NULL DEFAULT true,
    cadence        text NOT NULL,
    timezone       text NOT NULL DEFAULT 'UTC',
    start          text NOT NULL DEFAULT '',  -- a biweekly cadence's anchor date, YYYY-MM-DD
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text NOT NULL,
    -- When the schedule last started to owe runs: creation, revival,
    -- re-enabling, or a change of cadence, time zone or start date. Due
    -- times before it were never owed, so they are never recorded missed.
    active_since   timestamptz NOT NULL DEFAULT now(),
    -- The latest due time accounted for in the ledger (fired, skipped or
    -- missed): the watermark for missed-run detection.
    last_fired_due timestamptz,
    deleted_at     timestamptz
);

CREATE TABLE schedule_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule    text NOT NULL REFERENCES schedules (name), -- no cascade: see schedules
    due_at      timestamptz NOT NULL,
    status      text NOT NULL
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'missed')),
    -- A catch-up run stands in for a missed due time; that due time keeps
    -- its own row with status missed, so the gap stays visible.
    catch_up    bool NOT NULL DEFAULT false,
    run_id      uuid,                       -- the scan run it produced
    claimed_at  timestamptz NOT NULL,       -- when the scheduler recorded this row
    started_at  timestamptz,
    finished_at timestamptz,
    error       text,
    -- The exactly-once claim: whichever scheduler inserts the row for a due
    -- time fires it; every other one finds the row and stands down.
    UNIQUE (schedule, due_at, catch_up)
);
CREATE INDEX schedule_ledger_due_idx ON schedule_ledger (due_at);
-- Overlap checks look for a schedule's unfinished runs.
CREATE INDEX schedule_ledger_active_idx ON schedule_ledger (schedule)
    WHERE status IN ('pending', 'running');

-- +goose Down
DROP TABLE schedule_ledger;
DROP TABLE schedules;
