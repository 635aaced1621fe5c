package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/ingest/sanitize"
	"github.com/starpipe/starpipe/internal/daemon"
	"github.com/starpipe/starpipe/store/storetest"
)

// The tests in this file feed the pipeline what used to stall it for good:
// values PostgreSQL cannot store, values too long to index or to publish,
// a parser that panics and a message the database refuses. Each run must
// end (succeeded with the value made storable, or failed with the reason
// and the message in the DLQ) and the next ordinary upload must succeed.

// nulSARIF has NUL characters (JSON \u0000 escapes) in the tool's
// properties, the rule's tags, the message, the location, the snippet and
// the partial fingerprint.
const nulSARIF = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"nultool","version":"1\u0000.0",
"rules":[{"id":"NUL001","name":"Nul\u0000Rule","shortDescription":{"text":"short \u0000 description"},
  "properties":{"security-severity":"7.5","tags":["secu\u0000rity","external/cwe/cwe-79"]}}]}},
"results":[{"ruleId":"NUL001","ruleIndex":0,"level":"error",
  "message":{"text":"tainted \u0000 data reaches a sink"},
  "properties":{"tags":["from-\u0000-result"]},
  "locations":[{"physicalLocation":{"artifactLocation":{"uri":"src/a\u0000b.go"},
    "region":{"startLine":3,"snippet":{"text":"sink(\u0000)"}}}}],
  "partialFingerprints":{"primaryLocationLineHash":"ab\u0000cd:1"}}]}]}`

func TestNULBytesIngest(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope = "git.example.com/acme/nul"
	run1 := h.submit(scope, []byte(nulSARIF))
	h.waitRunStatus(run1, "succeeded", runTimeout)

	var msg, uri, ver string
	var tags []string
	var data []byte
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT message, location_uri, tool_version, tags, data::text FROM findings WHERE scope = $1`, scope).
		Scan(&msg, &uri, &ver, &tags, &data); err != nil {
		t.Fatal(err)
	}
	if msg != "tainted \uFFFD data reaches a sink" || uri != "src/a\uFFFDb.go" || ver != "1\uFFFD.0" {
		t.Errorf("stored message %q, uri %q, tool version %q", msg, uri, ver)
	}
	if !strings.Contains(strings.Join(tags, ","), "secu\uFFFDrity") || !strings.Contains(strings.Join(tags, ","), "from-\uFFFD-result") {
		t.Errorf("stored tags %q", tags)
	}
	if bytes.Contains(data, []byte(`\u0000`)) || !bytes.Contains(data, []byte("sink(\uFFFD)")) {
		t.Errorf("stored data %s", data)
	}
	san := h.runSanitized(run1)
	if san.NUL < 6 || san.Truncated != 0 {
		t.Errorf("run stats sanitized %+v, want at least 6 NULs and nothing truncated", san)
	}

	// The same file again: the same finding (fingerprints come from the
	// raw values and do not move), nothing new, nothing resolved.
	run2 := h.submit(scope, []byte(nulSARIF))
	h.waitRunStatus(run2, "succeeded", runTimeout)
	if got := h.tally(run2, scope); got.Findings != 1 || got.Observations != 1 || got.Opened != 0 || got.Resolved != 0 {
		t.Errorf("re-ingest: %+v", got)
	}
	h.ordinaryUploadSucceeds()
}

