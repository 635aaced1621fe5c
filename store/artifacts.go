package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"
)

// Artifact describes stored raw scanner output.
type Artifact struct {
	SHA256         string // hex SHA-256 of the uncompressed bytes
	Size           int64  // uncompressed
	CompressedSize int64
	// Encoding is "zstd-chunks" (written: a sequence of zstd frames of
	// ChunkSize uncompressed bytes), or "zstd" or "gzip" (one value, as
	// stored before chunks; still read).
	Encoding  string
	Format    string
	CreatedAt time.Time
}

// ChunkSize is how many uncompressed bytes one stored chunk holds. Writing
// holds one chunk and its compressed form in memory, reading one compressed
// chunk and its content, so this bounds an artifact's memory either way.
const ChunkSize = 4 << 20

// EncodingChunks is the encoding of artifacts stored in chunks.
const EncodingChunks = "zstd-chunks"

// StagedArtifact is content written to storage in chunks and not yet an
// artifact: CommitArtifact makes it one, in the caller's transaction, and
// DiscardArtifact deletes it when that does not happen.
type StagedArtifact struct {
	SHA256         string
	Size           int64
	CompressedSize int64
	blob           uuid.UUID
	chunks         int
}

// StageArtifact streams r into storage as chunks under a new blob, each
// chunk written and committed on its own, and returns the content's hash
// and size. Nothing of r is held beyond one chunk. If more than limit bytes
// arrive (limit < 0: no limit) it stops with ErrTooLarge. On any error the
// chunks written so far are deleted (the sweep takes them if that fails
// too).
func (s *Store) StageArtifact(ctx context.Context, r io.Reader, limit int64) (*StagedArtifact, error) {
	st := &StagedArtifact{blob: uuid.New()}
	if _, err := s.pool.Exec(ctx, `INSERT INTO artifact_blobs (id) VALUES ($1)`, st.blob); err != nil {
		return nil, fmt.Errorf("staging artifact: %w", err)
	}
	if err := s.writeChunks(ctx, st, r, limit); err != nil {
		s.DiscardArtifact(context.WithoutCancel(ctx), st)
		return nil, err
	}
	return st, nil
}

// ErrTooLarge is returned by StageArtifact when the content is over its limit.
var ErrTooLarge = errors.New("content larger than the limit")

