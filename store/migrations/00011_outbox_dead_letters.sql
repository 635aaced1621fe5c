-- A row the relay cannot publish (the broker refuses it for good, or it
-- was refused relay.max_attempts times) is dead-lettered rather than
-- retried for ever: failed_at is set, last_error says why, and the row no
-- longer blocks the rows queued after it, those of its own key included.
-- refusals counts the attempts the broker refused this row specifically;
-- attempts still counts every attempt, failed connections included.

-- +goose Up
ALTER TABLE outbox
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN refusals  int NOT NULL DEFAULT 0;
DROP INDEX outbox_unsent_idx;
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL AND failed_at IS NULL;

-- +goose Down
DROP INDEX outbox_unsent_idx;
ALTER TABLE outbox DROP COLUMN failed_at, DROP COLUMN refusals;
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