// TestLongToolName ingests a tool name over the btree row limit (3 KB)
// and one near the broker's message limit (1 MB): the name is cut with a
// marker everywhere (findings, the run's tool and stats) the same way, so
// that a rescan reconciles against it like against any tool.
func TestLongToolName(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, n := range []int{3 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("bytes=%d", n), func(t *testing.T) {
			tool := incompressible(n)
			scope := fmt.Sprintf("git.example.com/acme/long-%d", n)
			run1 := h.submit(scope, genSARIF(tool, seq(0, 60)))
			h.waitRunStatus(run1, "succeeded", runTimeout)

			limit := sanitize.DefaultLimits().Identifier
			var tools []string
			rows, err := storetest.SQL(h.t, h.st).Query(h.ctx, `SELECT DISTINCT tool FROM findings WHERE scope = $1`, scope)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				tools = append(tools, s)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(tools) != 1 {
				t.Fatalf("findings' tools %d: %.80q", len(tools), tools)
			}
			got := tools[0]
			wantMarker := fmt.Sprintf("…[truncated %d bytes]", n-(limit-len(fmt.Sprintf("…[truncated %d bytes]", n))))
			if len(got) > limit || !strings.HasPrefix(got, tool[:limit-len(wantMarker)]) || !strings.HasSuffix(got, wantMarker) {
				t.Fatalf("stored tool: %d bytes ending %q, want at most %d ending %q", len(got), got[max(0, len(got)-40):], limit, wantMarker)
			}
			run, err := h.st.GetRun(h.ctx, run1)
			if err != nil {
				t.Fatal(err)
			}
			if run.Tool != got {
				t.Fatalf("run tool %.60q, findings' tool %.60q", run.Tool, got)
			}
			if san := h.runSanitized(run1); san.Truncated < 60 {
				t.Fatalf("run stats sanitized %+v, want every finding's tool counted", san)
			}

			// A rescan missing two findings resolves exactly those two:
			// the cut name is the tool reconciliation matches.
			run2 := h.submit(scope, genSARIF(tool, seq(2, 60)))
			h.waitRunStatus(run2, "succeeded", runTimeout)
			if got := h.tally(run2, scope); got.Findings != 60 || got.Observations != 58 || got.Resolved != 2 || got.Opened != 0 {
				t.Fatalf("rescan: %+v", got)
			}
		})
	}
	h.ordinaryUploadSucceeds()
}