func (s *Store) writeChunks(ctx context.Context, st *StagedArtifact, r io.Reader, limit int64) error {
	h := sha256.New()
	buf := make([]byte, ChunkSize)
	var out []byte
	for {
		n, rerr := io.ReadFull(r, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return fmt.Errorf("staging artifact: reading content: %w", rerr)
		}
		if n > 0 {
			st.Size += int64(n)
			if limit >= 0 && st.Size > limit {
				return fmt.Errorf("staging artifact: %w (%d bytes)", ErrTooLarge, limit)
			}
			h.Write(buf[:n])
			out = s.zenc.EncodeAll(buf[:n], out[:0])
			// One statement, so its own short transaction; it writes
			// nothing when the blob is gone (swept after the upload
			// stalled for longer than the sweep waits).
			tag, err := s.pool.Exec(ctx, `
				WITH b AS (
					UPDATE artifact_blobs SET touched_at = now()
					WHERE id = $1 AND committed_at IS NULL RETURNING id)
				INSERT INTO artifact_chunks (blob_id, seq, size, data)
				SELECT id, $2, $3, $4 FROM b`, st.blob, st.chunks, n, out)
			if err != nil {
				return fmt.Errorf("staging artifact: writing chunk %d: %w", st.chunks, err)
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("staging artifact: writing chunk %d: the upload was idle too long and its chunks were swept", st.chunks)
			}
			st.chunks++
			st.CompressedSize += int64(len(out))
		}
		if rerr != nil { // EOF: the last (short or empty) read
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("staging artifact: %w", err)
		}
	}
	st.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// CommitArtifact records staged content as the artifact named by its hash,
// in tx (nil: on its own), and reports whether it was new. If an artifact
// with that hash already exists, nothing changes and the staged chunks are
// left for DiscardArtifact: content is stored once.
func (s *Store) CommitArtifact(ctx context.Context, tx *Tx, st *StagedArtifact, format string) (bool, error) {
	db := s.on(tx)
	tag, err := db.Exec(ctx, `
		INSERT INTO artifacts (sha256, size, compressed_size, encoding, format, blob_id)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (sha256) DO NOTHING`,
		st.SHA256, st.Size, st.CompressedSize, EncodingChunks, format, st.blob)
	if err != nil {
		return false, fmt.Errorf("storing artifact %s: %w", st.SHA256, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	// The sweep deletes only blobs with committed_at null, and re-checks
	// that on the row it locks, so a blob cannot go once this commits.
	tag, err = db.Exec(ctx, `UPDATE artifact_blobs SET committed_at = now(), chunks = $2 WHERE id = $1 AND committed_at IS NULL`, st.blob, st.chunks)
	if err != nil {
		return false, fmt.Errorf("storing artifact %s: %w", st.SHA256, err)
	}
	if tag.RowsAffected() != 1 {
		return false, fmt.Errorf("storing artifact %s: its staged chunks are gone", st.SHA256)
	}
	return true, nil
}

// DiscardArtifact deletes staged chunks that no artifact took; it does
// nothing to a committed blob. Failure is logged, not returned: the sweep
// deletes what is left.
func (s *Store) DiscardArtifact(ctx context.Context, st *StagedArtifact) {
	if st == nil {
		return
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM artifact_blobs WHERE id = $1 AND committed_at IS NULL`, st.blob); err != nil {
		s.log.Warn("deleting staged artifact chunks", "blob", st.blob, "err", err)
	}
}

// SweepArtifactBlobs deletes the chunks of uploads that never became an
// artifact and wrote nothing for idle (a writer that died): it returns how
// many such uploads it deleted.
func (s *Store) SweepArtifactBlobs(ctx context.Context, idle time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM artifact_blobs
		WHERE committed_at IS NULL AND touched_at < now() - make_interval(secs => $1)`, idle.Seconds())
	if err != nil {
		return 0, fmt.Errorf("sweeping abandoned artifact chunks: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PutArtifact stages r and commits it as an artifact in tx (nil: on its
// own), returning its hash: StageArtifact, CommitArtifact and, when the
// content was already stored, DiscardArtifact. If tx later rolls back the
// staged chunks are left to the sweep.
func (s *Store) PutArtifact(ctx context.Context, tx *Tx, r io.Reader, format string) (string, error) {
	st, err := s.StageArtifact(ctx, r, -1)
	if err != nil {
		return "", err
	}
	isNew, err := s.CommitArtifact(ctx, tx, st, format)
	if err != nil || !isNew {
		s.DiscardArtifact(context.WithoutCancel(ctx), st)
	}
	if err != nil {
		return "", err
	}
	return st.SHA256, nil
}

// OpenArtifact returns an artifact's description and a reader of its
// uncompressed content, which fetches and decompresses one chunk at a
// time. The reader checks the content against its hash and size as it
// reaches the end: a mismatch, a missing chunk or one that does not
// decompress is an error wrapping ErrCorrupt instead of io.EOF. An unknown
// hash is ErrNotFound. ctx bounds every read.
func (s *Store) OpenArtifact(ctx context.Context, sha string) (Artifact, *ArtifactReader, error) {
	var a Artifact
	var blob *uuid.UUID
	var chunks *int32
	err := s.pool.QueryRow(ctx, `
		SELECT a.sha256, a.size, a.compressed_size, a.encoding, a.format, a.created_at, a.blob_id, b.chunks
		FROM artifacts a LEFT JOIN artifact_blobs b ON b.id = a.blob_id
		WHERE a.sha256 = $1`, sha).
		Scan(&a.SHA256, &a.Size, &a.CompressedSize, &a.Encoding, &a.Format, &a.CreatedAt, &blob, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: %w", sha, err)
	}
	ar := &ArtifactReader{s: s, ctx: ctx, a: a, h: sha256.New()}
	switch {
	case a.Encoding == EncodingChunks && blob != nil && chunks != nil:
		ar.blob, ar.chunks = *blob, int(*chunks)
	case a.Encoding == EncodingChunks:
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: chunked without a committed blob: %w", sha, ErrCorrupt)
	default:
		if ar.legacy, err = s.openLegacy(ctx, a); err != nil {
			return Artifact{}, nil, err
		}
	}
	return a, ar, nil
}

// openLegacy reads an artifact stored in one value before chunks. Its
// compressed content is held while it is read; such values were written
// under the old whole-file limit.
func (s *Store) openLegacy(ctx context.Context, a Artifact) (io.Reader, error) {
	var content []byte
	if err := s.pool.QueryRow(ctx, `SELECT content FROM artifacts WHERE sha256 = $1`, a.SHA256).Scan(&content); err != nil {
		return nil, fmt.Errorf("reading artifact %s: %w", a.SHA256, err)
	}
	switch a.Encoding {
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(content), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("decompressing artifact %s: %w", a.SHA256, errors.Join(ErrCorrupt, err))
		}
		return zr.IOReadCloser(), nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(content))
		if err != nil {
			return nil, fmt.Errorf("decompressing artifact %s: %w", a.SHA256, errors.Join(ErrCorrupt, err))
		}
		return zr, nil
	}
	return nil, fmt.Errorf("reading artifact %s: unknown encoding %q: %w", a.SHA256, a.Encoding, ErrCorrupt)
}

// ArtifactReader is the uncompressed content of an artifact (OpenArtifact).
// It is not safe for concurrent use; open one per reader.
type ArtifactReader struct {
	s   *Store
	ctx context.Context
	a   Artifact

	blob   uuid.UUID
	chunks int
	seq    int       // next chunk to fetch
	legacy io.Reader // set for artifacts stored in one value

	buf  []byte // current chunk's content
	off  int
	comp []byte // current chunk as stored
	h    hash.Hash
	n    int64
	err  error // sticky: io.EOF once verified, or the failure
}

// Read implements io.Reader.
func (r *ArtifactReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.legacy != nil {
		n, err := r.legacy.Read(p)
		r.h.Write(p[:n])
		r.n += int64(n)
		if err == io.EOF {
			err = r.verify()
		} else if err != nil {
			err = fmt.Errorf("decompressing artifact %s: %w", r.a.SHA256, errors.Join(ErrCorrupt, err))
			r.err = err
		}
		return n, err
	}
	for r.off == len(r.buf) {
		if r.seq == r.chunks {
			return 0, r.verify()
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// next fetches and decompresses the next chunk.
func (r *ArtifactReader) next() error {
	var size int32
	err := r.s.pool.QueryRow(r.ctx, `SELECT size, data FROM artifact_chunks WHERE blob_id = $1 AND seq = $2`, r.blob, r.seq).
		Scan(&size, &r.comp)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("reading artifact %s: chunk %d of %d is missing: %w", r.a.SHA256, r.seq, r.chunks, ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("reading artifact %s: chunk %d: %w", r.a.SHA256, r.seq, err)
	}
	if size <= 0 || size > ChunkSize {
		return fmt.Errorf("reading artifact %s: chunk %d claims %d bytes: %w", r.a.SHA256, r.seq, size, ErrCorrupt)
	}
	if cap(r.buf) < ChunkSize {
		r.buf = make([]byte, 0, ChunkSize)
	}
	r.buf, err = r.s.zdec.DecodeAll(r.comp, r.buf[:0])
	if err != nil {
		return fmt.Errorf("decompressing artifact %s chunk %d: %w", r.a.SHA256, r.seq, errors.Join(ErrCorrupt, err))
	}
	if len(r.buf) != int(size) {
		return fmt.Errorf("reading artifact %s: chunk %d holds %d bytes, not %d: %w", r.a.SHA256, r.seq, len(r.buf), size, ErrCorrupt)
	}
	r.h.Write(r.buf)
	r.n += int64(len(r.buf))
	r.off = 0
	r.seq++
	return nil
}

// verify ends the stream: io.EOF when the content matches its size and
// hash. The hash is the artifact's identity and the evidence chain relies
// on it, so a mismatch is reported rather than returned silently.
func (r *ArtifactReader) verify() error {
	switch {
	case r.n != r.a.Size:
		r.err = fmt.Errorf("reading artifact %s: content does not match its hash (%d bytes, not %d): %w", r.a.SHA256, r.n, r.a.Size, ErrCorrupt)
	case hex.EncodeToString(r.h.Sum(nil)) != r.a.SHA256:
		r.err = fmt.Errorf("reading artifact %s: content does not match its hash: %w", r.a.SHA256, ErrCorrupt)
	default:
		r.err = io.EOF
	}
	return r.err
}

// Verify reads what is left of the content and reports whether all of it
// matched its hash: nil, or an error wrapping ErrCorrupt (or the reason the
// rest could not be read). A parser may stop before the end of its input;
// this makes sure the whole artifact was checked.
func (r *ArtifactReader) Verify() error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return nil
}

// Err is the reader's failure, if any: nil while it can be read and once
// it ended with the content verified.
func (r *ArtifactReader) Err() error {
	if r.err == io.EOF {
		return nil
	}
	return r.err
}

// Close releases the reader's buffers; it does not fail.
func (r *ArtifactReader) Close() error {
	if c, ok := r.legacy.(io.Closer); ok {
		_ = c.Close()
	}
	r.buf, r.comp = nil, nil
	if r.err == nil {
		r.err = errors.New("read of a closed artifact")
	}
	return nil
}
