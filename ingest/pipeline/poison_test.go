package pipeline_test

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestRefusedForGood sends messages the database refuses however often
// they are tried. Each must end as poison: parked in the DLQ with the
// reason and its run (when there is one) failed with it, and the consumer
// goes on to a good run. Before the classification these were retried in
// place for ever.
func TestRefusedForGood(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope = "git.example.com/acme/refused"

	// processingRun records a run as the parse stage leaves it, and
	// returns its id and its artifact's hash.
	processingRun := func(start bool, content ...[]byte) (string, string) {
		t.Helper()
		runID := bus.NewID()
		var sha string
		err := h.st.InTx(h.ctx, func(tx *store.Tx) error {
			var err error
			data := []byte(`{"version":"2.1.0","runs":[]}`)
			if len(content) > 0 {
				data = content[0]
			}
			if sha, err = h.st.PutArtifact(h.ctx, tx, bytes.NewReader(data), "sarif"); err != nil {
				return err
			}
			return store.CreateRun(h.ctx, tx, store.NewRun{ID: runID, Kind: "code", Scope: scope, Tool: "sarif", Format: "sarif", ArtifactSHA: sha})
		})
		if err != nil {
			t.Fatal(err)
		}
		if start {
			if ok, err := h.st.StartRun(h.ctx, runID, "sarif"); err != nil || !ok {
				t.Fatalf("starting run: %v %v", ok, err)
			}
		}
		return runID, sha
	}
	batch := func(runID string, title string) []byte {
		t.Helper()
		f := finding.Finding{
			Fingerprint: "fp-" + runID, Scope: scope, Kind: finding.KindCode, Tool: "sarif", RuleID: "r1",
			Title: title, Severity: finding.SeverityHigh, SeenAt: time.Now().UTC(),
		}
		v, err := bus.EncodeID(runID+"/1", bus.TypeFindings, time.Now(), pipeline.FindingsBatch{RunID: runID, Seq: 1, Findings: []finding.Finding{f}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	type poison struct {
		key     string
		value   []byte
		failRun bool   // the key is a run that must end failed
		reason  string // in the DLQ error header and the run's error
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) poison
	}{
		{"malformed run id", func(t *testing.T) poison {
			return poison{key: "not-a-uuid", value: batch("not-a-uuid", "t"), reason: "SQLSTATE 22P02"}
		}},
		{"batch of an unknown run", func(t *testing.T) poison {
			runID := bus.NewID()
			return poison{key: runID, value: batch(runID, "t"), reason: "SQLSTATE 23503"}
		}},
		{"NUL byte in a finding", func(t *testing.T) poison {
			runID, _ := processingRun(true)
			return poison{key: runID, value: batch(runID, "before\x00after"), failRun: true, reason: "SQLSTATE 22"}
		}},
		{"single-value artifact that no longer matches its hash", func(t *testing.T) poison {
			runID, sha := processingRun(false)
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			if _, err := zw.Write([]byte(`{"version":"2.1.0","runs":[],"tampered":true}`)); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			// As stored before chunks: one gzip value.
			if _, err := storetest.SQL(t, h.st).Exec(h.ctx, `UPDATE artifacts SET encoding = 'gzip', content = $2, blob_id = NULL WHERE sha256 = $1`, sha, gz.Bytes()); err != nil {
				t.Fatal(err)
			}
			return poison{key: runID, value: runReceived(t, runID), failRun: true, reason: "does not match its hash"}
		}},
		{"corrupt chunk of a multi-chunk artifact", func(t *testing.T) poison {
			data := genSARIF("synthscan", seq(0, 25_000)) // about 10 MB: 3 chunks
			if len(data) <= 2*store.ChunkSize {
				t.Fatalf("test SARIF of %d bytes spans fewer than 3 chunks", len(data))
			}
			runID, sha := processingRun(false, data)
			if _, err := storetest.SQL(t, h.st).Exec(h.ctx, `
				UPDATE artifact_chunks SET data = '\x28b52ffd00deadbeef'::bytea
				WHERE seq = 1 AND blob_id = (SELECT blob_id FROM artifacts WHERE sha256 = $1)`, sha); err != nil {
				t.Fatal(err)
			}
			return poison{key: runID, value: runReceived(t, runID), failRun: true, reason: "chunk 1"}
		}},
	}
	parked := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t)
			if err := h.prod.Publish(h.ctx, bus.TopicScanResults, bus.Message{Key: []byte(p.key), Value: p.value}); err != nil {
				t.Fatal(err)
			}
			parked++
			var got *bus.Message
			for _, m := range h.readTopic(bus.TopicDLQ, parked, runTimeout) {
				if string(m.Key) == p.key {
					got = &m
				}
			}
			if got == nil {
				t.Fatalf("no DLQ message keyed %q", p.key)
			}
			if e := got.Headers[bus.HeaderError]; !strings.Contains(e, p.reason) {
				t.Fatalf("DLQ error %q does not say %q", e, p.reason)
			}
			if p.failRun {
				h.waitRunStatus(p.key, "failed", runTimeout)
				if e := h.runError(p.key); !strings.Contains(e, p.reason) {
					t.Fatalf("run error %q does not say %q", e, p.reason)
				}
			}
		})
	}

	// A corrupt artifact fails its run before anything is emitted.
	if n := h.count(`SELECT count(*) FROM run_batches b JOIN scan_runs r ON r.id = b.run_id WHERE r.error LIKE '%chunk 1%'`); n != 0 {
		t.Fatalf("%d batches stored for the run of a corrupt artifact, want 0", n)
	}

	// The consumer was not held up: an ordinary upload goes through.
	ok := h.submit(scope, genSARIF("synthscan", seq(0, 10)))
	h.waitRunStatus(ok, "succeeded", runTimeout)
}

func runReceived(t *testing.T, runID string) []byte {
	t.Helper()
	v, err := bus.Encode(bus.TypeRunReceived, pipeline.RunReceived{RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