// incompressible returns n letters that PostgreSQL cannot compress (a
// repeated letter would fit an index row compressed, hiding the limit).
func incompressible(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// TestPanickingParser: a parser that panics on one file fails that run
// with the panic as the reason and parks its message in the DLQ; the
// consumer goes on and the next upload succeeds.
func TestPanickingParser(t *testing.T) {
	h := newHarness(t, harnessOpts{noConsumer: true})
	const trigger = "PANIC-IN-PARSER"
	parser := func(ctx context.Context, r io.Reader, format ingest.Format, opt parse.Options, sink parse.Sink) (ingest.Format, parse.Stats, error) {
		data, err := io.ReadAll(r)
		if err != nil {
			return "", parse.Stats{}, err
		}
		if bytes.Contains(data, []byte(trigger)) {
			var m map[string]int
			m[trigger]++ // a nil map write: the kind of bug a parser has
		}
		return ingest.ParseReader(ctx, bytes.NewReader(data), format, opt, sink)
	}
	h.startDaemon([]string{config.RoleIngest}, nil, nil, daemon.WithIngestConsumer(func(c *pipeline.Consumer) {
		pipeline.SetParseFunc(c, parser)
	}))

	bad := h.submit("git.example.com/acme/panic", genSARIF(trigger, seq(0, 3)))
	h.waitRunStatus(bad, "failed", runTimeout)
	if e := h.runError(bad); !strings.Contains(e, "handler panicked") || !strings.Contains(e, "nil map") {
		t.Fatalf("run error %q", e)
	}
	dlq := h.readTopic(bus.TopicDLQ, 1, runTimeout)
	if len(dlq) != 1 || string(dlq[0].Key) != bad {
		t.Fatalf("DLQ: %d messages, first key %q, want the run-received of %s", len(dlq), dlq[0].Key, bad)
	}
	if s := dlq[0].Headers[bus.HeaderPanicStack]; !strings.Contains(s, "TestPanickingParser") {
		t.Fatalf("DLQ message without the panic's stack: %q", s)
	}
	h.ordinaryUploadSucceeds()
}

// TestRefusedBatchIsParked publishes a findings batch the parse stage
// would never write (a NUL in its message, as a producer without the
// sanitiser could): the database refuses it (SQLSTATE 22021), and the
// consumer fails the run with that reason and parks the batch instead of
// retrying it for ever.
func TestRefusedBatchIsParked(t *testing.T) {
	h := newHarness(t, harnessOpts{noConsumer: true})
	const scope = "git.example.com/acme/refused"
	run := h.submit(scope, genSARIF("synthscan", seq(0, 5)))
	// Once the relay delivered run-received, the batch follows it on the
	// run's partition.
	h.waitFor("run queued", runTimeout, func() bool {
		return h.count(`SELECT count(*) FROM scan_runs WHERE id = $1::uuid AND status = 'queued'`, run) == 1
	})
	v, err := bus.EncodeID(run+"/1", bus.TypeFindings, time.Now(), pipeline.FindingsBatch{RunID: run, Seq: 1, Findings: []finding.Finding{{
		Fingerprint: strings.Repeat("0", 64), FingerprintSource: "computed", Scope: scope, Kind: finding.KindCode,
		Tool: "synthscan", RuleID: "SYN000", Title: "injected", Message: "nul \x00 here",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.prod.Publish(h.ctx, bus.TopicScanResults, bus.Message{Key: []byte(run), Value: v}); err != nil {
		t.Fatal(err)
	}
	h.startIngest(nil)

	h.waitRunStatus(run, "failed", runTimeout)
	if e := h.runError(run); !strings.Contains(e, "22021") || !utf8.ValidString(e) {
		t.Fatalf("run error %q, want the database's refusal (SQLSTATE 22021)", e)
	}
	dlq := h.readTopic(bus.TopicDLQ, 1, runTimeout)
	if len(dlq) != 1 || string(dlq[0].Key) != run || !bytes.Equal(dlq[0].Value, v) {
		t.Fatalf("DLQ: %d messages, first %q", len(dlq), dlq[0].Key)
	}
	if c := h.countFindings(scope, ""); c != 0 {
		t.Fatalf("%d findings stored for a failed run", c)
	}
	h.ordinaryUploadSucceeds()
}

// ordinaryUploadSucceeds submits an ordinary file and waits for it: the
// pipeline is not stalled.
func (h *harness) ordinaryUploadSucceeds() {
	h.t.Helper()
	scope := "git.example.com/acme/ordinary-" + bus.NewID()
	run := h.submit(scope, genSARIF("synthscan", seq(0, 10)))
	h.waitRunStatus(run, "succeeded", runTimeout)
	if c := h.countFindings(scope, "open"); c != 10 {
		h.t.Fatalf("ordinary upload: %d open findings, want 10", c)
	}
}

// runSanitized reads what the run's stats say the parse stage changed, as
// GET /v1/runs/{id} shows them.
func (h *harness) runSanitized(runID string) sanitize.Counts {
	h.t.Helper()
	run, err := h.st.GetRun(h.ctx, runID)
	if err != nil {
		h.t.Fatal(err)
	}
	var stats struct {
		Sanitized *sanitize.Counts `json:"sanitized"`
	}
	if err := json.Unmarshal(run.Stats, &stats); err != nil {
		h.t.Fatalf("run stats %s: %v", run.Stats, err)
	}
	if stats.Sanitized == nil {
		h.t.Fatalf("run stats %s do not say what was sanitized", run.Stats)
	}
	return *stats.Sanitized
}

// TestIntakeRefusesUnstorableScope: the scope keys findings, so intake
// refuses one PostgreSQL cannot store (400) instead of changing it; the
// file name only names the run and is made storable.
func TestIntakeRefusesUnstorableScope(t *testing.T) {
	h := newHarness(t, harnessOpts{noConsumer: true})
	data := genSARIF("synthscan", seq(0, 1))
	for _, scope := range []string{"repo\x00x", "repo\xffx"} {
		_, err := h.intake.Submit(h.ctx, bytes.NewReader(data), pipeline.Request{Scope: scope})
		re, ok := errors.AsType[*pipeline.RequestError](err)
		if !ok || !errors.Is(re, pipeline.ErrInvalidRequest) {
			t.Errorf("scope %q: got %v, want an invalid-request error", scope, err)
		}
	}
	run, err := h.intake.Submit(h.ctx, bytes.NewReader(data), pipeline.Request{Scope: "repo", FileName: "a\x00b.sarif"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.st.GetRun(h.ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if r.FileName != "a\uFFFDb.sarif" {
		t.Fatalf("file name stored as %q", r.FileName)
	}
}
