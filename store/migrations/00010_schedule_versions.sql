-- Scan requests name a schedule and its version instead of carrying the
-- schedule's definition: the worker loads the stored schedule and runs it
-- only if it is still the version that was due (DESIGN.md, "Trust
-- boundaries": nothing read from Kafka is executed as given).
--
-- version counts the changes of a schedule: 1 when created, one more on
-- every update, revival or deletion. The ledger keeps the version each due
-- time was claimed under; rows claimed before this migration have none,
-- and a scan request queued before it is not run (the worker fails its row
-- and says why).

-- +goose Up
ALTER TABLE schedules ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);
ALTER TABLE schedule_ledger ADD COLUMN schedule_version bigint;

-- +goose Down
ALTER TABLE schedule_ledger DROP COLUMN schedule_version;
ALTER TABLE schedules DROP COLUMN version;
