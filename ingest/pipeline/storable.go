package pipeline

import (
	"context"
	"io"

	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sanitize"
)

// This file keeps one message from stalling the pipeline: what a scanner
// wrote is made storable before it is batched, and whatever the database
// still refuses, or a panic, fails the message's run and parks the message
// in the DLQ instead of being retried for ever.

// parseFunc is ingest.ParseReader's signature. The consumer parses through
// a field of this type so that tests can make a parser fail in ways no
// real file makes it (a panic).
type parseFunc func(ctx context.Context, r io.Reader, format ingest.Format, opt parse.Options, sink parse.Sink) (ingest.Format, parse.Stats, error)

// maxReason bounds a run's failure reason as stored.
const maxReason = 8 << 10

// parseStorable is the parse stage's emitting pass and the one place where
// records of every format are made storable: each finding and asset goes
// through a sanitize.Sanitizer on its way to sink (NUL and invalid UTF-8
// become U+FFFD, over-long values are cut with a marker), and so do the
// tool names of the statistics, exactly as the findings' tool, because
// reconciliation matches the two. It returns what the sanitiser changed,
// nil when nothing, for the run's stats.
//
// Fingerprints are computed by the parsers from the raw values, before
// this runs, and the sanitiser leaves well-formed ones alone: a finding
// keeps its identity whatever its message holds (see package sanitize).
func (c *Consumer) parseStorable(ctx context.Context, r io.Reader, format ingest.Format, opt parse.Options, sink parse.Sink) (parse.Stats, *sanitize.Counts, error) {
	san := sanitize.New(c.cfg.Sanitize)
	_, stats, err := c.parse(ctx, r, format, opt, san.Sink(sink))
	stats.Tools = san.Tools(stats.Tools)
	if n := san.Counts(); !n.IsZero() {
		return stats, &n, err
	}
	return stats, nil, err
}
