package pipeline

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/sanitize"
)

// The payloads below travel in bus envelopes whose types (bus.TypeRunReceived,
// bus.TypeFindings, ...) the bus package defines; scan.results messages are
// keyed by run id so that one run's messages stay in order on one partition.

// RunReceived asks the parse stage to read a stored artifact.
type RunReceived struct {
	RunID string `json:"run_id"`
}

// RunStarted says parsing began and how the file was recognised.
type RunStarted struct {
	RunID  string `json:"run_id"`
	Format string `json:"format"`
}

// FindingsBatch is one slice of a run's findings. Seq starts at 1 and is
// the idempotency key together with the run id: a batch replayed after a
// crash is recognised and skipped.
type FindingsBatch struct {
	RunID    string            `json:"run_id"`
	Seq      int               `json:"seq"`
	Findings []finding.Finding `json:"findings"`
}

// RunFinished closes a run. Batches is the number of findings batches that
// precede it; the consumer reconciles only when it has stored all of them.
type RunFinished struct {
	RunID      string   `json:"run_id"`
	Status     string   `json:"status"` // succeeded or failed
	Error      string   `json:"error,omitempty"`
	Batches    int      `json:"batches"`
	Findings   int      `json:"findings"`
	Suppressed int      `json:"suppressed"`
	NotFinding int      `json:"not_findings"`
	Assets     int      `json:"assets"`
	Tools      []string `json:"tools,omitempty"`
	// Sanitized counts the values the parse stage changed to make them
	// storable (nil: none); the run's stats keep it.
	Sanitized *sanitize.Counts `json:"sanitized,omitempty"`
}

// FindingEvent is published for every status change of a finding.
type FindingEvent struct {
	FindingID   int64    `json:"finding_id"`
	Scope       string   `json:"scope"`
	Fingerprint string   `json:"fingerprint"`
	Tool        string   `json:"tool"`
	Rule        string   `json:"rule"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	From        string   `json:"from,omitempty"`
	To          string   `json:"to"`
	RunID       string   `json:"run_id,omitempty"`
	Controls    []string `json:"controls,omitempty"`
}

// RunEvent is published on starpipe.finding.events, keyed by run id, when
// reconciliation holds a run (run-held) and when a person releases
// (run-released, after the run's resolved events) or discards it
// (run-discarded).
type RunEvent struct {
	RunID string `json:"run_id"`
	Scope string `json:"scope"`
	Kind  string `json:"kind"`
	// Actor is "system" for run-held, else the token name that decided.
	Actor string `json:"actor"`
	// WouldResolve and Open: the findings the run did not see and all open
	// ones of its scope, kind and tools when it was held.
	WouldResolve int `json:"would_resolve"`
	Open         int `json:"open"`
	// Resolved is how many findings the release resolved.
	Resolved int `json:"resolved"`
}

// batcher groups findings into messages under a byte budget, so that a
// file with huge findings still yields messages the broker accepts. It
// relies on parseStorable having bounded every field: one sanitised
// finding always fits the budget on its own (see package sanitize).
type batcher struct {
	maxCount int
	maxBytes int
	runID    string
	seq      int
	buf      []json.RawMessage
	size     int
	flush    func(seq int, payload []byte) error
}

func (b *batcher) add(f *finding.Finding) error {
	raw, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode finding %s: %w", f.Fingerprint, err)
	}
	if len(b.buf) > 0 && (len(b.buf) >= b.maxCount || b.size+len(raw) > b.maxBytes) {
		if err := b.emit(); err != nil {
			return err
		}
	}
	b.buf = append(b.buf, raw)
	b.size += len(raw) + 1
	return nil
}

func (b *batcher) emit() error {
	if len(b.buf) == 0 {
		return nil
	}
	b.seq++
	// Assembled by hand: the findings are already encoded, and marshalling
	// them again as json.RawMessage would scan every byte once more.
	runID, err := json.Marshal(b.runID)
	if err != nil {
		return err
	}
	payload := make([]byte, 0, b.size+64)
	payload = append(payload, `{"run_id":`...)
	payload = append(payload, runID...)
	payload = append(payload, `,"seq":`...)
	payload = strconv.AppendInt(payload, int64(b.seq), 10)
	payload = append(payload, `,"findings":[`...)
	for i, raw := range b.buf {
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, raw...)
	}
	payload = append(payload, "]}"...)
	if err := b.flush(b.seq, payload); err != nil {
		return err
	}
	b.buf = b.buf[:0]
	b.size = 0
	return nil
}
