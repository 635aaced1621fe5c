package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// content is n bytes of text that compresses about as well as scanner
// output does (not a run of one byte, which would hide chunking bugs).
func content(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{`{"ruleId":"`, "sql-injection", `","level":"error"}`, "\n", "src/main.go", "42", " "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(byte('a' + r.IntN(26)))
	}
	return b.Bytes()[:n]
}

func readAll(t *testing.T, s *store.Store, sha string) (store.Artifact, []byte, error) {
	t.Helper()
	a, r, err := s.OpenArtifact(t.Context(), sha)
	if err != nil {
		return a, nil, err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	return a, got, err
}

func count(t *testing.T, s *store.Store, sql string) int {
	t.Helper()
	var n int
	if err := storetest.SQL(t, s).QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestArtifactChunksRoundTrip stores content of several chunks (and the
// edge sizes around one chunk) and reads it back byte for byte.
func TestArtifactChunksRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	cases := []struct {
		name   string
		size   int
		chunks int
	}{
		{"empty", 0, 0},
		{"one byte", 1, 1},
		{"exactly one chunk", store.ChunkSize, 1},
		{"one chunk and a byte", store.ChunkSize + 1, 2},
		{"several chunks", 3*store.ChunkSize + store.ChunkSize/3, 4},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := content(tc.size, uint64(i))
			sha, err := s.PutArtifact(t.Context(), nil, bytes.NewReader(raw), "sarif")
			if err != nil {
				t.Fatalf("PutArtifact: %v", err)
			}
			if want := sha256.Sum256(raw); sha != hex.EncodeToString(want[:]) {
				t.Fatalf("hash %s, want %x", sha, want)
			}
			a, got, err := readAll(t, s, sha)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("read back %d bytes, differing from the %d stored", len(got), len(raw))
			}
			if a.Encoding != store.EncodingChunks || a.Size != int64(tc.size) || a.Format != "sarif" {
				t.Fatalf("artifact = %+v", a)
			}
			n := count(t, s, `SELECT count(*) FROM artifact_chunks c JOIN artifacts a ON a.blob_id = c.blob_id WHERE a.sha256 = '`+sha+`'`)
			if n != tc.chunks {
				t.Fatalf("%d chunks stored, want %d", n, tc.chunks)
			}
		})
	}
	if _, _, err := s.OpenArtifact(t.Context(), strings.Repeat("0", 64)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown artifact: got %v, want ErrNotFound", err)
	}
}

// TestArtifactStoredOnce: the same content put twice is one artifact and
// one set of chunks; the second upload's chunks are dropped.
func TestArtifactStoredOnce(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	raw := content(2*store.ChunkSize+10, 7)
	sha1, err := s.PutArtifact(ctx, nil, bytes.NewReader(raw), "nuclei-jsonl")
	if err != nil {
		t.Fatalf("PutArtifact: %v", err)
	}
	sha2, err := s.PutArtifact(ctx, nil, bytes.NewReader(raw), "sarif")
	if err != nil {
		t.Fatalf("PutArtifact again: %v", err)
	}
	if sha1 != sha2 {
		t.Fatalf("hashes %q, %q", sha1, sha2)
	}
	for sql, want := range map[string]int{
		`SELECT count(*) FROM artifacts`:       1,
		`SELECT count(*) FROM artifact_blobs`:  1,
		`SELECT count(*) FROM artifact_chunks`: 3,
	} {
		if n := count(t, s, sql); n != want {
			t.Errorf("%s = %d, want %d", sql, n, want)
		}
	}
	a, got, err := readAll(t, s, sha1)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("reading back: %v (equal %v)", err, bytes.Equal(got, raw))
	}
	if a.Format != "nuclei-jsonl" || a.CompressedSize >= a.Size {
		t.Fatalf("artifact = %+v", a)
	}
}

// failingReader gives n bytes of content, then fails: a client that went
// away mid-upload.
type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

