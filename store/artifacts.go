package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"
)

// Artifact describes stored raw scanner output.
type Artifact struct {
	SHA256         string // hex SHA-256 of the uncompressed bytes
	Size           int64  // uncompressed
	CompressedSize int64
	Encoding       string // "zstd" (written) or "gzip" (read for compatibility)
	Format         string
	CreatedAt      time.Time
}

// PutArtifact stores the bytes read from r, compressed with zstd, under
// their SHA-256 and returns it. Identical content is stored once: a second
// put of the same bytes changes nothing, whatever its format label. Pass
// the transaction that records the run so that both commit together (nil
// uses the pool). The compressed content is held in memory and must stay
// under PostgreSQL's 1 GB bytea limit.
func (s *Store) PutArtifact(ctx context.Context, tx *Tx, r io.Reader, format string) (string, error) {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return "", fmt.Errorf("storing artifact: creating zstd encoder: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(enc, io.TeeReader(r, h))
	if err != nil {
		enc.Close()
		return "", fmt.Errorf("storing artifact: reading content: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("storing artifact: compressing: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	_, err = s.on(tx).Exec(ctx, `
		INSERT INTO artifacts (sha256, size, compressed_size, encoding, format, content)
		VALUES ($1, $2, $3, 'zstd', $4, $5)
		ON CONFLICT (sha256) DO NOTHING`,
		sum, n, int64(buf.Len()), format, buf.Bytes())
	if err != nil {
		return "", fmt.Errorf("storing artifact %s: %w", sum, err)
	}
	return sum, nil
}

// GetArtifact returns an artifact's description and its uncompressed
// content; an unknown hash is ErrNotFound.
func (s *Store) GetArtifact(ctx context.Context, sha string) (Artifact, []byte, error) {
	var a Artifact
	var content []byte
	err := s.pool.QueryRow(ctx, `
		SELECT sha256, size, compressed_size, encoding, format, created_at, content
		FROM artifacts WHERE sha256 = $1`, sha).
		Scan(&a.SHA256, &a.Size, &a.CompressedSize, &a.Encoding, &a.Format, &a.CreatedAt, &content)
	if errors.Is(err, pgx.ErrNoRows) {
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: %w", sha, err)
	}
	var raw []byte
	switch a.Encoding {
	case "zstd":
		raw, err = s.zdec.DecodeAll(content, make([]byte, 0, a.Size))
	case "gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(content)); err == nil {
			raw, err = io.ReadAll(zr)
		}
	default:
		err = fmt.Errorf("unknown encoding %q", a.Encoding)
	}
	if err != nil {
		return Artifact{}, nil, fmt.Errorf("decompressing artifact %s: %w", sha, errors.Join(ErrCorrupt, err))
	}
	// The hash is the artifact's identity and the evidence chain relies on
	// it, so a mismatch is reported rather than returned silently.
	if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != a.SHA256 {
		return Artifact{}, nil, fmt.Errorf("reading artifact %s: content does not match its hash: %w", sha, ErrCorrupt)
	}
	return a, raw, nil
}
