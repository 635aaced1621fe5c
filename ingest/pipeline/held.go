package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// TxStore runs a function in one transaction; *store.Store implements it.
type TxStore interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
}

// HeldRuns decides held runs: a person releases one (its resolutions apply,
// as reconciliation would have applied them) or discards it (nothing is
// resolved). Each decision commits with its activity rows (the actor, the
// run, every finding resolved) and its events on starpipe.finding.events,
// through the outbox like every other status change.
type HeldRuns struct {
	st  TxStore
	log *slog.Logger
}

// NewHeldRuns builds the service.
func NewHeldRuns(st TxStore, log *slog.Logger) *HeldRuns {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HeldRuns{st: st, log: log.With("component", "held_runs")}
}

// Decision is what releasing or discarding a held run did.
type Decision struct {
	RunID  string
	Status finding.RunStatus // succeeded (released) or discarded
	// Resolved counts the findings the release resolved; WouldResolve and
	// Open are the counts recorded when the run was held.
	Resolved, WouldResolve, Open int
}

// Release applies a held run's resolutions (store.ReleaseRun): findings a
// run created later observed are spared. A run that is not held is a
// *store.RunStateError; an unknown run store.ErrNotFound.
func (h *HeldRuns) Release(ctx context.Context, runID, actor string) (Decision, error) {
	out := Decision{RunID: runID, Status: finding.RunSucceeded}
	err := h.st.InTx(ctx, func(tx *store.Tx) error {
		d, err := store.ReleaseRun(ctx, tx, runID, actor)
		if err != nil {
			return err
		}
		out.Resolved, out.WouldResolve, out.Open = len(d.Changes), d.WouldResolve, d.Open
		if err := recordChanges(ctx, tx, runID, actor, d.Changes); err != nil {
			return err
		}
		if err := RecordRetests(ctx, tx, d.Retests); err != nil {
			return err
		}
		return recordRunEvent(ctx, tx, bus.TypeRunReleased, "run.released", actor, RunEvent{
			RunID: runID, Scope: d.Scope, Kind: d.Kind, WouldResolve: d.WouldResolve, Open: d.Open, Resolved: len(d.Changes),
		})
	})
	if err != nil {
		return Decision{}, fmt.Errorf("releasing run %s: %w", runID, err)
	}
	h.log.Info("held run released", "run_id", runID, "actor", actor, "resolved", out.Resolved)
	return out, nil
}

// Discard drops a held run's resolutions: the run becomes discarded, keeps
// its observations and resolves nothing. A run that is not held is a
// *store.RunStateError; an unknown run store.ErrNotFound.
func (h *HeldRuns) Discard(ctx context.Context, runID, actor string) (Decision, error) {
	out := Decision{RunID: runID, Status: finding.RunDiscarded}
	err := h.st.InTx(ctx, func(tx *store.Tx) error {
		d, err := store.DiscardRun(ctx, tx, runID, actor)
		if err != nil {
			return err
		}
		out.WouldResolve, out.Open = d.WouldResolve, d.Open
		return recordRunEvent(ctx, tx, bus.TypeRunDiscarded, "run.discarded", actor, RunEvent{
			RunID: runID, Scope: d.Scope, Kind: d.Kind, WouldResolve: d.WouldResolve, Open: d.Open,
		})
	})
	if err != nil {
		return Decision{}, fmt.Errorf("discarding run %s: %w", runID, err)
	}
	h.log.Info("held run discarded", "run_id", runID, "actor", actor)
	return out, nil
}
