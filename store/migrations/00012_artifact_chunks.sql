-- Artifacts stored as a sequence of zstd-compressed chunks instead of one
-- bytea value, so that an upload is streamed into storage (no whole-file
-- buffer, no value near PostgreSQL's 1 GB limit, no transaction that lasts
-- as long as the upload) and read back one chunk at a time.
--
-- An upload writes its chunks under a blob of its own, each chunk in its
-- own short statement, while the hash of the content is not yet known;
-- once it is, the artifact row that names the hash takes the blob in the
-- run's small transaction (committed_at). A blob no artifact took (an
-- interrupted upload, a process that died, content already stored under
-- the same hash) is deleted by its writer or, failing that, by the sweep
-- (store.SweepArtifactBlobs), which only takes blobs left alone for a while.
--
-- Artifacts stored before this migration keep their single content value
-- and stay readable (encoding zstd or gzip, blob_id null).

-- +goose Up
CREATE TABLE artifact_blobs (
    id           uuid PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    touched_at   timestamptz NOT NULL DEFAULT now(), -- last chunk written
    committed_at timestamptz,                        -- taken by an artifact row
    chunks       int CHECK (chunks >= 0)             -- known once committed
);
CREATE INDEX artifact_blobs_uncommitted_idx ON artifact_blobs (touched_at) WHERE committed_at IS NULL;

CREATE TABLE artifact_chunks (
    blob_id uuid NOT NULL REFERENCES artifact_blobs (id) ON DELETE CASCADE,
    seq     int NOT NULL CHECK (seq >= 0),
    size    int NOT NULL CHECK (size > 0), -- uncompressed bytes
    data    bytea NOT NULL,                -- one zstd frame
    PRIMARY KEY (blob_id, seq)
);
-- The data is already compressed: PostgreSQL's own TOAST compression
-- would spend time for nothing.
ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

ALTER TABLE artifacts
    ALTER COLUMN content DROP NOT NULL,
    ADD COLUMN blob_id uuid UNIQUE REFERENCES artifact_blobs (id),
    DROP CONSTRAINT artifacts_encoding_check,
    ADD CONSTRAINT artifacts_encoding_check CHECK (encoding IN ('zstd', 'gzip', 'zstd-chunks')),
    ADD CONSTRAINT artifacts_one_content CHECK (
        (encoding = 'zstd-chunks' AND blob_id IS NOT NULL AND content IS NULL)
        OR (encoding <> 'zstd-chunks' AND blob_id IS NULL AND content IS NOT NULL));

-- +goose Down
-- Chunked artifacts cannot be put back into one value by SQL alone (the
-- chunks are zstd frames): refuse rather than lose evidence.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM artifacts WHERE blob_id IS NOT NULL) THEN
        RAISE EXCEPTION 'artifacts are stored in chunks: migrating below version 9 would lose them';
    END IF;
END $$;
-- +goose StatementEnd
ALTER TABLE artifacts
    DROP CONSTRAINT artifacts_one_content,
    DROP CONSTRAINT artifacts_encoding_check,
    ADD CONSTRAINT artifacts_encoding_check CHECK (encoding IN ('zstd', 'gzip')),
    DROP COLUMN blob_id,
    ALTER COLUMN content SET NOT NULL;
DROP TABLE artifact_chunks;
DROP TABLE artifact_blobs;
