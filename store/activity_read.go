package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reading the hash-chained activity log (migration 00013). Rows are read
// in chain order (seq), the order their hashes link them in; before and
// after come back as PostgreSQL's text of the stored jsonb, the form the
// row's hash covers.

// ActivityEntry is one stored activity-log row.
type ActivityEntry struct {
	ID          int64
	Seq         int64 // place in the chain, gapless from 1
	At          time.Time
	Actor       string
	Action      string
	SubjectType string
	SubjectID   string
	RunID       string // "" for none
	Before      []byte // jsonb text; nil for SQL NULL
	After       []byte
	PrevHash    string // lower-case hex SHA-256 of the previous row's canonical form
	Hash        string // lower-case hex SHA-256 of this row's canonical form
}

// ActivityFilter selects activity rows. Empty fields do not filter;
// filters combine with AND.
type ActivityFilter struct {
	From, To    time.Time // at >= From, at < To
	Actor       string
	SubjectType string
	SubjectID   string
	Limit       int    // 0 means DefaultPageSize; StreamActivity ignores it
	Cursor      string // from the previous page's next
}

const activityColumns = `a.id, a.seq, a.at, a.actor, a.action, a.subject_type, a.subject_id,
	coalesce(a.run_id::text, ''), a.before::text, a.after::text, a.prev_hash, a.hash`

func scanActivity(row pgx.CollectableRow) (ActivityEntry, error) {
	var e ActivityEntry
	var before, after *string
	err := row.Scan(&e.ID, &e.Seq, &e.At, &e.Actor, &e.Action, &e.SubjectType, &e.SubjectID,
		&e.RunID, &before, &after, &e.PrevHash, &e.Hash)
	if before != nil {
		e.Before = []byte(*before)
	}
	if after != nil {
		e.After = []byte(*after)
	}
	e.At = e.At.UTC()
	return e, err
}

func (f ActivityFilter) where(after int64) *where {
	w := &where{}
	if !f.From.IsZero() {
		w.add("a.at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("a.at < " + w.arg(f.To))
	}
	if f.Actor != "" {
		w.add("a.actor = " + w.arg(f.Actor))
	}
	if f.SubjectType != "" {
		w.add("a.subject_type = " + w.arg(f.SubjectType))
	}
	if f.SubjectID != "" {
		w.add("a.subject_id = " + w.arg(f.SubjectID))
	}
	if after > 0 {
		w.add("a.seq > " + w.arg(after))
	}
	return w
}

func (s *Store) activityPage(ctx context.Context, f ActivityFilter, after int64, limit int) ([]ActivityEntry, error) {
	w := f.where(after)
	rows, _ := s.pool.Query(ctx, `SELECT `+activityColumns+` FROM activity_log a`+w.sql()+`
		ORDER BY a.seq LIMIT `+strconv.Itoa(limit), w.args...)
	items, err := pgx.CollectRows(rows, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("listing activity: %w", err)
	}
	return items, nil
}

// ListActivity returns one page of the rows f selects, in chain order;
// next is the cursor of the following page, "" on the last.
func (s *Store) ListActivity(ctx context.Context, f ActivityFilter) ([]ActivityEntry, string, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeActivityCursor(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	items, err := s.activityPage(ctx, f, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = encodeCursor("a1." + strconv.FormatInt(items[limit-1].Seq, 10))
	}
	return items, next, nil
}

// StreamActivity calls fn for every row f selects, in chain order, from
// f.Cursor on, reading keyset pages so that a slow consumer holds neither
// a connection nor memory. An error from fn stops it and is returned as is.
func (s *Store) StreamActivity(ctx context.Context, f ActivityFilter, fn func(ActivityEntry) error) error {
	after, err := decodeActivityCursor(f.Cursor)
	if err != nil {
		return err
	}
	for {
		items, err := s.activityPage(ctx, f, after, streamPageSize)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if len(items) < streamPageSize {
			return nil
		}
		after = items[len(items)-1].Seq
	}
}

// ActivityChainRange is a contiguous stretch of the chain.
type ActivityChainRange struct {
	FirstSeq int64  // 0 with LastSeq 0 when the stretch is empty
	LastSeq  int64  // FirstSeq-1 when empty
	PrevHash string // hash of row FirstSeq-1, or 64 zeros at the start of the chain
}

// GenesisHash is the prev_hash of the first row of the chain.
var GenesisHash = strings.Repeat("0", 64)

// ActivityChainSpan returns the contiguous stretch of the chain that covers
// the rows timed in [from, to) (a zero bound is open): from the first such
// row to the last, in chain order. Times and chain order can disagree a
// little (a row's time is its transaction's start, or the caller's clock;
// its seq is taken when it is inserted), so the stretch may include rows
// timed just outside the range; it never leaves one out, and it is what a
// verifier can check on its own. With no row in the range it is empty and
// placed after the last row timed before to.
func (s *Store) ActivityChainSpan(ctx context.Context, from, to time.Time) (ActivityChainRange, error) {
	w := ActivityFilter{From: from, To: to}.where(0)
	var first, last *int64
	err := s.pool.QueryRow(ctx, `SELECT min(a.seq), max(a.seq) FROM activity_log a`+w.sql(), w.args...).Scan(&first, &last)
	if err != nil {
		return ActivityChainRange{}, fmt.Errorf("finding the activity rows from %s to %s: %w", from, to, err)
	}
	var r ActivityChainRange
	if first == nil {
		// Empty: anchor it after the last row before to, so that the
		// export still states where the chain stood.
		w := ActivityFilter{To: to}.where(0)
		var head *int64
		if err := s.pool.QueryRow(ctx, `SELECT max(a.seq) FROM activity_log a`+w.sql(), w.args...).Scan(&head); err != nil {
			return r, fmt.Errorf("finding the activity chain head: %w", err)
		}
		n := int64(0)
		if head != nil {
			n = *head
		}
		r.FirstSeq, r.LastSeq = n+1, n
	} else {
		r.FirstSeq, r.LastSeq = *first, *last
	}
	r.PrevHash = GenesisHash
	if r.FirstSeq > 1 {
		if err := s.pool.QueryRow(ctx, `SELECT hash FROM activity_log WHERE seq = $1`, r.FirstSeq-1).Scan(&r.PrevHash); err != nil {
			return r, fmt.Errorf("reading the hash of activity row %d: %w", r.FirstSeq-1, err)
		}
	}
	return r, nil
}

// ActivityChain returns up to limit rows with afterSeq < seq <= lastSeq
// (lastSeq 0: no upper bound), in chain order.
func (s *Store) ActivityChain(ctx context.Context, afterSeq, lastSeq int64, limit int) ([]ActivityEntry, error) {
	if lastSeq <= 0 {
		lastSeq = 1<<63 - 1
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+activityColumns+` FROM activity_log a
		WHERE a.seq > $1 AND a.seq <= $2 ORDER BY a.seq LIMIT `+strconv.Itoa(limit), afterSeq, lastSeq)
	items, err := pgx.CollectRows(rows, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("reading the activity chain after row %d: %w", afterSeq, err)
	}
	return items, nil
}

func decodeActivityCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, badCursor(c)
	}
	rest, ok := strings.CutPrefix(string(b), "a1.")
	if !ok {
		return 0, badCursor(c)
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n <= 0 {
		return 0, badCursor(c)
	}
	return n, nil
}
