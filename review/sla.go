package review

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store"
)

// SLAStore is what the SLA watcher needs of the database; *store.Store
// implements it. store.RecordSLABreaches and the activity and outbox
// writes run in the *store.Tx that InTx hands out.
type SLAStore interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
}

// SLAActor is the actor of the activity rows the watcher writes.
const SLAActor = "sla"

// breachBatch is how many breaches one transaction records; a backlog (the
// first check after an outage) is worked through in batches.
const breachBatch = 500

// SLAWatcher announces SLA breaches: every interval it records the active
// findings past their due date and, in the same transaction, an
// sla-breached event and an activity row for each. A breach is announced
// once per finding and due date (store.RecordSLABreaches), however many
// replicas watch.
type SLAWatcher struct {
	st    SLAStore
	clock Clock
	every time.Duration
	log   *slog.Logger
	exc   *ExceptionChecker // nil: no exceptions check
}

// WithExceptions makes the watcher run c's check (expiry, warnings) on
// every tick too, before it looks for breaches: an expiry restarts due
// dates.
func (w *SLAWatcher) WithExceptions(c *ExceptionChecker) *SLAWatcher {
	w.exc = c
	return w
}

// NewSLAWatcher builds a watcher that checks every interval (at least a
// second). clock nil is the wall clock.
func NewSLAWatcher(st SLAStore, clock Clock, every time.Duration, log *slog.Logger) *SLAWatcher {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SLAWatcher{st: st, clock: clock, every: max(every, time.Second), log: log.With("component", "sla")}
}

// Run checks at once and then every interval until ctx ends. A failed
// check (the database away) is logged and tried again at the next tick.
func (w *SLAWatcher) Run(ctx context.Context) error {
	for {
		if w.exc != nil {
			if _, err := w.exc.Check(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("exceptions check failed; trying again at the next tick", "err", err, "retry_in", w.every)
			}
		}
		if _, err := w.Check(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("SLA check failed; trying again at the next tick", "err", err, "retry_in", w.every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.clock.After(w.every):
		}
	}
}

// Check announces the breaches due at the clock's now and returns how many.
func (w *SLAWatcher) Check(ctx context.Context) (int, error) {
	now := w.clock.Now().UTC().Truncate(time.Microsecond)
	total := 0
	for {
		var n int
		err := w.st.InTx(ctx, func(tx *store.Tx) error {
			bs, err := store.RecordSLABreaches(ctx, tx, now, breachBatch)
			if err != nil || len(bs) == 0 {
				n = 0
				return err
			}
			n = len(bs)
			return announceBreaches(ctx, tx, now, bs)
		})
		if err != nil {
			return total, fmt.Errorf("checking SLA breaches: %w", err)
		}
		total += n
		if n < breachBatch {
			if total > 0 {
				w.log.Info("SLA breaches announced", "count", total)
			}
			return total, nil
		}
	}
}

func announceBreaches(ctx context.Context, tx *store.Tx, now time.Time, bs []store.SLABreach) error {
	acts := make([]store.Activity, len(bs))
	msgs := make([]store.OutboxMessage, len(bs))
	for i, b := range bs {
		id := strconv.FormatInt(b.ID, 10)
		acts[i] = store.Activity{At: now, Actor: SLAActor, Action: "finding.sla-breached", SubjectType: "finding", SubjectID: id,
			After: map[string]any{"sla_due": b.SLADue.UTC(), "severity": b.Severity, "status": b.Status}}
		v, err := bus.EncodeID(bus.NewID(), bus.TypeSLABreached, now, SLABreachEvent{
			FindingID: b.ID, Scope: b.Scope, Kind: b.Kind, Fingerprint: b.Fingerprint, Tool: b.Tool, Rule: b.Rule,
			Title: b.Title, Severity: b.Severity, Status: b.Status, Review: b.Review, SLADue: b.SLADue.UTC(), BreachedAt: b.BreachedAt.UTC(),
		})
		if err != nil {
			return err
		}
		msgs[i] = store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: id, Payload: v}
	}
	if err := store.AppendActivityBatch(ctx, tx, acts); err != nil {
		return err
	}
	return store.EnqueueBatch(ctx, tx, msgs)
}

// SLABreachEvent is published on starpipe.finding.events (type
// sla-breached) once per finding and due date.
type SLABreachEvent struct {
	FindingID   int64     `json:"finding_id"`
	Scope       string    `json:"scope"`
	Kind        string    `json:"kind"`
	Fingerprint string    `json:"fingerprint"`
	Tool        string    `json:"tool"`
	Rule        string    `json:"rule"`
	Title       string    `json:"title"`
	Severity    string    `json:"severity"`
	Status      string    `json:"status"`
	Review      string    `json:"review"`
	SLADue      time.Time `json:"sla_due"`
	BreachedAt  time.Time `json:"breached_at"` // when the check found it, not when it fell due
}
