package pipeline_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store"
)

// brokenUpload gives the first n bytes of data and then fails, as a client
// that goes away mid-upload.
type brokenUpload struct {
	r io.Reader
}

func (b *brokenUpload) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errors.New("client went away")
	}
	return n, err
}

// TestUploadStreamedInChunks: a file of several chunks goes end to end,
// and an upload that breaks off or runs over the limit after several
// chunks leaves neither a run nor chunks behind.
func TestUploadStreamedInChunks(t *testing.T) {
	h := newHarness(t, harnessOpts{batchSize: 500})
	// 2 000 results padded with trailing whitespace (valid JSON) to over
	// two chunks: the chunking is tested without a slow run.
	data := genSARIF("synthscan", seq(0, 2_000))
	data = append(data, bytes.Repeat([]byte(" \n"), store.ChunkSize+store.ChunkSize/2)...)
	if len(data) <= 2*store.ChunkSize {
		t.Fatalf("test SARIF of %d bytes spans fewer than 3 chunks", len(data))
	}
	const scope = "git.example.com/acme/chunks"

	if _, err := h.intake.Submit(h.ctx, &brokenUpload{bytes.NewReader(data[:len(data)-100])}, pipeline.Request{Scope: scope}); err == nil {
		t.Fatal("a broken upload was accepted")
	}
	small := pipeline.NewIntake(h.st, 2*store.ChunkSize+1, nil)
	_, err := small.Submit(h.ctx, bytes.NewReader(data), pipeline.Request{Scope: scope})
	if !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("upload over the limit: got %v, want a too-large request error", err)
	}
	for _, table := range []string{"artifact_blobs", "artifact_chunks", "artifacts", "scan_runs"} {
		if n := h.count(`SELECT count(*) FROM ` + table); n != 0 {
			t.Errorf("%d rows in %s after failed uploads, want 0", n, table)
		}
	}

	run := h.submit(scope, data)
	h.waitRunStatus(run, "succeeded", runTimeout)
	if n := h.countFindings(scope, "open"); n != 2_000 {
		t.Fatalf("%d findings stored, want 2000", n)
	}
	if n := h.count(`SELECT count(*) FROM artifact_chunks`); n != (len(data)+store.ChunkSize-1)/store.ChunkSize {
		t.Fatalf("%d chunks stored for %d bytes", n, len(data))
	}
	// The same file again is a new run on the same artifact; its chunks
	// were dropped.
	again := h.submit(scope, data)
	h.waitRunStatus(again, "succeeded", runTimeout)
	if n := h.count(`SELECT count(*) FROM artifact_blobs`); n != 1 {
		t.Fatalf("%d blobs after the same upload twice, want 1", n)
	}
}
