package pipeline

import (
	"context"
	"errors"
	"io"
	"runtime/debug"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starpipe/starpipe/bus"
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

// Handle processes one message. Besides what handle classifies, two kinds
// of failure become poison here, whichever part of the handler met them,
// so that they fail the message's run (its key is the run id) and park the
// message in the DLQ: a value the database refuses to store, which it
// would refuse again on every retry, and a panic.
func (c *Consumer) Handle(ctx context.Context, msg bus.Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			// bus logs the poison error once, with the stack.
			err = c.poison(ctx, string(msg.Key), &bus.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	err = c.handle(ctx, msg)
	if err != nil && !bus.IsPoison(err) && refused(err) {
		return c.poison(ctx, string(msg.Key), err)
	}
	return err
}

// refused reports an error that retrying the same message cannot fix: a
// message the broker will not take because of its size, or a PostgreSQL
// error of class 22 (data exception: NUL, invalid encoding, a value too
// long), 23 (integrity: a batch of a run that does not exist, a kind the
// check refuses) or 54 (program limit: a key over the btree row limit).
// A unique violation (23505) is the exception: store.UpsertFindings meets
// it when a concurrent batch inserted the same finding first, and the
// retry then updates that row.
//
// This is the minimal classification the parse stage needs; the store's
// general one (permanent versus unavailable by error class) supersedes it
// when it lands.
func refused(err error) bool {
	if errors.Is(err, bus.ErrMessageTooLarge) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	if pe.Code == "23505" || pe.Code == "23P01" { // unique, exclusion: lost a race
		return false
	}
	for _, class := range []string{"22", "23", "54"} {
		if strings.HasPrefix(pe.Code, class) {
			return true
		}
	}
	return false
}