// TestArtifactInterruptedUpload: an upload that fails or runs over its
// limit after several chunks leaves no chunks behind, and chunks that a
// dead process left are swept once idle, never those of an artifact.
func TestArtifactInterruptedUpload(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	raw := content(3*store.ChunkSize, 3)

	if _, err := s.StageArtifact(ctx, &failingReader{bytes.NewReader(raw)}, -1); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("staging a failing upload: %v", err)
	}
	if _, err := s.StageArtifact(ctx, bytes.NewReader(raw), 2*store.ChunkSize+5); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("staging an upload over the limit: got %v, want ErrTooLarge", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cr := &cancelAfter{r: bytes.NewReader(raw), n: store.ChunkSize + 1, cancel: cancel}
	if _, err := s.StageArtifact(cancelled, cr, -1); !errors.Is(err, context.Canceled) {
		t.Fatalf("staging a cancelled upload: got %v, want context.Canceled", err)
	}
	if n := count(t, s, `SELECT count(*) FROM artifact_blobs`) + count(t, s, `SELECT count(*) FROM artifact_chunks`); n != 0 {
		t.Fatalf("%d blob and chunk rows left by interrupted uploads, want 0", n)
	}

	// A process that died between its chunks and its run: staged, never
	// committed nor discarded.
	kept, err := s.PutArtifact(ctx, nil, bytes.NewReader(raw[:store.ChunkSize+1]), "sarif")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StageArtifact(ctx, bytes.NewReader(raw), -1); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepArtifactBlobs(ctx, 1<<40); err != nil || n != 0 {
		t.Fatalf("sweep of recent chunks deleted %d (%v), want 0", n, err)
	}
	if n, err := s.SweepArtifactBlobs(ctx, 0); err != nil || n != 1 {
		t.Fatalf("sweep of idle chunks deleted %d (%v), want 1", n, err)
	}
	if n := count(t, s, `SELECT count(*) FROM artifact_chunks`); n != 2 {
		t.Fatalf("%d chunks left, want the committed artifact's 2", n)
	}
	if _, got, err := readAll(t, s, kept); err != nil || len(got) != store.ChunkSize+1 {
		t.Fatalf("committed artifact after the sweep: %d bytes, %v", len(got), err)
	}
}

// cancelAfter cancels its context once n bytes were read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestArtifactCorrupt: whatever damaged the stored chunks, reading ends in
// an error wrapping ErrCorrupt, never in content that is silently wrong.
func TestArtifactCorrupt(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	other := enc.EncodeAll(content(store.ChunkSize, 99), nil)
	cases := []struct {
		name, sql string
		args      []any
	}{
		{"undecodable chunk", `UPDATE artifact_chunks SET data = '\xdeadbeef'::bytea WHERE seq = 1`, nil},
		{"another valid chunk", `UPDATE artifact_chunks SET data = $1 WHERE seq = 1`, []any{other}},
		{"missing chunk", `DELETE FROM artifact_chunks WHERE seq = 2`, nil},
		{"wrong size", `UPDATE artifact_chunks SET size = size - 1 WHERE seq = 0`, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := content(3*store.ChunkSize, uint64(100+i))
			sha, err := s.PutArtifact(ctx, nil, bytes.NewReader(raw), "sarif")
			if err != nil {
				t.Fatal(err)
			}
			sql := strings.Replace(tc.sql, "WHERE", "WHERE blob_id = (SELECT blob_id FROM artifacts WHERE sha256 = '"+sha+"') AND", 1)
			if _, err := storetest.SQL(t, s).Exec(ctx, sql, tc.args...); err != nil {
				t.Fatal(err)
			}
			if _, _, err := readAll(t, s, sha); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("reading: got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestArtifactSingleValue: artifacts stored before chunks (one zstd or
// gzip value) are still read, and checked against their hash.
func TestArtifactSingleValue(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	raw := content(1<<20, 5)
	sum := sha256.Sum256(raw)
	sha := hex.EncodeToString(sum[:])
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	z := enc.EncodeAll(raw, nil)
	if _, err := storetest.SQL(t, s).Exec(ctx, `
		INSERT INTO artifacts (sha256, size, compressed_size, encoding, format, content)
		VALUES ($1, $2, $3, 'zstd', 'sarif', $4)`, sha, len(raw), len(z), z); err != nil {
		t.Fatal(err)
	}
	a, got, err := readAll(t, s, sha)
	if err != nil || !bytes.Equal(got, raw) || a.Encoding != "zstd" {
		t.Fatalf("reading a single-value artifact: %v, equal %v, %+v", err, bytes.Equal(got, raw), a)
	}
	if _, err := storetest.SQL(t, s).Exec(ctx, `UPDATE artifacts SET content = $2 WHERE sha256 = $1`, sha, enc.EncodeAll(raw[1:], nil)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAll(t, s, sha); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("reading a tampered single-value artifact: got %v, want ErrCorrupt", err)
	}
}
